"""RB-2 brake tester driver against its simulator over real Modbus TCP (loopback, free port)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from drivers.base import Backoff, HealthState
from drivers.brake_tester import BrakeTesterDriver, ModbusLink, record_curve
from drivers.errors import DeviceRefused
from protocols import brake_tester as bt
from simulators.brake_tester import BrakeTesterSimulator

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def brake_sim(vehicle: str = "gasoline-car", **kwargs: Any) -> AsyncIterator[BrakeTesterSimulator]:
    kwargs.setdefault("script", False)
    async with BrakeTesterSimulator(vehicle, tcp=("127.0.0.1", 0), fast=True, **kwargs) as sim:
        yield sim


@contextlib.asynccontextmanager
async def driver_for(sim: BrakeTesterSimulator, **kwargs: Any) -> AsyncIterator[BrakeTesterDriver]:
    link = ModbusLink(transport="tcp", host="127.0.0.1", tcp_port=sim.tcp_port or 0,
                      unit_id=kwargs.pop("unit_id", 1), timeout_s=0.3)
    drv = BrakeTesterDriver("brake", link, backoff=Backoff(initial_s=0.05, max_s=0.3), **kwargs)
    task = asyncio.create_task(drv.run())
    try:
        await drv.wait_connected(5)
        await drv.set_lift(False, wait_s=2)  # raised on connect (the safe state); a run needs it down
        yield drv
    finally:
        await drv.stop()
        await asyncio.wait_for(task, 5)


async def axle_on_and_running(sim: BrakeTesterSimulator, drv: BrakeTesterDriver, axle: int = 1) -> None:
    sim.do("drive_on", axle=axle)
    await drv.set_motors(True)
    await drv.wait_snapshot(lambda s: s.state == bt.TesterState.RUNNING, 5, what="RUNNING")


def assert_capture_matches_log(sim: BrakeTesterSimulator, samples: list[bt.CurveSample]) -> None:
    """Every captured sample is the simulator's own, in daN × 10, none missing or repeated."""
    produced = {s.index: s for s in sim.produced_samples()}
    assert samples, "nothing captured"
    assert [s.seq for s in samples] == list(range(samples[0].seq, samples[0].seq + len(samples)))
    for got in samples:
        made = produced[got.index]
        assert (got.left_force_n, got.right_force_n) == (made.left_dan * 10, made.right_dan * 10)
    first = produced[samples[0].index].seq
    last = produced[samples[-1].index].seq
    assert last - first + 1 == len(samples)


async def test_health_is_connected_only_after_a_good_read() -> None:
    async with brake_sim() as sim:
        states: list[HealthState] = []
        link = ModbusLink(tcp_port=sim.tcp_port or 0, timeout_s=0.3)
        drv = BrakeTesterDriver("brake", link, backoff=Backoff(initial_s=0.05, max_s=0.2))
        drv.add_health_listener(lambda _name, h: states.append(h.state))
        sim.inject("silence")  # the port opens, but nobody answers
        task = asyncio.create_task(drv.run())
        try:
            await asyncio.sleep(1.0)
            assert HealthState.CONNECTED not in states
            assert drv.health.last_error and "no valid reply" in drv.health.last_error
            sim.clear("silence")
            await drv.wait_connected(5)
            assert drv.health.last_good_read is not None
            assert drv.health.identity["ring_size"] == "512"
        finally:
            await drv.stop()
            await asyncio.wait_for(task, 5)


async def test_scripted_axle_run_is_captured_losslessly() -> None:
    async with brake_sim(script=True) as sim, driver_for(sim) as drv:
        await drv.wait_snapshot(lambda s: s.left_load_n > 0, 5, what="an axle on the rollers")
        assert (await drv.inputs()).in_position
        weighed = await drv.snapshot()
        # gasoline-car axle 1: 4200 / 4100 N, load noise within ±12 N
        assert abs(weighed.left_load_n - 4200) <= 12 and abs(weighed.right_load_n - 4100) <= 12
        await drv.tare()
        async with record_curve(drv) as rec:
            await drv.set_motors(True)
            await drv.wait_snapshot(lambda s: s.state == bt.TesterState.RUNNING, 5, what="RUNNING")
            # the scripted driver brakes 1.5 s after RUNNING; the front wheels build up in 0.6 s
            await drv.wait_snapshot(lambda s: s.left_force_n > 2600, 6, what="full braking")
            await asyncio.sleep(0.5)
            await drv.set_motors(False)
        assert rec.error is None
        assert rec.capture.lost == 0 and rec.capture.gaps == []
        assert_capture_matches_log(sim, rec.samples)
        # after TARE the curve shows the vehicle's own forces: 2700 / 2600 N at full pedal (±4 N noise)
        assert max(s.left_force_n for s in rec.samples) == 2700
        assert max(s.right_force_n for s in rec.samples) == 2600
        assert (await drv.snapshot()).state == bt.TesterState.STOPPED


async def test_wheel_lock_stops_the_motors_and_latches_slip_until_the_next_start() -> None:
    async with brake_sim("brake-wheel-lock") as sim, driver_for(sim) as drv:
        await axle_on_and_running(sim, drv)
        async with record_curve(drv, back_samples=20) as rec:
            sim.do("brake")
            stopped = await drv.wait_snapshot(lambda s: s.state == bt.TesterState.STOPPED_SLIP, 5,
                                              what="STOPPED_SLIP")
        assert stopped.state == bt.TesterState.STOPPED_SLIP
        inputs = await drv.inputs()
        assert inputs.left_slip  # the left wheel locks first (0.34 s against 0.38 s)
        assert not (await drv.coils()).motors
        # a locked wheel's force stops at adhesion × load: 0.7 × 4200 = 2940 N (+14 N offset, ±4 N noise)
        left_max = max(s.left_force_n for s in rec.samples)
        assert 2940 <= left_max <= 2960
        assert_capture_matches_log(sim, rec.samples)
        await drv.set_motors(True)  # STOPPED_SLIP may start again: the latch clears
        assert not (await drv.inputs()).left_slip


async def test_interlocks_answer_exception_06_and_keep_the_link_healthy() -> None:
    async with brake_sim() as sim, driver_for(sim) as drv:
        with pytest.raises(DeviceRefused, match=r"MOTORS = 1.*exception 06 device busy"):
            await drv.set_motors(True)  # no axle in position
        sim.do("drive_on", axle=1)
        await drv.set_lift(True, wait_s=2)
        with pytest.raises(DeviceRefused, match="exception 06"):
            await drv.set_motors(True)  # lift up
        await drv.set_lift(False, wait_s=2)
        await drv.set_motors(True)
        with pytest.raises(DeviceRefused, match=r"LIFT = 1.*exception 06"):
            await drv.set_lift(True)  # motors run
        with pytest.raises(DeviceRefused, match=r"TARE = 1.*exception 06"):
            await drv.tare()
        await drv.set_motors(True)  # writing 1 while the motors run changes nothing
        assert (await drv.snapshot()).motors_run
        assert drv.health.state == HealthState.CONNECTED


async def test_out_of_map_answers_02_and_bad_values_answer_03() -> None:
    async with brake_sim() as sim, driver_for(sim) as drv:
        with pytest.raises(DeviceRefused, match="exception 02 illegal data address"):
            await drv.read_ring(bt.RingRead(2024, 2, 512))
        with pytest.raises(DeviceRefused, match="exception 02"):
            await drv.write_setting(3, 10)  # holding register 3 is not in the map
        with pytest.raises(DeviceRefused, match=r"SLIP_THRESHOLD = 70.*exception 03 illegal data value"):
            await drv.write_setting("SLIP_THRESHOLD", 70)
        assert (await drv.read_settings()).slip_threshold_pct == 25
        client = AsyncModbusTcpClient("127.0.0.1", port=sim.tcp_port or 0, timeout=1, retries=0, reconnect_delay=0)
        await client.connect()
        try:
            for request in (client.read_coils(0, count=4), client.read_coils(3, count=1),
                            client.read_discrete_inputs(5, count=2), client.read_input_registers(15, count=2),
                            client.read_input_registers(999, count=1), client.read_holding_registers(0, count=4)):
                reply = await request
                assert reply.isError() and reply.exception_code == 2
        finally:
            client.close()


async def test_settings_are_read_and_written_and_take_effect() -> None:
    async with brake_sim() as sim, driver_for(sim) as drv:
        assert await drv.read_settings() == bt.TesterSettings(25, 100, 60)
        await drv.write_setting("SAMPLE_RATE_SET", 50)
        await drv.write_setting(bt.HoldingRegister.AUTO_STOP_S, 300)
        assert await drv.read_settings() == bt.TesterSettings(25, 50, 300)
        assert (await drv.snapshot()).sample_rate_hz == 50
        assert sim.model.settings.sample_rate_set_hz == 50


async def test_tare_zeroes_the_force_channels() -> None:
    async with brake_sim() as sim, driver_for(sim) as drv:
        before = await drv.snapshot()
        assert (before.left_force_n, before.right_force_n) == (14, -9)  # the simulated zero offsets
        await drv.tare()
        after = await drv.snapshot()
        assert (after.left_force_n, after.right_force_n) == (0, 0)
        assert not (await drv.coils()).tare


async def test_frozen_sample_index_makes_the_driver_report_stale() -> None:
    async with brake_sim() as sim, driver_for(sim) as drv:
        errors: list[str] = []
        drv.add_health_listener(lambda _n, h: errors.append(h.last_error or ""))
        sim.inject("frozen_index")
        for _ in range(60):
            if any("SAMPLE_INDEX stuck" in e for e in errors):
                break
            await asyncio.sleep(0.05)
        assert any("SAMPLE_INDEX stuck" in e and "frozen" in e for e in errors)
        sim.clear("frozen_index")
        await drv.wait_connected(5)


async def test_lost_link_mid_run_disconnects_then_reconnects_by_itself() -> None:
    async with brake_sim() as sim, driver_for(sim) as drv:
        await axle_on_and_running(sim, drv)
        states: list[HealthState] = []
        drv.add_health_listener(lambda _n, h: states.append(h.state))
        sim.inject("lost_link", for_s=1.0)
        for _ in range(40):
            if HealthState.DISCONNECTED in states:
                break
            await asyncio.sleep(0.05)
        assert drv.health.state != HealthState.CONNECTED
        assert HealthState.DISCONNECTED in states
        await drv.wait_connected(5)
        assert drv.health.reconnects >= 1
        assert (await drv.snapshot()).sample_index != 0


async def test_driver_is_built_from_the_daemons_device_table() -> None:
    from laned.config import BrakeTesterConfig

    async with brake_sim() as sim:
        config = BrakeTesterConfig.model_validate({
            "kind": "brake_tester", "unit_id": 3, "timeout_ms": 250, "retries": 2, "poll_hz": 5,
            "transport": {"type": "tcp", "host": "127.0.0.1", "port": sim.tcp_port},
        })
        drv = BrakeTesterDriver.from_config("brake-tester", config, backoff=Backoff(initial_s=0.05))
        assert drv.link == ModbusLink(transport="tcp", host="127.0.0.1", tcp_port=sim.tcp_port or 0, unit_id=3,
                                      timeout_s=0.25)
        assert (drv.retries, drv.poll_interval_s, drv.port) == (2, 0.2, f"127.0.0.1:{sim.tcp_port}")
        task = asyncio.create_task(drv.run())
        try:
            await drv.wait_connected(5)
        finally:
            await drv.stop()
            await asyncio.wait_for(task, 5)
    rtu = BrakeTesterConfig.model_validate(
        {"kind": "brake_tester", "transport": {"type": "rtu", "port": "/dev/ttyUSB0"}})
    assert BrakeTesterDriver.from_config("b", rtu).link == ModbusLink(
        transport="rtu", serial_port="/dev/ttyUSB0", baudrate=19200, parity="E", stopbits=1, unit_id=1, timeout_s=0.3)


async def test_tcp_ignores_the_unit_id() -> None:
    async with brake_sim() as sim, driver_for(sim, unit_id=7) as drv:
        assert (await drv.snapshot()).ring_size == 512


async def test_fault_code_stops_the_motors_and_motors_0_clears_it_once_the_cause_is_gone() -> None:
    async with brake_sim() as sim, driver_for(sim) as drv:
        await axle_on_and_running(sim, drv)
        sim.inject("fault_code", code=1)
        snap = await drv.wait_snapshot(lambda s: s.state == bt.TesterState.FAULT, 2, what="FAULT")
        assert snap.fault_code == bt.FaultCode.LEFT_MOTOR_OVERLOAD
        assert (await drv.inputs()).fault and not (await drv.coils()).motors
        with pytest.raises(DeviceRefused, match="exception 06"):
            await drv.set_motors(True)
        await drv.set_motors(False)  # the cause is still there: the fault stays
        assert (await drv.snapshot()).state == bt.TesterState.FAULT
        sim.clear("fault_code")
        await drv.set_motors(False)
        snap = await drv.snapshot()
        assert (snap.state, snap.fault_code) == (bt.TesterState.STOPPED, bt.FaultCode.NONE)
        assert not (await drv.inputs()).fault


async def test_injected_exception_replies_name_the_exception() -> None:
    async with brake_sim() as sim, driver_for(sim) as drv:
        sim.inject("exception", code=4)
        with pytest.raises(DeviceRefused, match="exception 04 device failure"):
            await drv.snapshot()
        assert drv.health.state == HealthState.DEGRADED  # a failing tester is not healthy
        sim.inject("exception", code=6)
        with pytest.raises(DeviceRefused, match="exception 06"):
            await drv.snapshot()
        sim.clear()
        assert (await drv.snapshot()).ring_size == 512


async def test_silence_gives_timeouts_naming_the_request_then_recovers() -> None:
    async with brake_sim() as sim, driver_for(sim) as drv:
        errors: list[str] = []
        drv.add_health_listener(lambda _n, h: errors.append(f"{h.state}: {h.last_error}"))
        sim.inject("silence")
        for _ in range(60):
            if drv.health.state == HealthState.DISCONNECTED:
                break
            await asyncio.sleep(0.05)
        assert drv.health.state == HealthState.DISCONNECTED
        assert any(e.startswith("degraded") and "no valid reply to read input registers 0..15 (FC04) within 300 ms"
                   in e for e in errors)
        sim.clear("silence")
        await drv.wait_connected(5)
        assert (await drv.snapshot()).ring_size == 512


async def test_curve_iterates_samples_in_order_from_the_requested_start() -> None:
    async with brake_sim() as sim, driver_for(sim) as drv:
        newest = await drv.wait_snapshot(lambda s: s.sample_index > 100, 3, what="100 samples since power-up")
        start = newest.sample_index - 50
        got: list[bt.CurveSample] = []
        capture = drv.curve(start_index=start)
        async for sample in capture:
            got.append(sample)
            if len(got) == 120:
                break
        assert [s.index for s in got] == [(start + k) % 65536 for k in range(120)]
        assert [s.seq for s in got] == list(range(120))
        assert capture.lost == 0
        assert_capture_matches_log(sim, got)


async def test_emergency_stop_goes_ahead_of_a_running_capture() -> None:
    async with brake_sim() as sim, driver_for(sim) as drv:
        await axle_on_and_running(sim, drv)
        async with record_curve(drv) as rec:
            await asyncio.sleep(0.2)
            assert await drv.emergency_stop() is True
            assert sim.model.state == bt.TesterState.STOPPED
        assert rec.error is None and rec.capture.lost == 0


async def test_stopping_the_driver_stops_the_motors_first() -> None:
    async with brake_sim() as sim:
        async with driver_for(sim) as drv:
            await axle_on_and_running(sim, drv)
        assert sim.model.state == bt.TesterState.STOPPED


async def test_safe_stop_that_cannot_stop_the_motors_says_so() -> None:
    from structlog.testing import capture_logs

    async with brake_sim() as sim, driver_for(sim) as drv:
        await axle_on_and_running(sim, drv)
        sim.inject("exception", code=4)  # the tester answers MOTORS = 0 with device failure
        with capture_logs() as logs:
            await drv.safe_stop()
        sim.clear()
        assert sim.model.state == bt.TesterState.RUNNING
        assert any(e["log_level"] == "error" for e in logs), "safe_stop left the rollers running without a word"
