"""A brake item's curves as a picture: a real inspection (mosquitto, the lane's driver on Modbus TCP to
the simulated RB-2, the simulated driver braking), then its SVG opened from the lane's state_dir and
checked against the safety result it belongs to: the plotted samples are the result's, the window and
the marks are where the result says."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from laned.config import parse_config
from laned.daemon import Lane
from simulators.brake_tester import BrakeTesterSimulator
from tests.e2e_helpers import lane_with_driver, send_command, start_command
from tests.helpers import lane_config_dict

pytestmark = [pytest.mark.integration, pytest.mark.mosquitto]
SVG = "{http://www.w3.org/2000/svg}"


def points(element: ET.Element) -> list[tuple[float, float]]:
    return [(float(t), float(f)) for t, f in (pair.split(",") for pair in element.attrib["points"].split())]


async def test_a_brake_items_svg_plots_the_results_samples_and_marks(tmp_path: Path, mosquitto: Any) -> None:
    control = tmp_path / "rb2.ctl"
    async with BrakeTesterSimulator("gasoline-car", tcp=("127.0.0.1", 0), control=control, fast=True,
                                    script=False) as sim:
        device = {"kind": "brake_tester", "transport": {"type": "tcp", "host": "127.0.0.1", "port": sim.tcp_port},
                  "timeout_ms": 500, "retries": 1, "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5}
        data = lane_config_dict(tmp_path, mosquitto, {"brake-tester": device})
        data["inspection"] = {"time_scale": 0.25}
        lane = Lane(parse_config(data, "test", environ={}), startup_grace_s=5, simulation=True)
        async with lane_with_driver(lane, mosquitto, "brake-tester", control) as (_, station):
            start = start_command("gasoline-car", "370100202612070002", exterior=False, brake_axles=[1])
            await send_command(mosquitto.host, mosquitto.port, lane.topics.root, "start", start)
            message = await station.wait_for(lambda m: m.topic.endswith("/result/safety"), 60)
    item = next(i for i in message.json()["items"] if i["code"] == "B1")
    assert item["verdict"] == "pass"
    [figure] = item["figures"]
    assert figure["kind"] == "brake_curves" and figure["axle_no"] == 1
    assert figure["path"] == "inspections/370100202612070002/B1-axle1-service.svg"
    path = tmp_path / "state" / figure["path"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == figure["sha256"]

    svg = ET.parse(path).getroot()
    process, values = item["process_data"], item["values"]
    rate_hz = process["sample_rate_hz"]
    assert rate_hz == 100
    for side in ("left", "right"):
        line = svg.find(f"{SVG}polyline[@id='{side}']")
        assert line is not None
        plotted = points(line)
        assert [f for _, f in plotted] == process[f"{side}_force_dan"]  # every sample of the result, in order
        assert [t for t, _ in plotted][:3] == [0.0, 0.01, 0.02] and len(plotted) == process["sample_count"]
        mark = svg.find(f"{SVG}circle[@id='{side}-max']")
        assert mark is not None
        assert float(mark.attrib["data-force-dan"]) == values[f"{side}_max_force_dan"]
        assert float(mark.attrib["data-time-s"]) == process[f"{side}_max_index"] / 100
    window = svg.find(f"{SVG}rect[@id='window']")
    assert window is not None
    assert float(window.attrib["data-start-s"]) == process["braking_start_index"] / 100
    assert float(window.attrib["data-end-s"]) == process["window_end_index"] / 100
    difference = svg.find(f"{SVG}g[@id='max-difference']")
    assert difference is not None
    assert float(difference.attrib["data-time-s"]) == values["max_difference_point"]["time_s"]
    assert float(difference.attrib["data-difference-dan"]) == values["max_difference_dan"]
