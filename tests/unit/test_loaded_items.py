"""The ASM (WT) and lug-down (JZJS) result items built from judged tests."""

from __future__ import annotations

import json
from decimal import Decimal

from laned.judging.asm import AsmPhase, AsmSecond, judge_asm
from laned.judging.limits import load_limits
from laned.judging.lug_down import LugDownPoint, LugDownScan, PointSecond, ScanSecond, judge_lug_down, point_targets
from laned.procedures.loaded_items import asm_item, asm_row, lug_down_item, lug_row
from laned.settings.asm import AsmSettings
from laned.settings.lug_down import LugDownSettings

LIMITS = load_limits()
DF1 = AsmSettings(fuel_factor_gasoline=8.1388)  # DF = 1 for CO 0.1 %, CO2 9.9 % (see test_judging_asm.py)
AMBIENT = {"ambient_temp_c": 3.8, "rh_pct": 14.9, "baro_kpa": 96.2}


def asm_second(hc: float, speed: float = 25.0) -> AsmSecond:
    return AsmSecond(speed_kmh=speed, force_n=1000, power_kw=6.94, hc_ppm=hc, co_pct=0.1, co2_pct=9.9,
                     o2_pct=0.5, no_ppm=100, lambda_value=1.0, rpm=2000, oil_temp_c=90)


def asm_phase(window_hc: float) -> AsmPhase:
    p = AsmPhase("ASM5025", force_target_n=1000, power_target_kw="6.89", limits=LIMITS.emissions.asm.phase("ASM5025"),
                 settings=DF1, kh_value=1)
    for s in [asm_second(20)] * 6 + [asm_second(100)] * 80 + [asm_second(window_hc)] * 10:
        p.feed(s)
    return p


def test_a_failed_asm_item_names_the_failed_limit_and_the_phase_not_run():
    p = asm_phase(48)  # HC 48 > 47 (set b) over t = 81 … 90
    assert p.result is not None
    verdict = judge_asm([p.result], DF1)
    item = asm_item(verdict, ambient=AMBIENT, process_data={"rows": [asm_row(r) for r in p.records]},
                    settings=DF1.model_dump())
    json.dumps(item)  # JSON-ready
    assert (item["code"], item["item"], item["verdict"]) == ("WT", "asm", "fail")
    assert item["reason"] == "ASM5025 HC 48 ppm, limit ≤ 47 ppm"
    assert item["values"]["asm2540"] == {"decision": "not_run"}
    v = item["values"]["asm5025"]
    assert (v["decision"], v["hc_ppm"], v["co_pct"], v["no_ppm"], v["window_t"]) == ("fail", 48, 0.1, 100, [81, 90])
    assert (v["power_target_kw"], v["force_target_n"], v["df"], v["kh"], v["restarts"]) == (6.89, 1000, 1.0, 1.0, 0)
    assert item["limits"]["asm5025_hc"]["value"] == 47.0 and item["limits"]["asm5025_hc"]["certainty"] == "unconfirmed"
    rows = item["process_data"]["rows"]
    assert len(rows) == 96 and rows[0]["step"] == "stabilising" and rows[-1]["t"] == 90
    assert rows[-1]["hc_avg_ppm"] == 48.0 and rows[15]["hc_avg_ppm"] == 100.0  # t = 10: the first full window


def test_a_void_asm_item_carries_the_reason_and_no_checks():
    p = AsmPhase("ASM5025", force_target_n=1000, power_target_kw=6.89, limits=LIMITS.emissions.asm.phase("ASM5025"),
                 settings=DF1, kh_value=1)
    p.feed(asm_second(20))
    p.void("inspector aborted")
    assert p.result is not None
    item = asm_item(judge_asm([p.result], DF1), ambient=AMBIENT, process_data={}, settings={})
    assert item["verdict"] == "void" and item["reason"] == "void: inspector aborted" and item["checks"] == []


def test_a_lug_down_item_reports_the_scan_and_both_points():
    s = LugDownSettings()
    scan = LugDownScan(s)
    scan_rows = []
    # 90 … 64 km/h, power peaking at 84 km/h (s4, 90 kW); s15 at 63.0 = 0.75 × 84 ends the scan
    speeds = [90.0 - 2 * i for i in range(14)] + [63.0]
    powers = [80.0, 85.0, 88.5, 90.0, 90.0] + [90.0 - 2 * (n - 5) for n in range(6, 16)]
    for n, (v, pw) in enumerate(zip(speeds, powers, strict=True), 1):
        second = ScanSecond(speed_kmh=v, power_kw=pw, rpm=25 * v)
        scan.feed(second)
        scan_rows.append(lug_row(0, n, second))
    assert scan.result is not None
    targets = point_targets(scan.result.vel_max_hp_kmh)
    points = []
    for name, target in zip(("100", "80"), targets, strict=True):
        point = LugDownPoint(name, target, s)
        for _ in range(6):
            point.feed(PointSecond(speed_kmh=target, power_kw=70, k_m1=0.45, opacity_pct=17.6, nox_ppm=950.4,
                                   co2_pct=8, rpm=2000))
        assert point.result is not None
        points.append(point.result)
    verdict = judge_lug_down(scan.result, points, LIMITS.emissions, s, rated_power_kw=200, rated_rpm=2200,
                             idle_rpm=Decimal("651.4"))
    item = lug_down_item(verdict, targets=targets, ambient=AMBIENT, process_data={"rows": scan_rows},
                         settings=s.model_dump())
    json.dumps(item)
    # NOx 950.4 → 950 > 900 (set b): fail
    assert (item["code"], item["item"], item["verdict"]) == ("JZJS", "lug_down", "fail")
    assert item["reason"] == "NOx at 80 % 950 ppm, limit ≤ 900 ppm"
    v = item["values"]
    assert (v["pmax_kw"], v["corrected_pmax_kw"], v["pf"], v["power_pct"]) == (90.0, 90.0, 1.0, 45.0)
    assert (v["vel_max_hp_kmh"], v["calculated_vel_max_hp_kmh"], v["max_rpm"], v["idle_rpm"]) == (84.0, 88.0, 2100, 651)
    assert v["point_80"]["target_kmh"] == 67.2 and v["point_80"]["k_m1"] == 0.45 and v["point_80"]["nox_ppm"] == 950
    assert item["limits"]["lug_down_power"]["value"] == 40.0
    assert item["process_data"]["rows"][3] == {"stage": 0, "second": 4, "speed_kmh": 84.0, "power_kw": 90.0,
                                               "rpm": 2100}
