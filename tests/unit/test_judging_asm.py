"""ASM judging (GB 18285-2018 App. B), cases worked out by hand from standards.md.

Most phase cases use gases whose dilution factor is exactly 1 so that the means can be
read off the table: with X = CO2 / (CO2 + CO), DF = 100 / ((a + 1.88·X) · (CO2 + CO)); for
CO 0.1 %, CO2 9.9 %: X = 0.99, 1.88·X = 1.8612, and a fuel factor a = 8.1388 makes
a + 1.88·X = 10, so DF = 100 / (10 · 10) = 1. kH is passed as 1. The corrections
themselves are pinned separately, with the real gasoline factor 4.644.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from laned.judging.asm import (
    AsmEvent,
    AsmPhase,
    AsmSecond,
    asm_loads,
    dilution_factor,
    humidity_h,
    judge_asm,
    kh,
    kh_of_ambient,
    needs_asm2540,
    phase_checks,
    saturation_pressure_kpa,
)
from laned.judging.limits import apply_overrides, load_limits
from laned.settings.asm import AsmSettings

LIMITS = load_limits()
ASM = LIMITS.emissions.asm
B5025 = ASM.phase("ASM5025", "b")  # CO 0.35 %, HC 47 ppm, NO 420 ppm
B2540 = ASM.phase("ASM2540", "b")  # CO 0.30 %, HC 44 ppm, NO 390 ppm
DF1 = AsmSettings(fuel_factor_gasoline=8.1388)  # DF = 1 for CO 0.1 %, CO2 9.9 % (see the module docstring)
FORCE_N = 1000  # FORCE_TARGET in these cases: ± 5 % is 950 … 1050 N


def q(value: Decimal | None, places: str) -> Decimal:
    assert value is not None
    return value.quantize(Decimal(places))


# ---------------------------------------------------------------- per-second corrections


def test_dilution_factor_by_hand_for_gasoline():
    # CO2 14.8 %, CO 0.2 %, a 4.644: X = 14.8 / 15 = 0.9866667; 1.88·X = 1.8549333; a + 1.88·X = 6.4989333
    # CO2x = 0.9866667 / 6.4989333 · 100 = 15.181982; DF = 15.181982 / 14.8 = 1.025809
    assert q(dilution_factor(14.8, 0.2, 4.644), "0.000001") == Decimal("1.025809")
    # CO2 14.5 %, CO 0.5 %: X = 0.9666667; a + 1.88·X = 6.4613333; CO2x = 14.960793; DF = 14.960793 / 14.5 = 1.031779
    assert q(dilution_factor(14.5, 0.5, 4.644), "0.000001") == Decimal("1.031779")


def test_dilution_factor_is_exact_where_the_arithmetic_is():
    # the docstring's case: 100 / (10 · 10) = 1 exactly, not 0.99999…
    assert dilution_factor(9.9, 0.1, 8.1388) == 1


def test_dilution_factor_without_co2_is_undefined():
    with pytest.raises(ValueError, match="CO2"):
        dilution_factor(0, 0.5, 4.644)


def test_kh_reproduces_the_vendor_check_at_3_8_c():
    # standards.md: 3.8 °C, 14.9 %, 96.2 kPa gives kH 0.7536 (Nanhua recorded 0.75)
    # Pd = 0.61078 · exp(17.27 · 3.8 / 241.1) = 0.61078 · exp(0.2721941) = 0.61078 · 1.3128413 = 0.8018576
    # H = 6.211 · 14.9 · 0.8018576 / (96.2 − 0.8018576 · 0.149) = 74.206 / 96.080524 = 0.7723420
    # kH = 1 / (1 − 0.0329 · (0.7723420 − 10.71)) = 1 / (1 + 0.3269485) = 0.7536085
    assert q(saturation_pressure_kpa(3.8), "0.000001") == Decimal("0.801858")
    assert q(humidity_h(14.9, 96.2, 3.8), "0.000001") == Decimal("0.772342")
    assert q(kh_of_ambient(3.8, 14.9, 96.2), "0.0001") == Decimal("0.7536")


def test_kh_on_a_warm_humid_day():
    # 25 °C, 50 %, 101.3 kPa: 17.27 · 25 / 262.3 = 1.6460160; exp = 5.186273; Pd = 3.167674 kPa
    # H = 6.211 · 50 · 3.167674 / (101.3 − 1.583837) = 983.731 / 99.716163 = 9.865213
    # kH = 1 / (1 − 0.0329 · (9.865213 − 10.71)) = 1 / 1.0277936 = 0.972958
    assert q(saturation_pressure_kpa(25), "0.000001") == Decimal("3.167674")
    assert q(humidity_h(50, 101.3, 25), "0.000001") == Decimal("9.865213")
    assert q(kh(humidity_h(50, 101.3, 25)), "0.000001") == Decimal("0.972958")
    assert kh(10.71) == 1  # at the reference humidity there is nothing to correct


@pytest.mark.parametrize(
    ("curb_kg", "p5025", "f5025", "p2540", "f2540"),
    [
        # RM 1680 kg (Nanhua: 11.3514 / 9.0811 kW): 1680 / 148 = 11.351351; × 3600 / 25 = 1634.59 → 1635 N
        # 1680 / 185 = 9.081081; × 3600 / 40 = 817.30 → 817 N
        (1580, "11.3514", 1635, "9.0811", 817),
        # RM 1020 kg (Nanhua: 6.89 / 5.51 kW): 1020 / 148 = 6.891892 → 992.43 → 992 N
        # 1020 / 185 = 5.513514 → 496.22 → 496 N
        (920, "6.8919", 992, "5.5135", 496),
        # dynamometer.md example, RM 1250 kg: 8.445946 kW → 8.45 kW written, 1216.22 → 1216 N
        (1150, "8.4459", 1216, "6.7568", 608),
    ],
)
def test_loads_are_rm_over_148_and_185(curb_kg, p5025, f5025, p2540, f2540):
    p1, f1, p2, f2 = asm_loads(curb_kg, AsmSettings())
    assert (q(p1, "0.0001"), f1, q(p2, "0.0001"), f2) == (Decimal(p5025), f5025, Decimal(p2540), f2540)


# ---------------------------------------------------------------- one phase


def sec(speed=25.0, force=FORCE_N, *, hc=20.0, co=0.1, co2=9.9, no=100.0, rpm=2000.0, braking=False, **kw):
    return AsmSecond(speed_kmh=speed, force_n=force, power_kw=6.94, hc_ppm=hc, co_pct=co, co2_pct=co2, o2_pct=0.5,
                     no_ppm=no, lambda_value=1.0, rpm=rpm, oil_temp_c=90.0, braking=braking, **kw)


def phase(settings=DF1, limits=B5025, mode="ASM5025", **kw):
    kw.setdefault("kh_value", 1)
    return AsmPhase(mode, force_target_n=FORCE_N, power_target_kw=6.94, limits=limits, settings=settings, **kw)


def to_clock(p: AsmPhase) -> list[AsmEvent]:
    """Load on in the first second, then 5 in-tolerance seconds: the clock starts (t = 0)."""
    events = [p.feed(sec()).event for _ in range(6)]
    assert events == [AsmEvent.LOAD_ON, *[AsmEvent.STABILISING] * 4, AsmEvent.CLOCK_STARTED]
    return events


def run(p: AsmPhase, seconds) -> list[AsmEvent]:
    return [p.feed(s).event for s in seconds]


def test_load_goes_on_when_the_speed_first_enters_its_band():
    p = phase()
    # 22.99 km/h is outside 25 ± 2; 23.00 is inside (bands inclusive)
    assert run(p, [sec(20.0, 0), sec(22.99, 0), sec(23.0, 0)]) == [AsmEvent.WAITING, AsmEvent.WAITING, AsmEvent.LOAD_ON]
    # the load-on second's force misses the tolerance; it does not count towards the 5
    assert run(p, [sec(force=500)] + [sec()] * 4) == [AsmEvent.STABILISING] * 5
    assert p.feed(sec()).event is AsmEvent.CLOCK_STARTED


def test_fast_pass_at_asm5025_ends_the_test():
    p = phase()
    to_clock(p)
    # t = 1 … 10 are not judged (HC 200 there); t = 11 … 20: HC 20 ≤ 23.5, CO 0.10 ≤ 0.175, NO 210 ≤ 210 (equal passes)
    events = run(p, [sec(hc=200)] * 10 + [sec(hc=20, no=210)] * 10)
    assert events == [AsmEvent.RUNNING] * 19 + [AsmEvent.FAST_PASS]
    r = p.result
    assert r is not None and r.decision == "fast_pass" and r.window == (11, 20)
    assert (r.hc_ppm, r.co_pct, r.no_ppm) == (Decimal(20), Decimal("0.10"), Decimal(210))
    assert not needs_asm2540(r, DF1)
    verdict = judge_asm([r], DF1)
    assert verdict.verdict == "pass" and verdict.not_run == ("ASM2540",)
    assert [c.outcome for c in verdict.checks] == ["pass"] * 3
    assert verdict.checks[0].note == "fast pass at or below 23.5"


def test_fast_pass_at_5025_runs_2540_when_the_switch_is_off():
    off = DF1.model_copy(update={"fast_pass_5025_ends_test": False})
    p = phase(off)
    to_clock(p)
    run(p, [sec()] * 20)
    assert p.result is not None and p.result.decision == "fast_pass"
    assert needs_asm2540(p.result, off)
    with pytest.raises(ValueError, match="ASM2540 must be run"):
        judge_asm([p.result], off)


@pytest.mark.parametrize(
    ("hcs", "fast_pass"),
    [
        # 50 % of 47 ppm = 23.5 ppm (the limit unrounded); the mean 23.5 rounds to 24, above it
        ([23, 24] * 5, False),
        # mean 23.1 rounds to 23 ≤ 23.5
        ([23] * 9 + [24], True),
    ],
)
def test_fast_pass_compares_the_rounded_mean_with_half_the_unrounded_limit(hcs, fast_pass):
    p = phase()
    to_clock(p)
    events = run(p, [sec()] * 10 + [sec(hc=h) for h in hcs])
    assert events[-1] is (AsmEvent.FAST_PASS if fast_pass else AsmEvent.RUNNING)


@pytest.mark.parametrize(("hc", "event"), [(236, AsmEvent.FAST_FAIL), (235, AsmEvent.RUNNING)])
def test_fast_fail_above_500_percent_of_a_limit(hc, event):
    # 500 % of 47 ppm = 235 ppm: a mean of 236 fails fast, 235 is not above it and the phase goes on
    p = phase()
    to_clock(p)
    assert run(p, [sec(hc=hc)] * 20)[-1] is event
    if event is AsmEvent.FAST_FAIL:
        assert p.result is not None
        verdict = judge_asm([p.result], DF1)
        assert verdict.verdict == "fail" and verdict.not_run == ("ASM2540",)
        assert [c.outcome for c in verdict.checks] == ["fail", "pass", "pass"]


def test_negative_hc_is_zero_before_the_mean():
    # t = 11 … 20: five seconds of −4 ppm (taken as 0) and five of 10 ppm: mean 5, not 3
    p = phase()
    to_clock(p)
    run(p, [sec()] * 10 + [sec(hc=-4), sec(hc=10)] * 5)
    assert p.result is not None and p.result.hc_ppm == 5


def test_two_consecutive_out_of_tolerance_seconds_restart_the_clock():
    p = phase()
    to_clock(p)
    # t = 3 out alone (27.01 km/h): it stays in; t = 5 and 6 out (force 1051 N > 1050): restart at t = 6
    events = run(p, [sec(), sec(), sec(27.01), sec(), sec(force=1051), sec(force=1051)])
    assert events == [AsmEvent.RUNNING] * 5 + [AsmEvent.RESTART]
    assert p.restarts == 1 and p.t is None
    # stabilise again: 5 in-tolerance seconds, then the clock runs from t = 1
    assert run(p, [sec()] * 5)[-1] is AsmEvent.CLOCK_STARTED
    step = p.feed(sec())
    assert step.t == 1 and step.record is not None and step.record.restarts == 1


def test_five_out_of_tolerance_seconds_since_t0_restart_the_clock():
    p = phase()
    to_clock(p)
    out = sec(22.9)  # below 25 − 2
    events = run(p, [out, sec(), out, sec(), out, sec(), out, sec(), out])  # t = 1, 3, 5, 7, 9 out
    assert events == [AsmEvent.RUNNING] * 8 + [AsmEvent.RESTART]


def test_a_force_at_the_tolerance_edge_is_in_tolerance():
    p = phase()
    to_clock(p)
    # 950 and 1050 N are exactly ± 5 % of 1000 N: in tolerance, no restart after many of them
    assert run(p, [sec(force=950), sec(force=1050)] * 5) == [AsmEvent.RUNNING] * 10


def test_braking_restarts_a_running_clock_but_only_the_count_while_stabilising():
    p = phase()
    assert run(p, [sec(), sec(), sec(), sec(braking=True)]) == [AsmEvent.LOAD_ON, *[AsmEvent.STABILISING] * 3]
    # the count of 5 began again after the braking second
    assert run(p, [sec()] * 5)[-1] is AsmEvent.CLOCK_STARTED and p.restarts == 0
    assert run(p, [sec(), sec(braking=True)]) == [AsmEvent.RUNNING, AsmEvent.RESTART]
    assert p.restarts == 1


def test_a_fourth_restart_voids_the_test():
    p = phase()
    to_clock(p)
    for n in (1, 2, 3):
        assert run(p, [sec(braking=True)]) == [AsmEvent.RESTART] and p.restarts == n
        run(p, [sec()] * 5)
    step = p.feed(sec(braking=True))
    assert step.event is AsmEvent.VOID and "restart 4" in step.reason
    assert p.result is not None and p.result.decision == "void"
    verdict = judge_asm([p.result], DF1)
    assert verdict.verdict == "void" and verdict.checks == () and "restart 4" in (verdict.void_reason or "")


@pytest.mark.parametrize(("co2", "void"), [(5.8, True), (5.9, False)])
def test_a_diluted_second_voids_the_test(co2, void):
    # CO 0.1 + CO2 5.8 = 5.9 % < 6 %: void; 0.1 + 5.9 = 6.0 % is not below 6
    p = phase()
    to_clock(p)
    step = p.feed(sec(co2=co2))
    assert (step.event is AsmEvent.VOID) is void
    if void:
        assert "CO + CO2 = 5.9 % below 6" in step.reason


def test_void_comes_before_the_restart_rule():
    p = phase()
    to_clock(p)
    p.feed(sec(28.0))
    # the second out-of-tolerance second would restart, but it is diluted as well: void wins
    assert p.feed(sec(28.0, co2=5.0)).event is AsmEvent.VOID


def test_the_restart_rule_comes_before_the_fast_check():
    p = phase()
    to_clock(p)
    # t = 19 and 20 out of tolerance: at t = 20 the clock restarts instead of a fast pass
    assert run(p, [sec()] * 18 + [sec(28.0)] * 2)[-1] is AsmEvent.RESTART


def test_a_stall_voids_only_with_an_engine_speed_source():
    p = phase()
    to_clock(p)
    # 250 r/min for one second, then back: no stall; 250 for 2 consecutive seconds: void
    assert run(p, [sec(rpm=250), sec(rpm=800), sec(rpm=250)])[-1] is AsmEvent.RUNNING
    step = p.feed(sec(rpm=250))
    assert step.event is AsmEvent.VOID and "stalled" in step.reason


def test_rpm_0_without_a_tachometer_is_no_signal_not_a_stall():
    p = phase(rpm_source=False)
    to_clock(p)
    assert run(p, [sec(rpm=0)] * 5) == [AsmEvent.RUNNING] * 5
    q_ = phase()  # a lane with a source, a second with no signal (None): not a stall either
    to_clock(q_)
    assert run(q_, [sec(rpm=None)] * 5) == [AsmEvent.RUNNING] * 5


def test_no_decision_within_max_phase_s_of_load_on_voids():
    p = phase()
    assert p.feed(sec()).event is AsmEvent.LOAD_ON
    # the force never reaches its tolerance: 179 seconds stabilising, the 180th after load-on voids
    assert run(p, [sec(force=800)] * 179) == [AsmEvent.STABILISING] * 179
    step = p.feed(sec(force=800))
    assert step.event is AsmEvent.VOID and "180 s" in step.reason


def test_a_dynamometer_fault_voids_from_outside():
    p = phase()
    to_clock(p)
    step = p.void("dynamometer dropped CONSTANT_FORCE (FAULT_CODE 1)")
    assert step.event is AsmEvent.VOID and p.result is not None and p.result.void_reason == step.reason
    with pytest.raises(RuntimeError):
        p.feed(sec())


def full_phase(p: AsmPhase, window_hc: list[float], **kw) -> list[AsmEvent]:
    """To the clock, t = 1 … 80 at HC 100 ppm (no fast decision: 23.5 < 100 ≤ 235), then t = 81 … 90."""
    to_clock(p)
    return run(p, [sec(hc=100)] * 80 + [sec(hc=h, **kw) for h in window_hc])


def test_a_full_phase_passes_on_the_mean_over_t81_to_90():
    # t = 81 … 90: HC mean 47.4 rounds to 47 ≤ 47 (equal passes); t ≤ 80 (HC 100) does not count
    p = phase()
    events = full_phase(p, [47] * 6 + [48] * 4)
    assert events[-1] is AsmEvent.PASS and events.count(AsmEvent.RUNNING) == 89
    r = p.result
    assert r is not None and r.window == (81, 90) and r.hc_ppm == 47 and r.restarts == 0
    assert needs_asm2540(r, DF1)


def test_a_full_phase_fails_when_a_rounded_mean_is_above_its_limit():
    # HC mean 47.5 rounds half away to 48 > 47
    p = phase()
    assert full_phase(p, [47, 48] * 5)[-1] is AsmEvent.FAIL
    verdict = judge_asm([p.result], DF1)
    assert verdict.verdict == "fail" and verdict.not_run == ("ASM2540",)
    assert [(c.item, c.value, c.outcome) for c in verdict.checks] == [
        ("asm5025_hc", 48.0, "fail"), ("asm5025_co", 0.1, "pass"), ("asm5025_no", 100.0, "pass")]


def test_a_gasoline_phase_with_real_corrections():
    # CO2 14.8 %, CO 0.2 %, HC 30 ppm, NO 300 ppm every second, kH of 3.8 °C / 14.9 % / 96.2 kPa:
    # DF = 1.025809 (above); HCc = 30.774 → 31 (> 23.5: no fast pass); COc = 0.205162 → 0.21
    # NOc = 300 · 1.025809 · 0.7536085 = 231.918 → 232; all within 47 / 0.35 / 420: pass at t = 90
    p = AsmPhase("ASM5025", force_target_n=FORCE_N, power_target_kw=6.94, limits=B5025, settings=AsmSettings())
    g = {"hc": 30, "co": 0.2, "co2": 14.8, "no": 300}
    assert run(p, [sec(**g)] * 6)[-1] is AsmEvent.CLOCK_STARTED
    p.set_kh(kh_of_ambient(3.8, 14.9, 96.2))
    assert run(p, [sec(**g)] * 90)[-1] is AsmEvent.PASS
    r = p.result
    assert r is not None and (r.hc_ppm, r.co_pct, r.no_ppm) == (Decimal(31), Decimal("0.21"), Decimal(232))
    assert q(r.df, "0.0001") == Decimal("1.0258") and q(r.kh, "0.0001") == Decimal("0.7536")
    assert r.co2_pct == Decimal("14.8") and r.rpm == 2000 and r.oil_temp_c == 90


def test_moving_averages_exist_from_t10():
    p = phase()
    to_clock(p)
    steps = [p.feed(sec(hc=t)) for t in range(1, 12)]
    records = [s.record for s in steps]
    assert records[8] is not None and records[8].hc_avg_ppm is None  # t = 9: no full window
    assert records[9] is not None and records[9].hc_avg_ppm == Decimal("5.5")  # mean of 1 … 10
    assert records[10] is not None and records[10].hc_avg_ppm == Decimal("6.5")  # mean of 2 … 11
    assert len(p.records) == 6 + 11  # every fed second is process data


def test_asm2540_after_a_passed_asm5025_decides_the_test():
    first = phase()
    full_phase(first, [40] * 10)
    second = phase(limits=B2540, mode="ASM2540")
    assert second.feed(sec(40.0)).event is AsmEvent.LOAD_ON
    run(second, [sec(40.0)] * 5)
    # HC 44 ≤ 44 at t = 81 … 90 (set b ASM2540); t ≤ 80 at 100 ppm
    run(second, [sec(40.0, hc=100)] * 80 + [sec(40.0, hc=44)] * 10)
    assert first.result is not None and second.result is not None
    verdict = judge_asm([first.result, second.result], DF1)
    assert verdict.verdict == "pass" and len(verdict.checks) == 6 and verdict.not_run == ()
    failing = judge_asm([first.result, replace(second.result, decision="fail")], DF1)
    assert failing.verdict == "fail"


def test_overridden_limits_are_judged_and_marked():
    limits = apply_overrides(LIMITS, {"emissions": {"asm": {"sets": {"b": {"asm5025_hc_max_ppm": 60}}}}})
    p = phase(limits=limits.emissions.asm.phase("ASM5025"))
    full_phase(p, [55] * 10)
    assert p.result is not None and p.result.decision == "pass"  # HC 55 ≤ 60 (47 in the file)
    hc = phase_checks(p.result)[0]
    assert (hc.item, hc.value, hc.limit, hc.source) == ("asm5025_hc", 55.0, 60.0, "override")


def test_the_standard_timings_of_the_asm_settings():
    timings = {t.key: (t.value, t.standard_min) for t in AsmSettings().standard_timings("inspection.asm.")}
    assert timings == {
        "inspection.asm.stabilise_s": (5, 5), "inspection.asm.response_s": (10, 10),
        "inspection.asm.fast_window_s": (10, 10), "inspection.asm.phase_s": (90, 90),
        "inspection.asm.result_window_s": (10, 10),
    }
    short = AsmSettings(phase_s=30, response_s=5, fast_window_s=5)
    assert {t.key for t in short.standard_timings() if t.shortened} == {"phase_s", "response_s", "fast_window_s"}
    with pytest.raises(ValueError, match="fast check"):
        AsmSettings(phase_s=15)


def test_a_shortened_phase_in_a_simulation_decides_at_its_own_end():
    # phase_s 20 = the fast check's t: HC 30 is neither a fast pass (> 23.5) nor a fast fail, so the phase
    # result (t = 11 … 20, result_window_s 10) decides at once: 30 ≤ 47, pass
    short = DF1.model_copy(update={"phase_s": 20, "max_phase_s": 60})
    p = phase(short)
    to_clock(p)
    assert run(p, [sec(hc=30)] * 20)[-1] is AsmEvent.PASS
    assert p.result is not None and p.result.window == (11, 20)
