"""A serial line for simulated devices: a pty linked at a path, paced at the line's speed.

`PtyLink` creates a pseudo-terminal and links its slave end at a path, as
socat's `pty,link=PATH` does, so a driver opens that path exactly as it would
open `/dev/ttyUSB0`. `PacedSerialServer` is the common half of every serial
simulator: it gathers request bytes (dropping a partial request after the
manual's inter-byte gap), lets the device answer, and delivers the reply when
its last byte would have arrived on a real line: request wire time + the
device's reply delay + reply wire time. Faults that every serial device shares
(silence, a reply cut short, a wrong checksum, stray bytes, a lost cable) live
here; a device adds only its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import time
import tty
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("simulators.line")


@dataclass(frozen=True)
class LineTiming:
    """Wire time of a serial line: `bits_per_char` is 10 for 8N1, 11 for 8E1."""

    baud: int
    bits_per_char: int = 10

    @property
    def char_s(self) -> float:
        return self.bits_per_char / self.baud

    def wire_time_s(self, nbytes: int) -> float:
        return nbytes * self.char_s


class PtyLink:
    """A pty whose slave end is reachable at `link`; the simulator owns the master end."""

    def __init__(self, link: str | Path) -> None:
        self.link = Path(link)
        self.master_fd: int | None = None
        self._slave_fd: int | None = None
        self.slave_name: str | None = None

    def open(self) -> None:
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        os.set_blocking(master, False)
        self.master_fd, self._slave_fd = master, slave
        self.slave_name = os.ttyname(slave)
        self.link.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.link.with_name(self.link.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(self.slave_name)
        tmp.replace(self.link)

    def close(self) -> None:
        """Remove the link and close the pty: to the driver, the cable is gone."""
        with contextlib.suppress(FileNotFoundError):
            if self.link.is_symlink() and os.readlink(self.link) == self.slave_name:
                self.link.unlink()
        for fd in (self.master_fd, self._slave_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master_fd = self._slave_fd = None

    def write(self, data: bytes) -> None:
        if self.master_fd is None:
            return
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.master_fd, view)
            except BlockingIOError:
                time.sleep(0.0005)
                continue
            except OSError as exc:  # the other side is gone: drop what cannot be sent
                if exc.errno in (errno.EIO, errno.EBADF):
                    return
                raise
            view = view[written:]

    def read_available(self) -> bytes:
        if self.master_fd is None:
            return b""
        try:
            return os.read(self.master_fd, 4096)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EBADF):
                return b""
            raise


@dataclass(frozen=True)
class LateReply:
    """A reply sent only when a long operation ends (an opacimeter's zero), `after_s` after its
    request; meanwhile the device keeps answering other requests. `make()` builds the reply at
    that moment (None: stay silent), so it reflects what happened during the operation."""

    after_s: float
    make: Callable[[], bytes | None]


SHARED_FAULTS = frozenset({"silence", "short_reply", "bad_checksum", "stray_bytes", "lost_cable"})


class PacedSerialServer(ABC):
    """The line side of a serial device simulator. Subclasses frame requests and answer them."""

    #: the manual's limit: a longer pause between request bytes drops the partial request
    request_gap_s: float = 0.020
    #: asyncio timers wake up to ~1.5 ms late (epoll counts whole milliseconds), which makes every
    #: reply late by that much. With this set (e.g. 0.002), a reply sleeps until this long before it
    #: is due and then yields to the loop until the exact moment: precise pacing for measurements
    #: (`laned bench`), bought with that much busy time per reply. 0 (default): plain sleep.
    spin_before_due_s: float = 0.0

    def __init__(
        self,
        link: str | Path,
        timing: LineTiming,
        *,
        reply_delay_s: float = 0.005,
        name: str = "device",
    ) -> None:
        self.pty = PtyLink(link)
        self.timing = timing
        self.reply_delay_s = reply_delay_s
        self.name = name
        self.faults: dict[str, float] = {}  # fault name -> monotonic time it ends (inf = until cleared)
        self.requests_served = 0
        self._buffer = bytearray()
        self._last_byte_at = 0.0
        self._busy_until = 0.0
        self._rx_event = asyncio.Event()
        self._closing = False
        self._late: set[asyncio.Task[None]] = set()

    # ----- the device's part -------------------------------------------------

    @abstractmethod
    def request_length(self, buffer: bytes) -> int | None:
        """Bytes the request starting at buffer[0] needs; None if buffer[0] cannot start one."""

    @abstractmethod
    def handle(self, request: bytes) -> bytes | LateReply | None:
        """The reply to one complete request, None to stay silent, or a LateReply."""

    def corrupt_checksum(self, reply: bytes) -> bytes:
        """The reply with its last byte (the checksum in every manual here) made wrong."""
        return reply[:-1] + bytes([(reply[-1] + 1) & 0xFF]) if reply else reply

    def stray_bytes(self) -> bytes:
        """Noise sent before a reply under the stray_bytes fault. A device overrides this to
        keep the noise from containing bytes that could start one of its replies."""
        return bytes(random.randrange(256) for _ in range(3))

    # ----- faults -------------------------------------------------------------

    def inject(self, fault: str, duration_s: float | None = None) -> None:
        """Switch a fault on, for `duration_s` or until `clear()`."""
        self.faults[fault] = time.monotonic() + duration_s if duration_s else float("inf")
        log.info("sim_fault_on", device=self.name, fault=fault, duration_s=duration_s)

    def clear(self, fault: str | None = None) -> None:
        if fault is None:
            self.faults.clear()
        else:
            self.faults.pop(fault, None)
        log.info("sim_fault_off", device=self.name, fault=fault or "all")

    def fault_active(self, fault: str) -> bool:
        until = self.faults.get(fault)
        if until is None:
            return False
        if time.monotonic() >= until:
            del self.faults[fault]
            return False
        return True

    # ----- the line -----------------------------------------------------------

    async def serve(self) -> None:
        """Open the pty and answer requests until cancelled. A lost-cable fault closes the pty
        for its duration and opens a new one at the same link afterwards."""
        loop = asyncio.get_running_loop()
        try:
            while not self._closing:
                self.pty.open()
                fd = self.pty.master_fd
                assert fd is not None
                loop.add_reader(fd, self._rx_event.set)
                log.info("sim_serial_open", device=self.name, link=str(self.pty.link), pty=self.pty.slave_name)
                try:
                    await self._serve_open_line()
                finally:
                    for task in list(self._late):
                        task.cancel()  # a reply still to come is lost with the line
                    with contextlib.suppress(Exception):
                        loop.remove_reader(fd)  # even when close() has already closed the pty
                    self.pty.close()
                if self._closing:
                    break
                # the cable is out: wait for the fault to end, then plug back in
                while self.fault_active("lost_cable"):
                    await asyncio.sleep(0.05)
        finally:
            self.pty.close()

    async def _serve_open_line(self) -> None:
        while not self._closing:
            if self.fault_active("lost_cable"):
                log.info("sim_cable_lost", device=self.name)
                return
            self._rx_event.clear()
            data = self.pty.read_available()
            now = time.monotonic()
            if data:
                if now < self._busy_until:
                    pass  # the device ignores bytes that arrive while it is sending
                else:
                    if self._buffer and now - self._last_byte_at > self.request_gap_s:
                        self._buffer.clear()
                    self._buffer.extend(data)
                    self._last_byte_at = now
                    await self._process_buffer()
                continue
            try:
                await asyncio.wait_for(self._rx_event.wait(), timeout=0.05)
            except TimeoutError:
                pass

    async def _process_buffer(self) -> None:
        while self._buffer:
            need = self.request_length(bytes(self._buffer))
            if need is None:
                del self._buffer[0]
                continue
            if len(self._buffer) < need:
                return
            request = bytes(self._buffer[:need])
            del self._buffer[:need]
            await self._answer(request)

    async def _answer(self, request: bytes) -> None:
        started = time.monotonic()
        answer = self.handle(request)
        self.requests_served += 1
        if isinstance(answer, LateReply):
            task = asyncio.create_task(self._answer_late(answer, started))
            self._late.add(task)
            task.add_done_callback(self._late.discard)
            return
        reply = self._with_faults(answer)
        if reply is None:
            return
        # the request's own wire time, the device's think time, then the reply on the wire
        due = started + self.timing.wire_time_s(len(request)) + self.reply_delay_s
        due += self.timing.wire_time_s(len(reply))
        self._busy_until = due
        await self._sleep_until(due)
        while self.pty.read_available():
            pass  # bytes sent while the device was answering are lost, as on the real line
        self.pty.write(reply)
        self._buffer.clear()

    async def _sleep_until(self, due: float) -> None:
        """Wait until monotonic time `due`; never wakes early (see `spin_before_due_s`)."""
        delay = due - time.monotonic() - self.spin_before_due_s
        if delay > 0:
            await asyncio.sleep(delay)
        while time.monotonic() < due:
            await asyncio.sleep(0 if self.spin_before_due_s else due - time.monotonic())

    def _with_faults(self, reply: bytes | None) -> bytes | None:
        """The reply as the shared faults deliver it (None: nothing at all)."""
        if reply is None or self.fault_active("silence"):
            return None
        if self.fault_active("bad_checksum"):
            reply = self.corrupt_checksum(reply)
        if self.fault_active("short_reply"):
            reply = reply[: max(1, len(reply) // 2)]
        if self.fault_active("stray_bytes"):
            reply = self.stray_bytes() + reply
        return reply

    async def _answer_late(self, late: LateReply, started: float) -> None:
        await asyncio.sleep(max(0.0, started + late.after_s - time.monotonic()))
        reply = self._with_faults(late.make())
        if reply is None:
            return
        while (wait := self._busy_until - time.monotonic()) > 0:
            await asyncio.sleep(wait)  # one reply at a time on the line
        wire_s = self.timing.wire_time_s(len(reply))
        self._busy_until = time.monotonic() + wire_s
        await asyncio.sleep(wire_s)
        self.pty.write(reply)

    def close(self) -> None:
        self._closing = True
        self.pty.close()
