"""The lane's state-directory lock: one process per lane, the refusal naming the one that runs it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from laned.errors import ConfigError, LaneBusy
from laned.lane_lock import LaneLock
from tests.helpers import ROOT

HOLD_LANE = """
import sys
from pathlib import Path
from laned.lane_lock import LaneLock
LaneLock(Path(sys.argv[1]), station="370100", lane="L1", role=sys.argv[2], command=sys.argv[3]).acquire()
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process that runs lane 370100/L1 (as `laned run --config lane1.toml`) until killed."""
    process = subprocess.Popen([sys.executable, "-c", HOLD_LANE, str(tmp_path / "state"), "run",
                                "laned run --config lane1.toml"], cwd=ROOT, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        while (line := process.stdout.readline()) and line.strip() != "held":
            pass  # its log lines
        assert line.strip() == "held"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def lane_lock(tmp_path: Path, role: str = "run") -> LaneLock:
    return LaneLock(tmp_path / "state", station="370100", lane="L1", role=role, command=f"laned {role} -c x.toml")


def test_a_second_process_on_the_lane_is_refused_with_the_running_ones_pid_command_and_start(
        tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    with pytest.raises(LaneBusy) as caught:
        lane_lock(tmp_path).acquire()
    state = tmp_path / "state"
    pattern = (rf"lane 370100/L1 is already run by pid {holder.pid} \(laned run --config lane1\.toml, "
               rf"since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d \S+\); state directory {re.escape(str(state))} "
               rf"\(lock {re.escape(str(state / 'laned.lock'))}\): one process per lane, stop that one first")
    assert re.fullmatch(pattern, str(caught.value)), str(caught.value)
    assert caught.value.owner.pid == holder.pid and caught.value.owner.role == "run"


def test_a_killed_owner_leaves_its_lock_file_but_not_its_lock(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / "state" / "laned.lock").exists()  # left behind, and no obstacle
    with lane_lock(tmp_path, "daily-check") as lock:
        assert lock.held
        assert lock.owner() is not None and lock.owner().role == "daily-check"  # type: ignore[union-attr]
        with pytest.raises(LaneBusy, match=r"is already run by pid \d+ \(laned daily-check -c x\.toml"):
            lane_lock(tmp_path).acquire()  # the same process, another open: refused too
    with lane_lock(tmp_path) as again:  # released on exit
        assert again.held


def test_a_state_directory_that_cannot_hold_the_lock_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the state directory should be")
    with pytest.raises(ConfigError) as caught:
        lane_lock(tmp_path).acquire()
    assert caught.value.problems[0].startswith(
        f"cannot open the lane's lock file {tmp_path / 'state' / 'laned.lock'}: ")
    assert caught.value.problems[0].endswith("(run as the lane's user, e.g. sudo -u laned)")
