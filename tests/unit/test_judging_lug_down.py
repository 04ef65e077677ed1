"""Lug-down judging (GB 3847-2018 App. B), cases worked out by hand from standards.md."""

from __future__ import annotations

from decimal import Decimal

import pytest

from laned.judging.limits import load_limits
from laned.judging.lug_down import (
    LugDownPoint,
    LugDownScan,
    LugEvent,
    PointResult,
    PointSecond,
    ScanSecond,
    ScanStart,
    judge_lug_down,
    point_targets,
    power_pct,
)
from laned.settings.lug_down import LugDownSettings

LIMITS = load_limits()
LUG = LIMITS.emissions.lug_down  # set b: K 0.7 m⁻¹, NOx 900 ppm; set a: 1.2 / 1500; min power 40 %
S = LugDownSettings()


# ---------------------------------------------------------------- scan start


def feed_start(speeds, settings=S):
    start = ScanStart(settings)
    return [start.feed(v) for v in speeds]


def test_the_scan_starts_after_three_steady_seconds_in_range():
    # 35 km/h is below 40; then 60.0, 60.3, 60.5: max − min = 0.5 ≤ 0.5 → start at the 4th second
    steps = feed_start([35.0, 60.0, 60.3, 60.5])
    assert [s.event for s in steps] == [LugEvent.WAITING] * 3 + [LugEvent.START]
    # 60.0, 60.6, 60.6: 0.6 apart, not yet; 60.6, 60.6, 60.3 are
    steps = feed_start([60.0, 60.6, 60.6, 60.3])
    assert [s.event for s in steps][-2:] == [LugEvent.WAITING, LugEvent.START]


def test_the_start_range_is_inclusive():
    assert feed_start([40.0, 40.0, 40.0])[-1].event is LugEvent.START
    assert feed_start([39.99, 40.0, 40.0])[-1].event is LugEvent.WAITING
    assert feed_start([100.0, 100.0, 100.0])[-1].event is LugEvent.START


def test_sixty_seconds_outside_the_start_range_is_the_wrong_gear():
    steps = feed_start([105.0] * 60)
    assert [s.event for s in steps[:59]] == [LugEvent.WAITING] * 59
    assert steps[-1].event is LugEvent.VOID and "wrong gear" in steps[-1].reason


def test_no_start_within_120_s_is_the_wrong_gear():
    # in range but never steady (61 / 62 alternate: 1 km/h apart), and never 60 s outside
    steps = feed_start([61.0, 62.0] * 60)
    assert steps[-2].event is LugEvent.WAITING and steps[-1].event is LugEvent.VOID
    assert "120 s" in steps[-1].reason


# ---------------------------------------------------------------- power scan


def scan_seconds(powers, speeds=None):
    """Scan seconds at 90, 88, 86 … km/h (or `speeds`), RPM 25 × speed."""
    speeds = speeds or [90.0 - 2 * i for i in range(len(powers))]
    return [ScanSecond(speed_kmh=v, power_kw=p, rpm=25 * v) for v, p in zip(speeds, powers, strict=True)]


# s1 … s5 at 90, 88, 86, 84, 82 km/h: 80, 85, 88.5, 90, 90 kW (a tie at the maximum: s4 wins);
# then 88, 86 … down to s15. 0.75 × VelMaxHP 84 = 63.0 km/h: s14 at 64 goes on, s15 at exactly 63.0 ends.
TIE_POWERS = [80.0, 85.0, 88.5, 90.0, 90.0] + [90.0 - 2 * (n - 5) for n in range(6, 16)]
TIE_SPEEDS = [90.0 - 2 * i for i in range(14)] + [63.0]


def run_scan(seconds, settings=S):
    scan = LugDownScan(settings)
    return scan, [scan.feed(s) for s in seconds]


def test_a_tie_at_the_maximum_goes_to_the_earlier_second_and_the_scan_ends_at_three_quarters():
    scan, steps = run_scan(scan_seconds(TIE_POWERS, TIE_SPEEDS))
    assert [s.event for s in steps] == [LugEvent.SCANNING] * 14 + [LugEvent.END]
    r = scan.result
    assert r is not None
    assert (r.pmax_kw, r.vel_max_hp_kmh, r.max_rpm, r.max_second) == (Decimal(90), Decimal(84), Decimal(2100), 4)
    assert (r.seconds, r.end_speed_kmh) == (15, Decimal(63))
    # calculated VelMaxHP = n_rated × Σv / ΣRPM = 2200 × (1 / 25) = 88.0 km/h (the end second counts)
    assert r.calculated_vel_max_hp_kmh(2200) == 88


def test_the_end_rule_uses_velmaxhp_as_known_at_that_second():
    # the maximum moves to s4 (80 km/h, 100 kW) after s3 (84 km/h); 62 km/h at s5 is ≤ 0.75 × 84 = 63 but
    # > 0.75 × 80 = 60, so the scan goes on to 59.9 km/h at s6
    speeds = [88.0, 86.0, 84.0, 80.0, 62.0, 59.9]
    scan, steps = run_scan(scan_seconds([90.0, 95.0, 96.0, 100.0, 70.0, 60.0], speeds))
    assert [s.event for s in steps] == [LugEvent.SCANNING] * 5 + [LugEvent.END]
    assert scan.result is not None and scan.result.vel_max_hp_kmh == 80


@pytest.mark.parametrize(("max_second", "event"), [(2, LugEvent.VOID), (3, LugEvent.END)])
def test_a_maximum_in_scan_second_1_or_2_voids(max_second, event):
    powers = [100.0 if n == max_second else 80.0 - n for n in range(1, 16)]
    # 90, 89.5 … 83.5 km/h stay above 0.75 × 89.5 (or × 89); 60 km/h at s15 ends the scan
    speeds = [90.0 - 0.5 * i for i in range(14)] + [60.0]
    scan, steps = run_scan(scan_seconds(powers, speeds))
    assert steps[-1].event is event
    if event is LugEvent.VOID:
        assert "scan second 2" in steps[-1].reason and scan.result is None


def test_the_scan_is_void_at_its_61st_second():
    # power rising all the way: VelMaxHP follows the speed and the end never comes
    seconds = [ScanSecond(speed_kmh=90.0 - 0.1 * i, power_kw=50.0 + i, rpm=2000) for i in range(61)]
    _, steps = run_scan(seconds)
    assert steps[59].event is LugEvent.SCANNING and steps[60].event is LugEvent.VOID
    assert "60 s" in steps[60].reason


# ---------------------------------------------------------------- points


@pytest.mark.parametrize(
    ("vel_max_hp", "t100", "t80"),
    [
        ("84.0", "84.00", "67.20"),
        # 83.30625 → 83.31; × 0.80 = 66.645 exactly → 66.65 (half away from zero)
        ("83.30625", "83.31", "66.65"),
        # 87.0625 → 87.06; × 0.8 = 69.65 exactly
        ("87.0625", "87.06", "69.65"),
    ],
)
def test_point_targets_are_rounded_half_away_to_0_01(vel_max_hp, t100, t80):
    assert point_targets(Decimal(vel_max_hp)) == (Decimal(t100), Decimal(t80))


def psec(speed, *, k=0.5, n=19.4, nox=800.0, co2=8.0, power=70.0, rpm=2000.0):
    return PointSecond(speed_kmh=speed, power_kw=power, k_m1=k, opacity_pct=n, nox_ppm=nox, co2_pct=co2, rpm=rpm)


def test_a_point_settles_three_seconds_then_measures_three():
    point = LugDownPoint("100", Decimal("84.00"), S)
    # 86.0 is moving (> ± 1.0); 85.0, 84.2, 83.9 settle (85.0 is on the edge: stable); then the window
    seconds = [psec(86.0), psec(85.0), psec(84.2), psec(83.9),
               psec(84.1, k=0.40, nox=700), psec(83.0, k=0.50, nox=800), psec(84.0, k=0.66, nox=901)]
    steps = [point.feed(s) for s in seconds]
    assert [s.event for s in steps] == [LugEvent.SETTLING] * 4 + [LugEvent.MEASURING] * 2 + [LugEvent.DONE]
    r = point.result
    assert r is not None and r.window == (5, 7)
    # K (0.40 + 0.50 + 0.66) / 3 = 0.52; NOx (700 + 800 + 901) / 3 = 800.333…; speed (84.1 + 83 + 84) / 3 = 83.7
    assert r.k_m1 == Decimal("0.52") and r.speed_kmh == Decimal("83.7") and round(r.nox_ppm, 3) == Decimal("800.333")


def test_an_unstable_second_in_the_window_restarts_the_settling():
    point = LugDownPoint("80", Decimal("67.20"), S)
    first = [psec(67.2)] * 4 + [psec(68.21)]  # settled, one window second, then 1.01 km/h off
    steps = [point.feed(s) for s in first]
    assert steps[-1].event is LugEvent.SETTLING and not steps[-1].stable
    again = [point.feed(psec(67.2)) for _ in range(6)]
    assert [s.event for s in again] == [LugEvent.SETTLING] * 3 + [LugEvent.MEASURING] * 2 + [LugEvent.DONE]
    assert point.result is not None and point.result.window == (9, 11)


def test_a_point_not_complete_within_30_s_of_its_target_is_void():
    point = LugDownPoint("100", Decimal("84.00"), S)
    steps = [point.feed(psec(80.0)) for _ in range(30)]
    assert steps[28].event is LugEvent.SETTLING and steps[29].event is LugEvent.VOID
    assert "30 s" in steps[29].reason


@pytest.mark.parametrize(("missing", "lost"), [(3, False), (4, True)])
def test_rpm_lost_is_more_than_three_consecutive_seconds_without_a_signal(missing, lost):
    point = LugDownPoint("100", Decimal("84.00"), S)
    seconds = [psec(90.0, rpm=None)] * 5  # moving to the point: not counted
    seconds += [psec(84.0, rpm=None)] * missing + [psec(84.0)] * (6 - missing)
    for s in seconds:
        point.feed(s)
    assert point.result is not None and point.result.rpm_lost is lost
    assert point.result.rpm == 2000  # the mean of the seconds that had a signal


# ---------------------------------------------------------------- verdict


def the_scan():
    scan, _ = run_scan(scan_seconds(TIE_POWERS, TIE_SPEEDS))
    assert scan.result is not None
    return scan.result


def point(name, target, ks, noxes=(800.0, 800.0, 800.0)):
    p = LugDownPoint(name, Decimal(target), S)
    for s in [psec(float(target))] * 3 + [psec(float(target), k=k, nox=x) for k, x in zip(ks, noxes, strict=True)]:
        p.feed(s)
    assert p.result is not None
    return p.result


def judge(scan=None, points=None, **kw):
    kw.setdefault("rated_power_kw", 200)
    kw.setdefault("rated_rpm", 2200)
    if points is None:
        points = [point("100", "84.00", [0.5] * 3), point("80", "67.20", [0.6] * 3)]
    return judge_lug_down(the_scan() if scan is None else scan, points, LUG, S, **kw)


def test_a_passing_lug_down_reports_its_values():
    v = judge(idle_rpm=650)
    assert v.verdict == "pass" and v.void_reasons == () and v.flags == ()
    # Pmax 90 kW × PF 1 = 90 kW; 90 / 200 = 45.0 % ≥ 40 %; K100 0.50, K80 0.60 ≤ 0.7; NOx80 800 ≤ 900
    assert [(c.item, c.value, c.outcome) for c in v.checks] == [
        ("lug_down_power", 45.0, "pass"), ("lug_down_k100", 0.5, "pass"),
        ("lug_down_k80", 0.6, "pass"), ("lug_down_nox80", 800.0, "pass")]
    assert (v.pmax_kw, v.corrected_pmax_kw, v.pf, v.power_pct) == (90, 90, 1, Decimal("45.0"))
    assert (v.vel_max_hp_kmh, v.calculated_vel_max_hp_kmh, v.max_rpm, v.idle_rpm) == (84, 88, 2100, 650)


@pytest.mark.parametrize(
    ("ks", "k80", "passed"),
    [
        # exact mean (1.20 + 1.21 + 1.204999) / 3 = 1.204999666… → 1.20 ≤ 1.20 (set a)
        ([1.20, 1.21, 1.204999], "1.20", True),
        # (1.20 + 1.21 + 1.205) / 3 = 1.205 exactly → 1.21 > 1.20
        ([1.20, 1.21, 1.205], "1.21", False),
    ],
)
def test_k80_is_rounded_half_away_before_the_limit(ks, k80, passed):
    v = judge(points=[point("100", "84.00", [0.5] * 3), point("80", "67.20", ks)], limit_set="a")
    assert v.k80_m1 == Decimal(k80)
    assert v.verdict == ("pass" if passed else "fail")


def test_nox80_is_rounded_to_1_ppm_before_the_limit():
    # (900 + 900 + 901.5) / 3 = 900.5 → 901 > 900 (set b)
    v = judge(points=[point("100", "84.00", [0.5] * 3), point("80", "67.20", [0.5] * 3, (900.0, 900.0, 901.5))])
    assert v.nox80_ppm == 901 and v.verdict == "fail"


@pytest.mark.parametrize(
    ("pmax", "pct", "passed"),
    [
        (79.9, "40.0", True),  # 79.9 / 200 = 39.95 % exactly → 40.0 ≥ 40
        (79.89, "39.9", False),  # 39.945 % → 39.9 < 40
    ],
)
def test_the_power_percentage_is_rounded_to_0_1_before_the_limit(pmax, pct, passed):
    assert power_pct(pmax, 200) == Decimal(pct)
    powers = [p * pmax / 90 for p in TIE_POWERS]
    scan, _ = run_scan(scan_seconds([70.0, 75.0, 78.0, pmax, pmax, *powers[5:]], TIE_SPEEDS))
    assert scan.result is not None
    v = judge(scan=scan.result)
    assert v.checks[0].item == "lug_down_power" and v.checks[0].passed is passed
    assert v.verdict == ("pass" if passed else "fail")


def test_void_outranks_a_failed_power_check():
    low = [p / 3 for p in TIE_POWERS]  # Pmax 30 kW: 15.0 % of 200 kW, fails
    scan, _ = run_scan(scan_seconds(low, TIE_SPEEDS))
    assert scan.result is not None
    v = judge(scan=scan.result, points=[point("100", "84.00", [0.5] * 3)],
              void_reasons=["the 80 point (67.20 km/h) was not complete 30 s after its target was set"])
    assert v.verdict == "void" and not v.checks[0].passed
    assert v.void_reasons == ("the 80 point (67.20 km/h) was not complete 30 s after its target was set",)


def test_a_test_void_before_the_scan_has_no_values():
    v = judge_lug_down(None, [], LUG, S, rated_power_kw=200, rated_rpm=2200, void_reasons=["wrong gear"])
    assert v.verdict == "void" and v.checks == () and v.pmax_kw is None
    with pytest.raises(ValueError, match="both points"):
        judge(points=[point("100", "84.00", [0.5] * 3)])


@pytest.mark.parametrize(("action", "verdict", "flagged"), [("flag", "pass", True), ("void", "void", False),
                                                            ("off", "pass", False)])
def test_max_rpm_far_from_rated_is_flagged_voided_or_ignored(action, verdict, flagged):
    # MaxRPM 2100 vs rated 2400: 300 / 2400 = 12.5 % > 10 %
    settings = S.model_copy(update={"rpm_check": action})
    points = [point("100", "84.00", [0.5] * 3), point("80", "67.20", [0.6] * 3)]
    v = judge_lug_down(the_scan(), points, LUG, settings, rated_power_kw=200, rated_rpm=2400)
    assert v.verdict == verdict
    assert bool(v.flags) is flagged
    if flagged:
        assert "12.5 % from the rated 2400 r/min" in v.flags[0]


def test_max_rpm_within_ten_percent_is_not_flagged():
    # 2100 vs 2310: 210 / 2310 = 9.09 %
    assert judge(rated_rpm=2310).flags == ()


def test_the_standard_timings_of_the_lug_down_settings():
    timings = {t.key: (t.value, t.standard_min) for t in S.standard_timings("inspection.lug_down.")}
    assert timings == {"inspection.lug_down.settle_s": (3, 3), "inspection.lug_down.measure_s": (3, 3)}
    assert [t.key for t in LugDownSettings(measure_s=1).standard_timings() if t.shortened] == ["measure_s"]


def test_point_result_type_is_reported_exact():
    r = point("80", "67.20", [0.6] * 3)
    assert isinstance(r, PointResult) and r.target_kmh == Decimal("67.20")
