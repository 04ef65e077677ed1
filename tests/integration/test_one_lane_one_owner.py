"""One lane, one owner: a second `laned run` and a `laned daily-check` against a running lane.

The running lane is a real `laned run` subprocess on mosquitto, its gas analyzer the simulator
on a real pty (`fast` timings). The second process is refused (or, for the daily checks,
delegated to the running daemon) and the running lane is undisturbed: its retained status never
leaves online with the analyzer connected, and its live readings go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from laned.broker import free_port
from simulators.gas_analyzer import GasAnalyzerSimulator, load_analyzer_config
from tests.helpers import ROOT, Recorder, laned_command, subscriber, write_lane_toml
from tests.integration.test_port_lock import held_by_another_process

pytestmark = pytest.mark.integration

ROOT_TOPIC = "laned/v1/370100/T1"


@dataclass
class RunningLane:
    config: Path
    state_dir: Path
    process: subprocess.Popen[bytes]
    station: Recorder  # everything under the lane's root since before it started

    def statuses(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.station.on("/status")]

    def assert_undisturbed(self) -> None:
        """From its first online status with the analyzer connected on: never anything else."""
        statuses = self.statuses()
        first = next(i for i, s in enumerate(statuses) if s["state"] == "online"
                     and s["devices"]["gas-analyzer"]["state"] == "connected")
        shown = [(s["state"], s["devices"]["gas-analyzer"]["state"]) for s in statuses[first:]]
        assert set(shown) == {("online", "connected")}, shown
        assert self.process.poll() is None


@contextlib.asynccontextmanager
async def running_lane(tmp_path: Path, mosquitto: Any) -> AsyncIterator[RunningLane]:
    link = tmp_path / "ga"
    state_dir = tmp_path / "state"
    devices = (
        "[inspection]\ntime_scale = 0.05\n[inspection.daily_checks]\ncap_wait_s = 60\n"  # 3 s to cap the probe
        "[devices.gas-analyzer]\n"
        f'kind = "gas_analyzer"\ntransport = {{ type = "serial", port = "{link}" }}\n'
        "reconnect_initial_s = 0.1\nreconnect_max_s = 0.3\n"
    )
    config = write_lane_toml(tmp_path / "lane.toml", state_dir=state_dir, host=mosquitto.host, port=mosquitto.port,
                             devices=devices)
    async with (GasAnalyzerSimulator(link, config=load_analyzer_config(fast=True, seed=5)),
                subscriber(mosquitto.host, mosquitto.port, f"{ROOT_TOPIC}/#") as station):
        process = subprocess.Popen(laned_command("run", "--simulation", "--config", str(config), "--log-format",
                                                 "json"), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            await station.wait_status("online", timeout_s=20, **{"gas-analyzer": "connected"})
            yield RunningLane(config, state_dir, process, station)
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.to_thread(process.communicate, None, 20)
    assert process.returncode == 0, stderr.decode(errors="replace")


async def run_cli(*args: str, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
    """A `laned …` command run to its end, off the event loop (the simulator and the station go on)."""
    return await asyncio.to_thread(subprocess.run, laned_command(*args), cwd=ROOT, capture_output=True, text=True,
                                   timeout=timeout_s)


async def test_a_second_laned_run_on_the_lane_is_refused_naming_the_first_and_the_first_goes_on(
        tmp_path: Path, mosquitto: Any) -> None:
    async with running_lane(tmp_path, mosquitto) as lane:
        second = await run_cli("run", "--simulation", "--config", str(lane.config))
        assert second.returncode == 3
        assert re.fullmatch(
            re.escape(f"laned: lane 370100/T1 is already run by pid {lane.process.pid} "
                      f"(laned run --simulation --config {lane.config} --log-format json, since ")
            + r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+"
            + re.escape(f"); state directory {lane.state_dir} (lock {lane.state_dir / 'laned.lock'}): "
                        "one process per lane, stop that one first\n"),
            second.stderr), second.stderr
        # the first lane: its analyzer still read (live), its status never flapped
        await lane.station.wait_for(lambda m: m.topic.endswith("/live/gas-analyzer"), 5)
        await asyncio.sleep(1.0)  # time for a knocked-off lane to show it (the second took < 5 s)
        lane.assert_undisturbed()


async def test_laned_daily_check_against_a_running_lane_runs_the_checks_in_its_daemon(
        tmp_path: Path, mosquitto: Any) -> None:
    async with running_lane(tmp_path, mosquitto) as lane:
        first = subprocess.Popen(laned_command("daily-check", "--simulation", "--config", str(lane.config),
                                               "--checks", "leak_check", "zero"),
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert first.stdout is not None
            lines = []
            while "cap the sampling probe" not in (line := await asyncio.to_thread(first.stdout.readline)):
                assert line, first.stderr.read() if first.stderr else ""
                lines.append(line.rstrip("\n"))
            lines.append(line.rstrip("\n"))
            # meanwhile a second technician asks too: the daemon runs one at a time
            second = await run_cli("daily-check", "--simulation", "--config", str(lane.config))
            rest, stderr = await asyncio.to_thread(first.communicate, None, 30)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        assert second.returncode == 3
        assert second.stdout.splitlines()[-1] == ("laned: lane 370100/T1 refused the daily checks: the gas analyzer's "
                                                  "daily checks are running now: start again when they have finished")
        assert first.returncode == 0, "\n".join(lines) + rest + stderr
        lines += rest.splitlines()
        assert lines[0].startswith(f"laned: lane 370100/T1 is run by pid {lane.process.pid} "
                                 "(laned run --simulation --config ")
        assert f"the daily checks run there ({ROOT_TOPIC}/cmd/daily-check, request cli-" in lines[0]
        assert "daily check: [prompt] cap the sampling probe for the leak check (堵住探头)" in lines
        assert "daily check: [prompt] take the cap off the sampling probe" in lines
        assert lines[-1] == "daily check: [step_finished] daily checks: leak check passed, zero passed"
        # the daemon ran them (its events, its status), on its own connection to the analyzer
        finished = [m.json() for m in lane.station.on("/event") if m.json()["step"] == "daily_check"
                    and m.json()["type"] == "step_finished"]
        assert len(finished) == 1 and finished[0]["data"]["missing"] == []
        ready = await lane.station.wait_for(
            lambda m: m.topic.endswith("/status") and (m.json().get("daily_checks") or {}).get("two_speed_idle_ready"),
            5)
        assert ready.json()["daily_checks"]["due_today"] == []
        lane.assert_undisturbed()


async def test_laned_run_is_refused_while_laned_daily_check_has_the_analyzer_itself(tmp_path: Path) -> None:
    link = tmp_path / "ga"
    devices = (
        "[inspection]\ntime_scale = 0.05\n[inspection.daily_checks]\ncap_wait_s = 80\n"  # 4 s to cap the probe
        f'[devices.gas-analyzer]\nkind = "gas_analyzer"\ntransport = {{ type = "serial", port = "{link}" }}\n'
    )
    config = write_lane_toml(tmp_path / "lane.toml", state_dir=tmp_path / "state", host="127.0.0.1",
                             port=free_port(), devices=devices)  # no broker: no daemon runs this lane
    async with GasAnalyzerSimulator(link, config=load_analyzer_config(fast=True, seed=5)):
        checks = subprocess.Popen(laned_command("daily-check", "--simulation", "--config", str(config), "--checks",
                                                "leak_check"),
                                  cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        try:
            lock_file = tmp_path / "state" / "laned.lock"
            for _ in range(100):  # it has the lane once it wrote itself into the lock
                if lock_file.exists() and f'"pid": {checks.pid}' in lock_file.read_text():
                    break
                await asyncio.sleep(0.05)
            daemon = await run_cli("run", "--simulation", "--config", str(config))
            assert daemon.returncode == 3
            assert f"laned: lane 370100/T1 is already run by pid {checks.pid} (laned daily-check --simulation " \
                   f"--config {config} --checks leak_check, since " in daemon.stderr
            _, stderr = await asyncio.to_thread(checks.communicate, None, 30)
        finally:
            if checks.poll() is None:
                checks.kill()
                checks.wait()
    assert checks.returncode == 0, stderr  # undisturbed: the leak check ran and passed


async def test_laned_daily_check_without_a_daemon_names_another_process_holding_the_analyzers_port(
        tmp_path: Path) -> None:
    link = tmp_path / "ga"
    devices = f'[devices.gas-analyzer]\nkind = "gas_analyzer"\ntransport = {{ type = "serial", port = "{link}" }}\n'
    config = write_lane_toml(tmp_path / "lane.toml", state_dir=tmp_path / "state", host="127.0.0.1",
                             port=free_port(), devices=devices)
    async with GasAnalyzerSimulator(link, config=load_analyzer_config(fast=True, seed=5)):
        with held_by_another_process(link) as other:
            started = time.monotonic()
            checks = await run_cli("daily-check", "--simulation", "--config", str(config), "--capped")
            took_s = time.monotonic() - started
    assert checks.returncode == 3
    assert (f"gas-analyzer on {link}: the serial port is in use by another process (pid {other.pid} (python -c "
            in checks.stdout + checks.stderr), checks.stdout + checks.stderr
    assert took_s < 10  # at once, not after the 15 s the analyzer is given to answer
