"""The technician's command line, run as a technician runs it (real processes): check-config finds
ports that do not exist or are shared and names the environment variable a bad value came from,
takes `--config` like every other command (the positional still works); daily-check prints its
outcome at the default log level; JSON logs carry their UTC offset."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from laned.broker import free_port
from simulators.gas_analyzer import GasAnalyzerSimulator, load_analyzer_config
from tests.helpers import ROOT, laned_command

pytestmark = pytest.mark.integration

HEAD = '[lane]\nstation = "370100"\nlane = "T1"\nstate_dir = "{state}"\n[mqtt]\nport = {port}\n'


def lane_file(tmp_path: Path, devices: str = "") -> Path:
    path = tmp_path / "lane.toml"
    path.write_text(HEAD.format(state=tmp_path / "state", port=free_port()) + devices, encoding="utf-8")
    return path


def laned(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(laned_command(*args), capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, **(env or {})})


def serial(name: str, kind: str, port: Path | str) -> str:
    return f'[devices.{name}]\nkind = "{kind}"\ntransport = {{ type = "serial", port = "{port}" }}\n'


def test_check_config_warns_of_a_serial_port_that_does_not_exist(tmp_path: Path) -> None:
    config = lane_file(tmp_path, serial("gas-analyzer", "gas_analyzer", tmp_path / "ttyUSB9"))
    run = laned("check-config", "--config", str(config))
    assert run.returncode == 0  # the lane would run, showing the analyzer disconnected
    assert (f"warning: devices.gas-analyzer.transport.port: {tmp_path / 'ttyUSB9'} does not exist on this machine"
            in run.stdout)


def test_check_config_refuses_one_port_given_to_two_devices_even_through_a_link(tmp_path: Path) -> None:
    real = tmp_path / "ttyUSB0"
    real.touch()
    (tmp_path / "by-id-link").symlink_to(real)
    config = lane_file(tmp_path, serial("gas-analyzer", "gas_analyzer", real)
                       + serial("opacimeter", "opacimeter", tmp_path / "by-id-link"))
    run = laned("check-config", str(config))  # the positional form still works
    assert run.returncode == 2
    assert f"devices.opacimeter.transport: {real} is also given to devices.gas-analyzer" in run.stderr


def test_check_config_names_the_environment_variable_a_bad_value_came_from(tmp_path: Path) -> None:
    run = laned("check-config", "-c", str(lane_file(tmp_path)), env={"LANED_MQTT__PORT": "abc"})
    assert run.returncode == 2
    assert "mqtt.port:" in run.stderr and "set by the environment variable LANED_MQTT__PORT" in run.stderr


def test_check_config_without_a_file_says_how_to_give_one() -> None:
    run = laned("check-config")
    assert run.returncode == 2 and "laned check-config --config FILE" in run.stderr


async def test_daily_check_prints_its_outcome_at_the_default_log_level(tmp_path: Path) -> None:
    link = tmp_path / "ga"
    config = lane_file(tmp_path, '[inspection]\ntime_scale = 0.05\n' + serial("gas-analyzer", "gas_analyzer", link))
    async with GasAnalyzerSimulator(link, config=load_analyzer_config(fast=True, seed=3)):
        process = await asyncio.create_subprocess_exec(
            *laned_command("daily-check", "--simulation", "--config", str(config), "--capped", "--checks", "leak_check",
                          "zero"),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    assert out.decode().strip().splitlines()[-1] == "PASSED — daily checks: leak check passed, zero passed"


def test_json_log_lines_carry_their_utc_offset(tmp_path: Path) -> None:
    config = lane_file(tmp_path, serial("gas-analyzer", "gas_analyzer", tmp_path / "none"))
    run = laned("daily-check", "--config", str(config), "--capped", "--log-level", "info", "--log-format", "json",
                env={"LANED_INSPECTION__DAILY_CHECKS__CONNECT_TIMEOUT_S": "0.5"})
    lines = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    assert lines, run.stderr
    assert all(line["timestamp"].endswith("Z") for line in lines)


def test_version_and_help_say_what_a_script_needs() -> None:
    from laned import __version__

    assert laned("--version").stdout.strip() == f"laned {__version__}"
    assert "exit codes (every command):" in laned("--help").stdout
    status_help = laned("status", "--help").stdout
    assert "0  online, every device connected" in status_help and "1  degraded" in status_help
    assert laned("schemas", "--help").stdout.startswith("usage: laned schemas")
    assert "the least important log events shown" in laned("daily-check", "--help").stdout


def test_status_and_monitor_say_in_one_line_what_is_missing_from_the_command_line() -> None:
    for command in ("status", "monitor"):
        run = laned(command)
        assert run.returncode == 2
        assert run.stderr.strip() == (f"laned {command}: say where the lane is: --config FILE, or --broker HOST:PORT "
                                      "and --station CODE")
    run = laned("status", "--broker", "broker.local:abc", "--station", "370100")
    assert run.returncode == 2
    assert run.stderr.strip() == "laned status: --broker broker.local:abc: the port 'abc' is not a number (HOST:PORT)"
