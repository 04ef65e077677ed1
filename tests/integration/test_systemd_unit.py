"""The systemd unit `systemd/laned@.service`: systemd accepts it, it says what the lane needs, its
hardening holds, and the daemon runs under the restriction most likely to break a Python program
(MemoryDenyWriteExecute) and exits with the code the unit does not restart on when misconfigured.

`systemd-analyze verify` checks that the ExecStart binary exists, and a test machine has no
/opt/laned: the test verifies a copy of the unit in which only the ExecStart binary's path is
changed, to an executable made for the purpose; every other line is the shipped one.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from simulators.gas_analyzer import GasAnalyzerSimulator, load_analyzer_config
from tests.helpers import ROOT, laned_command, subscriber, write_lane_toml

pytestmark = pytest.mark.integration
UNIT = ROOT / "systemd" / "laned@.service"
EXEC_BINARY = "/opt/laned/bin/laned"
needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (apt-get install systemd)"
)


def unit_settings() -> dict[str, list[str]]:
    """`Key=value` lines of the unit's [Service] section, every value of repeated keys, in order."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


@pytest.fixture
def verifiable_copy(tmp_path: Path) -> Path:
    """The unit beside a stand-in for /opt/laned/bin/laned; returns the folder holding both."""
    fake = tmp_path / "laned"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    text = UNIT.read_text(encoding="utf-8")
    assert text.count(f"ExecStart={EXEC_BINARY} ") == 1
    copy = text.replace(f"ExecStart={EXEC_BINARY} ", f"ExecStart={fake} ")
    changed = [(a, b) for a, b in zip(text.splitlines(), copy.splitlines(), strict=True) if a != b]
    assert len(changed) == 1 and changed[0][0].startswith("ExecStart=")
    (tmp_path / "laned@.service").write_text(copy, encoding="utf-8")
    return tmp_path


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


@needs_systemd_analyze
def test_systemd_analyze_verify_finds_nothing_to_say_about_a_lane_instance(verifiable_copy: Path) -> None:
    result = analyze("verify", str(verifiable_copy / "laned@lane1.service"))
    # verify exits 0 even for unknown keys and unparsable values; it only prints them: demand silence
    output = (result.stdout + result.stderr).strip()
    about_unit = [line for line in output.splitlines() if "laned" in line]
    assert result.returncode == 0, output
    assert about_unit == [], output


@needs_systemd_analyze
def test_the_hardening_keeps_the_exposure_level_at_most_2(verifiable_copy: Path) -> None:
    result = analyze("security", "--offline=yes", "--threshold=20", str(verifiable_copy / "laned@lane1.service"))
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline security review (systemd < 250)")
    overall = re.search(r"Overall exposure level for laned@lane1\.service: ([0-9.]+)", result.stdout)
    assert overall, result.stdout + result.stderr
    assert result.returncode == 0, f"exposure {overall.group(1)} above 2.0:\n{result.stdout}"


def test_the_unit_runs_one_notify_daemon_per_lane_with_its_own_state() -> None:
    service = unit_settings()
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert service["ExecStart"] == [f"{EXEC_BINARY} run --config /etc/laned/%i.toml"]
    assert service["StateDirectory"] == ["laned/%i"]
    assert "LANED_LANE__STATE_DIR=%S/laned/%i" in service["Environment"]
    assert service["ConfigurationDirectory"] == ["laned"]
    assert service["User"] == ["laned"]
    assert service["SupplementaryGroups"] == ["dialout"]
    assert service["Restart"] == ["on-failure"]
    assert service["KillSignal"] == ["SIGTERM"]
    assert service["WatchdogSec"] and service["RestartSec"] and service["TimeoutStopSec"]


def test_the_unit_allows_serial_ports_and_sockets_and_nothing_else() -> None:
    service = unit_settings()
    assert service["DevicePolicy"] == ["closed"]
    assert sorted(service["DeviceAllow"]) == ["char-ttyACM rw", "char-ttyS rw", "char-ttyUSB rw"]
    assert service["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert service["CapabilityBoundingSet"] == [""]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelTunables", "ProtectKernelModules",
                "ProtectControlGroups", "LockPersonality", "MemoryDenyWriteExecute"):
        assert service[key] == ["yes"], key
    assert service["ProtectSystem"] == ["strict"]


def test_a_config_error_exits_with_the_code_the_unit_does_not_restart_on(tmp_path: Path) -> None:
    """Restarting cannot fix a typo: the unit's RestartPreventExitStatus is what `laned run` returns."""
    (no_restart,) = unit_settings()["RestartPreventExitStatus"]
    config = tmp_path / "lane1.toml"
    config.write_text('[lane]\nstation = "370100"\nlane = "L1"\n\n[mqtt]\nhots = "broker.local"\n', encoding="utf-8")
    result = subprocess.run(laned_command("run", "--config", str(config)), cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert str(result.returncode) == no_restart
    assert "mqtt.hots" in result.stderr


# The daemon under MemoryDenyWriteExecute. systemd enforces it with a seccomp filter that refuses
# mappings both writable and executable and making memory executable later; the kernel's own
# PR_SET_MDWE (Linux >= 6.3) refuses the same, so the daemon runs under it in a wrapper that first
# proves the restriction is in force (a W+X mapping must fail), then runs `laned`'s main().
MDWE_ON = """
import ctypes, mmap, sys
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    sys.exit(77)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except OSError:
    pass
else:
    sys.exit(78)
"""
MDWE_WRAPPER = MDWE_ON + """
from laned.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
async def analyzer(tmp_path: Path) -> AsyncIterator[GasAnalyzerSimulator]:
    sim = GasAnalyzerSimulator(tmp_path / "ga", config=load_analyzer_config(fast=True))
    async with sim:
        yield sim


async def test_the_daemon_runs_with_memory_deny_write_execute(
    tmp_path: Path, amqtt_broker: Any, analyzer: GasAnalyzerSimulator
) -> None:
    port = analyzer.pty.link
    devices = f'[devices.gas-analyzer]\nkind = "gas_analyzer"\ntransport = {{ type = "serial", port = "{port}" }}'
    config = write_lane_toml(tmp_path / "lane1.toml", state_dir=tmp_path / "state", host=amqtt_broker.host,
                             port=amqtt_broker.port, devices=devices)
    probe = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", MDWE_ON], capture_output=True, timeout=60)
    if probe.returncode == 77:
        pytest.skip("the kernel has no PR_SET_MDWE (Linux < 6.3)")
    assert probe.returncode == 0, "PR_SET_MDWE set, yet a writable and executable mapping was allowed"
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    async with subscriber(amqtt_broker.host, amqtt_broker.port, "laned/v1/370100/T1/#") as station:
        process = subprocess.Popen(
            [sys.executable, "-c", MDWE_WRAPPER, "run", "--config", str(config), "--log-format", "json"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            await station.wait_status("online", timeout_s=20, **{"gas-analyzer": "connected"})
            await station.wait_for(lambda m: m.topic.endswith("/live/gas-analyzer"))
            process.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.to_thread(process.communicate, None, 20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 0, stderr.decode(errors="replace")
    assert b'"event": "lane_stopped"' in stderr


@needs_systemd_analyze
def test_the_documented_credentials_drop_in_verifies(verifiable_copy: Path) -> None:
    """docs/operations.md's drop-in (secrets as systemd credentials) on top of the unit: still silent."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- drop-in: tested by tests/integration/test_systemd_unit.py -->\n *```ini\n(.*?)\n *```",
                      text, re.S)
    assert match, "docs/operations.md lost its tested drop-in block"
    drop_in = textwrap.dedent(match.group(1))
    assert drop_in.startswith("[Service]\n") and "LoadCredential=" in drop_in
    folder = verifiable_copy / "laned@lane1.service.d"
    folder.mkdir()
    (folder / "secrets.conf").write_text(drop_in + "\n", encoding="utf-8")
    result = analyze("verify", str(verifiable_copy / "laned@lane1.service"))
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, output
    assert [line for line in output.splitlines() if "laned" in line] == [], output
