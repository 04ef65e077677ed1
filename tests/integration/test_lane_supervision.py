"""A daemon that cannot go on stops, and says so: to the station (retained `offline`) and to
systemd (a non-zero exit, a watchdog no longer fed). Real mosquitto, real processes.

Before: an unexpected error in one of the MQTT link's tasks ended the link alone; aiomqtt
disconnected cleanly, so the broker sent no will, and the station saw a retained `online` for a
lane that would never publish again, while the process (and its watchdog) ran on.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiomqtt
import pytest

from laned.broker import Mosquitto
from laned.config import parse_config
from laned.daemon import Lane
from laned.errors import LaneCrashed
from laned.outbox import Outbox
from laned.systemd import SystemdNotifier, run_lane
from tests.e2e_helpers import send_command
from tests.helpers import ROOT, lane_config_dict, subscriber, write_lane_toml
from tests.integration.test_systemd_notify import count, fake_systemd

pytestmark = [pytest.mark.integration, pytest.mark.mosquitto]
ROOT_TOPIC = "laned/v1/370100/T1"

# `laned run`, with the outbox's disk "full" once the file named by argv[2] exists: removing what
# the broker acknowledged then fails as SQLite fails on a full disk. (A full disk for one process
# needs a filesystem of its own, and so root; the error is SQLite's own exception and message.)
RUN_WITH_A_DISK_THAT_FILLS = """
import os, sqlite3, sys
from laned.cli import main
from laned.outbox import Outbox

remove_many = Outbox.remove_many

def remove_many_on_a_full_disk(self, seqs):
    if os.path.exists(sys.argv[2]):
        raise sqlite3.OperationalError("database or disk is full")
    return remove_many(self, seqs)

Outbox.remove_many = remove_many_on_a_full_disk
sys.exit(main(["run", "--config", sys.argv[1], "--log-format", "json"]))
"""


async def retained_status(broker: Mosquitto) -> dict[str, object]:
    """What a station that connects now is told about the lane: the retained `…/status`."""
    async with aiomqtt.Client(broker.host, broker.port, identifier=f"late-station-{os.getpid()}") as client:
        await client.subscribe(f"{ROOT_TOPIC}/status", qos=1)
        async with asyncio.timeout(5):
            async for message in client.messages:
                assert message.retain
                assert isinstance(message.payload, bytes)
                document: dict[str, object] = json.loads(message.payload)
                return document
    raise AssertionError("no retained status")


async def test_an_outbox_that_fails_in_the_mqtt_link_stops_the_daemon_non_zero_with_the_status_offline(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = write_lane_toml(tmp_path / "lane.toml", state_dir=tmp_path / "state", host=mosquitto.host,
                             port=mosquitto.port)
    disk_full = tmp_path / "disk-is-full"
    process = subprocess.Popen([sys.executable, "-c", RUN_WITH_A_DISK_THAT_FILLS, str(config), str(disk_full)],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        async with subscriber(mosquitto.host, mosquitto.port, f"{ROOT_TOPIC}/#") as station:
            await station.wait_status("online", timeout_s=20)
            disk_full.touch()
            # an abort with nothing running: the lane's reply goes through the outbox; once the
            # broker acknowledges it, removing it from the outbox fails
            await send_command(mosquitto.host, mosquitto.port, ROOT_TOPIC, "abort",
                               {"schema": "lane-cmd-abort/1", "request_id": "req-disk-full",
                                "inspection_no": "370100202612070001", "reason": "test"})
            await station.wait_for(lambda m: m.topic == f"{ROOT_TOPIC}/reply/req-disk-full")
            _, stderr = await asyncio.to_thread(process.communicate, None, 20)
            await station.wait_status("offline")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = stderr.decode(errors="replace")
    assert process.returncode == 70, log  # EX_SOFTWARE: systemd's Restart=on-failure restarts it
    assert '"event": "task_crashed"' in log and '"task": "mqtt"' in log
    assert "database or disk is full" in log and "Traceback" in log
    assert '"event": "lane_stopped"' in log
    # a station connecting now is told the lane is offline, not a stale `online`
    assert (await retained_status(mosquitto))["state"] == "offline"
    # the reply it could not remove is still in the outbox: sent again (same bytes) after the restart
    outbox = Outbox(tmp_path / "state" / "outbox.sqlite3")
    try:
        assert [m.topic for m in outbox.peek()] == [f"{ROOT_TOPIC}/reply/req-disk-full"]
    finally:
        outbox.close()


async def test_any_supervised_task_that_crashes_stops_the_lane_in_order(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Not only the link: the status ticker dying on a bad status document stops the lane too,
    and the offline status still reaches the station (the will's document, as the lane's own
    cannot be made)."""
    lane = Lane(parse_config(lane_config_dict(tmp_path, mosquitto), "test", environ={}),
                startup_grace_s=0.2, status_interval_s=0.1)
    async with subscriber(mosquitto.host, mosquitto.port, f"{ROOT_TOPIC}/status") as station:
        task = asyncio.create_task(lane.run())
        await station.wait_status("online")
        lane.status_extra = None  # type: ignore[assignment]  # a bug: the status can no longer be built
        with pytest.raises(LaneCrashed) as info:
            await asyncio.wait_for(task, 10)
        assert info.value.task == "status"
        assert isinstance(info.value.cause, TypeError)
        await station.wait_status("offline")
    assert (await retained_status(mosquitto))["state"] == "offline"


async def test_a_loop_that_stalls_stops_the_watchdog_while_the_event_loop_runs(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    lane = Lane(parse_config(lane_config_dict(tmp_path, mosquitto), "test", environ={}),
                startup_grace_s=0.2, status_interval_s=0.1)
    async with fake_systemd() as systemd:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "400000"})  # ping every 0.2 s
        task = asyncio.create_task(run_lane(lane, notifier))
        try:
            await systemd.wait_for(lambda d: any(x.startswith(b"READY=1") for x in d))
            ready_at = len(systemd.datagrams)
            await systemd.wait_for(lambda d: count(d[ready_at:], b"WATCHDOG=1") >= 3, 5)

            # the status loop stops making progress (it waits an hour between rounds), the event loop
            # and every other task run on: within 3 of its periods (0.3 s) and one ping the pings stop
            lane.status_interval_s = 3600
            await asyncio.sleep(0.8)
            stalled_at = len(systemd.datagrams)
            assert lane.stalled_loops() == ["status"]
            await asyncio.sleep(1.2)  # six watchdog periods
            assert count(systemd.datagrams[stalled_at:], b"WATCHDOG=1") == 0
            assert lane.mqtt.connected  # the lane still looks fine from outside: only the watchdog knows
        finally:
            lane.request_stop()
            await asyncio.wait_for(task, 10)
    assert not task.exception()
