"""One process per serial port: a port that another process holds is refused, naming that process.

Real ptys; the other process is a real one holding the port the way pyserial programs (and
picocom) do, with pyserial's `exclusive=True`.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.base import Backoff
from drivers.brake_tester import BrakeTesterDriver, ModbusLink
from drivers.errors import DeviceUnavailable
from drivers.port_lock import is_local_port
from drivers.serial_link import SerialLink
from simulators.brake_tester import BrakeTesterSimulator
from simulators.line import PtyLink
from tests.helpers import ROOT

pytestmark = pytest.mark.integration

HOLD_PORT = """
import sys, serial
port = serial.Serial(sys.argv[1], exclusive=True)
print("held", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def held_by_another_process(port: Path) -> Iterator[subprocess.Popen[str]]:
    """A process that has `port` open and locked until the block ends."""
    process = subprocess.Popen([sys.executable, "-c", HOLD_PORT, str(port)], cwd=ROOT, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        yield process
    finally:
        if process.stdin is not None:
            process.stdin.close()  # it ends, and the kernel drops its lock
        process.wait(10)


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[PtyLink]:
    link = PtyLink(tmp_path / "ga")
    link.open()
    try:
        yield link
    finally:
        link.close()


async def test_a_serial_port_held_by_another_process_is_refused_naming_that_process(pty: PtyLink) -> None:
    link = SerialLink("gas-analyzer", str(pty.link), baudrate=9600)
    with held_by_another_process(pty.link) as other, pytest.raises(DeviceUnavailable) as caught:
        await link.open()
    message = str(caught.value)
    assert message.startswith(f"gas-analyzer on {pty.link}: the serial port is in use by another process "
                              f"(pid {other.pid} (python"), message
    assert message.endswith("); one process per port: stop it first")
    assert not link.is_open
    await link.open()  # the other process ended: the port is ours
    try:
        second = SerialLink("gas-analyzer", str(pty.link), baudrate=9600)
        with pytest.raises(DeviceUnavailable, match="in use by another process"):
            await second.open()  # and while it is, nobody else's, not even another link of ours
    finally:
        await link.close()


def test_only_local_device_paths_are_locked() -> None:
    assert is_local_port("/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0")
    assert not is_local_port("socket://192.168.10.31:4001")
    assert not is_local_port("rfc2217://192.168.10.31:4002")


async def test_a_brake_tester_port_held_by_another_process_says_so_and_is_taken_once_free(tmp_path: Path) -> None:
    async with BrakeTesterSimulator("gasoline-car", link=tmp_path / "rb2", fast=True, script=False) as sim:
        driver = BrakeTesterDriver("brake", ModbusLink(transport="rtu", serial_port=str(sim.link), parity="N"),
                                   backoff=Backoff(initial_s=0.05, max_s=0.2))
        task = asyncio.create_task(driver.run())
        try:
            with held_by_another_process(sim.link) as other:
                for _ in range(100):
                    if "in use" in (driver.health.last_error or ""):
                        break
                    await asyncio.sleep(0.05)
                assert f"the serial port is in use by another process (pid {other.pid} " in str(
                    driver.health.last_error)
                assert not driver.is_connected
            await driver.wait_connected(5)
        finally:
            await driver.stop()
            await asyncio.wait_for(task, 5)
