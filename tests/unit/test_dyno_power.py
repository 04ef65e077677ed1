"""A second's power split on the CD-1 (protocols/dyno_power.py), worked by hand from
devices/dynamometer.md "Force and power":

    F_tractive = F_pau + F_pl(v) + M_base · a,   F_pl(v) = PL_A + PL_B · v + PL_C · v²,   P = F · v / 3.6

with the default coefficients PL_A 50.0 N, PL_B 1.200 N per km/h, PL_C 0.0120 N per (km/h)²
(registers 500, 1200, 120) and BASE_INERTIA 910 kg (the CD-1L)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from protocols import dynamometer as dy
from protocols.dyno_power import LossModel, power_split, second_accel_ms2

DEFAULTS = LossModel.of_holding(dy.DynoHolding())


def second(speeds_raw: list[int], forces_n: list[int], first_index: int = 65530) -> dy.SecondRecord:
    pairs = enumerate(zip(speeds_raw, forces_n, strict=True))
    samples = [dy.RingSample((first_index + n) % 65536, v, f) for n, (v, f) in pairs]
    [record] = dy.per_second(samples, first_index)
    return record


def test_the_coefficients_are_read_exactly_from_the_registers() -> None:
    assert LossModel(910, Fraction(50), Fraction(6, 5), Fraction(3, 250)) == DEFAULTS


def test_a_steady_second_at_25_kmh_splits_into_the_manuals_parasitic_and_the_pau_power() -> None:
    # the manual's example: 1216 N at 25 km/h. F_pl(25) = 50 + 30 + 7.5 = 87.5 N → 87.5 × 25 / 3.6
    # = 607.64 W ("0.61 kW at 25 km/h"); total 1216 × 25 / 3.6 = 8444.44 W; no acceleration, so
    # the PAU's 1128.5 N × 25 / 3.6 = 7836.81 W
    split = power_split(second([2500] * 10, [1216] * 10), DEFAULTS)
    assert split.accel_ms2 == 0
    assert float(split.total_kw) == pytest.approx(8.444444, abs=1e-6)
    assert float(split.parasitic_kw) == pytest.approx(0.607639, abs=1e-6)
    assert split.inertia_kw == 0
    assert float(split.pau_kw) == pytest.approx(7.836806, abs=1e-6)


def test_an_accelerating_second_takes_the_base_inertia_out_of_the_pau_power() -> None:
    # 25.00, 25.10 … 25.90 km/h, 0.1 s apart: a = 1 km/h per s = 1 / 3.6 m/s²; force 1000 N.
    # mean v = 25.45, mean v² = 25.45² + 0.0825 = 647.785 (variance of ten steps of 0.1:
    # 0.01 · 99 / 12), mean v³ = 25.45³ + 3 · 25.45 · 0.0825 = 16490.3275 (symmetric: no third moment)
    # parasitic: (50 · 25.45 + 1.2 · 647.785 + 0.012 · 16490.3275) / 3.6 = 2247.72593 / 3.6 = 624.3683 W
    # inertia:   910 · (1 / 3.6) · 25.45 / 3.6 = 23159.5 / 12.96 = 1786.9985 W
    # total:     1000 · 25.45 / 3.6 = 7069.4444 W;  PAU: 7069.4444 − 624.3683 − 1786.9985 = 4658.0777 W
    record = second([2500 + 10 * n for n in range(10)], [1000] * 10)
    assert second_accel_ms2(record) == Fraction(10, 36)
    split = power_split(record, DEFAULTS)
    assert float(split.total_kw) == pytest.approx(7.0694444, abs=1e-7)
    assert float(split.parasitic_kw) == pytest.approx(0.6243683, abs=1e-7)
    assert float(split.inertia_kw) == pytest.approx(1.7869985, abs=1e-7)
    assert float(split.pau_kw) == pytest.approx(4.6580777, abs=1e-7)
    assert split.total_kw == split.parasitic_kw + split.inertia_kw + split.pau_kw


def test_a_decelerating_second_gives_the_inertia_back() -> None:
    # the lug-down scan: 50.00 down to 48.20 km/h in ten samples (2 km/h per s): a = −2 / 3.6 m/s²;
    # mean v = 49.10; the CD-1H's 1800 kg give 1800 · (−2 / 3.6) · 49.10 / 3.6 = −176760 / 12.96 W
    # = −13638.89 W
    record = second([5000 - 20 * n for n in range(10)], [500] * 10)
    split = power_split(record, LossModel(1800, Fraction(50), Fraction(6, 5), Fraction(3, 250)))
    assert float(split.inertia_kw) == pytest.approx(-13.6388889, abs=1e-7)
    assert split.pau_kw > split.total_kw - split.parasitic_kw  # the rollers' own energy went into the PAU


def test_stopped_rollers_have_no_parasitic_power_and_a_lost_sample_keeps_the_slope_on_time() -> None:
    assert power_split(second([0] * 10, [3] * 10), DEFAULTS).parasitic_kw == 0
    # samples 0, 1, 2 and 4 … 9 (3 lost): speeds rise 0.1 km/h per sample all the same
    samples = [dy.RingSample(n, 2500 + 10 * n, 1000) for n in range(10) if n != 3]
    [record] = dy.per_second(samples, 0)
    assert record.samples == 9
    assert second_accel_ms2(record) == Fraction(10, 36)
