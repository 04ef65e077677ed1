"""A poll's serial reply is read at the poll loop's next tick, not when its bytes arrive: the lane
wakes once a tick for all its polls instead of once more for every reply (docs/performance.md).
The poll rate stays what the config says, and requests outside a poll read as the bytes come.

Real OP-1 simulator on a real pty."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import time
from pathlib import Path

import pytest

from drivers.base import READ_REPLY_AT, Backoff
from drivers.errors import DeviceTimeout, DeviceUnavailable
from drivers.opacimeter import OpacimeterDriver
from drivers.serial_link import SerialLink
from simulators.opacimeter import MeterSettings, OpacimeterSimulator

pytestmark = pytest.mark.integration

STATUS_REQUEST, READY_STATUS = bytes.fromhex("a1 5f"), bytes.fromhex("a1 00 5f")  # the manual's STATUS, ready


class FirstBytes:
    """A decoder that yields the first `count` bytes received."""

    def __init__(self, count: int) -> None:
        self.count, self.buffer = count, bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer.extend(data)
        return [bytes(self.buffer[: self.count])] if len(self.buffer) >= self.count else []


async def test_a_reply_under_a_poll_tick_is_read_at_the_tick(tmp_path: Path) -> None:
    async with OpacimeterSimulator(tmp_path / "op1", settings=MeterSettings(warmup_s=0.1, zero_s=0.1)):
        link = SerialLink("opacimeter", str(tmp_path / "op1"), baudrate=9600)
        await link.open()
        try:
            await asyncio.sleep(0.2)  # warmed up
            # the meter answers STATUS in ~15 ms; the tick is 250 ms away
            tick = time.monotonic() + 0.25
            token = READ_REPLY_AT.set(tick)
            try:
                reply = await link.request(STATUS_REQUEST, FirstBytes(3), 0.5, expected="status")
            finally:
                READ_REPLY_AT.reset(token)
            assert reply == READY_STATUS
            assert time.monotonic() >= tick
            # outside a poll the same request is answered as the bytes come, well before a tick as far
            started = time.monotonic()
            assert await link.request(STATUS_REQUEST, FirstBytes(3), 0.5, expected="status") == READY_STATUS
            assert time.monotonic() - started < 0.25
        finally:
            await link.close()


async def test_a_20_hz_poll_still_polls_20_times_a_second(tmp_path: Path) -> None:
    """The reply of one poll is read at the next poll's tick, and that poll's request goes out in
    the same wake-up: a loop that waited for the tick after would poll at 10 Hz."""
    async with OpacimeterSimulator(tmp_path / "op1", settings=MeterSettings(warmup_s=0.1, zero_s=0.1)):
        driver = OpacimeterDriver("opacimeter", port=str(tmp_path / "op1"), poll_hz=20,
                                  backoff=Backoff(initial_s=0.05, max_s=0.3))
        task = asyncio.create_task(driver.run())
        try:
            await driver.wait_connected(5)
            await asyncio.sleep(0.3)
            before = driver.link.bytes_out
            await asyncio.sleep(2.0)
            polls = (driver.link.bytes_out - before) / len(bytes.fromhex("a5 5b"))  # REALTIME, 2 bytes
            assert polls > 28  # 40 at 20 Hz; 20 if each poll waited a tick for its reply
        finally:
            await driver.stop()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await task


async def test_a_port_gone_while_reading_is_paused_or_between_polls_is_a_lost_port(tmp_path: Path) -> None:
    """While a poll's reply waits for the tick nothing reads the port, so an adapter unplugged then
    is first seen when reading resumes at the tick; one unplugged between polls, by the port's
    reader or the next request's input flush. Either is a lost port the driver reconnects, named
    as such, not an internal error."""
    for gone_at in ("while paused", "between polls"):
        master, slave = pty.openpty()
        link = SerialLink("opacimeter", os.ttyname(slave), baudrate=9600)
        await link.open()
        try:
            token = READ_REPLY_AT.set(time.monotonic() + 0.1)  # a poll: reading paused until this tick
            try:
                request = asyncio.create_task(link.request(STATUS_REQUEST, FirstBytes(3), 0.5, expected="status"))
                await asyncio.sleep(0.02)
                assert os.read(master, 16) == STATUS_REQUEST
                if gone_at == "while paused":
                    os.close(master)  # the device goes away while nothing reads the port
                    with pytest.raises(DeviceUnavailable, match="serial port lost"):
                        await request
                    continue
                os.write(master, READY_STATUS)
                assert await request == READY_STATUS
            finally:
                READ_REPLY_AT.reset(token)
            os.close(master)
            with pytest.raises(DeviceUnavailable, match="serial port lost"):
                await link.request(STATUS_REQUEST, FirstBytes(3), 0.5, expected="status")
            assert not link.is_open
        finally:
            await link.close()
            os.close(slave)


async def test_a_late_reply_arriving_as_a_request_times_out_is_not_the_retrys_reply(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The input is flushed before every request (module docstring) so that a late reply is never
    taken for the next one. With the reader running (any request after its tick, or outside a poll),
    bytes that reached the port after the loop last polled it are still in the kernel at the flush:
    here the first reply lands as the first request's timeout fires, and the retry at once after
    (OpacimeterDriver._request) must still get its own reply."""
    import drivers.serial_link as serial_link

    master, slave = pty.openpty()
    link = SerialLink("opacimeter", os.ttyname(slave), baudrate=9600)
    await link.open()
    try:
        set_done, late = serial_link._set_done, [b"AAA"]

        def timeout_as_the_late_reply_lands(waiter: asyncio.Future[None]) -> None:
            if late:
                os.write(master, late.pop())
                time.sleep(0.005)  # the pty hands it to the port's input queue
            set_done(waiter)

        monkeypatch.setattr(serial_link, "_set_done", timeout_as_the_late_reply_lands)
        with pytest.raises(DeviceTimeout):
            await link.request(b"A", FirstBytes(3), 0.1, expected="A")

        async def device() -> None:
            await asyncio.sleep(0.02)
            os.read(master, 16)
            os.write(master, b"BBB")

        answering = asyncio.create_task(device())
        assert await link.request(b"B", FirstBytes(3), 0.3, expected="B") == b"BBB"
        await answering
    finally:
        await link.close()
        os.close(master)
        os.close(slave)
