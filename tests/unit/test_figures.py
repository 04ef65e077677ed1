"""Brake curves, ASM and lug-down traces as SVG, from process data written by hand: the points are the
item's own values, in their units; B0 gets one picture per parking axle, WT one per phase run, JZJS one;
an item without curves gets none."""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from laned.figures import (
    asm_trace_svg,
    brake_curves_svg,
    lug_down_trace_svg,
    write_brake_figures,
    write_loaded_figures,
)

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


def asm_row(second: int, t: int | None, speed: float, force: int, hc: float | None, hc_avg: float | None = None,
            co: float | None = None, no: float | None = None) -> dict[str, object]:
    return {"phase": "ASM5025", "second": second, "t": t, "speed_kmh": speed, "force_target_n": 1382,
            "force_n": force, "hc_corrected_ppm": hc, "hc_avg_ppm": hc_avg, "co_corrected_pct": co,
            "co_avg_pct": None, "no_corrected_ppm": no, "no_avg_ppm": None}


# a phase run of five seconds with a short clock: fast window t = 2…3, the judged window t = 3…4
WT = {
    "code": "WT", "verdict": "pass",
    "settings": {"speed_tolerance_kmh": 2.0, "force_tolerance_pct": 5.0, "response_s": 1, "fast_window_s": 2},
    "values": {"asm5025": {"decision": "pass", "force_target_n": 1382, "window_t": [3, 4]},
               "asm2540": {"decision": "not_run"}},
    "limits": {"asm5025_hc": {"value": 90.0}, "asm5025_co": {"value": 0.5}, "asm5025_no": {"value": 700.0}},
    "process_data": {"rows": [
        asm_row(1, None, 20.5, 0, None),
        asm_row(2, 1, 24.8, 1370, 61.2, None, 0.31, 402.5),
        asm_row(3, 2, 25.3, 1390, 63.0, None, 0.3, 398.0),
        asm_row(4, 3, 25.1, 1385, 58.4, 60.87, 0.29, 410.0),
        asm_row(5, 4, 24.9, 1380, 60.0, 60.47, 0.3, 405.5),
        {"phase": "end", "speed_kmh": 12.0, "force_n": 0},  # after the phase: not in its picture
    ]},
}


def points(svg: ET.Element, ident: str) -> str:
    line = svg.find(f"{SVG}polyline[@id='{ident}']")
    assert line is not None, ident
    return line.attrib["points"]


def transform(svg: ET.Element, ident: str) -> tuple[float, float, float, float]:
    line = svg.find(f"{SVG}polyline[@id='{ident}']")
    assert line is not None
    tx, ty, sx, sy = map(float, re.findall(r"-?[\d.]+", line.attrib["transform"]))
    return tx, ty, sx, sy


def test_an_asm_phase_is_drawn_from_its_own_seconds_with_bands_limits_and_windows() -> None:
    svg = ET.fromstring(asm_trace_svg(WT, "ASM5025"))
    assert points(svg, "speed") == "1,20.5 2,24.8 3,25.3 4,25.1 5,24.9"
    assert points(svg, "force") == "1,0 2,1370 3,1390 4,1385 5,1380"
    assert points(svg, "hc") == "2,61.2 3,63 4,58.4 5,60"  # no corrected value before the clock runs
    assert points(svg, "hc-avg") == "4,60.87 5,60.47"
    assert points(svg, "co") == "2,0.31 3,0.3 4,0.29 5,0.3"
    assert points(svg, "no") == "2,402.5 3,398 4,410 5,405.5"
    band = svg.find(f"{SVG}rect[@id='speed-band']")
    assert band is not None and (band.attrib["data-low"], band.attrib["data-high"]) == ("23", "27")
    force = svg.find(f"{SVG}rect[@id='force-band']")  # 1382 N ± 5 %
    assert force is not None and (force.attrib["data-low"], force.attrib["data-high"]) == ("1312.9", "1451.1")
    limit = svg.find(f"{SVG}line[@id='hc-limit']")
    assert limit is not None and limit.attrib["data-value"] == "90"
    # t = 2…3 are the phase's seconds 3…4, t = 3…4 its seconds 4…5
    fast = svg.find(f"{SVG}rect[@id='hc-fast-window']")
    assert fast is not None and (fast.attrib["data-first"], fast.attrib["data-last"]) == ("3", "4")
    judged = svg.find(f"{SVG}rect[@id='speed-result-window']")
    assert judged is not None and (judged.attrib["data-first"], judged.attrib["data-last"]) == ("4", "5")
    # the points are scaled by the same transform as the band: 27 km/h lands on the band's top edge
    _, ty, _, sy = transform(svg, "speed")
    assert ty + sy * 27 == pytest.approx(float(band.attrib["y"]), abs=0.1)


def lug(stage: int, speed: float, power: float, k: float | None = None, nox: int | None = None,
        **extra: object) -> dict[str, object]:
    row: dict[str, object] = {"stage": stage, "speed_kmh": speed, "power_kw": power, **extra}
    if k is not None:
        row |= {"k_m1": k, "nox_ppm": nox}
    return row


JZJS = {
    "code": "JZJS", "verdict": "pass",
    "values": {"pmax_kw": 55.1, "vel_max_hp_kmh": 66.5,
               "point_100": {"window_s": [2, 3], "k_m1": 0.45, "nox_ppm": 610},
               "point_80": {"window_s": [1, 2], "k_m1": 0.52, "nox_ppm": 655}},
    "limits": {"lug_down_k100": {"value": 1.2}, "lug_down_nox80": {"value": 1500.0}},
    "process_data": {"rows": [
        lug(0, 71.0, 40.0, part="scan_start"),  # before the scan: not on the power curve
        lug(0, 70.0, 50.2, part="scan"), lug(0, 66.5, 55.1, part="scan"), lug(0, 63.0, 52.0, part="scan"),
        lug(1, 64.0, 53.0),  # moving to the 100 % point
        lug(2, 66.4, 54.8, 0.4, 600), lug(2, 66.5, 55.0, 0.44, 608), lug(2, 66.6, 55.1, 0.46, 612),
        lug(3, 53.3, 50.0, 0.5, 650), lug(3, 53.2, 49.8, 0.54, 660),
    ]},
}


def test_the_lug_down_scan_is_power_over_speed_and_the_points_k_and_nox_with_their_windows() -> None:
    svg = ET.fromstring(lug_down_trace_svg(JZJS))
    assert points(svg, "scan-power") == "70,50.2 66.5,55.1 63,52"
    pmax = svg.find(f"{SVG}circle[@id='pmax']")
    assert pmax is not None and (pmax.attrib["data-speed-kmh"], pmax.attrib["data-power-kw"]) == ("66.5", "55.1")
    # the point seconds in order: 100 % as 1…3, 80 % as 4…5
    assert points(svg, "k_m1") == "1,0.4 2,0.44 3,0.46 4,0.5 5,0.54"
    assert points(svg, "nox_ppm") == "1,600 2,608 3,612 4,650 5,660"
    w100 = svg.find(f"{SVG}rect[@id='k_m1-point_100']")
    assert w100 is not None and (w100.attrib["data-first"], w100.attrib["data-last"]) == ("2", "3")
    w80 = svg.find(f"{SVG}rect[@id='nox_ppm-point_80']")
    assert w80 is not None and (w80.attrib["data-first"], w80.attrib["data-last"]) == ("4", "5")
    texts = "".join(svg.itertext())
    assert "100 %: K 0.45 m⁻¹" in texts and "80 %: NOx 655 ppm" in texts
    limit = svg.find(f"{SVG}line[@id='k_m1-limit']")
    assert limit is not None and limit.attrib["data-value"] == "1.2"


def test_wt_gets_a_picture_per_phase_run_and_jzjs_one_written_beside_the_record(tmp_path: Path) -> None:
    items = [dict(WT), dict(JZJS), {"code": "WT", "verdict": "void", "process_data": {"rows": []}}]
    write_loaded_figures(items, tmp_path, "0001")
    [asm] = items[0]["figures"]  # ASM2540 not run: no picture
    assert (asm["kind"], asm["phase"], asm["path"]) == ("asm_trace", "ASM5025", "inspections/0001/WT-asm5025.svg")
    [lug_down] = items[1]["figures"]
    assert (lug_down["kind"], lug_down["path"]) == ("lug_down_trace", "inspections/0001/JZJS-lug-down.svg")
    for figure in (asm, lug_down):
        assert hashlib.sha256((tmp_path / figure["path"]).read_bytes()).hexdigest() == figure["sha256"]
    assert "figures" not in items[2]
