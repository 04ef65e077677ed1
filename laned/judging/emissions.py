"""Emissions verdicts: two-speed idle (GB 18285-2018 App. A) and free acceleration (GB 3847-2018 App. A).

Pure functions of the phase means a procedure measured and the limits set in
force. Values are rounded half away from zero before they are compared (CO to
0.01 %, HC to 1 ppm, λ and K to 0.01) and limits are inclusive. A sample that
was diluted or an engine speed out of its band makes the test void, not
failed: the measurement says nothing about the vehicle, so it is repeated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from laned.judging.limits import (
    CitedBand,
    EmissionsLimits,
    FreeAccelerationLimits,
    LimitsError,
    TwoSpeedIdleLimits,
    check,
)
from laned.judging.rounding import Check, mean, round_half_away, to_decimal

HCV_GASOLINE = 1.7261  # H/C atom ratio of gasoline
OCV_GASOLINE = 0.0176  # O/C atom ratio of gasoline
K1_HEXANE = 6  # n-hexane HC (ppm) to C1
OPTICAL_PATH_LENGTH_M = 0.430


def brettschneider_lambda(
    co_pct: float,
    co2_pct: float,
    o2_pct: float,
    hc_ppm: float,
    hcv: float = HCV_GASOLINE,
    ocv: float = OCV_GASOLINE,
    k1: float = K1_HEXANE,
) -> float:
    """λ from the gases by Brettschneider's formula, exactly as standards.md writes it.

    Concentrations in %vol, HC in ppm (n-hexane). Undefined with no CO2 (no exhaust).
    """
    if co2_pct <= 0:
        raise ValueError(f"λ is undefined with CO2 at {co2_pct} %vol (no exhaust in the sample)")
    numerator = (
        co2_pct + co_pct / 2 + o2_pct + (hcv / 4 * 3.5 / (3.5 + co_pct / co2_pct) - ocv / 2) * (co2_pct + co_pct)
    )
    denominator = (1 + hcv / 4 - ocv / 2) * (co2_pct + co_pct + k1 * hc_ppm * 1e-4)
    return numerator / denominator


@dataclass(frozen=True)
class GasSecond:
    """One one-second mean of the analyzer's readings during a measurement phase."""

    hc_ppm: float
    co_pct: float
    co2_pct: float
    o2_pct: float
    no_ppm: float
    lambda_value: float
    rpm: float


@dataclass(frozen=True)
class PhaseMeans:
    """The means of one measurement phase (30 s) and the one-second means they came from.

    `hc_ppm` is the SIGNED mean (zero drift can make it negative); the
    seconds are needed for the dilution and engine-speed checks.
    """

    hc_ppm: float
    co_pct: float
    co2_pct: float
    o2_pct: float
    no_ppm: float
    lambda_value: float
    rpm: float
    seconds: tuple[GasSecond, ...]


def phase_means(seconds: Sequence[GasSecond]) -> PhaseMeans:
    """The phase result: the mean of each reading over its one-second means."""
    if not seconds:
        raise ValueError("a measurement phase needs at least one one-second mean")

    def avg(name: str) -> float:
        return float(mean(getattr(s, name) for s in seconds))

    return PhaseMeans(
        hc_ppm=avg("hc_ppm"),
        co_pct=avg("co_pct"),
        co2_pct=avg("co2_pct"),
        o2_pct=avg("o2_pct"),
        no_ppm=avg("no_ppm"),
        lambda_value=avg("lambda_value"),
        rpm=avg("rpm"),
        seconds=tuple(seconds),
    )


@dataclass(frozen=True)
class PhaseReport:
    """A phase's values as reported and judged (rounded; HC below zero reported as 0)."""

    hc_ppm: int
    co_pct: float
    co2_pct: float
    o2_pct: float
    no_ppm: int
    lambda_value: float
    rpm: int


def _report(p: PhaseMeans) -> PhaseReport:
    hc = max(Decimal(0), round_half_away(p.hc_ppm, 0))
    return PhaseReport(
        hc_ppm=int(hc),
        co_pct=float(round_half_away(p.co_pct, 2)),
        co2_pct=float(round_half_away(p.co2_pct, 2)),
        o2_pct=float(round_half_away(p.o2_pct, 2)),
        no_ppm=int(round_half_away(p.no_ppm, 0)),
        lambda_value=float(round_half_away(p.lambda_value, 2)),
        rpm=int(round_half_away(p.rpm, 0)),
    )


@dataclass(frozen=True)
class TwoSpeedIdleVerdict:
    """Two-speed idle result; `verdict` "void" (with `void_reasons`) means: repeat the test."""

    limit_set: str
    high_idle: PhaseReport
    idle: PhaseReport
    lambda_brettschneider: float | None
    lambda_difference: float | None
    checks: tuple[Check, ...]
    flags: tuple[str, ...]
    void_reasons: tuple[str, ...]
    verdict: Literal["pass", "fail", "void"]


def high_idle_band(limits: TwoSpeedIdleLimits, total_mass_kg: float) -> CitedBand:
    """The high-idle speed band: light vehicles (total mass ≤ the light limit) or heavy."""
    light = to_decimal(total_mass_kg) <= to_decimal(limits.rpm.light_max_total_mass_kg.value)
    return limits.rpm.high_idle_light if light else limits.rpm.high_idle_heavy


def _void_reasons(phase: str, p: PhaseMeans, min_co_co2: Decimal, band: CitedBand) -> list[str]:
    reasons = []
    diluted = [(i, to_decimal(s.co_pct) + to_decimal(s.co2_pct)) for i, s in enumerate(p.seconds)]
    diluted = [(i, v) for i, v in diluted if v < min_co_co2]
    if diluted:
        i, v = diluted[0]
        reasons.append(
            f"{phase}: sample diluted, CO + CO2 = {v} % below {min_co_co2} % in {len(diluted)} "
            f"second(s), first at second {i + 1}; check the probe depth and the exhaust for leaks"
        )
    lo, hi = to_decimal(band.min), to_decimal(band.max)
    off = [(i, s.rpm) for i, s in enumerate(p.seconds) if not lo <= to_decimal(s.rpm) <= hi]
    if off:
        i, rpm = off[0]
        reasons.append(
            f"{phase}: engine speed {rpm} r/min outside {band.min:g}…{band.max:g} r/min in "
            f"{len(off)} second(s), first at second {i + 1}"
        )
    return reasons


def judge_two_speed_idle(
    high_idle: PhaseMeans,
    idle: PhaseMeans,
    limits: EmissionsLimits | TwoSpeedIdleLimits,
    *,
    total_mass_kg: float,
    fuel: str = "gasoline",
    limit_set: str | None = None,
) -> TwoSpeedIdleVerdict:
    """Judge idle and high-idle CO/HC and high-idle λ; cross-check λ; void on dilution or speed.

    `limit_set` None uses the set the limits name; the idle band is the limits'
    (send the vehicle's own as an override).
    """
    tsi = limits.two_speed_idle if isinstance(limits, EmissionsLimits) else limits
    name = limit_set or tsi.limit_set.value
    if name not in tsi.sets:
        raise LimitsError("emission limits", [f"two_speed_idle.sets.{name}: no such limit set"])
    if fuel not in tsi.dilution_min_co_co2_pct:
        known = ", ".join(sorted(tsi.dilution_min_co_co2_pct))
        raise LimitsError(
            "emission limits",
            [f"two_speed_idle.dilution_min_co_co2_pct.{fuel}: no dilution threshold for this fuel (have: {known})"],
        )
    if not high_idle.seconds or not idle.seconds:
        raise ValueError("two-speed idle needs the one-second means of both phases (dilution, engine speed)")
    s = tsi.sets[name]
    hi, lo = _report(high_idle), _report(idle)
    checks = [
        check("high_idle_co", to_decimal(hi.co_pct), "%", "<=", s.high_idle_co_max_pct),
        check("high_idle_hc", to_decimal(hi.hc_ppm), "ppm", "<=", s.high_idle_hc_max_ppm),
        check(
            "high_idle_lambda",
            to_decimal(hi.lambda_value),
            "",
            "within",
            s.high_idle_lambda,
            basis="mean of the analyzer's λ",
        ),
        check("idle_co", to_decimal(lo.co_pct), "%", "<=", s.idle_co_max_pct),
        check("idle_hc", to_decimal(lo.hc_ppm), "ppm", "<=", s.idle_hc_max_ppm),
    ]
    flags: list[str] = []
    lam_b: float | None = None
    diff: Decimal | None = None
    if high_idle.co2_pct > 0:
        lam_b = brettschneider_lambda(high_idle.co_pct, high_idle.co2_pct, high_idle.o2_pct, max(0.0, high_idle.hc_ppm))
        # Compared at the analyzer's own λ resolution (0.001) so float noise cannot flag.
        diff = round_half_away(abs(to_decimal(high_idle.lambda_value) - to_decimal(lam_b)), 3)
        tol = tsi.lambda_cross_check_tolerance.value
        if diff > to_decimal(tol):
            flags.append(
                f"λ cross-check: analyzer {high_idle.lambda_value:.3f} vs Brettschneider {lam_b:.3f} "
                f"differ by {diff} (tolerance {tol}); check the analyzer's calibration"
            )
    else:
        flags.append("λ cross-check: no CO2 in the high-idle mean, Brettschneider λ undefined")
    min_co_co2 = to_decimal(tsi.dilution_min_co_co2_pct[fuel].value)
    void = _void_reasons("high idle", high_idle, min_co_co2, high_idle_band(tsi, total_mass_kg))
    void += _void_reasons("idle", idle, min_co_co2, tsi.rpm.idle)
    verdict: Literal["pass", "fail", "void"]
    verdict = "void" if void else "pass" if all(c.passed for c in checks) else "fail"
    return TwoSpeedIdleVerdict(
        limit_set=name,
        high_idle=hi,
        idle=lo,
        lambda_brettschneider=lam_b,
        lambda_difference=None if diff is None else float(diff),
        checks=tuple(checks),
        flags=tuple(flags),
        void_reasons=tuple(void),
        verdict=verdict,
    )


def judge_hc_residue(hc_ppm: float, limits: EmissionsLimits | TwoSpeedIdleLimits) -> Check:
    """The HC left in the sampling system (pump on ambient air) must be below the limit."""
    tsi = limits.two_speed_idle if isinstance(limits, EmissionsLimits) else limits
    value = max(Decimal(0), round_half_away(hc_ppm, 0))
    return check("hc_residue", value, "ppm", "<", tsi.hc_residue_max_ppm, basis="HC with the pump on ambient air")


@dataclass(frozen=True)
class FreeAccelerationVerdict:
    """Free acceleration: the measured peaks and their mean K as judged."""

    limit_set: str
    peak_k_m1: tuple[float, ...]
    peak_rpm: tuple[float, ...] | None
    mean_k_m1: float
    check: Check
    verdict: Literal["pass", "fail"]


def judge_free_acceleration(
    peak_k_m1: Sequence[float],
    limits: EmissionsLimits | FreeAccelerationLimits,
    *,
    limit_set: str | None = None,
    peak_rpm: Sequence[float] | None = None,
) -> FreeAccelerationVerdict:
    """Mean of the measured peak K (three, per the limits) rounded to 0.01 m⁻¹, against the limit."""
    fa = limits.free_acceleration if isinstance(limits, EmissionsLimits) else limits
    name = limit_set or fa.limit_set.value
    if name not in fa.sets:
        raise LimitsError("emission limits", [f"free_acceleration.sets.{name}: no such limit set"])
    wanted = int(fa.measured_accelerations.value)
    if len(peak_k_m1) != wanted:
        raise ValueError(f"free acceleration needs {wanted} measured peaks, got {len(peak_k_m1)}")
    if peak_rpm is not None and len(peak_rpm) != len(peak_k_m1):
        raise ValueError(f"{len(peak_k_m1)} peak K values but {len(peak_rpm)} engine speeds")
    k = round_half_away(mean(peak_k_m1), 2)
    c = check(
        "free_acceleration_k",
        k,
        "m⁻¹",
        "<=",
        fa.sets[name].k_max_m1,
        basis=f"mean of {wanted} measured peak K",
    )
    return FreeAccelerationVerdict(
        limit_set=name,
        peak_k_m1=tuple(peak_k_m1),
        peak_rpm=None if peak_rpm is None else tuple(peak_rpm),
        mean_k_m1=float(k),
        check=c,
        verdict="pass" if c.passed else "fail",
    )


def opacity_pct_from_k(k_m1: float, path_length_m: float = OPTICAL_PATH_LENGTH_M) -> float:
    """Opacity N in % from the light absorption coefficient K: N = 100 · (1 − e^(−K·L))."""
    return 100 * (1 - math.exp(-k_m1 * path_length_m))


def k_from_opacity_pct(n_pct: float, path_length_m: float = OPTICAL_PATH_LENGTH_M) -> float:
    """K in m⁻¹ from opacity N in %: K = −ln(1 − N / 100) / L (N below 100 %)."""
    if not 0 <= n_pct < 100:
        raise ValueError(f"opacity must be at least 0 % and below 100 %, got {n_pct} %")
    return -math.log(1 - n_pct / 100) / path_length_m


def opacity_consistent(
    n_pct: float, k_m1: float, path_length_m: float = OPTICAL_PATH_LENGTH_M, tolerance_pct: float = 0.5
) -> bool:
    """Whether an opacimeter's N and K describe the same smoke: |N − N(K)| ≤ tolerance."""
    return abs(n_pct - opacity_pct_from_k(k_m1, path_length_m)) <= tolerance_pct
