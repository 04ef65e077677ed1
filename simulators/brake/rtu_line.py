"""The RS-485 line between a Modbus RTU master and pymodbus's serial server, on two ptys.

pymodbus's serial server opens a port by path, and a driver opens another one,
so the simulator joins two pseudo-terminals as socat would: the inner one is
the tester's own port (pymodbus opens its slave end), the outer one is linked
at `--link` for the driver (`PtyLink`). In between this bridge plays the
wire: it holds every chunk for the time its bytes take at the line's speed
(11 bits a byte for 8E1), keeps the line half-duplex, and starts a reply no
sooner than 3.5 characters after the request ended, as an RTU slave must.
Pulling the cable (`cable_out`) removes the outer pty and its link; the
driver sees its port vanish. `cable_in` plugs a fresh one in at the same path.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import tty
from collections.abc import Callable
from pathlib import Path

import structlog

from simulators.line import LineTiming, PtyLink

log = structlog.get_logger("simulators.brake")

#: an RTU frame ends after 3.5 character times of silence
FRAME_GAP_CHARS = 3.5


class PacedRtuBridge:
    """Two ptys joined by a paced half-duplex wire."""

    def __init__(
        self,
        link: str | Path,
        timing: LineTiming,
        *,
        name: str = "brake_tester",
    ) -> None:
        self.outer = PtyLink(link)
        self.timing = timing
        self.name = name
        self.inner_master: int | None = None
        self._inner_slave: int | None = None
        self.inner_path = ""
        self._line_free_at = 0.0
        self._last_was_reply = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.cable_present = False
        self.bytes_to_device = 0
        self.bytes_to_host = 0

    @property
    def gap_s(self) -> float:
        return FRAME_GAP_CHARS * self.timing.char_s

    def open(self) -> None:
        """Create the inner pty (for pymodbus) and plug the outer one in at the link."""
        self._loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        os.set_blocking(master, False)
        self.inner_master, self._inner_slave = master, slave
        self.inner_path = os.ttyname(slave)
        self._loop.add_reader(master, self._from_device)
        self.cable_in()

    def cable_in(self) -> None:
        if self.cable_present or self._loop is None:
            return
        self.outer.open()
        assert self.outer.master_fd is not None
        self._loop.add_reader(self.outer.master_fd, self._from_host)
        self.cable_present = True
        log.info("sim_serial_open", device=self.name, link=str(self.outer.link), pty=self.outer.slave_name)

    def cable_out(self) -> None:
        """The driver's cable is pulled: its port and the link disappear."""
        if not self.cable_present:
            return
        self.cable_present = False
        if self._loop is not None and self.outer.master_fd is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.outer.master_fd)
        self.outer.close()
        log.info("sim_cable_lost", device=self.name, link=str(self.outer.link))

    def close(self) -> None:
        self.cable_out()
        if self._loop is not None and self.inner_master is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.inner_master)
        for fd in (self.inner_master, self._inner_slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.inner_master = self._inner_slave = None

    # ----- the wire ------------------------------------------------------------------

    def _schedule(self, due: float, deliver: Callable[[bytes], None], data: bytes) -> None:
        assert self._loop is not None
        self._loop.call_at(due, deliver, data)

    def _from_host(self) -> None:
        data = self.outer.read_available()
        if not data or self._loop is None:
            return
        now = self._loop.time()
        due = max(now, self._line_free_at) + self.timing.wire_time_s(len(data))
        self._line_free_at = due
        self._last_was_reply = False
        self._schedule(due, self._to_device, data)

    def _from_device(self) -> None:
        if self.inner_master is None or self._loop is None:
            return
        try:
            data = os.read(self.inner_master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EBADF):
                return
            raise
        if not data:
            return
        now = self._loop.time()
        if self._last_was_reply and self._line_free_at >= now:
            start = self._line_free_at  # the rest of a reply already on the wire
        else:
            start = max(now, self._line_free_at + self.gap_s)
        due = start + self.timing.wire_time_s(len(data))
        self._line_free_at = due
        self._last_was_reply = True
        self._schedule(due, self._to_host, data)

    def _to_device(self, data: bytes) -> None:
        if self.inner_master is None:
            return
        self.bytes_to_device += len(data)
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.inner_master, view) :]
            except BlockingIOError:
                continue
            except OSError:
                return

    def _to_host(self, data: bytes) -> None:
        if not self.cable_present:
            return
        self.bytes_to_host += len(data)
        self.outer.write(data)
