"""The dynamometer's self-checks as pure math: crossing times, CCDT, the verdict, bands and the fit.

Expected values are worked out by hand from spec/devices/dynamometer.md "Self-checks"."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from laned.judging import dyno_checks as jd


def test_ccdt_is_the_manuals_3_121_s_for_18_kw_and_910_kg() -> None:
    # 910 · ((50/3.6)² − (30/3.6)²) / (2 · 18000) = 910 · 123.457 / 36000 = 3.1207 s
    assert jd.ccdt_s(910, 50, 30, 18.0) == pytest.approx(3.121, abs=0.0005)


def test_a_crossing_is_interpolated_between_the_samples_either_side() -> None:
    points = [(0.0, 52.0), (0.1, 50.5), (0.2, 49.5), (0.3, 48.0)]
    # 50 lies halfway between 50.5 (0.1 s) and 49.5 (0.2 s)
    assert jd.crossing_time(points, 50.0) == pytest.approx(0.15)
    # 49 lies a third of the way from 49.5 (0.2 s) to 48.0 (0.3 s)
    assert jd.crossing_time(points, 49.0) == pytest.approx(0.2 + 0.1 / 3)
    assert jd.crossing_time(points, 47.0) is None  # never reached
    assert jd.crossing_time(points, 53.0) is None  # already below at the start: no crossing seen


@dataclass(frozen=True)
class Sample:
    index: int
    speed_kmh: float


def test_ring_points_take_time_from_the_sample_index_across_the_wrap_and_a_lost_sample() -> None:
    samples = [Sample(65534, 60.0), Sample(65535, 59.0), Sample(1, 57.0)]  # index 0 was lost
    assert jd.ring_points(samples, 10.0) == [(0.0, 60.0), (0.1, 59.0), (0.3, 57.0)]


def _linear(t_at_v1: float, t_at_v2: float) -> list[tuple[float, float]]:
    """A ring at 10 Hz falling linearly from 50 km/h at t_at_v1 to 30 km/h at t_at_v2."""
    slope = 20 / (t_at_v2 - t_at_v1)
    return [(k / 10, 50 + slope * (t_at_v1 - k / 10)) for k in range(0, 80)]


def test_the_loaded_coast_down_passes_within_4_percent_of_ccdt() -> None:
    # ACDT 3.2 s against CCDT 3.1207 s: +2.54 %
    verdict = jd.loaded_coast_down_verdict(_linear(1.05, 4.25), mass_kg=910, v1_kmh=50, v2_kmh=30, power_kw=18,
                                           limit_pct=4.0)
    assert verdict.passed
    assert verdict.acdt_s == pytest.approx(3.2, abs=0.001)
    assert verdict.deviation_pct == pytest.approx(2.54, abs=0.01)


def test_the_loaded_coast_down_fails_beyond_4_percent() -> None:
    # ACDT 3.3 s: +5.74 %
    verdict = jd.loaded_coast_down_verdict(_linear(1.05, 4.35), mass_kg=910, v1_kmh=50, v2_kmh=30, power_kw=18,
                                           limit_pct=4.0)
    assert not verdict.passed
    assert verdict.deviation_pct == pytest.approx(5.74, abs=0.01)
    assert "limit ±4 %" in verdict.reason


def test_a_coast_that_never_reaches_30_kmh_fails_and_says_so() -> None:
    verdict = jd.loaded_coast_down_verdict([(0.0, 55.0), (0.1, 49.0), (0.2, 40.0)], mass_kg=910, v1_kmh=50,
                                           v2_kmh=30, power_kw=18, limit_pct=4.0)
    assert not verdict.passed and verdict.acdt_s is None
    assert "never coasted through 30 km/h" in verdict.reason


def test_a_band_gives_the_power_from_its_time() -> None:
    # 54 → 46 km/h in 10 s, M 910 kg: 910 · (15² − 12.778²) / 20 = 910 · 61.728 / 20 = 2808.6 W
    points = [(0.0, 55.0), (1.0, 54.0), (11.0, 46.0), (12.0, 45.0)]
    (band,) = jd.parasitic_bands(points, 910, [(54.0, 46.0, 50.0)])
    assert band.dt_s == pytest.approx(10.0)
    assert band.power_kw == pytest.approx(2.8086, abs=0.0001)
    assert band.force_n == pytest.approx(2808.6 / (50 / 3.6), abs=0.1)  # 202.2 N at 50 km/h


def test_the_fit_finds_an_exact_quadratic_from_five_points() -> None:
    # F = 50 + 1.2 v + 0.012 v²: 63.2, 78.8, 96.8, 117.2, 140.0 N at 10…50 km/h
    points = [(10.0, 63.2), (20.0, 78.8), (30.0, 96.8), (40.0, 117.2), (50.0, 140.0)]
    a, b, c = jd.fit_parasitic(points)
    assert (a, b, c) == (pytest.approx(50.0), pytest.approx(1.2), pytest.approx(0.012))


def test_the_fit_needs_three_speeds() -> None:
    with pytest.raises(ValueError, match="three distinct speeds"):
        jd.fit_parasitic([(10.0, 63.2), (10.0, 63.0), (20.0, 78.8)])


def _band(v_nom: float, power_kw: float | None) -> jd.ParasiticBand:
    return jd.ParasiticBand(v_nom + 4, v_nom - 4, v_nom, None if power_kw is None else 1.0, power_kw)


def test_the_parasitic_check_fails_on_a_band_not_crossed() -> None:
    verdict = jd.parasitic_verdict([_band(50, 2.0), _band(40, 1.3), _band(16, None)], tolerance_kw=0.1,
                                   tolerance_pct=10)
    assert not verdict.passed
    assert "20 → 12 km/h" in verdict.reason


def test_the_parasitic_check_passes_when_the_fit_reproduces_every_band() -> None:
    # powers of F = 50 + 1.2 v + 0.012 v² at 10…50 km/h: F · v / 3.6 / 1000
    bands = [_band(v, (50 + 1.2 * v + 0.012 * v * v) * v / 3.6 / 1000) for v in (10, 20, 30, 40, 50)]
    verdict = jd.parasitic_verdict(bands, tolerance_kw=0.1, tolerance_pct=10)
    assert verdict.passed
    assert (verdict.pl_a_n, verdict.pl_b, verdict.pl_c) == (50.0, 1.2, 0.012)


def test_the_parasitic_check_fails_when_one_band_is_off_by_more_than_both_tolerances() -> None:
    powers = {10: 0.1756, 20: 0.4378, 30: 0.8067, 40: 1.3022, 50: 1.9444}  # the exact quadratic above
    powers[30] = 1.3  # 0.49 kW over: the fit cannot follow it within 0.1 kW or 10 %
    verdict = jd.parasitic_verdict([_band(v, p) for v, p in powers.items()], tolerance_kw=0.1, tolerance_pct=10)
    assert not verdict.passed
    assert "band" in verdict.reason
