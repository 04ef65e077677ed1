"""`laned monitor` headless (Textual's pilot) against a real lane: mosquitto, the lane's brake tester
driver on Modbus TCP to the simulated RB-2, and the simulated driver acting on the prompts.

What a technician watching the screen would notice: the device's state and port, a live value with
its unit, the inspection's step and the driver's prompt, the brake plot growing with exactly the
samples the lane published, and the abort key sending the station's abort command.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from laned.config import parse_config
from laned.daemon import Lane
from laned.monitor.app import LanePanel, MonitorApp, pane_id
from laned.station_client import Target
from simulators.brake_tester import BrakeTesterSimulator
from tests.e2e_helpers import lane_with_driver, send_command, start_command
from tests.helpers import lane_config_dict

pytestmark = [pytest.mark.integration, pytest.mark.mosquitto]


async def until(condition: Callable[[], Any], timeout_s: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def panel_of(app: MonitorApp, lane: str) -> LanePanel | None:
    found = app.query(f"#{pane_id(lane)}-panel")
    return found.first(LanePanel) if found else None


async def test_the_monitor_shows_a_running_lane_and_its_abort_key_aborts(tmp_path: Path, mosquitto: Any) -> None:
    control = tmp_path / "rb2.ctl"
    async with BrakeTesterSimulator("gasoline-car", tcp=("127.0.0.1", 0), control=control, fast=True,
                                    script=False) as sim:
        device = {"kind": "brake_tester", "transport": {"type": "tcp", "host": "127.0.0.1", "port": sim.tcp_port},
                  "timeout_ms": 500, "retries": 1, "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5}
        data = lane_config_dict(tmp_path, mosquitto, {"brake-tester": device})
        data["inspection"] = {"time_scale": 0.25}
        lane = Lane(parse_config(data, "test", environ={}), startup_grace_s=5, simulation=True)
        async with lane_with_driver(lane, mosquitto, "brake-tester", control) as (_, station):
            app = MonitorApp(Target(mosquitto.host, mosquitto.port, "370100"))  # every lane of the station
            async with app.run_test(size=(130, 70)) as pilot:
                panel = await until(lambda: panel_of(app, "T1"), what="the lane's tab")
                await until(lambda: "lane 370100/T1: ONLINE" in panel.texts.get("headline", ""), what="online")
                devices = await until(lambda: re.search(r"left load (-?\d+) N", panel.texts.get("devices", "")),
                                      what="a live value with its unit")
                assert f"brake-tester (brake_tester, 127.0.0.1:{sim.tcp_port}): connected" in panel.texts["devices"]
                published = {m.json()["left_load_n"] for m in station.on("/live/brake-tester")
                             if m.json().get("reading") == "TesterSnapshot"}
                assert int(devices.group(1)) in published

                start = start_command("gasoline-car", "370100202612070001", exterior=False, brake_axles=[1])
                await send_command(mosquitto.host, mosquitto.port, lane.topics.root, "start", start)
                await until(lambda: "inspection 370100202612070001" in panel.texts.get("inspection", ""),
                            what="the inspection in progress")
                # the driver brakes: the plot grows with the curve the lane publishes
                await until(lambda: len(panel.plotted[0]) >= 40, 30, "40 points of the brake curve")
                assert panel.texts["prompt"].startswith("DRIVER: ") and "step brake.axle1" in panel.texts["inspection"]
                times, left, right = panel.plotted
                # the station's own copy of the curve may lag the monitor's by a message
                await until(lambda: len(published_curve(station)[0]) >= len(left), what="the station's curve")
                published_left, published_right = published_curve(station)
                assert left == published_left[: len(left)] and right == published_right[: len(right)]
                assert times[:3] == [0.0, 0.01, 0.02]  # 100 Hz samples, seconds from the first

                await pilot.press("a")
                abort = await station.wait_for(lambda m: m.topic.endswith("/cmd/abort"), 10)
                assert abort.json()["inspection_no"] == "370100202612070001"
                reply = await station.wait_for(lambda m: "/reply/" in m.topic and m.json()["command"] == "abort", 10)
                assert reply.json()["accepted"] is True
                await station.wait_for(lambda m: m.topic.endswith("/event")
                                       and m.json()["type"] == "inspection_aborted", 10)
                await until(lambda: "abort accepted" in panel.texts.get("log", ""), what="the reply on screen")

                await pilot.press("d")
                command = await station.wait_for(lambda m: m.topic.endswith("/cmd/daily-check"), 10)
                assert command.json()["schema"] == "lane-cmd-daily-check/1"
                reply = await station.wait_for(lambda m: m.topic.endswith(f"/reply/{command.json()['request_id']}"))
                shown = "daily-check " + ("accepted" if reply.json()["accepted"] else "refused")
                await until(lambda: shown in panel.texts.get("log", ""), what="the daily check's reply on screen")


def published_curve(station: Any) -> tuple[list[float], list[float]]:
    """Axle 1's service brake curve as the lane published it (daN): every BrakeCurveLive sample, in order."""
    left: list[float] = []
    right: list[float] = []
    for m in station.on("/live/brake-tester"):
        doc = m.json()
        if doc.get("reading") == "BrakeCurveLive" and doc["axle_no"] == 1 and doc["test"] == "service":
            left.extend(doc["left_force_dan"])
            right.extend(doc["right_force_dan"])
    return left, right
