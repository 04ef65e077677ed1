"""Lug-down on the chassis dynamometer through the whole lane: station `start` on MQTT → power
scan, VelMaxHP, the 100 % and 80 % points → result, with the opacimeter and the GA-5N (NOx) on
their simulators coupled to the dynamometer's diesel (lug-pass). The rig: tests/loaded_rig.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.loaded_rig import (
    item,
    loaded_rig,
    lug_start,
)

pytestmark = pytest.mark.integration


async def test_lug_down_scans_the_power_and_measures_both_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with loaded_rig(tmp_path, monkeypatch, lug_down=True, analyzer_model="GA-5N") as rig:
        reply = await rig.command("start", lug_start("L9"))
        assert reply["accepted"], reply["reasons"]
        result = await rig.result("L9")
        mode, pau, _ = await rig.dyno_registers()
        events = rig.events()
    jz = item(result, "JZJS")
    assert "values" in jz, jz
    values = jz["values"]
    # limit set a: K ≤ 1.2 m⁻¹ at both points, NOx ≤ 1500 ppm at 80 %; power ≥ 40 % of 140 kW
    assert jz["verdict"] == "pass", (jz["reason"], jz["void_reasons"])
    assert values["power_pct"] >= 40.0
    assert 650 <= values["idle_rpm"] <= 750  # lug-truck idles at 700 r/min
    # lug-truck: 140 kW × 0.85 = 119 kW at the wheels at rated speed, 2500 / 35.3 = 70.8 km/h
    assert 100 <= values["pmax_kw"] <= 125
    assert 64 <= values["vel_max_hp_kmh"] <= 78
    assert values["point_100"]["completed"] and values["point_80"]["completed"]
    assert values["point_80"]["target_kmh"] == pytest.approx(0.8 * values["point_100"]["target_kmh"], abs=0.01)
    assert values["point_80"]["nox_ppm"] > 0
    # lug-pass's opacimeter reads the oil at 356 K = 82.85 °C: warm enough, recorded
    assert values["oil_temp_c"] == 82.85
    assert jz["pre_checks"]["oil_temp"]["passed"] and jz["pre_checks"]["oil_temp"]["device"] == "opacimeter"
    data = jz["process_data"]
    rows = data["rows"]
    assert [r["second"] for r in rows] == list(range(len(rows)))
    assert sum(r["samples"] for r in rows) == data["samples"] == 10 * len(rows)
    # the parasitic power is F_pl(v) · v / 3.6 on the default coefficients (50 + 1.2 v + 0.012 v² N)
    # where the speed changes little within a second; in a point's measuring window the speed is
    # held, so there is next to no inertia power and parasitic + PAU is the wheel power; in the scan
    # the rollers slow by 2 km/h per s, so the PAU also takes the rollers' own energy:
    # 1800 kg · (2 / 3.6) m/s² · v / 3.6 (17 kW at 61 km/h)
    measured = [r for r in rows if r["stage"] in (2, 3) and r.get("event") in ("measuring", "done")]
    assert len(measured) == 6
    scanning = [r for r in rows if r.get("part") == "scan" and r["speed_kmh"] < 0.97 * values["vel_max_hp_kmh"]]
    assert scanning
    for row in measured + scanning:
        v = row["speed_kmh"]
        assert row["parasitic_power_kw"] == pytest.approx((50 + 1.2 * v + 0.012 * v * v) * v / 3600, abs=0.011)
    for row in measured:
        assert row["parasitic_power_kw"] + row["pau_power_kw"] == pytest.approx(row["power_kw"], rel=0.05)
    for row in scanning:
        inertia_kw = 1800 * (2 / 3.6) * row["speed_kmh"] / 3600
        assert row["pau_power_kw"] == pytest.approx(row["power_kw"] - row["parasitic_power_kw"] + inertia_kw,
                                                    rel=0.05)
    assert (mode, pau) == (0, False)
    prompts = [e["action"] for e in events if e["type"] == "prompt"]
    assert prompts.index("lug_full_throttle") < prompts.index("lug_release") < prompts.index("remove_probe")
    # the trace is written beside the record, as the result says
    [figure] = jz["figures"]
    assert (figure["kind"], figure["path"]) == ("lug_down_trace", "inspections/" + result["inspection_no"]
                                                + "/JZJS-lug-down.svg")
    path = rig.lane.config.lane.state_dir / figure["path"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == figure["sha256"]
