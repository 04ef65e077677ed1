"""A driver's first contact puts a dangerous device in its safe state, unless our own procedure owns it.

A daemon that died mid-test left the rollers turning (or the pump running): the next daemon's
driver stops them as soon as it reaches the device, before it shows the device connected. A
procedure of ours that holds the driver (`Driver.claim()`) when the link drops and comes back
keeps the device as it set it. What the device does is read by the test on the wire with its
own Modbus client or serial port, never through the driver under test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import serial
from pymodbus.client import AsyncModbusTcpClient

from drivers.base import Backoff, Driver
from drivers.brake_tester import BrakeTesterDriver, ModbusLink
from drivers.gas_analyzer import GasAnalyzerDriver
from protocols import gas_analyzer as ga
from simulators.brake_tester import BrakeTesterSimulator
from simulators.gas_analyzer import GasAnalyzerSimulator, load_analyzer_config

pytestmark = pytest.mark.integration


async def read_coils(port: int) -> tuple[bool, bool]:
    """MOTORS and LIFT (coils 0 and 1) as a third-party Modbus master reads them."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1)
    try:
        assert await client.connect()
        reply = await client.read_coils(0, count=2, device_id=1)
        assert not reply.isError(), reply
        return bool(reply.bits[0]), bool(reply.bits[1])
    finally:
        client.close()


async def start_rollers(port: int) -> None:
    """MOTORS = 1 from another master: what a daemon killed mid-test leaves behind."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1)
    try:
        assert await client.connect()
        reply = await client.write_coil(0, True, device_id=1)
        assert not reply.isError(), reply
    finally:
        client.close()


@contextlib.asynccontextmanager
async def supervised(driver: Driver) -> AsyncIterator[Driver]:
    task = asyncio.create_task(driver.run())
    try:
        yield driver
    finally:
        await driver.stop()
        await asyncio.wait_for(task, 5)


def driver_of(sim: BrakeTesterSimulator) -> BrakeTesterDriver:
    link = ModbusLink(transport="tcp", host="127.0.0.1", tcp_port=sim.tcp_port or 0, timeout_s=0.3)
    return BrakeTesterDriver("brake", link, backoff=Backoff(initial_s=0.05, max_s=0.2))


async def test_the_first_contact_stops_rollers_left_running_and_raises_the_lift() -> None:
    async with BrakeTesterSimulator("gasoline-car", tcp=("127.0.0.1", 0), fast=True, script=False) as sim:
        assert sim.tcp_port is not None
        sim.do("drive_on", axle=1)
        await start_rollers(sim.tcp_port)
        await asyncio.sleep(0.3)
        assert await read_coils(sim.tcp_port) == (True, False)  # running, lift down: as the dead daemon left it
        async with supervised(driver_of(sim)) as drv:
            await drv.wait_connected(5)
            # connected means answered AND safe: by then MOTORS = 0 and LIFT = 1 are on the tester
            assert await read_coils(sim.tcp_port) == (False, True)
            assert sim.model.state.name == "STOPPED"


async def test_a_reconnect_with_no_procedure_running_stops_the_rollers_again() -> None:
    async with BrakeTesterSimulator("gasoline-car", tcp=("127.0.0.1", 0), fast=True, script=False) as sim:
        assert sim.tcp_port is not None
        async with supervised(driver_of(sim)) as drv:
            await drv.wait_connected(5)
            await drv.set_lift(False, wait_s=2)
            sim.do("drive_on", axle=1)
            await drv.set_motors(True)
            assert await read_coils(sim.tcp_port) == (True, False)
            sim.inject("lost_link", for_s=0.5)  # the cable, then back: nobody of ours runs the rollers now
            await asyncio.sleep(0.3)
            await drv.wait_connected(5)
            assert await read_coils(sim.tcp_port) == (False, True)


async def test_a_reconnect_under_a_running_procedure_leaves_the_rollers_to_it() -> None:
    async with BrakeTesterSimulator("gasoline-car", tcp=("127.0.0.1", 0), fast=True, script=False) as sim:
        assert sim.tcp_port is not None
        async with supervised(driver_of(sim)) as drv:
            await drv.wait_connected(5)
            with drv.claim():  # as InspectionContext.driver() does for the item's procedure
                await drv.set_lift(False, wait_s=2)
                sim.do("drive_on", axle=1)
                await drv.set_motors(True)
                reconnects = drv.health.reconnects
                sim.inject("lost_link", for_s=0.5)
                await asyncio.sleep(0.3)
                await drv.wait_connected(5)
                assert drv.health.reconnects > reconnects
                assert await read_coils(sim.tcp_port) == (True, False)  # the procedure owns them
            assert not drv.claimed


def pump_sample(link: Path) -> bytes:
    """PUMP_SAMPLE straight on the analyzer's port (blocking): a pump a dead daemon left running."""
    with serial.Serial(str(link), baudrate=9600, timeout=0.3) as port:
        port.reset_input_buffer()
        port.write(ga.encode_request(ga.Command.PUMP_SAMPLE))
        return port.read(1)


@pytest.mark.parametrize("claimed", [False, True], ids=["idle", "procedure-running"])
async def test_the_analyzer_pump_is_stopped_on_connect_unless_a_procedure_owns_it(
        tmp_path: Path, claimed: bool) -> None:
    async with GasAnalyzerSimulator(tmp_path / "ga", config=load_analyzer_config(fast=True)) as sim:
        link = sim.pty.link
        assert await asyncio.to_thread(pump_sample, link) == bytes([0x06])  # ACK
        assert sim.pump == "sample"
        driver = GasAnalyzerDriver("ga", port=str(link), backoff=Backoff(initial_s=0.05, max_s=0.2))
        with driver.claim() if claimed else contextlib.nullcontext():
            async with supervised(driver):
                await driver.wait_connected(5)
                assert sim.pump == ("sample" if claimed else "stop")
