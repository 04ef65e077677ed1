"""Emissions judging, cases worked out by hand from standards.md (two-speed idle, free acceleration)."""

from __future__ import annotations

import pytest

from laned.judging.emissions import (
    GasSecond,
    brettschneider_lambda,
    judge_free_acceleration,
    judge_hc_residue,
    judge_two_speed_idle,
    k_from_opacity_pct,
    opacity_consistent,
    opacity_pct_from_k,
    phase_means,
)
from laned.judging.limits import LimitsError, apply_overrides, load_limits

LIMITS = load_limits()
EMISSIONS = LIMITS.emissions


# ---------------------------------------------------------------- λ (Brettschneider)


def test_brettschneider_lambda_of_the_analyzer_manuals_example_gas():
    # gas-analyzer.md example: HC 85 ppm, CO 0.62 %, CO2 14.32 %, O2 0.45 %; the analyzer shows λ 0.999
    # CO/CO2 = 0.62 / 14.32 = 0.0432961
    # 3.5 / (3.5 + 0.0432961) = 0.9877808
    # Hcv/4 = 1.7261 / 4 = 0.431525; × 0.9877808 = 0.4262521; − Ocv/2 (0.0088) = 0.4174521
    # × (CO2 + CO = 14.94) = 6.2367348
    # numerator = 14.32 + 0.62/2 + 0.45 + 6.2367348 = 21.3167348
    # denominator = (1 + 0.431525 − 0.0088) × (14.94 + 6 × 85 × 10⁻⁴) = 1.422725 × 14.991 = 21.3280705
    # λ = 21.3167348 / 21.3280705 = 0.999469
    assert brettschneider_lambda(0.62, 14.32, 0.45, 85) == pytest.approx(0.999469, abs=5e-7)


def test_brettschneider_lambda_of_a_lean_clean_gas():
    # CO 0.02, CO2 14.80, O2 0.30, HC 20:
    # 3.5 / (3.5 + 0.02/14.8) = 3.5 / 3.5013514 = 0.9996140; × 0.431525 = 0.4313584; − 0.0088 = 0.4225584
    # × 14.82 = 6.2623163; numerator = 14.80 + 0.01 + 0.30 + 6.2623163 = 21.3723163
    # denominator = 1.422725 × (14.82 + 0.012) = 1.422725 × 14.832 = 21.1018572
    # λ = 21.3723163 / 21.1018572 = 1.012817
    assert brettschneider_lambda(0.02, 14.80, 0.30, 20) == pytest.approx(1.012817, abs=5e-7)


def test_brettschneider_lambda_without_co2_is_undefined():
    with pytest.raises(ValueError, match="CO2"):
        brettschneider_lambda(0.0, 0.0, 20.9, 5)


# ---------------------------------------------------------------- two-speed idle


def seconds(n=30, *, hc=20.0, co=0.02, co2=14.80, o2=0.30, no=50.0, lam=1.013, rpm=2500.0, changes=None):
    """n one-second means, all alike except `changes` {second index: {field: value}}."""
    rows = [GasSecond(hc, co, co2, o2, no, lam, rpm) for _ in range(n)]
    for i, fields in (changes or {}).items():
        rows[i] = GasSecond(**{**rows[i].__dict__, **fields})
    return rows


HIGH_IDLE = phase_means(seconds())  # λ_B = 1.012817 (worked above), analyzer 1.013
IDLE = phase_means(seconds(hc=30.0, co=0.10, co2=14.60, o2=0.40, lam=1.02, rpm=800.0))


def judge(high_idle=HIGH_IDLE, idle=IDLE, *, limit_set="a", limits=EMISSIONS, fuel="gasoline"):
    return judge_two_speed_idle(high_idle, idle, limits, total_mass_kg=1750, fuel=fuel, limit_set=limit_set)


def test_two_speed_idle_within_set_a_passes_and_names_the_set():
    v = judge()
    assert v.verdict == "pass"
    assert v.limit_set == "a"
    # high idle CO 0.02 ≤ 0.3, HC 20 ≤ 50, λ 1.013 → 1.01 in 0.95…1.05; idle CO 0.10 ≤ 0.6, HC 30 ≤ 80
    assert {c.item: (c.value, c.limit, c.outcome) for c in v.checks} == {
        "high_idle_co": (0.02, 0.3, "pass"),
        "high_idle_hc": (20.0, 50.0, "pass"),
        "high_idle_lambda": (1.01, (0.95, 1.05), "pass"),
        "idle_co": (0.10, 0.6, "pass"),
        "idle_hc": (30.0, 80.0, "pass"),
    }
    # |1.013 − 1.012817| = 0.000183 → 0.000 at the analyzer's 0.001: no flag
    assert v.lambda_brettschneider == pytest.approx(1.012817, abs=5e-7)
    assert v.lambda_difference == 0.0
    assert v.flags == ()
    assert v.void_reasons == ()


@pytest.mark.parametrize(
    ("idle_co", "rounded", "outcome"),
    [
        (0.604, 0.60, "pass"),  # → 0.60 ≤ 0.6
        (0.605, 0.61, "fail"),  # a tie → 0.61 > 0.6
        (0.61, 0.61, "fail"),
    ],
)
def test_idle_co_is_rounded_to_0_01_before_the_limit(idle_co, rounded, outcome):
    idle = phase_means(seconds(hc=30.0, co=idle_co, co2=14.60, o2=0.40, lam=1.02, rpm=800.0))
    v = judge(idle=idle)
    idle_co_check = next(c for c in v.checks if c.item == "idle_co")
    assert (idle_co_check.value, idle_co_check.outcome) == (rounded, outcome)
    assert v.verdict == ("pass" if outcome == "pass" else "fail")


@pytest.mark.parametrize(
    ("lam", "rounded", "outcome"),
    [
        (1.054, 1.05, "pass"),
        (1.055, 1.06, "fail"),  # a tie → 1.06, outside 1.00 ± 0.05
        (0.945, 0.95, "pass"),  # a tie → 0.95, the band's edge, inclusive
        (0.944, 0.94, "fail"),
    ],
)
def test_high_idle_lambda_is_rounded_to_0_01_and_judged_within_1_00_plus_minus_0_05(lam, rounded, outcome):
    v = judge(high_idle=phase_means(seconds(lam=lam)))
    check = next(c for c in v.checks if c.item == "high_idle_lambda")
    assert (check.value, check.outcome) == (rounded, outcome)
    assert v.verdict == ("pass" if outcome == "pass" else "fail")


def test_lambda_cross_check_flags_an_analyzer_that_disagrees_but_does_not_fail_the_test():
    # analyzer λ 1.030 vs Brettschneider 1.012817: difference 0.017183 → 0.017 > 0.01 → flagged
    v = judge(high_idle=phase_means(seconds(lam=1.030)))
    assert v.lambda_difference == 0.017
    assert len(v.flags) == 1
    assert "λ cross-check" in v.flags[0]
    assert v.verdict == "pass"  # λ 1.03 is within 0.95…1.05


def test_lambda_cross_check_accepts_a_difference_of_exactly_the_tolerance():
    # analyzer 1.023 vs 1.012817: 0.010183 → 0.010 ≤ 0.01 → not flagged
    v = judge(high_idle=phase_means(seconds(lam=1.023)))
    assert (v.lambda_difference, v.flags) == (0.01, ())


def test_a_diluted_second_voids_the_test_instead_of_failing_it():
    # idle second 12: CO 0.05 + CO2 5.90 = 5.95 % < 6 %; the idle CO 0.9 would fail, but void wins
    idle = phase_means(
        seconds(
            hc=30.0,
            co=0.9,
            co2=14.60,
            o2=0.40,
            lam=1.02,
            rpm=800.0,
            changes={11: {"co_pct": 0.05, "co2_pct": 5.90}},
        )
    )
    v = judge(idle=idle)
    assert v.verdict == "void"
    assert len(v.void_reasons) == 1
    assert (
        "idle: sample diluted, CO + CO2 = 5.95 % below 6.0 % in 1 second(s), first at second 12" in (v.void_reasons[0])
    )


def test_co_plus_co2_of_exactly_6_pct_is_not_diluted():
    # second 4: CO 0.10 + CO2 5.90 = 6.00 %, not below 6 %
    idle = phase_means(
        seconds(
            hc=30.0, co=0.10, co2=14.60, o2=0.40, lam=1.02, rpm=800.0, changes={3: {"co_pct": 0.10, "co2_pct": 5.90}}
        )
    )
    assert judge(idle=idle).verdict == "pass"


@pytest.mark.parametrize(("rpm", "verdict"), [(2700.0, "pass"), (2300.0, "pass"), (2701.0, "void"), (2299.0, "void")])
def test_high_idle_speed_outside_2500_plus_minus_200_voids_the_test(rpm, verdict):
    v = judge(high_idle=phase_means(seconds(changes={20: {"rpm": rpm}})))
    assert v.verdict == verdict
    if verdict == "void":
        assert v.void_reasons[0].startswith(f"high idle: engine speed {rpm} r/min outside 2300…2700 r/min")


def test_the_vehicles_own_idle_band_comes_as_an_override():
    # idle at 800 r/min is inside the default 500…1200 but outside a vehicle band of 850…950
    limits = apply_overrides(LIMITS, {"emissions": {"two_speed_idle": {"rpm": {"idle": {"min": 850, "max": 950}}}}})
    v = judge(limits=limits.emissions)
    assert v.verdict == "void"
    assert "idle: engine speed 800.0 r/min outside 850…950 r/min" in v.void_reasons[0]


def test_a_negative_hc_mean_is_reported_as_zero():
    # idle HC seconds −3, −2, 1 (and so on): signed mean −4/3 = −1.33 ppm → reported 0 ppm
    idle = phase_means(
        seconds(
            3,
            hc=-3.0,
            co=0.10,
            co2=14.60,
            o2=0.40,
            lam=1.02,
            rpm=800.0,
            changes={1: {"hc_ppm": -2.0}, 2: {"hc_ppm": 1.0}},
        )
    )
    assert idle.hc_ppm == pytest.approx(-4 / 3)
    v = judge(idle=idle)
    assert v.idle.hc_ppm == 0
    assert next(c for c in v.checks if c.item == "idle_hc").value == 0.0


@pytest.mark.parametrize(("limit_set", "limit", "outcome"), [("a", 80.0, "pass"), ("b", 40.0, "fail")])
def test_the_limit_set_decides_and_is_reported(limit_set, limit, outcome):
    # idle HC 45 ppm: ≤ 80 (set a) but > 40 (set b)
    idle = phase_means(seconds(hc=45.0, co=0.10, co2=14.60, o2=0.40, lam=1.02, rpm=800.0))
    v = judge(idle=idle, limit_set=limit_set)
    hc = next(c for c in v.checks if c.item == "idle_hc")
    assert (v.limit_set, hc.limit, hc.outcome) == (limit_set, limit, outcome)


def test_the_limit_set_defaults_to_the_one_the_limits_file_names():
    v = judge_two_speed_idle(HIGH_IDLE, IDLE, EMISSIONS, total_mass_kg=1750)
    assert v.limit_set == EMISSIONS.two_speed_idle.limit_set.value == "b"


def test_a_fuel_without_a_dilution_threshold_is_a_limits_error_naming_the_key():
    with pytest.raises(LimitsError, match=r"two_speed_idle\.dilution_min_co_co2_pct\.lpg"):
        judge(fuel="lpg")


@pytest.mark.parametrize(("hc_ppm", "outcome"), [(19.0, "pass"), (19.5, "fail"), (20.0, "fail")])
def test_hc_residue_must_be_below_20_ppm_after_rounding(hc_ppm, outcome):
    # 19.5 → 20 ppm, not below 20
    assert judge_hc_residue(hc_ppm, EMISSIONS).outcome == outcome


# ---------------------------------------------------------------- free acceleration


@pytest.mark.parametrize(
    ("peaks", "limit_set", "mean_k", "outcome"),
    [
        ((1.204, 1.205, 1.206), "a", 1.21, "fail"),  # 3.615 / 3 = 1.205 → 1.21 > 1.2
        ((1.194, 1.195, 1.206), "a", 1.20, "pass"),  # 3.595 / 3 = 1.19833 → 1.20 ≤ 1.2 (inclusive)
        ((1.20, 1.20, 1.21), "a", 1.20, "pass"),  # 3.61 / 3 = 1.20333 → 1.20
        ((1.20, 1.21, 1.21), "a", 1.21, "fail"),  # 3.62 / 3 = 1.20667 → 1.21
        ((0.70, 0.70, 0.71), "b", 0.70, "pass"),  # 2.11 / 3 = 0.70333 → 0.70 ≤ 0.7
        ((0.70, 0.71, 0.71), "b", 0.71, "fail"),  # 2.12 / 3 = 0.70667 → 0.71 > 0.7
    ],
)
def test_free_acceleration_mean_k_is_rounded_to_0_01_and_the_limit_is_inclusive(peaks, limit_set, mean_k, outcome):
    v = judge_free_acceleration(peaks, EMISSIONS, limit_set=limit_set, peak_rpm=(2410, 2400, 2390))
    assert (v.mean_k_m1, v.verdict, v.limit_set) == (mean_k, outcome, limit_set)
    assert v.check.limit == {"a": 1.2, "b": 0.7}[limit_set]
    assert v.peak_rpm == (2410, 2400, 2390)


def test_free_acceleration_needs_exactly_three_measured_peaks():
    with pytest.raises(ValueError, match="needs 3 measured peaks, got 2"):
        judge_free_acceleration((1.0, 1.1), EMISSIONS)


@pytest.mark.parametrize(
    ("n_pct", "k_m1", "consistent"),
    [
        (23.4, 0.62, True),  # opacimeter.md REALTIME: 100 (1 − e^(−0.62 × 0.43)) = 100 (1 − e^(−0.2666)) = 23.40
        (41.1, 1.23, True),  # PEAK: 100 (1 − e^(−0.5289)) = 41.07; |41.1 − 41.07| = 0.03
        (24.0, 0.62, False),  # |24.0 − 23.40| = 0.60 > 0.5
        (23.9, 0.62, True),  # |23.9 − 23.40| = 0.498 ≤ 0.5
    ],
)
def test_opacity_n_and_k_are_consistent_through_l_0_430_m(n_pct, k_m1, consistent):
    assert opacity_consistent(n_pct, k_m1) is consistent


def test_n_and_k_convert_both_ways():
    assert opacity_pct_from_k(0.62) == pytest.approx(23.402, abs=1e-3)
    # K = −ln(1 − 0.234) / 0.43 = 0.26663 / 0.43 = 0.61994
    assert k_from_opacity_pct(23.4) == pytest.approx(0.61994, abs=1e-5)
