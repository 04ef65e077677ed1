"""The CD-1 driver against the simulated dynamometer, over Modbus TCP and over RTU on a real pty.

A pty cannot carry a parity bit (Linux refuses PARENB on it), so the host side opens the
simulator's link with parity N; the simulated line still takes 11 bit times per byte (19200 8E1).
What the dynamometer does is read by the test with its own Modbus client or from the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from drivers.base import Backoff, HealthState
from drivers.dynamometer import DynamometerDriver
from drivers.errors import DeviceRefused
from drivers.modbus_device import ModbusLink
from protocols import dynamometer as dy
from simulators.dynamometer import DynamometerSimulator

pytestmark = pytest.mark.integration


def tcp_driver(sim: DynamometerSimulator, **kwargs: object) -> DynamometerDriver:
    link = ModbusLink(transport="tcp", host="127.0.0.1", tcp_port=sim.tcp_port or 0, timeout_s=0.3)
    return DynamometerDriver("dyno", link, backoff=Backoff(initial_s=0.05, max_s=0.2), **kwargs)  # type: ignore[arg-type]


def rtu_driver(sim: DynamometerSimulator, **kwargs: object) -> DynamometerDriver:
    link = ModbusLink(transport="rtu", serial_port=str(sim.link), parity="N", timeout_s=0.3)
    return DynamometerDriver("dyno", link, backoff=Backoff(initial_s=0.05, max_s=0.2), **kwargs)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(drv: DynamometerDriver) -> AsyncIterator[DynamometerDriver]:
    task = asyncio.create_task(drv.run())
    try:
        await drv.wait_connected(5)
        yield drv
    finally:
        await drv.stop()
        await asyncio.wait_for(task, 5)


@contextlib.asynccontextmanager
async def simulator(tmp_path: Path, transport: str, **kwargs: object) -> AsyncIterator[DynamometerSimulator]:
    where: dict[str, object] = {"tcp": ("127.0.0.1", 0)} if transport == "tcp" else {"link": tmp_path / "cd1"}
    async with DynamometerSimulator("asm-car", fast=True, **where, **kwargs) as sim:  # type: ignore[arg-type]
        yield sim


def driver_for(sim: DynamometerSimulator, transport: str, **kwargs: object) -> DynamometerDriver:
    return tcp_driver(sim, **kwargs) if transport == "tcp" else rtu_driver(sim, **kwargs)


async def leave_mode_2_on(port: int) -> None:
    """What a daemon killed mid-test leaves: PAU on, CONTROL_MODE 2, and no watchdog to drop it."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1)
    try:
        assert await client.connect()
        for reply in (await client.write_register(11, 0, device_id=1),  # WATCHDOG off
                      await client.write_coil(2, True, device_id=1),  # PAU_ENABLE
                      await client.write_registers(1, [845, 1216], device_id=1),
                      await client.write_register(0, 2, device_id=1)):  # CONTROL_MODE 2
            assert not reply.isError(), reply
    finally:
        client.close()


async def until(condition: object, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
async def test_connect_puts_a_mode_left_on_by_a_killed_owner_in_the_safe_state(tmp_path: Path,
                                                                              transport: str) -> None:
    async with simulator(tmp_path, "tcp") if transport == "tcp" else DynamometerSimulator(
            "asm-car", fast=True, tcp=("127.0.0.1", 0), link=tmp_path / "cd1") as sim:
        assert sim.tcp_port is not None
        await until(lambda: sim.model.rollers_stopped)
        await leave_mode_2_on(sim.tcp_port)
        assert sim.model.state() == dy.DynoState.LOADED
        async with running(driver_for(sim, transport)) as drv:
            # connected means answered AND safe: mode 0, PAU off, motor off
            assert sim.model.control_mode == 0
            assert sim.model.coils[dy.Coil.PAU_ENABLE] is False and not sim.model.motor_on
            assert sim.model.state() == dy.DynoState.IDLE
            assert drv.health.identity["build"] == "CD-1L"
            assert drv.build == dy.CD1L


async def test_interlock_and_range_refusals_name_their_cause(tmp_path: Path) -> None:
    async with simulator(tmp_path, "tcp") as sim, running(tcp_driver(sim)) as drv:
        await until(lambda: sim.model.rollers_stopped)
        await drv.set_pau_enable(True)
        await drv.set_lift(True, wait_s=2)
        with pytest.raises(DeviceRefused, match=r"CONTROL_MODE.*exception 06.*LIFT_DOWN"):
            await drv.set_control_mode(dy.ControlMode.CONSTANT_FORCE)
        with pytest.raises(DeviceRefused, match=r"FORCE_TARGET = 8001.*value out of range"):
            await drv.set_force_target_n(8001)  # above the CD-1L's RATED_FORCE
        assert drv.health.state == HealthState.CONNECTED  # a refusal proves the device answers
        assert sim.model.control_mode == 0 and sim.model.holding[2] == 0


async def test_the_driver_keeps_the_watchdog_fed_through_a_constant_force_run(tmp_path: Path) -> None:
    # polls every 0.5 s with WATCHDOG 0.3 s: only the keep-alive keeps every gap under it
    async with simulator(tmp_path, "rtu") as sim, running(rtu_driver(sim, poll_hz=2)) as drv:
        await drv.set_watchdog_s(0.3)
        sim.do("hold_speed", speed_kmh=25)
        await until(lambda: sim.model.speed_kmh > 24)
        await drv.set_pau_enable(True)
        await drv.set_power_and_force_targets(9.59, 1381)
        await drv.set_control_mode(dy.ControlMode.CONSTANT_FORCE)
        await asyncio.sleep(5)
        snapshot = await drv.snapshot()
        assert sim.model.control_mode == 2
        assert drv.readings.latest is not None
    assert snapshot.state == dy.DynoState.LOADED and snapshot.fault_code == dy.FaultCode.NONE
    assert abs(snapshot.force_n - 1381) < 1381 * 0.05  # the device holds the force (±2 % plus noise)


async def test_every_ring_sample_reaches_the_per_second_data_over_tcp_and_rtu(tmp_path: Path) -> None:
    """One dynamometer on both links, one driver on each: 20 s of per-second data from each equal
    what the simulator produced, sample for sample."""
    async with DynamometerSimulator("asm-car", fast=True, tcp=("127.0.0.1", 0), link=tmp_path / "cd1") as sim:
        sim.do("hold_speed", speed_kmh=25)
        async with running(tcp_driver(sim)) as over_tcp, running(rtu_driver(sim)) as over_rtu:
            i0 = (sim.model.sample_index + 1) % 65536
            first_seq = sim.model.produced
            await asyncio.sleep(20)
            last_seq = sim.model.produced - 1
            span = last_seq - first_seq
            for drv in (over_tcp, over_rtu):  # until each follower has passed the last sample
                await until(lambda d=drv: bool(d.samples) and (d.samples[-1].index - i0) % 65536 >= span, 3)
            got = {name: await drv.samples_since(i0) for name, drv in (("tcp", over_tcp), ("rtu", over_rtu))}
            lost = {"tcp": over_tcp.cursor.lost if over_tcp.cursor else -1,
                    "rtu": over_rtu.cursor.lost if over_rtu.cursor else -1}
        produced = [s for s in sim.produced_samples(first_seq) if s.seq <= last_seq]
    assert len(produced) == last_seq - first_seq + 1 >= 199  # 20 s at 10 Hz
    expected = dy.per_second([dy.RingSample(s.index, s.speed_raw, s.force_n) for s in produced], i0)
    assert len(expected) >= 19 and all(r.samples == 10 for r in expected)
    assert expected[5].speed_kmh > 20  # the vehicle is driving: the data is not all zeros
    for name, samples in got.items():
        assert lost[name] == 0, name
        within = [s for s in samples if (s.index - i0) % 65536 <= last_seq - first_seq]
        assert len(within) == len(produced), name  # the count equals the SAMPLE_INDEX advance
        assert [(s.index, s.speed_raw, s.force_n) for s in within] == [
            (s.index, s.speed_raw, s.force_n) for s in produced], name
        assert dy.per_second(within, i0) == expected, name


async def test_a_dynamometer_unplugged_mid_test_turns_its_pau_off_and_the_driver_says_disconnected(
        tmp_path: Path) -> None:
    async with simulator(tmp_path, "rtu") as sim, running(rtu_driver(sim)) as drv:
        await drv.set_watchdog_s(0.5)
        sim.do("hold_speed", speed_kmh=25)
        await until(lambda: sim.model.speed_kmh > 20)
        await drv.set_pau_enable(True)
        await drv.set_force_target_n(1381)
        with drv.claim():  # a procedure of ours runs the test
            await drv.set_control_mode(dy.ControlMode.CONSTANT_FORCE)
            await asyncio.sleep(0.5)
            assert sim.model.pau_force_n > 1000
            states: list[HealthState] = []
            drv.add_health_listener(lambda _name, h: states.append(h.state))
            sim.inject("lost_link")  # the RS-485 cable is pulled
            await until(lambda: HealthState.DISCONNECTED in states, 3)
            await until(lambda: not sim.model.pau_ready, 2)
        # the dynamometer's own watchdog dropped everything: PAU off, mode 0, FAULT_CODE 8
        assert sim.model.control_mode == 0 and sim.model.pau_force_n == 0.0
        assert sim.model.fault_code == dy.FaultCode.HOST_WATCHDOG
        sim.clear("lost_link")
        await drv.wait_connected(5)  # plugged back: the safe state on reconnect clears the fault
        assert sim.model.fault_code == dy.FaultCode.NONE and sim.model.control_mode == 0


async def test_a_frozen_sample_index_makes_the_driver_drop_the_link_and_come_back(tmp_path: Path) -> None:
    async with simulator(tmp_path, "tcp") as sim, running(tcp_driver(sim)) as drv:
        reconnects = drv.health.reconnects
        errors: list[str | None] = []  # the disconnection is short (the backoff starts at 50 ms): listen for it
        drv.add_health_listener(lambda _name, h: errors.append(h.last_error)
                                if h.state == HealthState.DISCONNECTED else None)
        sim.inject("frozen_index", for_s=1.5)  # the firmware hangs: replies go on, SAMPLE_INDEX stands still
        await until(lambda: bool(errors), 3)
        assert "SAMPLE_INDEX stuck" in (errors[0] or "")
        await drv.wait_connected(5)
        assert drv.health.reconnects > reconnects


async def test_crc_errors_on_rtu_are_failed_reads_and_the_link_recovers(tmp_path: Path) -> None:
    async with simulator(tmp_path, "rtu") as sim, running(rtu_driver(sim)) as drv:
        errors = drv.health.errors_total
        sim.inject("crc_error", for_s=0.6)  # every reply's CRC is wrong: pymodbus drops it, the read times out
        await asyncio.sleep(0.8)
        assert drv.health.errors_total > errors
        await drv.wait_connected(5)
        snapshot = await drv.snapshot()  # good replies again
        assert snapshot.ring_size == 512
