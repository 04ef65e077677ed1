"""Brake curves as SVG, from process data written by hand: the points are the samples, in seconds and
daN; B0 gets one picture per parking axle; an item without curves gets none."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from laned.figures import brake_curves_svg, write_brake_figures

SVG = "{http://www.w3.org/2000/svg}"
CURVES = {"axle_no": 2, "test": "service", "sample_rate_hz": 50, "left_force_dan": [0, 10, 40, 80, 90, 90],
          "right_force_dan": [0, 5, 30, 70, 85, 86], "prompt_index": 1, "braking_start_index": 2,
          "window_end_index": 4, "left_max_index": 4, "right_max_index": 5}


def test_the_curves_are_drawn_in_seconds_and_dan_with_the_window_and_maxima() -> None:
    svg = ET.fromstring(brake_curves_svg(CURVES, title="B2 service brake, axle 2: pass",
                                         values={"left_max_force_dan": 90.0, "right_max_force_dan": 86.0}))
    left = svg.find(f"{SVG}polyline[@id='left']")
    assert left is not None
    # 50 Hz: a sample every 0.02 s
    assert left.attrib["points"] == "0,0 0.02,10 0.04,40 0.06,80 0.08,90 0.1,90"
    window = svg.find(f"{SVG}rect[@id='window']")
    assert window is not None and (window.attrib["data-start-s"], window.attrib["data-end-s"]) == ("0.04", "0.08")
    right_max = svg.find(f"{SVG}circle[@id='right-max']")
    assert right_max is not None
    assert (right_max.attrib["data-time-s"], right_max.attrib["data-force-dan"]) == ("0.1", "86")
    assert svg.find(f"{SVG}g[@id='max-difference']") is None  # no point given, none drawn


def test_b0_gets_one_picture_per_parking_axle_and_an_item_without_curves_none(tmp_path: Path) -> None:
    items = [
        {"code": "B0", "verdict": "pass", "process_data": {"axles": [CURVES | {"axle_no": 2, "test": "parking"}]}},
        {"code": "BZ", "verdict": "pass", "values": {}},
    ]
    write_brake_figures(items, tmp_path, "0001")
    [figure] = items[0]["figures"]
    assert figure["path"] == "inspections/0001/B0-axle2-parking.svg" and figure["axle_no"] == 2
    assert (tmp_path / figure["path"]).read_text(encoding="utf-8").startswith("<svg")
    assert "figures" not in items[1]
