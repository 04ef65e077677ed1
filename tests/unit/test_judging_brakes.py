"""Brake judging, cases worked out by hand from standards.md ("Brakes on a roller tester").

Curves are sampled at RATE = 4 Hz so one second of drag is 4 samples; the
prompt is the last of the samples in `pre`, braking samples follow in `after`.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from laned.judging.brakes import (
    AxleMeasurement,
    NotTested,
    analyse_axle,
    judge_axle,
    judge_brakes,
    judge_parking,
    judge_vehicle,
)
from laned.judging.limits import apply_overrides, load_limits, select_brake_row

RATE = 4
ZEROS = (0.0, 0.0, 0.0, 0.0)
LIMITS = load_limits()
BRAKES = LIMITS.brakes
CAR = select_brake_row(LIMITS, "passenger_car", 1750).row  # front ≥ 60, rear ≥ 20, whole ≥ 60
START_PCT = BRAKES.braking_start.wheel_load_pct.value  # 5 % of the static wheel load


def axle(
    after_l,
    after_r,
    *,
    loads=(5000.0, 5000.0),
    pre_l=ZEROS,
    pre_r=ZEROS,
    position="front",
    parking=False,
    slip_l=None,
    slip_r=None,
    axle_no=1,
):
    """An axle measurement; slip_* count from the first sample after the prompt (0 = prompt + 1)."""
    prompt = len(pre_l) - 1
    return AxleMeasurement(
        axle_no=axle_no,
        position=position,
        parking_brake=parking,
        left_wheel_load_n=loads[0],
        right_wheel_load_n=loads[1],
        left_force_n=[*pre_l, *after_l],
        right_force_n=[*pre_r, *after_r],
        sample_rate_hz=RATE,
        prompt_index=prompt,
        left_slip_index=None if slip_l is None else prompt + 1 + slip_l,
        right_slip_index=None if slip_r is None else prompt + 1 + slip_r,
    )


def judged(m, *, row=CAR, new_registration=False, brakes=BRAKES):
    a = analyse_axle(m, brakes.braking_start.wheel_load_pct.value)
    return judge_axle(a, row, brakes.imbalance, None, new_registration, drag_limits=brakes.drag)


# ---------------------------------------------------------------- analysis


def test_drag_is_the_mean_of_the_one_second_ending_at_the_prompt_and_braking_starts_past_5_pct():
    # pre_l has 5 samples; the prompt is index 4; the second ending there is indices 1..4:
    # drag_L = (10 + 20 + 30 + 40) / 4 = 25 N (the 999 at index 0 is older than a second)
    # start thresholds: L 25 + 5 % × 2000 = 125 N, R 0 + 5 % × 3000 = 150 N, "exceeds" = strictly
    # index 6: L 125 (not > 125), R 140; index 7: L 126 > 125 → braking starts at 7
    m = axle(
        (100, 125, 126, 600, 600),
        (50, 140, 150, 500, 400),
        loads=(2000.0, 3000.0),
        pre_l=(999, 10, 20, 30, 40),
        pre_r=(0, 0, 0, 0, 0),
    )
    a = analyse_axle(m, START_PCT)
    assert (a.left_drag_n, a.right_drag_n) == (25.0, 0.0)
    assert a.braking_start_index == 7
    # maxima: L 600 first at 8, R 500 at 8 → window 7..8: |126 − 150| = 24, |600 − 500| = 100
    assert (a.left_max_n, a.left_max_index, a.right_max_n, a.right_max_index) == (600.0, 8, 500.0, 8)
    assert a.window_end_index == 8
    assert a.diff_n == 100.0
    assert (a.diff_point.index, a.diff_point.left_n, a.diff_point.right_n) == (8, 600, 500)


def test_imbalance_window_ends_where_the_first_wheel_first_reaches_its_max():
    # prompt at 3; after: indices 4..9. Start: first force > 0 + 5 % × 5000 = 250 N → index 5
    # L max 3050 first at 7; R max 2950 at 8 → window 5..7
    # diffs: 5: |1000 − 900| = 100, 6: |2000 − 1500| = 500, 7: |3050 − 2500| = 550 → ΔF = 550 at 7
    # (index 9, |3050 − 2000| = 1050, lies after the window and does not count)
    a = analyse_axle(axle((0, 1000, 2000, 3050, 3050, 3050), (0, 900, 1500, 2500, 2950, 2000)), START_PCT)
    assert (a.braking_start_index, a.window_end_index) == (5, 7)
    assert a.diff_n == 550.0
    assert (a.diff_point.index, a.diff_point.left_n, a.diff_point.right_n) == (7, 3050, 2500)
    v = judge_axle(a, CAR, BRAKES.imbalance, None, False, drag_limits=BRAKES.drag)
    # rate (3050 + 2950) / 10000 × 100 = 60.0 %; imbalance 550 / 3050 × 100 = 18.03… → 18.0 %
    assert v.check_named("axle_brake_rate").value == 60.0
    assert v.check_named("imbalance").value == 18.0
    assert v.verdict == "pass"
    assert (v.diff_dan, v.diff_index, v.diff_left_dan, v.diff_right_dan) == (55.0, 7, 305.0, 250.0)


def test_a_locked_wheel_ends_the_window_and_its_force_at_lock_up_is_its_max():
    # left slip latched at index 7 (after-offset 3) with 2800 N; its later 3500 / 3600 do not count
    # F_L,max = max(0, 1000, 2400, 2800) = 2800 at 7; F_R,max = 3000 at 9
    # window 5..7 (lock-up at 7): diffs 0, |2400 − 2000| = 400, |2800 − 2200| = 600 → ΔF = 600
    # (index 8, |3500 − 2000| = 1500, is after the lock and does not count)
    m = axle((0, 1000, 2400, 2800, 3500, 3600), (0, 1000, 2000, 2200, 2000, 3000), slip_l=3)
    a = analyse_axle(m, START_PCT)
    assert (a.left_max_n, a.left_max_index) == (2800.0, 7)
    assert (a.right_max_n, a.right_max_index) == (3000.0, 9)
    assert a.window_end_index == 7
    assert a.diff_n == 600.0
    v = judge_axle(a, CAR, BRAKES.imbalance, None, True, drag_limits=BRAKES.drag)
    # rate (2800 + 3000) / 10000 = 58.0 % < 60 → fail; imbalance 600 / 3000 = 20.0 % ≤ 20 (new) → pass
    assert (v.check_named("axle_brake_rate").value, v.check_named("axle_brake_rate").outcome) == (58.0, "fail")
    assert (v.check_named("imbalance").value, v.check_named("imbalance").outcome) == (20.0, "pass")
    assert v.verdict == "fail"


def test_a_wheel_that_peaks_before_braking_starts_does_not_end_the_window():
    # threshold 250 N: index 5 (L 200, R 100) no; index 6: R 1000 > 250 → start 6
    # F_L,max = 200 first at 5, before the start: not an end; F_R,max = 3000 at 7 → window 6..7
    # diffs |100 − 1000| = 900, |100 − 3000| = 2900 → ΔF 2900; imbalance 2900 / 3000 = 96.66… → 96.7 %
    a = analyse_axle(axle((0, 200, 100, 100), (0, 100, 1000, 3000)), START_PCT)
    assert (a.braking_start_index, a.left_max_index, a.window_end_index) == (6, 5, 7)
    assert a.diff_n == 2900.0
    v = judge_axle(a, CAR, BRAKES.imbalance, None, False, drag_limits=BRAKES.drag)
    assert (v.check_named("imbalance").value, v.check_named("imbalance").outcome) == (96.7, "fail")


def test_braking_start_threshold_is_the_configured_share_of_the_wheel_load():
    # at 10 % of 5000 N the threshold is 500 N: index 5 (L 400, R 300) is not yet braking, index 6 is
    brakes = apply_overrides(LIMITS, {"brakes": {"braking_start": {"wheel_load_pct": 10}}}).brakes
    m = axle((0, 400, 1000, 3000), (0, 300, 900, 2800))
    assert analyse_axle(m, START_PCT).braking_start_index == 5
    assert analyse_axle(m, brakes.braking_start.wheel_load_pct.value).braking_start_index == 6


# ---------------------------------------------------------------- a wheel that never brakes
#
# Issue 15, point 4, worked by hand from standards.md ("Brakes on a roller tester").
# Both wheels 3000 N; RATE 4 Hz; the prompt is index 3 and the second before it (indices 0..3) is
# 50 N on both sides: drag_L = drag_R = 50 N. "Braking" threshold per wheel: 50 + 5 % × 3000 = 200 N,
# exceeded strictly. Axle load G = 6000 N.
#
# The working wheel (left) rises 145 N a sample from 195 N to 1500 N and holds:
#   index  4    5    6    7    8    9    10    11    12    13    14    15
#   F_L   195  340  485  630  775  920  1065  1210  1355  1500  1500  1500
# index 4: 195 ≤ 200; index 5: 340 > 200 → braking starts at 5, the left wheel brakes from there.
# F_L,max = 1500, first reached at 13.

DRAG = (50.0, 50.0, 50.0, 50.0)
WORKING = (195, 340, 485, 630, 775, 920, 1065, 1210, 1355, 1500, 1500, 1500)
FLAT = (50,) * 12
# the dead wheel: flat at its drag with one 10 N noise step at index 6, after braking started
DEAD = (50, 50, 60, 50, 50, 50, 50, 50, 50, 50, 50, 50)


def on_rollers(left, right, *, position="rear", slip_l=None, slip_r=None):
    return axle(left, right, loads=(3000.0, 3000.0), pre_l=DRAG, pre_r=DRAG, position=position,
                slip_l=slip_l, slip_r=slip_r)


def test_a_dead_rear_brake_fails_the_imbalance_over_the_working_wheels_whole_rise():
    # F_R,max = 60 (its noise step at 6) ≤ 200: the right wheel never brakes and ends nothing.
    # Window: braking start 5 … the left wheel's F_max at 13. |F_L − F_R| grows with F_L (the right
    # stays 50 except 60 at 6): largest at 13, |1500 − 50| = 1450 N = ΔF.
    # Axle rate (1500 + 60) / 6000 = 26.0 % → rear under 60 %: imbalance = ΔF / G = 1450 / 6000
    # = 24.166… → 24.2 %, over 10 % of axle load (in use). (The old code ended the window at the
    # dead wheel's noise peak, index 6: ΔF max(|340 − 50|, |485 − 60|) = 425 → 7.1 %, a pass.)
    m = on_rollers(WORKING, DEAD)
    a = analyse_axle(m, START_PCT)
    assert (a.left_braking, a.right_braking) == (True, False)
    assert (a.braking_start_index, a.window_start_index, a.window_end_index) == (5, 5, 13)
    assert (a.left_max_n, a.left_max_index, a.right_max_n, a.right_max_index) == (1500.0, 13, 60.0, 6)
    assert a.diff_n == 1450.0
    assert (a.diff_point.index, a.diff_point.left_n, a.diff_point.right_n) == (13, 1500, 50)
    v = judged(m)
    rate, imbalance = v.check_named("axle_brake_rate"), v.check_named("imbalance")
    assert (rate.value, rate.limit, rate.outcome) == (26.0, 20.0, "pass")
    assert (imbalance.value, imbalance.limit, imbalance.outcome) == (24.2, 10.0, "fail")
    assert imbalance.basis == "ΔF / axle load (rear axle, brake rate below the switch)"
    assert v.verdict == "fail"
    # new registration: 24.2 % > 8 % of axle load
    assert judged(m, new_registration=True).check_named("imbalance").outcome == "fail"


def test_a_dead_front_brake_is_judged_over_the_same_window():
    # Same curves on the front axle: window 5..13, ΔF 1450 N; front basis ΔF / max(F_L,max, F_R,max)
    # = 1450 / 1500 = 96.66… → 96.7 % > 24 % (the old window gave 425 / 1500 = 28.3 %).
    # Axle rate 26.0 % < 60 % (front) fails too.
    v = judged(on_rollers(WORKING, DEAD, position="front"))
    imbalance = v.check_named("imbalance")
    assert (imbalance.value, imbalance.limit, imbalance.outcome) == (96.7, 24.0, "fail")
    assert imbalance.basis == "ΔF / max(F_L,max, F_R,max)"
    assert (v.window_end_index, v.diff_index, v.diff_dan) == (13, 13, 145.0)
    assert v.check_named("axle_brake_rate").value == 26.0


@pytest.mark.parametrize(
    ("spike_n", "right_braking", "window_end", "diff_n", "rate_pct", "imbalance_pct", "outcome"),
    [
        # spike 200 N = drag + exactly 5 %: not exceeded, still a dead wheel; window 5..13, ΔF 1450
        # rate (1500 + 200) / 6000 = 28.33… → 28.3 %; imbalance 1450 / 6000 = 24.2 % → fail
        (200, False, 13, 1450.0, 28.3, 24.2, "fail"),
        # spike 201 N > 200: the right wheel braked at 6 and its F_max (201, at 6) ends the window:
        # window 5..6: |340 − 50| = 290, |485 − 201| = 284 → ΔF 290; rate 1701 / 6000 = 28.35 → 28.4 %;
        # imbalance 290 / 6000 = 4.83… → 4.8 % → pass (the standard's own threshold)
        (201, True, 6, 290.0, 28.4, 4.8, "pass"),
    ],
)
def test_a_noise_spike_makes_a_wheel_braking_only_when_it_exceeds_the_5_pct_threshold(
    spike_n, right_braking, window_end, diff_n, rate_pct, imbalance_pct, outcome
):
    right = (50, 50, spike_n, *(50,) * 9)
    m = on_rollers(WORKING, right)
    a = analyse_axle(m, START_PCT)
    assert (a.right_braking, a.window_end_index, a.diff_n) == (right_braking, window_end, diff_n)
    v = judged(m)
    assert v.check_named("axle_brake_rate").value == rate_pct
    imbalance = v.check_named("imbalance")
    assert (imbalance.value, imbalance.outcome) == (imbalance_pct, outcome)


def test_a_weak_wheel_that_brakes_late_ends_the_window_at_its_own_max():
    #   index  4   5   6   7   8   9   10   11   12   13   14   15
    #   F_R   50  50  50  50  50  50  150  300  450  450  450  450
    # the right wheel exceeds 200 at 11 (300): it brakes; F_R,max = 450 first at 12, before F_L,max at 13
    # → window 5..12. |F_L − F_R|: 5: 290, 6: 435, 7: 580, 8: 725, 9: 870, 10: 1065 − 150 = 915,
    # 11: 1210 − 300 = 910, 12: 1355 − 450 = 905 → ΔF = 915 at 10 (13's 1050 lies outside).
    # Rate (1500 + 450) / 6000 = 32.5 % < 60: imbalance 915 / 6000 = 15.25 → 15.3 % > 10 → fail.
    weak = (50, 50, 50, 50, 50, 50, 150, 300, 450, 450, 450, 450)
    a = analyse_axle(on_rollers(WORKING, weak), START_PCT)
    assert (a.left_braking, a.right_braking) == (True, True)
    assert (a.braking_start_index, a.right_max_index, a.window_end_index) == (5, 12, 12)
    assert (a.diff_n, a.diff_point.index) == (915.0, 10)
    v = judged(on_rollers(WORKING, weak))
    assert v.check_named("axle_brake_rate").value == 32.5
    assert (v.check_named("imbalance").value, v.check_named("imbalance").outcome) == (15.3, "fail")


def test_when_both_wheels_brake_the_window_ends_at_the_first_max():
    #   index  4    5    6    7    8    9    10    11    12    13    14    15
    #   F_R   190  330  470  610  750  890  1030  1170  1200  1200  1200  1100
    # both exceed 200 at 5 (340, 330) → start 5; F_R,max 1200 first at 12, F_L,max at 13 → window 5..12.
    # F_L − F_R: 5: 10, 6: 15, 7: 20, 8: 25, 9: 30, 10: 35, 11: 40, 12: 1355 − 1200 = 155 → ΔF 155 at 12
    # (13's 300 and 15's 400 lie outside). Rate (1500 + 1200) / 6000 = 45.0 % < 60:
    # imbalance 155 / 6000 = 2.58… → 2.6 % → pass.
    right = (190, 330, 470, 610, 750, 890, 1030, 1170, 1200, 1200, 1200, 1100)
    a = analyse_axle(on_rollers(WORKING, right), START_PCT)
    assert (a.braking_start_index, a.window_end_index, a.diff_n, a.diff_point.index) == (5, 12, 155.0, 12)
    v = judged(on_rollers(WORKING, right))
    assert (v.check_named("axle_brake_rate").value, v.check_named("imbalance").value) == (45.0, 2.6)
    assert v.verdict == "pass"


def test_when_neither_wheel_brakes_the_window_is_the_whole_braking_phase():
    # left 70 at 7, right 40 at 10 and 65 at 15, otherwise 50: nothing exceeds 200 → no braking start;
    # window = every sample after the prompt, 4..15: |F_L − F_R| 20 at 7, 10 at 10, 15 at 15 → ΔF 20 at 7.
    left = (50, 50, 50, 70, 50, 50, 50, 50, 50, 50, 50, 50)
    right = (50, 50, 50, 50, 50, 50, 40, 50, 50, 50, 50, 65)
    a = analyse_axle(on_rollers(left, right), START_PCT)
    assert (a.left_braking, a.right_braking, a.braking_start_index) == (False, False, None)
    assert (a.window_start_index, a.window_end_index, a.diff_n, a.diff_point.index) == (4, 15, 20.0, 7)
    # rear: rate (70 + 65) / 6000 = 2.25 → 2.3 % < 20 → fail; imbalance 20 / 6000 = 0.33… → 0.3 %
    v = judged(on_rollers(left, right))
    assert (v.check_named("axle_brake_rate").value, v.check_named("axle_brake_rate").outcome) == (2.3, "fail")
    imbalance = v.check_named("imbalance")
    assert (imbalance.value, imbalance.outcome) == (0.3, "pass")
    assert imbalance.note == "neither wheel braked: window is the whole braking phase"
    assert v.braking_start_index is None and v.verdict == "fail"
    # front: 20 / max(70, 65) = 28.57… → 28.6 % > 24 % → fail
    assert judged(on_rollers(left, right, position="front")).check_named("imbalance").value == 28.6


def test_a_slip_latched_on_a_dead_wheel_ends_nothing():
    # the right (dead) wheel's slip input latched at 6 (offset 2): it never braked, so the window still
    # runs 5..13 and ΔF = 1450 → 24.2 % (the old code ended it at the slip: 425 → 7.1 %)
    a = analyse_axle(on_rollers(WORKING, DEAD, slip_r=2), START_PCT)
    assert (a.window_end_index, a.diff_n) == (13, 1450.0)
    assert judged(on_rollers(WORKING, DEAD, slip_r=2)).check_named("imbalance").value == 24.2


def test_a_braking_wheel_that_locks_ends_the_window_at_lock_up_against_a_dead_wheel():
    # the left wheel locks at 11 (offset 7, 1210 N): F_L,max = 1210 at 11 (later samples do not count);
    # window 5..11, ΔF = 1210 − 50 = 1160 at 11; rate (1210 + 60) / 6000 = 21.16… → 21.2 % ≥ 20;
    # imbalance 1160 / 6000 = 19.33… → 19.3 % > 10 → fail
    m = on_rollers(WORKING, DEAD, slip_l=7)
    a = analyse_axle(m, START_PCT)
    assert (a.left_max_n, a.left_max_index, a.window_end_index, a.diff_n) == (1210.0, 11, 11, 1160.0)
    v = judged(m)
    assert (v.check_named("axle_brake_rate").value, v.check_named("axle_brake_rate").outcome) == (21.2, "pass")
    assert (v.check_named("imbalance").value, v.check_named("imbalance").outcome) == (19.3, "fail")


# ---------------------------------------------------------------- axle brake rate


@pytest.mark.parametrize(
    ("loads", "left_n", "right_n", "rate_pct", "outcome"),
    [
        ((5000.0, 5000.0), 3000, 3000, 60.0, "pass"),  # 6000 / 10000 = 60.0 % meets ≥ 60 %
        ((5000.0, 5000.0), 3000, 2995, 60.0, "pass"),  # 5995 / 10000 = 59.95 → 60.0 %
        ((5000.0, 5000.0), 3000, 2994, 59.9, "fail"),  # 5994 / 10000 = 59.94 → 59.9 %
        ((4500.0, 4326.0), 3050, 2950, 68.0, "pass"),  # 6000 / 8826 = 67.98… → 68.0 %
    ],
)
def test_front_axle_brake_rate_is_rounded_to_0_1_before_the_inclusive_limit(loads, left_n, right_n, rate_pct, outcome):
    rate = judged(axle((0, left_n), (0, right_n), loads=loads)).check_named("axle_brake_rate")
    assert (rate.value, rate.limit, rate.comparison, rate.outcome) == (rate_pct, 60.0, ">=", outcome)
    assert rate.certainty == "firm"


@pytest.mark.parametrize(
    ("vehicle_class", "mass_kg", "rate_pct", "limit", "outcome"),
    [
        # rear axle 5000 / 5000 N, forces 1100 + 1000: 2100 / 10000 = 21.0 %
        ("passenger_car", 1750, 21.0, 20.0, "pass"),
        ("bus", 12000, 21.0, 40.0, "fail"),
        ("truck", 25000, 21.0, 50.0, "fail"),
        ("trailer", 30000, 21.0, 55.0, "fail"),
        ("articulated_bus", 28000, 21.0, None, "not_judged"),  # "—"
    ],
)
def test_rear_axle_rate_is_judged_by_the_row_of_the_vehicle(vehicle_class, mass_kg, rate_pct, limit, outcome):
    row = select_brake_row(LIMITS, vehicle_class, mass_kg).row
    rate = judged(axle((0, 1100), (0, 1000), position="rear"), row=row).check_named("axle_brake_rate")
    assert (rate.value, rate.limit, rate.outcome) == (rate_pct, limit, outcome)


# ---------------------------------------------------------------- imbalance


@pytest.mark.parametrize(
    ("left_n", "right_n", "new_registration", "rate_pct", "imbalance_pct", "limit", "outcome"),
    [
        # both reach their max at index 7; diffs 100, 200, then L − R at 7
        # (3300 + 2695) / 10000 = 59.95 → 60.0 ≥ 60: ΔF / max = 605 / 3300 = 18.33… → 18.3 ≤ 30
        (3300, 2695, False, 60.0, 18.3, 30.0, "pass"),
        # (3300 + 2694) / 10000 = 59.94 → 59.9 < 60: ΔF / G = 606 / 10000 = 6.06 → 6.1 ≤ 10
        (3300, 2694, False, 59.9, 6.1, 10.0, "pass"),
        # (3300 + 2450) / 10000 = 57.5 < 60: ΔF / G = 850 / 10000 = 8.5 > 8 (new registration)
        (3300, 2450, True, 57.5, 8.5, 8.0, "fail"),
        (3300, 2450, False, 57.5, 8.5, 10.0, "pass"),  # in use: ≤ 10 % of axle load
        # (3700 + 2300) / 10000 = 60.0 ≥ 60: ΔF / max = 1400 / 3700 = 37.83… → 37.8 > 30
        (3700, 2300, False, 60.0, 37.8, 30.0, "fail"),
        (3700, 2300, True, 60.0, 37.8, 24.0, "fail"),
    ],
)
def test_rear_axle_imbalance_switches_basis_at_a_rounded_60_pct_rate(
    left_n, right_n, new_registration, rate_pct, imbalance_pct, limit, outcome
):
    m = axle((0, 1000, 2000, left_n), (0, 900, 1800, right_n), position="rear")
    v = judged(m, new_registration=new_registration)
    assert v.check_named("axle_brake_rate").value == rate_pct
    imbalance = v.check_named("imbalance")
    assert (imbalance.value, imbalance.limit, imbalance.outcome) == (imbalance_pct, limit, outcome)


@pytest.mark.parametrize(
    ("new_registration", "limit", "outcome", "certainty"),
    [(True, 20.0, "fail", "firm"), (False, 24.0, "pass", "vendor")],
)
def test_front_axle_imbalance_limit_depends_on_new_registration(new_registration, limit, outcome, certainty):
    # ΔF = 3000 − 2340 = 660; 660 / max(3000, 2340) = 22.0 %
    imbalance = judged(axle((0, 3000), (0, 2340)), new_registration=new_registration).check_named("imbalance")
    assert (imbalance.value, imbalance.limit, imbalance.outcome) == (22.0, limit, outcome)
    assert imbalance.certainty == certainty


# ---------------------------------------------------------------- drag


@pytest.mark.parametrize(
    ("divisor", "left_pct", "left_outcome", "right_pct"),
    [
        # drag L = (400 + 410 + 430 + 440) / 4 = 420 N, R = 100 N; wheel loads 4000 / 6000 N
        ("wheel", 10.5, "fail", 1.7),  # 420 / 4000 = 10.5 % > 10; 100 / 6000 = 1.666… → 1.7 %
        ("axle", 4.2, "pass", 1.0),  # 420 / 10000 = 4.2 %; 100 / 10000 = 1.0 %
    ],
)
def test_drag_rate_per_wheel_uses_the_configured_divisor(divisor, left_pct, left_outcome, right_pct):
    brakes = apply_overrides(LIMITS, {"brakes": {"drag": {"divisor": divisor}}}).brakes
    m = axle((440, 3000), (100, 3000), loads=(4000.0, 6000.0), pre_l=(400, 410, 430, 440), pre_r=(100,) * 4)
    v = judged(m, brakes=brakes)
    left, right = v.check_named("drag_rate_left"), v.check_named("drag_rate_right")
    assert (left.value, left.limit, left.outcome) == (left_pct, 10.0, left_outcome)
    assert (right.value, right.outcome) == (right_pct, "pass")
    assert (v.left_drag_dan, v.right_drag_dan) == (42.0, 10.0)


# ---------------------------------------------------------------- whole vehicle, parking


def _two_axles(rear_l, rear_r):
    front = axle((0, 3050), (0, 2950), loads=(4500.0, 4326.0))
    rear = axle((0, rear_l), (0, rear_r), loads=(3000.0, 3000.0), position="rear", axle_no=2)
    return [analyse_axle(front, START_PCT), analyse_axle(rear, START_PCT)]


@pytest.mark.parametrize(
    ("rear_l", "rear_r", "rate_pct", "outcome"),
    [
        (900, 800, 51.9, "fail"),  # (6000 + 1700) / (8826 + 6000) = 7700 / 14826 = 51.93… → 51.9 %
        (1500, 1400, 60.0, "pass"),  # 8900 / 14826 = 60.029… → 60.0 %
    ],
)
def test_whole_vehicle_rate_sums_forces_over_summed_axle_loads(rear_l, rear_r, rate_pct, outcome):
    v = judge_vehicle(_two_axles(rear_l, rear_r), CAR)
    assert (v.check.value, v.check.limit, v.verdict) == (rate_pct, 60.0, outcome)
    assert v.load_kg == 1512  # 14826 / 9.80665 = 1511.83… → 1512 kg


@pytest.mark.parametrize(
    ("total_mass_kg", "exact_case", "limit", "outcome"),
    [
        # curb 1000 kg → 1.2 × 1000 = 1200 kg; rate 3000 / 20000 = 15.0 %
        (1199, "standard", 15.0, "pass"),  # 1199 < 1200 → reduced limit 15 %
        (1200, "standard", 20.0, "fail"),  # exactly 1.2 ×: vendor default, the 20 % case
        (1200, "reduced", 15.0, "pass"),  # the setting puts exactly 1.2 × with 15 %
        (1201, "reduced", 20.0, "fail"),
    ],
)
def test_parking_brake_limit_follows_the_1_2_times_curb_mass_rule(total_mass_kg, exact_case, limit, outcome):
    parking = apply_overrides(LIMITS, {"brakes": {"parking": {"exact_ratio_case": exact_case}}}).brakes.parking
    park = analyse_axle(axle((0, 1700), (0, 1300), position="rear", parking=True, axle_no=2), START_PCT)
    v = judge_parking([park], [10000.0, 10000.0], parking, total_mass_kg, 1000)
    assert (v.check.value, v.check.limit, v.verdict) == (15.0, limit, outcome)
    assert v.force_dan == 300.0


def test_parking_rate_divides_by_all_axles_not_only_the_parking_axle():
    # 4000 / (10000 + 10000) = 20.0 % (not 4000 / 10000 = 40 %), meets ≥ 20 %
    park = analyse_axle(axle((0, 2000), (0, 2000), position="rear", parking=True, axle_no=2), START_PCT)
    v = judge_parking([park], [10000.0, 10000.0], BRAKES.parking, 1750, 1320)
    assert (v.check.value, v.check.limit, v.verdict) == (20.0, 20.0, "pass")


def test_parking_refuses_an_axle_without_the_parking_brake():
    a = analyse_axle(axle((0, 2000), (0, 2000), axle_no=1), START_PCT)
    with pytest.raises(ValueError, match="axle 1 does not carry the parking brake"):
        judge_parking([a], [10000.0], BRAKES.parking, 1750, 1320)


# ---------------------------------------------------------------- whole item


def _car_axles():
    # front: start 250 N → index 5; window 5..7, diffs 50, 100, 100 → ΔF 100
    front = axle((0, 1000, 2000, 3050), (0, 950, 1900, 2950), loads=(4500.0, 4326.0))
    # rear: start 150 N → index 5; window 5..6, diffs 100, 100 → ΔF 100
    rear = axle((0, 1000, 1500), (0, 900, 1400), loads=(3000.0, 3000.0), position="rear", axle_no=2)
    park = replace(
        axle((0, 800, 1600), (0, 700, 1500), loads=(3000.0, 3000.0), position="rear", axle_no=2), parking_brake=True
    )
    return front, rear, park


def test_judge_brakes_reports_each_axle_the_vehicle_and_parking_in_dan_kg_and_pct():
    front, rear, park = _car_axles()
    v = judge_brakes(
        [front, rear],
        [park],
        BRAKES,
        vehicle_class="passenger_car",
        total_mass_kg=1750,
        curb_mass_kg=1320,
        new_registration=False,
    )
    assert v.row == "passenger_car"
    a1, a2 = v.axles
    assert (a1.item_code, a1.left_max_dan, a1.right_max_dan) == ("B1", 305.0, 295.0)
    # 4500 / 9.80665 = 458.87 → 459 kg; 4326 / 9.80665 = 441.13 → 441 kg; 8826 → 900 kg
    assert (a1.left_wheel_load_kg, a1.right_wheel_load_kg, a1.axle_load_kg) == (459, 441, 900)
    # front: 6000 / 8826 = 67.98 → 68.0 %; imbalance 100 / 3050 = 3.27… → 3.3 %
    assert [c.value for c in a1.checks] == [68.0, 3.3, 0.0, 0.0]
    # rear: 2900 / 6000 = 48.33 → 48.3 % (< 60: ΔF / G = 100 / 6000 = 1.66… → 1.7 %)
    assert [c.value for c in a2.checks] == [48.3, 1.7, 0.0, 0.0]
    assert a2.check_named("imbalance").basis.startswith("ΔF / axle load")
    # vehicle: (6000 + 2900) / 14826 = 60.03 → 60.0 %; parking 3100 / 14826 = 20.90… → 20.9 %
    # (1750 kg ≥ 1.2 × 1320 = 1584 kg → the 20 % limit)
    assert v.vehicle.check.value == 60.0
    assert (v.parking.check.value, v.parking.check.limit) == (20.9, 20.0)
    assert v.verdict == "pass"


def test_an_axle_not_tested_on_rollers_is_reported_with_its_reason_and_voids_the_sums():
    front, _, park = _car_axles()
    skipped = NotTested("B2", "full-time four-wheel drive: road test")
    v = judge_brakes(
        [front, skipped],
        [park],
        BRAKES,
        vehicle_class="passenger_car",
        total_mass_kg=1750,
        curb_mass_kg=1320,
        new_registration=False,
    )
    assert v.axles[1] == skipped
    assert v.vehicle.verdict == "not_tested"
    assert "full-time four-wheel drive" in v.vehicle.reason
    assert v.parking.verdict == "not_tested"
    assert v.verdict == "pass"  # the tested front axle passes; nothing failed


def test_overridden_limits_are_marked_in_the_check():
    brakes = apply_overrides(LIMITS, {"brakes": {"rows": {"passenger_car": {"front_axle_min_pct": 70}}}}).brakes
    row = select_brake_row(brakes, "passenger_car", 1750).row
    rate = judged(axle((0, 3050), (0, 2950), loads=(4500.0, 4326.0)), row=row).check_named("axle_brake_rate")
    assert (rate.value, rate.limit, rate.outcome, rate.source) == (68.0, 70.0, "fail", "override")


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pre_l": (0, 0, 0), "pre_r": (0, 0, 0)}, "less than one second"),
        ({"slip_l": -1}, "left slip at sample 3 is not between the prompt"),
    ],
)
def test_measurements_that_break_the_procedure_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        axle((0, 1000), (0, 1000), **kwargs)


def test_curves_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="axle 1: left and right force curves differ in length"):
        axle((0, 1000, 2000), (0, 1000))
