"""A daemon SIGKILLed mid brake measurement, and the daemon restarted after it (issue 15, points 1 and 2).

Real pieces: mosquitto, the real `laned run` process twice on one state directory, a simulated
RB-2 over Modbus TCP, the simulated driver acting on the prompts, a station recording `…/#`.
The first daemon is killed while the rollers turn; nothing stops them then (the tester's own
auto-stop is 60 s away). The second daemon must stop them as soon as it reaches the tester
(read by the test's own Modbus client, not the driver), wait until the lane is up before it
resumes the inspection, re-run the brake item from its start, and tell the station which
inspection and item the restart interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pymodbus.client import AsyncModbusTcpClient

from laned.broker import Mosquitto, mosquitto_path
from simulators.brake_tester import BrakeTesterSimulator
from simulators.driver import SimulatedDriver
from tests.e2e_helpers import send_command, start_command
from tests.helpers import ROOT, laned_command, subscriber, write_lane_toml

pytestmark = [pytest.mark.integration, pytest.mark.mosquitto]
LANE_ROOT = "laned/v1/370100/T1"
INSPECTION = "R1"


@dataclass
class DaemonLog:
    """A daemon's JSON log lines as they come, each with the test's monotonic time of arrival."""

    process: subprocess.Popen[bytes]
    lines: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def start(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            with contextlib.suppress(ValueError):
                self.lines.append((time.monotonic(), json.loads(raw)))

    def first(self, **fields: Any) -> tuple[float, dict[str, Any]] | None:
        return next(((t, d) for t, d in self.lines if all(d.get(k) == v for k, v in fields.items())), None)


@dataclass
class Restart:
    motors_at_kill: bool
    motors_still_on_after_kill: bool
    connecting_to_motors_off_s: float | None
    second_log: list[dict[str, Any]]
    events: list[dict[str, Any]]
    result: dict[str, Any]


async def motors_coil(port: int) -> bool | None:
    """MOTORS (coil 0) read by the test's own Modbus client: None if the tester did not answer."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=0.5)
    try:
        if not await client.connect():
            return None
        reply = await client.read_coils(0, count=1, device_id=1)
        return None if reply.isError() else bool(reply.bits[0])
    finally:
        client.close()


def start_daemon(config: Path) -> subprocess.Popen[bytes]:
    command = laned_command("run", "--simulation", "--config", str(config), "--log-format", "json")
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def until(condition: Any, timeout_s: float, what: str, interval_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        await asyncio.sleep(interval_s)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def restart(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Restart]:
    if mosquitto_path() is None:
        pytest.fail("mosquitto is not installed (apt-get install mosquitto)")
    tmp = tmp_path_factory.mktemp("restart")
    control = tmp / "rb2.ctl"
    broker = Mosquitto()
    await broker.start()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        async with BrakeTesterSimulator("gasoline-car", tcp=("127.0.0.1", 0), control=control, fast=True,
                                        script=False) as sim:
            assert sim.tcp_port is not None
            device = f"""
[devices.brake-tester]
kind = "brake_tester"
transport = {{ type = "tcp", host = "127.0.0.1", port = {sim.tcp_port} }}
timeout_ms = 500
retries = 1
reconnect_initial_s = 0.1
reconnect_max_s = 0.5

[inspection]
time_scale = 0.25
"""
            config = write_lane_toml(tmp / "lane.toml", state_dir=tmp / "state", host=broker.host, port=broker.port,
                                     devices=device)
            person = SimulatedDriver({"brake-tester": control})
            person_task = asyncio.create_task(person.run(broker.host, broker.port, LANE_ROOT))
            try:
                async with subscriber(broker.host, broker.port, f"{LANE_ROOT}/#") as station:
                    # first life: the brake test starts, and the process dies while the rollers turn
                    first = start_daemon(config)
                    processes.append(first)
                    await station.wait_status("online", 30, **{"brake-tester": "connected"})
                    start = start_command("gasoline-car", INSPECTION, exterior=False, brake_axles=[1],
                                          parking_brake=False)
                    await send_command(broker.host, broker.port, LANE_ROOT, "start", start)
                    await until(lambda: sim.model.motors_run, 30, "the rollers running")
                    first.send_signal(signal.SIGKILL)
                    first.wait()
                    motors_at_kill = sim.model.motors_run
                    await asyncio.sleep(0.5)
                    motors_still_on = await motors_coil(sim.tcp_port) is True

                    # second life: same state directory, same tester
                    second = start_daemon(config)
                    processes.append(second)
                    log = DaemonLog(second)
                    log.start()
                    motors_off_at: float | None = None
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline:
                        if await motors_coil(sim.tcp_port) is False:
                            motors_off_at = time.monotonic()
                            break
                        await asyncio.sleep(0.05)
                    connecting = log.first(event="device_state", device="brake-tester", state="connecting")
                    message = await station.wait_for(
                        lambda m: m.topic.endswith("/result/safety") and m.json()["inspection_no"] == INSPECTION, 90)
                    result = message.json()
                    events = [m.json() for m in station.on("/event")]
                    stop(second)
            finally:
                person_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await person_task
        assert connecting is not None, "the second daemon never logged its brake tester connecting"
        yield Restart(
            motors_at_kill=motors_at_kill,
            motors_still_on_after_kill=motors_still_on,
            connecting_to_motors_off_s=None if motors_off_at is None else motors_off_at - connecting[0],
            second_log=[d for _, d in log.lines],
            events=events,
            result=result,
        )
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        await broker.stop()


async def test_the_restarted_daemon_stops_the_rollers_the_killed_one_left_turning(restart: Restart) -> None:
    assert restart.motors_at_kill
    assert restart.motors_still_on_after_kill  # nothing else stopped them: the tester's auto-stop is 60 s away
    assert restart.connecting_to_motors_off_s is not None, "MOTORS never read 0 after the restart"
    assert restart.connecting_to_motors_off_s <= 2.0
    done = [d for d in restart.second_log if d.get("event") == "safe_state_on_connect"]
    assert done and done[0]["done"] is True and done[0]["device"] == "brake-tester"
    assert "MOTORS = 0" in done[0]["action"]


async def test_the_interrupted_brake_item_runs_again_and_the_station_is_told(restart: Restart) -> None:
    mine = [e for e in restart.events if e.get("inspection_no") == INSPECTION]
    restarted = [k for k, e in enumerate(mine) if e["type"] == "lane_restarted"]
    assert len(restarted) == 1
    event = mine[restarted[0]]
    assert event["data"]["interrupted_item"] == "brake"
    assert event["data"]["measured"] == []
    assert INSPECTION in event["text"] and "brake" in event["text"]
    # after it, the brake item starts again from its first step: axle 1 drives on again
    after = mine[restarted[0] + 1:]
    assert any(e["type"] == "step_started" and e["step"] == "brake.axle1" for e in after)
    assert any(e["type"] == "prompt" and e["action"] == "drive_on_axle" for e in after)
    # the race of issue 15: no item failed because the tester was still connecting
    assert not [e for e in mine if "connecting" in e.get("text", "")]
    # and it was measured: axle 1 has a verdict from a curve, not "not completed"
    b1 = next(item for item in restart.result["items"] if item["code"] == "B1")
    assert b1["verdict"] in ("pass", "fail"), b1
