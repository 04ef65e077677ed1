"""Brake result items from fixed curves, and the procedure's pure parts (peak watch, axle plan).

Curves are sampled at RATE = 4 Hz so one second of drag is 4 samples: the prompt is curve
position 4 and the drag window positions 1..4. Every expected value is worked out by hand from
standards.md ("Brakes on a roller tester") and config/limits/brakes.toml; loads N → kg divide by
9.80665 and round half away from zero to a whole kg, forces N → daN divide by 10 (0.1 daN).
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from laned.judging.brakes import AxleMeasurement
from laned.judging.limits import apply_overrides, load_limits
from laned.procedures.brake import plan_visits
from laned.procedures.brake_items import (
    BrakeRecord,
    BrakeRun,
    BrakeSettings,
    PeakWatch,
    build_brake_items,
    overall_verdict,
    settings_from,
)
from protocols.messages import StartCommand

RATE = 4
LIMITS = load_limits()
# 428.5 kg exactly (428.5 × 9.80665): rounds half away from zero to 429 kg
LEFT_FRONT_N = 4202.149525


def command(axles: list[dict[str, Any]] | None = None, **items: Any) -> StartCommand:
    """A passenger car in use, 1750 kg total, 1320 kg curb (parking limit 20 %: 1750 > 1.2 × 1320)."""
    return StartCommand.model_validate({
        "schema": "lane-cmd-start/1", "request_id": "r1", "inspection_no": "N1",
        "vehicle": {"plate": "鲁N12345", "plate_type": "02", "vin": "LSVAU2182N2183290",
                    "vehicle_class": "passenger_car", "fuel": "gasoline", "curb_mass_kg": 1320,
                    "total_mass_kg": 1750, "registration_date": "2019-06-14", "new_registration": False},
        "axles": axles or [{"position": "front"}, {"position": "rear", "parking_brake": True}],
        "items": {"brake_axles": [1, 2], "parking_brake": True, "exterior": False, **items},
    })


def run(axle_no: int, left: list[float], right: list[float], loads: tuple[float, float], *,
        kind: str = "service", position: str = "front", parking: bool = False, first: int = 100,
        slip_left: int | None = None) -> BrakeRun:
    m = AxleMeasurement(axle_no=axle_no, position=position, parking_brake=parking,  # type: ignore[arg-type]
                        left_wheel_load_n=loads[0], right_wheel_load_n=loads[1], left_force_n=left,
                        right_force_n=right, sample_rate_hz=RATE, prompt_index=4, left_slip_index=slip_left)
    return BrakeRun(kind, m, first, load_readings=11, end_reason="peak passed")  # type: ignore[arg-type]


# axle 1, front: drag L (60+60+70+50)/4 = 60 N, R (55+60+55+60)/4 = 57.5 N; braking from position 5
FRONT = run(1, [0, 60, 60, 70, 50, 300, 1500, 2700, 2700, 2690], [0, 55, 60, 55, 60, 100, 1000, 2200, 2600, 2600],
            (LEFT_FRONT_N, 4100.0), first=65533)
# axle 2, rear, parking axle: drag 40 / 45 N
REAR = run(2, [0, 40, 40, 40, 40, 400, 1000, 1400, 1400, 1400], [0, 45, 45, 45, 45, 300, 1100, 1650, 1650, 1650],
           (2750.0, 2630.0), position="rear", parking=True)
PARKING = run(2, [0, 40, 40, 40, 40, 300, 900, 1450, 1450, 1450], [0, 45, 45, 45, 45, 250, 800, 1400, 1400, 1400],
              (2750.0, 2630.0), kind="parking", position="rear", parking=True)


def record(*runs: BrakeRun, **failed: str) -> BrakeRecord:
    rec = BrakeRecord()
    for r in runs:
        (rec.service if r.kind == "service" else rec.parking)[r.measurement.axle_no] = r
    for key, reason in failed.items():  # e.g. service_2="…"
        kind, axle = key.split("_")
        rec.failed[(kind, int(axle))] = reason  # type: ignore[index]
    return rec


def items_of(cmd: StartCommand, rec: BrakeRecord, limits: Any = LIMITS) -> tuple[dict[str, Any], str]:
    items, verdict = build_brake_items(cmd, limits, rec)
    json.dumps(items)  # the record on disk and the result are JSON
    return {i["code"]: i for i in items}, verdict


# ----- B1…Bn ----------------------------------------------------------------------------------------


def test_axle_item_reports_loads_in_kg_forces_in_dan_and_rates_in_pct() -> None:
    items, verdict = items_of(command(), record(FRONT, REAR, PARKING))
    b1 = items["B1"]
    assert (b1["code"], b1["item"], b1["verdict"], b1["reason"], b1["position"]) == (
        "B1", "service_brake_axle_1", "pass", None, "front")
    assert b1["values"] == {
        # 4202.149525 / 9.80665 = 428.5 → 429 kg; 4100 / 9.80665 = 418.08 → 418; 8302.149525 N → 846.58 → 847
        "left_wheel_load_kg": 429, "right_wheel_load_kg": 418, "axle_load_kg": 847,
        "left_max_force_dan": 270.0, "right_max_force_dan": 260.0,
        # 60 N → 6.0 daN; 57.5 N → 5.75 → 5.8 daN (half away from zero)
        "left_drag_force_dan": 6.0, "right_drag_force_dan": 5.8,
        # 60 / 4202.149525 = 1.428 %; 57.5 / 4100 = 1.402 %
        "left_drag_rate_pct": 1.4, "right_drag_rate_pct": 1.4,
        # (2700 + 2600) / 8302.149525 = 63.839 %
        "axle_brake_rate_pct": 63.8,
        # window 5..7 (left first reaches 2700 at 7); |ΔF| 200, 500, 500 → 500 N at 6; 500 / 2700 = 18.52 %
        "imbalance_pct": 18.5, "imbalance_basis": "ΔF / max(F_L,max, F_R,max)",
        "max_difference_dan": 50.0,
        "max_difference_point": {"index": 6, "time_s": 1.5, "tester_index": 3,  # (65533 + 6) mod 65536
                                 "left_force_dan": 150.0, "right_force_dan": 100.0},
        "wheel_locked": {"left": False, "right": False},
    }
    assert verdict == "pass"


def test_axle_item_carries_each_check_and_the_limits_with_their_clause() -> None:
    b1 = items_of(command(), record(FRONT, REAR, PARKING))[0]["B1"]
    assert b1["limits_row"] == "passenger_car"
    rate = b1["limits"]["axle_brake_rate_pct"]
    assert (rate["value"], rate["comparison"], rate["unit"], rate["certainty"], rate["source"]) == (
        60.0, ">=", "%", "firm", "config")
    assert rate["clause"].startswith("GB 38900-2020") and "front axle" in rate["clause"]
    assert b1["limits"]["imbalance_pct"]["value"] == 24.0  # in use, front (vendor)
    assert b1["limits"]["drag_rate_left_pct"]["value"] == 10.0
    checks = {c["item"]: c for c in b1["checks"]}
    assert list(checks) == ["axle_brake_rate", "imbalance", "drag_rate_left", "drag_rate_right"]
    assert {k: checks["axle_brake_rate"][k] for k in ("value", "limit", "comparison", "pass", "outcome")} == {
        "value": 63.8, "limit": 60.0, "comparison": ">=", "pass": True, "outcome": "pass"}
    assert (checks["imbalance"]["value"], checks["imbalance"]["limit"], checks["imbalance"]["comparison"]) == (
        18.5, 24.0, "<=")


def test_axle_process_data_holds_both_curves_in_dan_with_the_marks() -> None:
    pd = items_of(command(), record(FRONT, REAR, PARKING))[0]["B1"]["process_data"]
    assert pd["left_force_dan"] == [0, 6, 6, 7, 5, 30, 150, 270, 270, 269]
    assert pd["right_force_dan"] == [0, 5.5, 6, 5.5, 6, 10, 100, 220, 260, 260]
    assert {k: pd[k] for k in ("sample_rate_hz", "first_sample_index", "sample_count", "prompt_index",
                               "drag_window", "braking_start_index", "window_end_index", "left_max_index",
                               "right_max_index", "left_slip_index", "right_slip_index", "test",
                               "window_start_index", "braking_wheels")} == {
        "sample_rate_hz": 4, "first_sample_index": 65533, "sample_count": 10, "prompt_index": 4,
        "window_start_index": 5, "braking_wheels": {"left": True, "right": True},
        "drag_window": [1, 4], "braking_start_index": 5, "window_end_index": 7, "left_max_index": 7,
        "right_max_index": 8, "left_slip_index": None, "right_slip_index": None, "test": "service"}
    assert (pd["left_wheel_load_n"], pd["right_wheel_load_n"], pd["load_readings"]) == (LEFT_FRONT_N, 4100.0, 11)


def test_a_rear_axle_under_60_pct_judges_imbalance_against_the_axle_load() -> None:
    b2 = items_of(command(), record(FRONT, REAR, PARKING))[0]["B2"]
    v = b2["values"]
    # 2750 / 9.80665 = 280.4 → 280; 2630 → 268.2 → 268; 5380 → 548.6 → 549
    assert (v["left_wheel_load_kg"], v["right_wheel_load_kg"], v["axle_load_kg"]) == (280, 268, 549)
    # 40 / 2750 = 1.45 → 1.5 %; 45 / 2630 = 1.71 → 1.7 %
    assert (v["left_drag_force_dan"], v["right_drag_force_dan"]) == (4.0, 4.5)
    assert (v["left_drag_rate_pct"], v["right_drag_rate_pct"]) == (1.5, 1.7)
    # (1400 + 1650) / 5380 = 56.69 % < 60 %: ΔF 250 N (at 7) / 5380 = 4.65 % against 10 % (in use)
    assert v["axle_brake_rate_pct"] == 56.7
    assert (v["imbalance_pct"], v["max_difference_dan"]) == (4.6, 25.0)
    assert v["imbalance_basis"] == "ΔF / axle load (rear axle, brake rate below the switch)"
    assert b2["limits"]["imbalance_pct"]["value"] == 10.0 and b2["limits"]["axle_brake_rate_pct"]["value"] == 20.0


def test_a_failed_rate_fails_the_axle_with_the_reason_in_words() -> None:
    weak = run(2, [0, 40, 40, 40, 40, 100, 300, 450, 450, 450], [0, 45, 45, 45, 45, 100, 300, 420, 420, 420],
               (2750.0, 2630.0), position="rear", parking=True)
    items, verdict = items_of(command(), record(FRONT, weak, PARKING))
    # (450 + 420) / 5380 = 16.17 % < 20 %
    assert items["B2"]["verdict"] == "fail"
    assert items["B2"]["reason"] == "axle brake rate 16.2 %, limit ≥ 20.0 %"
    # whole vehicle (5300 + 870) / 13682.149525 = 45.10 % < 60 %
    assert items["BZ"]["verdict"] == "fail" and items["BZ"]["values"]["brake_rate_pct"] == 45.1
    assert verdict == "fail"


def test_a_locked_wheel_ends_the_window_at_lock_and_is_reported() -> None:
    # left locks at 2940 N (0.7 × 4200) at position 7, its slip is seen latched at 8; the rollers stop
    locked = run(1, [0, 60, 60, 60, 60, 800, 2000, 2940, 2940, 1200], [0, 55, 55, 55, 55, 600, 1700, 2600, 2870, 1100],
                 (4200.0, 4100.0), slip_left=8)
    b1 = items_of(command(), record(locked, REAR, PARKING))[0]["B1"]
    # window 5..7: |ΔF| 200, 300, 340 → 340 N at 7; 340 / 2940 = 11.56 %; rate 5810 / 8300 = 70.0 %
    assert b1["values"]["wheel_locked"] == {"left": True, "right": False}
    assert (b1["values"]["left_max_force_dan"], b1["values"]["right_max_force_dan"]) == (294.0, 287.0)
    assert (b1["values"]["imbalance_pct"], b1["values"]["axle_brake_rate_pct"]) == (11.6, 70.0)
    assert (b1["process_data"]["window_end_index"], b1["process_data"]["left_slip_index"]) == (7, 8)


def test_overridden_limits_are_applied_and_marked_as_overrides() -> None:
    limits = apply_overrides(LIMITS, {"brakes": {"drag": {"wheel_max_pct": 1.0}}})
    b1 = items_of(command(), record(FRONT, REAR, PARKING), limits)[0]["B1"]
    # drag rates 1.4 % > 1.0 %
    assert b1["verdict"] == "fail"
    assert b1["reason"] == "drag rate left 1.4 %, limit ≤ 1.0 %; drag rate right 1.4 %, limit ≤ 1.0 %"
    assert b1["limits"]["drag_rate_left_pct"]["source"] == "override"


# ----- BZ and B0 -------------------------------------------------------------------------------------


def test_whole_vehicle_and_parking_items_sum_over_the_axles() -> None:
    items, _ = items_of(command(), record(FRONT, REAR, PARKING))
    bz, b0 = items["BZ"], items["B0"]
    # (2700 + 2600 + 1400 + 1650) = 8350 N over 8302.149525 + 5380 = 13682.149525 N (1395.2 kg): 61.03 %
    assert (bz["code"], bz["item"], bz["verdict"]) == ("BZ", "service_brake_vehicle", "pass")
    assert bz["values"] == {"brake_rate_pct": 61.0, "brake_force_dan": 835.0, "vehicle_load_kg": 1395, "axles": [1, 2]}
    assert bz["limits"]["vehicle_brake_rate_pct"]["value"] == 60.0
    # parking: (1450 + 1400) / 13682.149525 = 20.83 % ≥ 20 % (1750 kg > 1.2 × 1320 = 1584 kg)
    assert (b0["code"], b0["item"], b0["verdict"]) == ("B0", "parking_brake", "pass")
    assert (b0["values"]["brake_rate_pct"], b0["values"]["brake_force_dan"], b0["values"]["vehicle_load_kg"]) == (
        20.8, 285.0, 1395)
    assert b0["values"]["axles"] == [{"axle_no": 2, "left_max_force_dan": 145.0, "right_max_force_dan": 140.0,
                                      "left_wheel_load_kg": 280, "right_wheel_load_kg": 268}]
    assert "1584" in b0["values"]["limit_case"] and b0["limits"]["parking_brake_rate_pct"]["value"] == 20.0
    assert b0["process_data"]["axles"][0]["left_force_dan"][-1] == 145
    assert b0["process_data"]["axles"][0]["test"] == "parking"


def test_road_test_axles_are_not_tested_with_their_reason() -> None:
    cmd = command(brake_axles=[1], road_test_axles={2: "full-time four-wheel drive"})
    items, verdict = items_of(cmd, record(FRONT))
    assert [i for i in items] == ["B1", "B2", "BZ", "B0"]
    assert items["B2"] == {"code": "B2", "item": "service_brake_axle_2", "verdict": "not_tested",
                           "reason": "axle 2: road test (full-time four-wheel drive)"}
    assert items["BZ"]["verdict"] == "not_tested"
    assert items["BZ"]["reason"] == ("the whole-vehicle brake rate needs every axle: "
                                     "axle 2: road test (full-time four-wheel drive)")
    assert items["B0"]["verdict"] == "not_tested"
    assert verdict == "pass"


def test_an_axle_not_completed_carries_its_reason_to_what_depends_on_it() -> None:
    reason = "axle 2 not in position after 60 s"
    items, verdict = items_of(command(), record(FRONT, service_2=reason, parking_2=reason))
    assert items["B1"]["verdict"] == "pass"  # measured before the failure: kept
    assert (items["B2"]["verdict"], items["B2"]["reason"]) == ("not_completed", reason)
    assert items["BZ"]["verdict"] == "not_completed" and items["BZ"]["reason"].endswith(reason)
    assert items["B0"]["verdict"] == "not_completed"
    assert verdict == "not_completed"


def test_overall_verdict_fail_beats_not_completed_beats_pass_beats_not_tested() -> None:
    def of(*verdicts: str) -> str:
        return overall_verdict([{"verdict": v} for v in verdicts])

    assert of("pass", "not_completed", "fail") == "fail"
    assert of("pass", "not_completed", "not_tested") == "not_completed"
    assert of("pass", "not_tested") == "pass"
    assert of("not_tested") == "not_tested"


# ----- the peak watch ---------------------------------------------------------------------------------


def test_peak_passes_once_braking_started_and_no_wheel_rose_for_the_hold_time() -> None:
    watch = PeakWatch(100.0, 100.0, rise_n=20.0, hold_samples=3, level_n=[50.0, 50.0])
    watch.feed(1, 90, 60)  # below both thresholds (drag + share of load): not braking
    assert not watch.braking
    watch.feed(2, 150, 90)  # left 150 > 100: braking starts at 2, and that is a rise
    assert (watch.start_offset, watch.last_rise_offset) == (2, 2)
    watch.feed(3, 160, 95)
    watch.feed(4, 165, 100)  # +15 N over the level 150: noise, not a rise
    assert not watch.peak_passed  # 4 − 2 = 2 samples without a rise
    watch.feed(5, 160, 100)
    assert watch.peak_passed  # 5 − 2 = 3


def test_a_slow_creep_adds_up_to_a_rise() -> None:
    watch = PeakWatch(100.0, 100.0, rise_n=20.0, hold_samples=3, level_n=[50.0, 50.0])
    for offset, left in ((1, 150), (2, 157), (3, 164)):  # braking from 1; +7 N a sample
        watch.feed(offset, left, 90)
    assert not watch.peak_passed  # 3 − 1 = 2
    watch.feed(4, 171, 90)  # 171 > 150 + 20: the creep is a rise at 4
    assert watch.last_rise_offset == 4 and not watch.peak_passed


def test_peak_never_passes_without_braking() -> None:
    watch = PeakWatch(500.0, 500.0, rise_n=20.0, hold_samples=2, level_n=[60.0, 55.0])
    for offset in range(1, 50):
        watch.feed(offset, 60, 55)
    assert not watch.braking and not watch.peak_passed


# ----- plan and settings -----------------------------------------------------------------------------


TRUCK = [{"position": "front"}, {"position": "rear", "parking_brake": True}, {"position": "rear"}]


@pytest.mark.parametrize(
    ("axles", "items", "expected"),
    [
        # a car: service on both axles, the parking run on axle 2 while it is on the rollers
        (None, {}, [(1, ["service"]), (2, ["service", "parking"])]),
        # only axle 1's service brake, but the parking brake too: axle 2 for its parking run
        (None, {"brake_axles": [1]}, [(1, ["service"]), (2, ["parking"])]),
        # three axles, service on 1 and 3: axle 2 comes between them for the parking run
        (TRUCK, {"brake_axles": [1, 3]}, [(1, ["service"]), (2, ["parking"]), (3, ["service"])]),
        # parking only: axles 1 and 3 are weighed (Σ G over all axles), axle 2 gets its parking run
        (TRUCK, {"brake_axles": []}, [(1, ["weigh"]), (2, ["parking"]), (3, ["weigh"])]),
        # a road-test axle never goes on the rollers
        (TRUCK, {"road_test_axles": {3: "over the tester's rating"}, "brake_axles": [1, 2, 3]},
         [(1, ["service"]), (2, ["service", "parking"])]),
        # no parking test: nothing else is weighed
        (TRUCK, {"brake_axles": [2], "parking_brake": False}, [(2, ["service"])]),
    ],
)
def test_axles_go_on_the_rollers_front_to_back_with_their_runs(
    axles: list[dict[str, Any]] | None, items: dict[str, Any], expected: list[tuple[int, list[str]]]
) -> None:
    visits = plan_visits(command(axles, **items))
    assert [(v.axle_no, v.kinds) for v in visits] == expected


def test_brake_settings_come_from_the_lane_or_default() -> None:
    assert settings_from(SimpleNamespace(time_scale=1.0)) == BrakeSettings()
    assert settings_from(SimpleNamespace(brake={"peak_hold_s": 1.0})).peak_hold_s == 1.0
    assert BrakeSettings().in_position_timeout_s == 60.0
    with pytest.raises(ValidationError, match="peak_hold"):
        settings_from(SimpleNamespace(brake={"peak_hold": 1.0}))
