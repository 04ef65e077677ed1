"""An asyncio serial port for request/reply devices, on pyserial-asyncio-fast.

The port is a local device (`/dev/ttyUSB0`, a simulator's pty) or a serial device server on
the network (`socket://host:port`, a raw TCP port of an Ethernet-to-RS-232 box): pyserial's
URL handling opens either, and every byte comes in through the transport's protocol
(`data_received`) into one buffer that `request()` feeds to a sans-I/O reply decoder from
`protocols/` until it yields a reply or the timeout runs out. A lost port (an unplugged USB
adapter, a pty that went away, a device server that closed the connection) ends the link with
`DeviceUnavailable` ("serial port lost"); the driver's life cycle reconnects.

A late reply to an earlier request is never taken for this one's: before every request the
link's buffer is cleared and what the port still holds is discarded (a local port: pyserial's
`reset_input_buffer`; a network port: the bytes already received are let in and dropped), and
the decoder only yields the reply it expects.

A poll's request (the poll loop sets `READ_REPLY_AT`) pauses the transport's reading until the
loop's next tick and resumes it there: the reply waits in the port, so the replies of a 20 Hz
device cost no wake-up of their own (docs/performance.md). Any other request, and a reply not
whole at the tick, takes the bytes as they come.

A local port is opened exclusively, by the lock serial tools honour (drivers/port_lock.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import termios
import time
from typing import Any, Protocol, TypeVar, cast

import serial
import serial.threaded
import serial_asyncio_fast

from drivers.base import READ_REPLY_AT
from drivers.errors import DeviceTimeout, DeviceUnavailable
from drivers.port_lock import in_use_detail, is_local_port
from protocols.errors import FrameError

#: the replies a decoder yields (e.g. protocols.gas_analyzer.Reply): what `request` returns
Reply = TypeVar("Reply")


class ReplyDecoder(Protocol[Reply]):
    """What `protocols/` decoders offer: bytes in, replies and FrameErrors out."""

    def feed(self, data: bytes) -> list[Reply | FrameError]: ...


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


class _ThreadedPort(asyncio.Transport):
    """The transport of a port the loop has no descriptor to wait on: rfc2217://, whose telnet
    pyserial speaks in a thread of its own (pyserial-asyncio-fast waits on a descriptor). pyserial's
    `ReaderThread` reads it and hands each chunk to the loop. Its reading cannot be paused, so a
    poll's reply is taken as it comes, as outside a poll."""

    def __init__(self, loop: asyncio.AbstractEventLoop, port: Any, protocol: _Receiver) -> None:
        super().__init__({"serial": port})
        self._loop, self._protocol, self._closing = loop, protocol, False
        self._reader = serial.threaded.ReaderThread(port, self._forwarder)
        protocol.connection_made(self)
        self._reader.start()

    def _forwarder(self) -> serial.threaded.Protocol:
        """The reader thread's protocol: what it gets, handed to the loop's `_Receiver`."""
        loop, protocol = self._loop, self._protocol

        def later(callback: Any, *args: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
                loop.call_soon_threadsafe(callback, *args)

        class Forward(serial.threaded.Protocol):  # type: ignore[misc]
            def data_received(self, data: bytes) -> None:
                later(protocol.data_received, bytes(data))

            def connection_lost(self, exc: Exception | None) -> None:
                later(protocol.connection_lost, exc)

        return Forward()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        try:
            self._reader.write(bytes(data))
        except serial.SerialException as exc:
            self._protocol.lost = self._protocol.lost or exc
            self.abort()

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop the reader and close the port, off the loop (the thread takes up to its read timeout)."""
        if not self._closing:
            self._closing = True
            self._loop.run_in_executor(None, self._reader.close)

    def abort(self) -> None:
        self.close()

    def pause_reading(self) -> None:
        """Nothing to pause: the thread reads as the bytes come."""

    def resume_reading(self) -> None:
        """Nothing to resume."""


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
        #: a network port (a pyserial URL: socket://, rfc2217://) has no input queue of its own to discard
        self.networked = "://" in port
        self._transport: asyncio.Transport | None = None
        self._serial: Any = None
        self._rx: _Receiver | None = None
        #: why the port was last lost, kept after close() so that a request racing the driver's
        #: reconnect still says "lost" rather than "not open"
        self._lost: str | None = None
        self.frame_errors = 0
        self.bytes_out = 0
        self.bytes_in = 0

    async def open(self) -> None:
        """Open the port, exclusively when it is a local device (drivers/port_lock.py): a port that
        another process holds is refused with `DeviceUnavailable` naming that process."""
        loop = asyncio.get_running_loop()
        options: dict[str, Any] = dict(self.settings)  # a local port's own options (its lock) join here, a URL's never
        exclusive = is_local_port(self.port)
        if exclusive:
            options["exclusive"] = True
        try:
            if self.port.startswith("rfc2217://"):
                port = await loop.run_in_executor(None, functools.partial(serial.serial_for_url, self.port, **options))
                protocol = _Receiver()
                transport: asyncio.Transport = _ThreadedPort(loop, port, protocol)
            else:
                transport, made = await serial_asyncio_fast.create_serial_connection(
                    loop, _Receiver, self.port, **options
                )
                protocol = cast(_Receiver, made)  # the library types it as asyncio.Protocol: our factory made it
        except (serial.SerialException, OSError, ValueError) as exc:  # ValueError: pyserial's word on a bad URL
            if exclusive and getattr(exc, "errno", None) in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise DeviceUnavailable(self.device, in_use_detail(self.port), port=self.port) from None
            raise DeviceUnavailable(self.device, f"cannot open serial port: {exc}", port=self.port) from None
        self._transport, self._rx, self._lost = transport, protocol, None
        self._serial = transport.get_extra_info("serial")  # pyserial's port: reset_input_buffer()

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

    async def flush_input(self) -> None:
        """Discard what was received and not asked for: the link's buffer, and what the port holds
        that the reader did not take yet (a late reply that landed as the previous request timed
        out). A local port's input queue is discarded by pyserial (`reset_input_buffer`); a network
        port's bytes already received are let in (two turns of the loop: one for the reader to be
        called, one for it to run) and dropped."""
        rx = self._check_open()
        if self.networked:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            rx = self._check_open()
        else:
            try:
                self._serial.reset_input_buffer()
            except (serial.SerialException, termios.error, OSError) as exc:  # EIO: the device went away
                self._port_lost(rx, exc)
                raise DeviceUnavailable(self.device, f"serial port lost: {rx.lost}", port=self.port) from None
        rx.buffer.clear()

    def write(self, data: bytes) -> None:
        self._check_open()
        assert self._transport is not None
        self._transport.write(data)
        self.bytes_out += len(data)

    async def _quiet_until(self, when: float) -> None:
        """No reading until monotonic `when` (a poll tick): the reply waits in the port, and the
        transport's reader takes it at the tick, where the poll loop wakes anyway."""
        transport = self._transport
        if transport is None or when <= time.monotonic():
            return
        transport.pause_reading()
        try:
            await asyncio.sleep(when - time.monotonic())
        finally:
            if transport is self._transport and not transport.is_closing():
                transport.resume_reading()

    def _port_lost(self, rx: _Receiver, exc: Exception) -> None:
        """A port found gone by the input flush: as if its reader had found it (`connection_lost`)."""
        rx.lost = rx.lost or exc
        if self._transport is not None:
            self._transport.abort()

    async def request(self, data: bytes, decoder: ReplyDecoder[Reply], timeout_s: float, *, expected: str) -> Reply:
        """Send `data` and return the first reply `decoder` yields within `timeout_s`.

        Bad frames on the way are counted and skipped (the decoder resynchronises);
        `expected` names the reply in the timeout message a technician reads.
        """
        rx = self._check_open()
        await self.flush_input()
        self.write(data)
        deadline = time.monotonic() + timeout_s
        read_at = READ_REPLY_AT.get()
        if read_at is not None and read_at < deadline:
            await self._quiet_until(read_at)
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
            await rx.wait(remaining)
