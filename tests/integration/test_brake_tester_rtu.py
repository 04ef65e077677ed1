"""RB-2 brake tester over Modbus RTU on a real pty, paced at 19200 baud (11 bits a byte for 8E1).

A pty cannot carry a parity bit (Linux refuses PARENB on it), so the host side opens the
simulator's link with parity N; the simulated line still takes 11 bit times per byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import serial

from drivers.base import Backoff, HealthState
from drivers.brake_tester import BrakeTesterDriver, ModbusLink, record_curve
from drivers.errors import DeviceRefused
from protocols import brake_tester as bt
from simulators.brake_tester import BrakeTesterSimulator

pytestmark = pytest.mark.integration

READ_SNAPSHOT = bytes.fromhex("01 04 00 00 00 10 f1 c6")  # the manual's example
MOTORS_ON = bytes.fromhex("01 05 00 00 ff 00 8c 3a")  # the manual's example
CHAR_S = 11 / 19200


def crc16_modbus(data: bytes) -> bytes:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return bytes([crc & 0xFF, crc >> 8])


@contextlib.asynccontextmanager
async def rtu_sim(tmp_path: Path, vehicle: str = "gasoline-car", **kwargs: Any) -> AsyncIterator[BrakeTesterSimulator]:
    kwargs.setdefault("script", False)
    async with BrakeTesterSimulator(vehicle, link=tmp_path / "rb2", fast=True, **kwargs) as sim:
        yield sim


def rtu_link(sim: BrakeTesterSimulator, **kwargs: Any) -> ModbusLink:
    return ModbusLink(transport="rtu", serial_port=str(sim.link), parity="N", timeout_s=0.5, **kwargs)


@contextlib.asynccontextmanager
async def running(drv: BrakeTesterDriver, *, connected: bool = True) -> AsyncIterator[BrakeTesterDriver]:
    task = asyncio.create_task(drv.run())
    try:
        if connected:
            await drv.wait_connected(5)
            await drv.set_lift(False, wait_s=2)  # raised on connect (the safe state); a run needs it down
        yield drv
    finally:
        await drv.stop()
        await asyncio.wait_for(task, 5)


def new_driver(sim: BrakeTesterSimulator, **kwargs: Any) -> BrakeTesterDriver:
    return BrakeTesterDriver("brake", rtu_link(sim, unit_id=kwargs.pop("unit_id", 1)),
                             backoff=Backoff(initial_s=0.05, max_s=0.3), **kwargs)


def raw_exchange(path: Path, request: bytes, reply_len: int, wait_s: float = 0.5) -> tuple[bytes, float]:
    """Write request bytes to the link as a bare RTU master would; the reply and its delay (blocking)."""
    with serial.Serial(str(path), baudrate=19200, parity="N", timeout=0.02) as port:
        port.reset_input_buffer()
        started = time.monotonic()
        port.write(request)
        reply = b""
        deadline = started + wait_s
        while len(reply) < reply_len and time.monotonic() < deadline:
            reply += port.read(reply_len - len(reply))
        return reply, time.monotonic() - started


async def test_rtu_scripted_axle_run_is_captured_losslessly_at_19200(tmp_path: Path) -> None:
    async with rtu_sim(tmp_path, script=True) as sim, running(new_driver(sim)) as drv:
        await drv.wait_snapshot(lambda s: s.left_load_n > 0, 5, what="an axle on the rollers")
        await drv.tare()
        async with record_curve(drv) as rec:
            await drv.set_motors(True)
            await drv.wait_snapshot(lambda s: s.state == bt.TesterState.RUNNING, 5, what="RUNNING")
            await drv.wait_snapshot(lambda s: s.left_force_n > 2600, 6, what="full braking")
            await asyncio.sleep(0.5)
            await drv.set_motors(False)
        assert rec.error is None
        assert rec.capture.lost == 0 and rec.capture.gaps == []
        produced = {s.index: s for s in sim.produced_samples()}
        samples = rec.samples
        assert [s.seq for s in samples] == list(range(len(samples)))
        assert produced[samples[-1].index].seq - produced[samples[0].index].seq + 1 == len(samples)
        for got in samples:
            made = produced[got.index]
            assert (got.left_force_n, got.right_force_n) == (made.left_dan * 10, made.right_dan * 10)
        assert max(s.left_force_n for s in samples) == 2700  # gasoline-car front left after TARE
        # the line is slow enough that blocks are large: many samples per ring read
        assert rec.capture.reads < len(samples) / 5


async def test_manual_request_bytes_get_a_valid_reply_paced_at_line_speed(tmp_path: Path) -> None:
    async with rtu_sim(tmp_path) as sim:
        assert sim.link is not None
        reply, elapsed_s = await asyncio.to_thread(raw_exchange, sim.link, READ_SNAPSHOT, 37)
    assert len(reply) == 37
    assert reply[:3] == bytes([0x01, 0x04, 0x20])
    assert crc16_modbus(reply[:-2]) == reply[-2:]
    snapshot = bt.decode_snapshot(bt.registers_from_bytes(reply[3:-2]))
    assert (snapshot.state, snapshot.sample_rate_hz, snapshot.ring_size) == (bt.TesterState.IDLE, 100, 512)
    # request 8 bytes + the 3.5-character gap + reply 37 bytes, 11 bit times each at 19200 baud
    assert elapsed_s >= (8 + 3.5 + 37) * CHAR_S


async def test_motors_on_without_an_axle_answers_the_exception_frame(tmp_path: Path) -> None:
    async with rtu_sim(tmp_path) as sim:
        assert sim.link is not None
        reply, _ = await asyncio.to_thread(raw_exchange, sim.link, MOTORS_ON, 5)
    # unit 1, FC05 | 0x80, exception 06 (busy: no axle in position), CRC
    assert reply == bytes([0x01, 0x85, 0x06]) + crc16_modbus(bytes([0x01, 0x85, 0x06]))


async def test_rtu_answers_only_its_own_unit_id(tmp_path: Path) -> None:
    other = bytes.fromhex("02 04 00 00 00 10")
    async with rtu_sim(tmp_path) as sim:
        assert sim.link is not None
        silent, _ = await asyncio.to_thread(raw_exchange, sim.link, other + crc16_modbus(other), 37, 0.4)
        answered, _ = await asyncio.to_thread(raw_exchange, sim.link, READ_SNAPSHOT, 37)
        assert silent == b""
        assert len(answered) == 37
        async with running(new_driver(sim, unit_id=2), connected=False) as drv:
            await asyncio.sleep(1.2)
            assert drv.health.state != HealthState.CONNECTED
            assert drv.health.last_error is not None and "no valid reply" in drv.health.last_error


async def test_crc_errors_are_dropped_and_the_driver_recovers_when_they_stop(tmp_path: Path) -> None:
    async with rtu_sim(tmp_path) as sim:
        assert sim.link is not None
        sim.inject("crc_error")
        reply, _ = await asyncio.to_thread(raw_exchange, sim.link, READ_SNAPSHOT, 37)
        assert len(reply) == 37 and crc16_modbus(reply[:-2]) != reply[-2:]
        async with running(new_driver(sim), connected=False) as drv:
            await asyncio.sleep(1.5)
            assert drv.health.state != HealthState.CONNECTED  # a bad frame is never a good read
            sim.clear("crc_error")
            await drv.wait_connected(5)


async def test_pulled_cable_disconnects_and_the_driver_reconnects_when_it_returns(tmp_path: Path) -> None:
    async with rtu_sim(tmp_path) as sim, running(new_driver(sim)) as drv:
        assert sim.link is not None
        sim.do("drive_on", axle=1)
        with drv.claim():  # a procedure of ours runs the rollers: the reconnect leaves them to it
            await drv.set_motors(True)
            states: list[HealthState] = []
            drv.add_health_listener(lambda _n, h: states.append(h.state))
            sim.inject("lost_link", for_s=1.0)
            await asyncio.sleep(0.2)
            assert not sim.link.exists()  # the port is gone, as an unplugged adapter
            for _ in range(40):
                if HealthState.DISCONNECTED in states:
                    break
                await asyncio.sleep(0.05)
            assert HealthState.DISCONNECTED in states
            await drv.wait_connected(5)
            assert sim.link.exists()
            assert (await drv.snapshot()).state == bt.TesterState.RUNNING  # the tester ran on meanwhile


async def test_interlock_refusal_travels_over_rtu(tmp_path: Path) -> None:
    async with rtu_sim(tmp_path) as sim, running(new_driver(sim)) as drv:
        sim.do("drive_on", axle=1)
        await drv.set_motors(True)
        with pytest.raises(DeviceRefused, match=r"LIFT = 1.*exception 06 device busy"):
            await drv.set_lift(True)
        assert drv.health.state == HealthState.CONNECTED


async def test_even_parity_on_a_pty_is_refused_with_an_actionable_message_on_every_attempt(tmp_path: Path) -> None:
    async with rtu_sim(tmp_path) as sim:
        drv = BrakeTesterDriver("brake", ModbusLink(transport="rtu", serial_port=str(sim.link), parity="E"),
                                backoff=Backoff(initial_s=0.05, max_s=0.1))
        errors: list[str] = []
        drv.add_health_listener(lambda _n, h: errors.append(h.last_error or ""))
        async with running(drv, connected=False):
            await asyncio.sleep(0.8)
            connected = drv.health.state == HealthState.CONNECTED
        if connected:
            pytest.skip("this kernel accepts even parity on a pty")
        failures = [e for e in errors if e]
        assert len(failures) >= 3  # retried with backoff ...
        # ... and each attempt fails for the same reason (the port is released between attempts)
        assert all("cannot set 19200 8E1" in e and "configure parity N" in e for e in failures)


async def test_emergency_stop_after_a_cancelled_request_is_confirmed_by_its_own_reply(tmp_path: Path) -> None:
    async with rtu_sim(tmp_path) as sim, running(new_driver(sim, poll_hz=0.5)) as drv:
        sim.do("drive_on", axle=1)
        await drv.set_motors(True)
        await drv.wait_snapshot(lambda s: s.state == bt.TesterState.RUNNING, 5, what="RUNNING")
        reader = asyncio.create_task(drv.read_ring(bt.RingRead(1000, 124, 0)))  # a 253-byte reply, ~145 ms
        await asyncio.sleep(0.03)  # the request is on the wire, its reply on the way
        reader.cancel()  # a station abort cancels the procedure mid-request
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        confirmed = await drv.emergency_stop()
        # "confirmed" must mean the tester answered MOTORS = 0, not that the late ring reply came in
        assert not confirmed or sim.model.state != bt.TesterState.RUNNING
