"""A daemon SIGKILLed mid ASM, with the dynamometer loading the rollers (CONTROL_MODE 2): the
restarted daemon leaves no mode on (issue 18, point 4).

Real pieces: mosquitto, the real `laned run --simulation` process twice on one state directory,
the simulated CD-1 over Modbus TCP, the simulated GA-5 on a pty, the simulated driver. CONTROL_MODE
and PAU_ENABLE are read by the test's own Modbus client, not the driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from laned.broker import Mosquitto, mosquitto_path
from laned.daily_checks import DailyChecks
from simulators.control import ControlServer
from simulators.driver import SimulatedDriver
from simulators.dynamometer import DynamometerSimulator
from simulators.gas_analyzer import GasAnalyzerSimulator, load_analyzer_config
from tests.e2e_helpers import send_command, start_command
from tests.helpers import ROOT, laned_command, subscriber, write_lane_toml
from tests.integration.test_restart_mid_brake import DaemonLog

pytestmark = [pytest.mark.integration, pytest.mark.mosquitto]
LANE_ROOT = "laned/v1/370100/T1"


def start_daemon(config: Path) -> subprocess.Popen[bytes]:
    """`laned run --simulation` on the lane's config (today's daily checks are in its state dir)."""
    command = laned_command("run", "--simulation", "--config", str(config), "--log-format", "json")
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def registers(port: int) -> tuple[int, bool] | None:
    """(CONTROL_MODE, PAU_ENABLE) read by the test's own client; None if the dynamometer did not answer."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=0.5)
    try:
        if not await client.connect():
            return None
        mode = await client.read_holding_registers(0, count=1)
        pau = await client.read_coils(2, count=1)
        if mode.isError() or pau.isError():
            return None
        return mode.registers[0], bool(pau.bits[0])
    finally:
        client.close()


async def test_a_daemon_killed_with_the_rollers_loaded_leaves_no_mode_on_after_its_restart(tmp_path: Path) -> None:
    if mosquitto_path() is None:
        pytest.fail("mosquitto is not installed (apt-get install mosquitto)")
    ga_control, dyno_control = tmp_path / "ga.ctl", tmp_path / "dyno.ctl"
    broker = Mosquitto()
    await broker.start()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        async with contextlib.AsyncExitStack() as stack:
            ga = await stack.enter_async_context(GasAnalyzerSimulator(
                tmp_path / "ga", config=load_analyzer_config(fast=True, seed=7), vehicle="asm-pass"))
            server = ControlServer(ga_control, ga.control)
            await server.start()
            stack.push_async_callback(server.close)
            dyno = await stack.enter_async_context(DynamometerSimulator(
                "asm-car", tcp=("127.0.0.1", 0), control=dyno_control, fast=True, tailpipe=[str(ga_control)]))
            assert dyno.tcp_port is not None
            devices = f"""
[devices.gas-analyzer]
kind = "gas_analyzer"
transport = {{ type = "serial", port = "{tmp_path / 'ga'}" }}
reconnect_initial_s = 0.1
reconnect_max_s = 0.3

[devices.dynamometer]
kind = "dynamometer"
transport = {{ type = "tcp", host = "127.0.0.1", port = {dyno.tcp_port} }}
timeout_ms = 500
retries = 1
reconnect_initial_s = 0.1
reconnect_max_s = 0.5

[inspection]
time_scale = 0.05
"""
            config = write_lane_toml(tmp_path / "lane.toml", state_dir=tmp_path / "state", host=broker.host,
                                     port=broker.port, devices=devices)
            checks = DailyChecks(tmp_path / "state" / "daily-checks.json")
            checks.record("leak_check", True, {"device": "gas-analyzer", "by": "test"})
            checks.record("zero", True, {"device": "gas-analyzer", "by": "test"})
            checks.record("dyno_coast_down", True, {"device": "dynamometer", "by": "test"})
            person = SimulatedDriver({"gas-analyzer": ga_control, "dynamometer": dyno_control})
            person_task = asyncio.create_task(person.run(broker.host, broker.port, LANE_ROOT))
            stack.callback(person_task.cancel)
            async with subscriber(broker.host, broker.port, f"{LANE_ROOT}/#") as station:
                first = start_daemon(config)
                processes.append(first)
                await station.wait_status("online", 30, dynamometer="connected")
                start = {**start_command("asm-car", "K1", exterior=False, emissions="asm"),
                         "limit_overrides": {"emissions": {"asm": {"limit_set": "a"}}}}
                await send_command(broker.host, broker.port, LANE_ROOT, "start", start)
                deadline = time.monotonic() + 40
                while (await registers(dyno.tcp_port) or (0, False))[0] != 2:
                    assert time.monotonic() < deadline, "the ASM load (CONTROL_MODE 2) never came"
                    await asyncio.sleep(0.1)
                first.send_signal(signal.SIGKILL)
                first.wait()
                at_kill = await registers(dyno.tcp_port)

                second = start_daemon(config)
                processes.append(second)
                log = DaemonLog(second)
                log.start()
                safe_at: float | None = None
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    if await registers(dyno.tcp_port) == (0, False) and log.first(device="dynamometer"):
                        safe_at = time.monotonic()
                        break
                    await asyncio.sleep(0.05)
                connecting = log.first(event="device_state", device="dynamometer", state="connecting")
                done = [d for _, d in log.lines if d.get("event") == "safe_state_on_connect"
                        and d.get("device") == "dynamometer"]
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        await broker.stop()
    assert at_kill is not None and at_kill[0] == 2 and at_kill[1], at_kill  # nothing else unloaded it
    assert connecting is not None, "the second daemon never logged its dynamometer connecting"
    assert safe_at is not None, "CONTROL_MODE 0 and PAU_ENABLE 0 never read after the restart"
    assert safe_at - connecting[0] <= 2.0
    assert done and done[0]["done"] is True
