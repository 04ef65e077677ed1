"""The dynamometer's self-checks as pure functions over ring samples: crossing times, the loaded
coast-down's CCDT and verdict, the parasitic-loss bands and their least-squares fit. No I/O.

spec/devices/dynamometer.md "Self-checks": speeds are crossing times found by linear
interpolation between the two ring samples either side of the crossing; M = BASE_INERTIA;

    CCDT = M · (v1² − v2²) / (2 · P_cd)          PL(v_nom) = M · (v_hi² − v_lo²) / (2 · Δt)

(speeds in m/s, power in W), and F_pl(v) = A + B·v + C·v² (N, v in km/h) fitted to the
points (v_nom, PL / (v_nom / 3.6)).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

KMH = 3.6

#: (t_s, speed_kmh): one ring sample on the lane's time axis (sample number / SAMPLE_RATE)
Point = tuple[float, float]


def ring_points(samples: Sequence[Any], rate_hz: float) -> list[Point]:
    """Ring samples (with `.index` mod 65536 and `.speed_kmh`) as (t_s, speed_kmh) from the first one;
    a lost sample leaves a gap in time, never a wrong time."""
    if not samples:
        return []
    first = samples[0].index
    return [(((s.index - first) % 65536) / rate_hz, s.speed_kmh) for s in samples]


def crossing_time(points: Sequence[Point], v_kmh: float) -> float | None:
    """When the speed first falls through `v_kmh` (from above it to at or below it), interpolated
    linearly between the two samples either side; None if it never does."""
    for (t0, v0), (t1, v1) in itertools.pairwise(points):
        if v0 > v_kmh >= v1:
            return t0 + (t1 - t0) * (v0 - v_kmh) / (v0 - v1)
    return None


def ccdt_s(mass_kg: float, v1_kmh: float, v2_kmh: float, power_kw: float) -> float:
    """The expected loaded coast-down time from v1 to v2 under P_cd: M (v1² − v2²) / (2 P_cd)."""
    v1, v2 = v1_kmh / KMH, v2_kmh / KMH
    return mass_kg * (v1 * v1 - v2 * v2) / (2 * power_kw * 1000)


@dataclass(frozen=True)
class CoastDownVerdict:
    """The loaded coast-down: measured (ACDT) and expected (CCDT) times, their deviation, the verdict."""

    passed: bool
    acdt_s: float | None
    ccdt_s: float
    deviation_pct: float | None
    limit_pct: float
    mass_kg: float
    power_kw: float
    v1_kmh: float
    v2_kmh: float
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def loaded_coast_down_verdict(points: Sequence[Point], *, mass_kg: float, v1_kmh: float, v2_kmh: float,
                              power_kw: float, limit_pct: float) -> CoastDownVerdict:
    """Pass if |ACDT − CCDT| / CCDT ≤ limit; fail if either speed was never crossed."""
    expected = ccdt_s(mass_kg, v1_kmh, v2_kmh, power_kw)
    t1, t2 = crossing_time(points, v1_kmh), crossing_time(points, v2_kmh)
    base = {"ccdt_s": round(expected, 3), "limit_pct": limit_pct, "mass_kg": mass_kg, "power_kw": power_kw,
            "v1_kmh": v1_kmh, "v2_kmh": v2_kmh}
    if t1 is None or t2 is None or t2 <= t1:
        missing = f"{v1_kmh:g}" if t1 is None else f"{v2_kmh:g}"
        return CoastDownVerdict(passed=False, acdt_s=None, deviation_pct=None,
                                reason=f"the rollers never coasted through {missing} km/h", **base)
    acdt = t2 - t1
    deviation = (acdt - expected) / expected * 100
    passed = abs(deviation) <= limit_pct
    reason = "" if passed else (f"ACDT {acdt:.3f} s is {deviation:+.2f} % from CCDT {expected:.3f} s "
                                f"(limit ±{limit_pct:g} %)")
    return CoastDownVerdict(passed=passed, acdt_s=round(acdt, 3), deviation_pct=round(deviation, 2), reason=reason,
                            **base)


@dataclass(frozen=True)
class ParasiticBand:
    """One band of the parasitic coast: Δt from v_hi down to v_lo and the power PL(v_nom) it gives."""

    v_hi_kmh: float
    v_lo_kmh: float
    v_nominal_kmh: float
    dt_s: float | None
    power_kw: float | None

    @property
    def force_n(self) -> float | None:
        """PL / (v_nom / 3.6): the parasitic force at the nominal speed (N)."""
        return None if self.power_kw is None else self.power_kw * 1000 / (self.v_nominal_kmh / KMH)


def parasitic_bands(points: Sequence[Point], mass_kg: float,
                    bands: Sequence[tuple[float, float, float]]) -> list[ParasiticBand]:
    """Each band's Δt and PL(v_nom) = M (v_hi² − v_lo²) / (2 Δt); None for a band not crossed."""
    out = []
    for hi, lo, nominal in bands:
        t_hi, t_lo = crossing_time(points, hi), crossing_time(points, lo)
        if t_hi is None or t_lo is None or t_lo <= t_hi:
            out.append(ParasiticBand(hi, lo, nominal, None, None))
            continue
        dt = t_lo - t_hi
        energy_j = mass_kg * ((hi / KMH) ** 2 - (lo / KMH) ** 2) / 2
        out.append(ParasiticBand(hi, lo, nominal, dt, energy_j / dt / 1000))
    return out


def fit_parasitic(points: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
    """Least-squares A + B·v + C·v² through (v_kmh, force_n) points: (A N, B N per km/h, C N per (km/h)²).
    ValueError with fewer than three distinct speeds."""
    if len({v for v, _ in points}) < 3:
        raise ValueError("the quadratic fit needs at least three distinct speeds")
    # the normal equations (Σ v^(i+j)) · x = Σ v^i · F, solved by Gaussian elimination with pivoting
    m = [[sum(v ** (i + j) for v, _ in points) for j in range(3)] + [sum(v ** i * f for v, f in points)]
         for i in range(3)]
    for col in range(3):
        pivot = max(range(col, 3), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(3):
            if r != col:
                k = m[r][col] / m[col][col]
                m[r] = [a - k * b for a, b in zip(m[r], m[col], strict=True)]
    a, b, c = (m[i][3] / m[i][i] for i in range(3))
    return a, b, c


@dataclass(frozen=True)
class ParasiticVerdict:
    """The parasitic-loss check: each band, the fitted coefficients, and whether the fit reproduces the bands."""

    passed: bool
    bands: list[dict[str, Any]]
    pl_a_n: float | None
    pl_b: float | None
    pl_c: float | None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parasitic_verdict(bands: Sequence[ParasiticBand], *, tolerance_kw: float,
                      tolerance_pct: float) -> ParasiticVerdict:
    """Pass if every band was crossed and the fit reproduces each band's power within
    tolerance_kw or tolerance_pct of it, whichever is larger."""
    shown = [{"v_hi_kmh": b.v_hi_kmh, "v_lo_kmh": b.v_lo_kmh, "v_nominal_kmh": b.v_nominal_kmh,
              "dt_s": None if b.dt_s is None else round(b.dt_s, 3),
              "power_kw": None if b.power_kw is None else round(b.power_kw, 3)} for b in bands]
    missing = [b for b in bands if b.force_n is None]
    if missing:
        names = ", ".join(f"{b.v_hi_kmh:g} → {b.v_lo_kmh:g}" for b in missing)
        return ParasiticVerdict(False, shown, None, None, None, reason=f"band(s) not crossed: {names} km/h")
    a, b_, c = fit_parasitic([(b.v_nominal_kmh, b.force_n) for b in bands if b.force_n is not None])
    worst = ""
    for band, row in zip(bands, shown, strict=True):
        v = band.v_nominal_kmh
        fitted_kw = (a + b_ * v + c * v * v) * v / KMH / 1000
        assert band.power_kw is not None
        allowed = max(tolerance_kw, abs(band.power_kw) * tolerance_pct / 100)
        row["fitted_kw"] = round(fitted_kw, 3)
        row["within"] = abs(fitted_kw - band.power_kw) <= allowed
        if not row["within"] and not worst:
            worst = (f"band {v:g} km/h: fit {fitted_kw:.3f} kW vs measured {band.power_kw:.3f} kW "
                     f"(allowed ±{allowed:.3f} kW)")
    return ParasiticVerdict(not worst, shown, round(a, 2), round(b_, 4), round(c, 5), reason=worst)
