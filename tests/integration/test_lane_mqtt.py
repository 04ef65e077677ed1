"""The lane on a real broker: retained status online, offline on a clean stop, the will on a kill."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from laned.broker import free_port
from laned.config import parse_config
from laned.daemon import Lane
from laned.errors import ConfigError
from tests.helpers import ROOT, lane_config_dict, laned_command, subscriber, write_lane_toml

pytestmark = pytest.mark.integration
ROOT_TOPIC = "laned/v1/370100/T1"


async def test_status_is_retained_online_then_offline_on_a_clean_stop(tmp_path: Path, broker: Any) -> None:
    lane = Lane(parse_config(lane_config_dict(tmp_path, broker), "test", environ={}), startup_grace_s=1)
    task = asyncio.create_task(lane.run())
    async with subscriber(broker.host, broker.port, f"{ROOT_TOPIC}/status") as station:
        online = await station.wait_status("online")
        assert online["schema"] == "lane-status/2"
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


def test_laned_run_refuses_a_shortened_time_scale_without_the_simulation_flag(tmp_path: Path) -> None:
    """A production lane must not sign results of shortened procedures: `laned run` stops before it
    connects to anything, naming each shortened key and the standard's value (exit 2, no restart)."""
    config = write_lane_toml(tmp_path / "lane.toml", state_dir=tmp_path / "state", host="127.0.0.1", port=free_port(),
                             devices="\n[inspection]\ntime_scale = 0.1\n\n[inspection.two_speed_idle]\nmeasure_s = 3\n")
    run = subprocess.run(laned_command("run", "--config", str(config)), cwd=ROOT, capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 2
    assert "inspection.time_scale = 0.1, below the standard's 1" in run.stderr
    assert "inspection.two_speed_idle.measure_s = 3 s, below the standard's 30 s" in run.stderr
    assert "--simulation" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "state").exists()  # refused before the lane opened anything


async def test_a_simulation_lane_starts_with_a_shortened_time_scale(tmp_path: Path, broker: Any) -> None:
    config = write_lane_toml(tmp_path / "lane.toml", state_dir=tmp_path / "state", host=broker.host,
                             port=broker.port, devices="\n[inspection]\ntime_scale = 0.1\n")
    async with subscriber(broker.host, broker.port, f"{ROOT_TOPIC}/status") as station:
        process = subprocess.Popen(laned_command("run", "--simulation", "--config", str(config)), cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            await station.wait_status("online", timeout_s=20)
            process.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.to_thread(process.communicate, None, 20)
            assert process.returncode == 0, stderr.decode(errors="replace")
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()


def test_an_in_process_lane_refuses_shortened_timings_unless_it_is_a_simulation(tmp_path: Path, broker: Any) -> None:
    data = {**lane_config_dict(tmp_path, broker), "inspection": {"time_scale": 0.5}}
    with pytest.raises(ConfigError) as err:
        Lane(parse_config(data, "test", environ={}))
    assert err.value.problems[0].startswith("inspection.time_scale = 0.5, below the standard's 1")
    assert Lane(parse_config(data, "test", environ={}), simulation=True).simulation is True
