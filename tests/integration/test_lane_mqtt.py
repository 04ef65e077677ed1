"""The lane on a real broker: retained status online, offline on a clean stop, the will on a kill."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from laned.config import parse_config
from laned.daemon import Lane
from tests.helpers import ROOT, lane_config_dict, laned_command, subscriber, write_lane_toml

pytestmark = pytest.mark.integration
ROOT_TOPIC = "laned/v1/370100/T1"


async def test_status_is_retained_online_then_offline_on_a_clean_stop(tmp_path: Path, broker: Any) -> None:
    lane = Lane(parse_config(lane_config_dict(tmp_path, broker), "test", environ={}), startup_grace_s=1)
    task = asyncio.create_task(lane.run())
    async with subscriber(broker.host, broker.port, f"{ROOT_TOPIC}/status") as station:
        online = await station.wait_status("online")
        assert online["schema"] == "lane-status/1"
        assert online["station"] == "370100" and online["lane"] == "T1"
        assert online["outbox"]["depth"] == 0
        lane.request_stop()
        await asyncio.wait_for(task, 10)
        await station.wait_status("offline")
    # a station that connects later is told by the retained message that the lane is offline
    async with subscriber(broker.host, broker.port, f"{ROOT_TOPIC}/status") as late:
        message = await late.wait_for(lambda m: m.topic.endswith("/status"))
        assert message.retain and message.json()["state"] == "offline"


async def test_a_killed_daemon_is_shown_offline_by_its_will(tmp_path: Path, broker: Any) -> None:
    config = write_lane_toml(tmp_path / "lane.toml", state_dir=tmp_path / "state", host=broker.host, port=broker.port)
    async with subscriber(broker.host, broker.port, f"{ROOT_TOPIC}/status") as station:
        process = subprocess.Popen(laned_command("run", "--config", str(config)), cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            await station.wait_status("online", timeout_s=20)
            process.send_signal(signal.SIGKILL)
            offline = await station.wait_status("offline", timeout_s=20)
            assert offline["station"] == "370100"
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()


async def test_sigterm_stops_the_daemon_cleanly_with_exit_code_zero(tmp_path: Path, broker: Any) -> None:
    config = write_lane_toml(tmp_path / "lane.toml", state_dir=tmp_path / "state", host=broker.host, port=broker.port)
    async with subscriber(broker.host, broker.port, f"{ROOT_TOPIC}/status") as station:
        process = subprocess.Popen(laned_command("run", "--config", str(config), "--log-format", "json"), cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        await station.wait_status("online", timeout_s=20)
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(process.communicate, None, 20)
        assert process.returncode == 0, stderr.decode(errors="replace")
        assert b'"event": "lane_stopped"' in stderr
        await station.wait_status("offline")


async def test_the_lane_reconnects_after_the_broker_restarts(tmp_path: Path, mosquitto: Any) -> None:
    lane = Lane(parse_config(lane_config_dict(tmp_path, mosquitto), "test", environ={}), startup_grace_s=1)
    task = asyncio.create_task(lane.run())
    try:
        async with subscriber(mosquitto.host, mosquitto.port, f"{ROOT_TOPIC}/status") as station:
            await station.wait_status("online")
        await mosquitto.stop()
        await asyncio.sleep(0.5)
        assert not lane.mqtt.connected
        await mosquitto.start()
        # mosquitto runs without persistence here: the retained status is back only if the lane re-sent it
        async with subscriber(mosquitto.host, mosquitto.port, f"{ROOT_TOPIC}/status") as station:
            await station.wait_status("online", timeout_s=15)
        assert lane.mqtt.connects >= 2
    finally:
        lane.request_stop()
        await asyncio.wait_for(task, 10)
