"""An asyncio serial port for request/reply devices, on pyserial-asyncio-fast.

Received bytes go into one buffer that `request()` feeds to a sans-I/O reply
decoder from `protocols/` until it yields a reply or the timeout runs out.
The input is flushed before every request, so a late reply to an earlier
request can never be taken for the answer to this one. A lost port (an
unplugged USB adapter, a pty that went away) ends the link with
`DeviceUnavailable`; the driver's life cycle reconnects.

A poll's request (the poll loop sets `READ_REPLY_AT`) leaves its reply in the port until the
loop's next tick and reads it there straight from the descriptor; between polls the port has
no reader at all, so the replies of a 20 Hz device cost no wake-up and no event-loop work of
their own (docs/performance.md). Any other request, and a reply not whole at the tick, has the
transport's reader back and takes bytes as they come.

A local port is opened exclusively, by the lock serial tools honour (drivers/port_lock.py).
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import termios
import time
from typing import Any, Protocol

import serial
import serial_asyncio_fast

from drivers.base import READ_REPLY_AT
from drivers.errors import DeviceTimeout, DeviceUnavailable
from drivers.port_lock import in_use_detail, is_local_port
from protocols.errors import FrameError


class ReplyDecoder(Protocol):
    """What `protocols/` decoders offer: bytes in, replies and FrameErrors out."""

    def feed(self, data: bytes) -> list[Any]: ...


PARITIES = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}


class _Receiver(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[None] | None = None  # a request waiting for bytes
        self.lost: Exception | None = None
        self.closed = asyncio.Event()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer.extend(data)
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.lost or exc or ConnectionError("port closed")  # the first reason stays
        self.closed.set()
        self._wake()

    async def wait(self, timeout_s: float) -> None:
        """Until bytes arrive, the port is lost, or `timeout_s` passes. A future and a timer: this runs
        for every reply, and `wait_for` on an event costs a task per call (docs/performance.md)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self.waiter = waiter
        timer = loop.call_later(timeout_s, _set_done, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None


def _set_done(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class SerialLink:
    """One serial port, opened by `open()`, used by one driver."""

    def __init__(
        self,
        device: str,
        port: str,
        *,
        baudrate: int,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: int = 1,
    ) -> None:
        self.device = device
        self.port = port
        self.settings = {"baudrate": baudrate, "bytesize": bytesize, "parity": PARITIES[parity], "stopbits": stopbits}
        self._transport: asyncio.Transport | None = None
        self._serial: Any = None
        self._rx: _Receiver | None = None
        #: why the port was last lost, kept after close() so that a request racing the driver's
        #: reconnect still says "lost" rather than "not open"
        self._lost: str | None = None
        #: no reader on the port (see `_quiet_until`): its bytes wait in the kernel until read
        self._paused = False
        self.frame_errors = 0
        self.bytes_out = 0
        self.bytes_in = 0

    async def open(self) -> None:
        """Open the port, exclusively when it is a local device (drivers/port_lock.py): a port that
        another process holds is refused with `DeviceUnavailable` naming that process."""
        loop = asyncio.get_running_loop()
        exclusive = {"exclusive": True} if is_local_port(self.port) else {}
        try:
            transport, protocol = await serial_asyncio_fast.create_serial_connection(
                loop, _Receiver, self.port, **self.settings, **exclusive
            )
        except (serial.SerialException, OSError) as exc:
            if exclusive and getattr(exc, "errno", None) in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise DeviceUnavailable(self.device, in_use_detail(self.port), port=self.port) from None
            raise DeviceUnavailable(self.device, f"cannot open serial port: {exc}", port=self.port) from None
        self._transport, self._rx, self._lost, self._paused = transport, protocol, None, False
        self._serial = transport.get_extra_info("serial")  # pyserial's port, for reads while paused

    async def close(self) -> None:
        transport, self._transport = self._transport, None
        if self._rx is not None and self._rx.lost is not None:
            self._lost = str(self._rx.lost)
        if transport is not None:
            transport.close()
            if self._rx is not None:
                try:
                    await asyncio.wait_for(self._rx.closed.wait(), 1.0)
                except TimeoutError:
                    pass

    @property
    def is_open(self) -> bool:
        return self._transport is not None and self._rx is not None and self._rx.lost is None

    def _check_open(self) -> _Receiver:
        if self._transport is None or self._rx is None:
            why = f"serial port lost: {self._lost}" if self._lost else "serial port not open"
            raise DeviceUnavailable(self.device, why, port=self.port)
        if self._rx.lost is not None:
            raise DeviceUnavailable(self.device, f"serial port lost: {self._rx.lost}", port=self.port)
        return self._rx

    def flush_input(self) -> None:
        """Discard what was received and not asked for: the link's buffer, and what the port holds
        that no reader took yet (all that came while reading was paused, or a late reply that
        landed after the reader last ran, e.g. just as the previous request timed out)."""
        rx = self._check_open()
        rx.buffer.clear()
        try:  # pyserial's reset_input_buffer is this ioctl behind two more calls
            if not self._serial.is_open:
                raise ConnectionError("the port was closed")
            termios.tcflush(self._serial.fd, termios.TCIFLUSH)
        except (termios.error, OSError) as exc:
            self._port_lost(rx, exc)
            raise DeviceUnavailable(self.device, f"serial port lost: {rx.lost}", port=self.port) from None

    def write(self, data: bytes) -> None:
        self._check_open()
        assert self._transport is not None
        self._transport.write(data)
        self.bytes_out += len(data)

    async def _quiet_until(self, rx: _Receiver, when: float) -> None:
        """Leave the reply in the port until monotonic `when` (a poll tick), then read what is there
        directly: no wake-up and no reader for its bytes, and reading stays paused while the poll
        loop goes on (the next request goes out in this same turn). A reply not whole by then is
        read as it comes, as any other (`request` resumes reading)."""
        transport = self._transport
        if transport is None:
            return
        if when > time.monotonic():
            if not self._paused:
                transport.pause_reading()
                self._paused = True
            await asyncio.sleep(when - time.monotonic())
        if self._paused and transport is self._transport and not transport.is_closing():
            self._read_now(rx)

    def _read_now(self, rx: _Receiver) -> None:
        """What the port holds, read without waiting (pyserial opens it non-blocking, VMIN = 0: an
        empty read is "nothing yet" or a hang-up). As pyserial's own reader decides: a port that
        says it is readable and then gives nothing is gone."""
        fd = self._serial.fd
        try:
            data = os.read(fd, 4096)
            if not data and select.select([fd], [], [], 0)[0]:
                data = os.read(fd, 4096)
                if not data:
                    raise ConnectionError("the port is readable but gives no data (device disconnected?)")
        except BlockingIOError:
            return
        except OSError as exc:  # EIO: the adapter or the pty's other end went away (and the ConnectionError above)
            self._port_lost(rx, exc)
            return
        rx.buffer.extend(data)

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            transport = self._transport
            if transport is not None and not transport.is_closing():
                transport.resume_reading()

    def _port_lost(self, rx: _Receiver, exc: Exception) -> None:
        """A port found gone by a direct read: as if its reader had found it (`connection_lost`)."""
        rx.lost = rx.lost or exc
        self._paused = False
        if self._transport is not None:
            self._transport.abort()

    async def request(self, data: bytes, decoder: ReplyDecoder, timeout_s: float, *, expected: str) -> Any:
        """Send `data` and return the first reply `decoder` yields within `timeout_s`.

        Bad frames on the way are counted and skipped (the decoder resynchronises);
        `expected` names the reply in the timeout message a technician reads.
        """
        rx = self._check_open()
        self.flush_input()
        self.write(data)
        deadline = time.monotonic() + timeout_s
        read_at = READ_REPLY_AT.get()
        if read_at is not None and read_at < deadline:
            await self._quiet_until(rx, read_at)
        seen = bytearray()
        last_error: FrameError | None = None
        while True:
            if rx.buffer:
                chunk = bytes(rx.buffer)
                rx.buffer.clear()
                self.bytes_in += len(chunk)
                seen.extend(chunk)
                for item in decoder.feed(chunk):
                    if isinstance(item, FrameError):
                        self.frame_errors += 1
                        last_error = item
                        continue
                    return item
            if rx.lost is not None:
                raise DeviceUnavailable(self.device, f"serial port lost: {rx.lost}", port=self.port)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                got = f"got {len(seen)} byte(s): {bytes(seen[:32]).hex(' ')}" if seen else "got nothing"
                why = f"; last bad frame: {last_error}" if last_error else ""
                raise DeviceTimeout(
                    self.device,
                    f"no valid {expected} within {timeout_s * 1000:.0f} ms ({got}{why})",
                    port=self.port,
                )
            self._resume()
            await rx.wait(remaining)
