"""What the lane writes is the lane's alone, whatever the umask: records hold VIN, plate and the
inspector's id. Outside systemd the umask is often 022 (files 0644, directories 0755); the
state directory the lane creates is 0700 and every file in it 0600 all the same."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from laned.config import parse_config
from laned.daemon import Lane
from laned.daily_checks import DailyChecks
from laned.private_files import private_dir
from simulators.pda import PdaSimulator
from tests.e2e_helpers import send_command, start_command
from tests.helpers import lane_config_dict, subscriber

pytestmark = pytest.mark.integration
ROOT = "laned/v1/370100/T1"


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, str]:
    found = {".": f"{stat.S_IMODE(root.stat().st_mode):04o}"}
    for path in sorted(root.rglob("*")):
        found[str(path.relative_to(root))] = f"{stat.S_IMODE(path.stat().st_mode):04o}"
    return found


async def test_under_umask_022_the_state_dir_is_0700_and_every_file_0600(tmp_path: Path, mosquitto: Any) -> None:
    state = tmp_path / "state"
    with umask(0o022):
        data = lane_config_dict(tmp_path, mosquitto)  # no signing key: the lane generates one
        lane = Lane(parse_config(data, "test", environ={}), startup_grace_s=0.5)
        task = asyncio.create_task(lane.run())
        try:
            await asyncio.wait_for(lane.mqtt.wait_connected(), 10)
            async with subscriber(mosquitto.host, mosquitto.port, f"{ROOT}/result/#") as station:
                await send_command(mosquitto.host, mosquitto.port, ROOT, "start",
                                   start_command("gasoline-car", "370100202612070002", request_id="p-1"))
                await asyncio.sleep(0.3)
                await PdaSimulator("gasoline-car", host=mosquitto.host, port=mosquitto.port,
                                   base=f"{ROOT}/pda").capture("370100202612070002")
                await station.wait_for(lambda m: m.topic.endswith("/emissions"))
            running = modes(state)  # SQLite's -wal and -shm files are there while the lane runs
        finally:
            lane.request_stop()
            await asyncio.wait_for(task, 10)
        DailyChecks(state / "daily-checks.json").record("leak_check", True)

    found = running | modes(state)
    # what is there: the outbox with SQLite's WAL files, the record, nine photos, the key, the checks
    assert {"outbox.sqlite3", "outbox.sqlite3-wal", "outbox.sqlite3-shm", "signing.key", "daily-checks.json",
            "inspections", "inspections/370100202612070002.done.json", "photos"} <= set(found)
    assert found["."] == "0700"
    assert len([name for name in found if name.endswith(".jpg")]) == 9
    directories = {name for name in found if name == "." or "." not in name}
    assert {name: mode for name, mode in found.items() if name in directories} == dict.fromkeys(directories, "0700")
    assert {name: mode for name, mode in found.items() if name not in directories} == {
        name: "0600" for name in found if name not in directories}


def test_an_existing_state_dir_open_to_others_is_kept_but_warned_about(tmp_path: Path) -> None:
    import structlog

    loose = tmp_path / "state"
    loose.mkdir()
    loose.chmod(0o755)
    with structlog.testing.capture_logs() as logs:
        private_dir(loose, warn_if_open=True)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o755  # an operator's choice is not changed
    assert [(e["event"], e["mode"]) for e in logs] == [("state_dir_open_to_others", "0755")]
