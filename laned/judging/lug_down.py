"""Lug-down (加载减速法, GB 3847-2018 Appendix B): scan start, power scan, measurement points and
the verdict, as pure state machines over whole seconds. No I/O, no clock.

A procedure feeds `ScanStart` the per-second mean speeds at full throttle until it says
`START` (then sets CONTROL_MODE = 3 and the ramp), `LugDownScan` the scan seconds until
`END`, then one `LugDownPoint` per target (`point_targets`) the seconds after the target's
write until `DONE`; any `VOID` ends the test. `judge_lug_down` turns what they found into
the verdict. Rules and rounding follow standards.md ("Diesel: lug-down" and its
Clarifications); speeds and powers are compared exact (Decimal), rounded only to report,
and K, NOx and the power percentage are rounded half away from zero before their limits.

Over 400 lines: scan start, scan, points and verdict are one method's rules, kept together
so each can be checked against standards.md beside the others.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Literal

from laned.judging.limits import CitedValue, EmissionsLimits, LimitsError, LugDownLimits, LugDownSet, check
from laned.judging.rounding import _PRECISION, Check, Number, round_half_away, to_decimal
from laned.judging.rounding import decimal_mean as _mean
from laned.judging.rounding import decimal_mean_or_none as _mean_or_none
from laned.settings.lug_down import LugDownSettings

ZERO = Decimal(0)


def _opt(value: Number | None) -> Decimal | None:
    return None if value is None else to_decimal(value)


class LugEvent(enum.Enum):
    WAITING = "waiting"  # scan start: not yet steady in range
    START = "start"  # scan start: start the power scan now
    SCANNING = "scanning"  # a scan second, the scan goes on
    END = "end"  # the scan's last second (it meets the end rule)
    SETTLING = "settling"  # a point: moving to it or counting stable seconds
    MEASURING = "measuring"  # a point: a second of the measuring window
    DONE = "done"  # a point: its window is complete
    VOID = "void"


# ----- scan start ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StartStep:
    event: LugEvent
    second: int
    reason: str = ""


class ScanStart:
    """When to start the scan: the last 3 per-second mean speeds within 0.5 km/h of each other
    (max − min) and all within [start_speed_min, start_speed_max] (inclusive). Void ("wrong
    gear") after 60 consecutive seconds outside the range, or 120 s from the prompt without a
    start. Feed every second at full throttle from the prompt."""

    def __init__(self, settings: LugDownSettings) -> None:
        self.s = settings
        self.speeds: list[Decimal] = []
        self._outside = 0
        self.done = False

    def feed(self, speed_kmh: Number) -> StartStep:
        if self.done:
            raise RuntimeError("the scan start has been decided; no more seconds")
        v = to_decimal(speed_kmh)
        self.speeds.append(v)
        n = len(self.speeds)
        lo, hi = to_decimal(self.s.start_speed_min_kmh), to_decimal(self.s.start_speed_max_kmh)
        inside = lo <= v <= hi
        self._outside = 0 if inside else self._outside + 1
        last = self.speeds[-self.s.start_steady_s:]
        if (len(last) == self.s.start_steady_s and all(lo <= x <= hi for x in last)
                and max(last) - min(last) <= to_decimal(self.s.start_steady_kmh)):
            self.done = True
            return StartStep(LugEvent.START, n)
        if self._outside >= self.s.wrong_gear_outside_s:
            self.done = True
            return StartStep(LugEvent.VOID, n, f"wrong gear: {self._outside} s outside {lo:f} … {hi:f} km/h "
                             f"at full throttle (choose the gear nearest {self.s.gear_target_speed_kmh:g} km/h)")
        if n >= self.s.start_timeout_s:
            self.done = True
            return StartStep(LugEvent.VOID, n, f"wrong gear: no steady speed in {lo:f} … {hi:f} km/h within "
                             f"{self.s.start_timeout_s} s of the prompt")
        return StartStep(LugEvent.WAITING, n)


# ----- power scan ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanSecond:
    """One scan second: mean speed, mean wheel power (mean of the ten FORCE × SPEED / 3.6, kW),
    mean engine speed (None: no signal)."""

    speed_kmh: Number
    power_kw: Number
    rpm: Number | None = None


@dataclass(frozen=True)
class ScanStep:
    event: LugEvent
    second: int  # scan second, from 1
    reason: str = ""


@dataclass(frozen=True)
class ScanResult:
    """The power scan as found (exact values). `max_second` is the scan second of Pmax."""

    pmax_kw: Decimal
    vel_max_hp_kmh: Decimal
    max_rpm: Decimal | None
    max_second: int
    seconds: int
    end_speed_kmh: Decimal
    speed_sum_kmh: Decimal  # over the scan seconds with an RPM signal
    rpm_sum: Decimal

    def calculated_vel_max_hp_kmh(self, rated_rpm: Number) -> Decimal | None:
        """n_rated × Σv / ΣRPM over the scan seconds (with RPM): the speed at rated engine speed in
        this gear. None without any RPM signal."""
        if self.rpm_sum <= 0:
            return None
        with localcontext(_PRECISION):
            return to_decimal(rated_rpm) * self.speed_sum_kmh / self.rpm_sum


class LugDownScan:
    """The power scan, fed its seconds from scan second 1 (the first whole second in mode 3).

    Pmax is the largest per-second power (on an exact tie the earlier second wins), VelMaxHP its
    speed, MaxRPM its engine speed. The scan ends at the first second whose speed is at most
    0.75 × VelMaxHP as known then (that second is a scan second); it is void if the maximum is in
    scan second 1 or 2, or at its 61st second."""

    def __init__(self, settings: LugDownSettings) -> None:
        self.s = settings
        self.seconds: list[ScanSecond] = []
        self._pmax: Decimal | None = None
        self._vmax = ZERO
        self._rpm_max: Decimal | None = None
        self._max_second = 0
        self._v_sum = ZERO
        self._rpm_sum = ZERO
        self.result: ScanResult | None = None
        self.void_reason: str | None = None

    @property
    def vel_max_hp_kmh(self) -> Decimal | None:
        """VelMaxHP as known so far."""
        return None if self._pmax is None else self._vmax

    def feed(self, second: ScanSecond) -> ScanStep:
        if self.result is not None or self.void_reason is not None:
            raise RuntimeError("the power scan has ended; no more seconds")
        self.seconds.append(second)
        n = len(self.seconds)
        v, p, rpm = to_decimal(second.speed_kmh), to_decimal(second.power_kw), _opt(second.rpm)
        if n > self.s.scan_max_s:
            self.void_reason = f"the power scan did not end within {self.s.scan_max_s} s"
            return ScanStep(LugEvent.VOID, n, self.void_reason)
        if self._pmax is None or p > self._pmax:
            self._pmax, self._vmax, self._rpm_max, self._max_second = p, v, rpm, n
        if rpm is not None:
            self._v_sum += v
            self._rpm_sum += rpm
        with localcontext(_PRECISION):
            end_speed = to_decimal(self.s.scan_end_fraction) * self._vmax
        if v > end_speed:
            return ScanStep(LugEvent.SCANNING, n)
        if self._max_second < self.s.scan_min_max_second:
            self.void_reason = (f"the maximum power was in scan second {self._max_second}: the scan began below the "
                                "maximum-power speed (choose a lower gear)")
            return ScanStep(LugEvent.VOID, n, self.void_reason)
        assert self._pmax is not None
        self.result = ScanResult(self._pmax, self._vmax, self._rpm_max, self._max_second, n, v,
                                 self._v_sum, self._rpm_sum)
        return ScanStep(LugEvent.END, n)


def point_targets(vel_max_hp_kmh: Number) -> tuple[Decimal, Decimal]:
    """The 100 % and 80 % point targets: VelMaxHP (exact) × 1.00 and × 0.80, each rounded half away
    from zero to 0.01 km/h (the register's resolution)."""
    v = to_decimal(vel_max_hp_kmh)
    with localcontext(_PRECISION):
        return round_half_away(v, 2), round_half_away(v * Decimal("0.80"), 2)


# ----- measurement points --------------------------------------------------------------------


@dataclass(frozen=True)
class PointSecond:
    """One second at a point: the dynamometer's means and the meters' means over that second."""

    speed_kmh: Number
    power_kw: Number
    k_m1: Number
    opacity_pct: Number
    nox_ppm: Number
    co2_pct: Number
    rpm: Number | None = None


@dataclass(frozen=True)
class PointStep:
    event: LugEvent
    second: int  # seconds since the target's write, from 1
    stable: bool
    reason: str = ""


@dataclass(frozen=True)
class PointResult:
    """A point's values: the means over its measuring window of the per-second means (exact)."""

    name: str
    target_kmh: Decimal
    window: tuple[int, int]  # first and last second (counted from the target's write)
    k_m1: Decimal
    opacity_pct: Decimal
    nox_ppm: Decimal
    co2_pct: Decimal
    power_kw: Decimal
    speed_kmh: Decimal
    rpm: Decimal | None
    rpm_lost: bool


class LugDownPoint:
    """One measurement point: a second is stable within ± 1.0 km/h of the target; 3 consecutive
    stable seconds settle it, the next 3 are the measuring window; an unstable second restarts
    the settling. Void if not complete `point_timeout_s` after the target's write. "RPM lost":
    more than 3 consecutive settle or measure seconds without an engine-speed signal."""

    def __init__(self, name: str, target_kmh: Number, settings: LugDownSettings) -> None:
        self.name = name
        self.target = to_decimal(target_kmh)
        self.s = settings
        self.seconds: list[PointSecond] = []
        self.stable_flags: list[bool] = []
        self._settled = 0
        self._window: list[tuple[int, PointSecond]] = []
        self._no_rpm_run = 0
        self.rpm_lost = False
        self.result: PointResult | None = None
        self.void_reason: str | None = None

    def is_stable(self, speed_kmh: Number) -> bool:
        return abs(to_decimal(speed_kmh) - self.target) <= to_decimal(self.s.point_speed_tolerance_kmh)

    def feed(self, second: PointSecond) -> PointStep:
        if self.result is not None or self.void_reason is not None:
            raise RuntimeError(f"the {self.name} point has ended; no more seconds")
        self.seconds.append(second)
        n = len(self.seconds)
        stable = self.is_stable(second.speed_kmh)
        self.stable_flags.append(stable)
        if not stable:
            self._settled, self._window, self._no_rpm_run = 0, [], 0
            event = LugEvent.SETTLING
        else:
            self._no_rpm_run = self._no_rpm_run + 1 if second.rpm is None else 0
            if self._no_rpm_run > self.s.rpm_lost_s:
                self.rpm_lost = True
            if self._settled < self.s.settle_s:
                self._settled += 1
                event = LugEvent.SETTLING
            else:
                self._window.append((n, second))
                event = LugEvent.MEASURING
                if len(self._window) == self.s.measure_s:
                    self.result = self._values()
                    return PointStep(LugEvent.DONE, n, True)
        if n >= self.s.point_timeout_s:
            self.void_reason = (f"the {self.name} point ({self.target:f} km/h) was not complete "
                                f"{self.s.point_timeout_s} s after its target was set")
            return PointStep(LugEvent.VOID, n, stable, self.void_reason)
        return PointStep(event, n, stable)

    def _values(self) -> PointResult:
        rows = [s for _, s in self._window]
        return PointResult(
            name=self.name, target_kmh=self.target, window=(self._window[0][0], self._window[-1][0]),
            k_m1=_mean([to_decimal(r.k_m1) for r in rows]),
            opacity_pct=_mean([to_decimal(r.opacity_pct) for r in rows]),
            nox_ppm=_mean([to_decimal(r.nox_ppm) for r in rows]),
            co2_pct=_mean([to_decimal(r.co2_pct) for r in rows]),
            power_kw=_mean([to_decimal(r.power_kw) for r in rows]),
            speed_kmh=_mean([to_decimal(r.speed_kmh) for r in rows]),
            rpm=_mean_or_none([_opt(r.rpm) for r in rows]),
            rpm_lost=self.rpm_lost,
        )


# ----- power and engine-speed checks ---------------------------------------------------------


def power_factor(settings: LugDownSettings) -> Decimal:
    """PF for the ambient correction of Pmax: 1 with `power_correction = "none"` (the only choice
    until the formula is confirmed)."""
    if settings.power_correction == "none":
        return Decimal(1)
    raise ValueError(f"unknown power correction {settings.power_correction!r}")  # pragma: no cover


def power_pct(corrected_pmax_kw: Number, rated_power_kw: Number) -> Decimal:
    """Corrected Pmax as a % of rated power, exact, then rounded half away to 0.1 %."""
    rated = to_decimal(rated_power_kw)
    if rated <= 0:
        raise ValueError(f"rated power must be above 0 kW, got {rated}")
    with localcontext(_PRECISION):
        return round_half_away(to_decimal(corrected_pmax_kw) * 100 / rated, 1)


def judge_power(corrected_pmax_kw: Number, rated_power_kw: Number, limits: LugDownLimits) -> Check:
    """Corrected Pmax ≥ min_power_pct of rated power, the percentage rounded to 0.1 % first."""
    return check("lug_down_power", power_pct(corrected_pmax_kw, rated_power_kw), "%", ">=", limits.min_power_pct,
                 basis=f"corrected maximum wheel power / rated power {to_decimal(rated_power_kw):f} kW")


def rpm_deviation_pct(max_rpm: Number, rated_rpm: Number) -> Decimal:
    """|MaxRPM − n_rated| as a % of n_rated, exact."""
    with localcontext(_PRECISION):
        return abs(to_decimal(max_rpm) - to_decimal(rated_rpm)) * 100 / to_decimal(rated_rpm)


# ----- the verdict ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LugDownVerdict:
    """The lug-down test: pass / fail, or void with its reasons (void outranks a failed check)."""

    verdict: Literal["pass", "fail", "void"]
    limit_set: str
    checks: tuple[Check, ...]
    void_reasons: tuple[str, ...]
    flags: tuple[str, ...]
    scan: ScanResult | None
    points: tuple[PointResult, ...]
    pf: Decimal
    pmax_kw: Decimal | None
    corrected_pmax_kw: Decimal | None
    power_pct: Decimal | None
    vel_max_hp_kmh: Decimal | None
    calculated_vel_max_hp_kmh: Decimal | None
    max_rpm: Decimal | None
    idle_rpm: Decimal | None
    k100_m1: Decimal | None  # rounded to 0.01 m⁻¹
    k80_m1: Decimal | None
    nox80_ppm: Decimal | None  # rounded to 1 ppm
    limits: LugDownSet  # the set applied
    min_power_pct: CitedValue


def judge_lug_down(
    scan: ScanResult | None,
    points: Sequence[PointResult],
    limits: EmissionsLimits | LugDownLimits,
    settings: LugDownSettings,
    *,
    rated_power_kw: Number,
    rated_rpm: Number,
    idle_rpm: Number | None = None,
    void_reasons: Sequence[str] = (),
    limit_set: str | None = None,
) -> LugDownVerdict:
    """Judge K100, K80 (0.01 m⁻¹) and NOx80 (1 ppm) and the power (0.1 %), inclusive limits; check
    MaxRPM against the rated speed (`rpm_check`: flag / void / off). `points` are the 100 % then
    the 80 % point as far as they completed; `void_reasons` what voided the test on the way (scan
    start, scan, a point, the dynamometer, an abort). A void test has no verdict even when a
    check failed."""
    lug = limits.lug_down if isinstance(limits, EmissionsLimits) else limits
    name = limit_set or lug.limit_set.value
    if name not in lug.sets:
        raise LimitsError("emission limits", [f"lug_down.sets.{name}: no such limit set"])
    limit = lug.sets[name]
    void = list(void_reasons)
    flags: list[str] = []
    checks: list[Check] = []
    pf = power_factor(settings)
    pmax = corrected = pct = calc = None
    if scan is not None:
        pmax = scan.pmax_kw
        with localcontext(_PRECISION):
            corrected = pmax * pf
        power = judge_power(corrected, rated_power_kw, lug)
        pct = to_decimal(power.value) if power.value is not None else None
        checks.append(power)
        calc = scan.calculated_vel_max_hp_kmh(rated_rpm)
        if settings.rpm_check != "off":
            problem = _rpm_problem(scan.max_rpm, rated_rpm, settings)
            if problem is not None:
                (void if settings.rpm_check == "void" else flags).append(problem)
    elif not void:
        raise ValueError("a lug-down verdict needs the power scan, or the reason the test is void")
    by_name = {p.name: p for p in points}
    p100, p80 = by_name.get("100"), by_name.get("80")
    for p in points:
        if p.rpm_lost and settings.rpm_check != "off":
            text = f"the {p.name} % point: the engine-speed signal was lost for more than {settings.rpm_lost_s} s"
            (void if settings.rpm_check == "void" else flags).append(text)
    k100 = None if p100 is None else round_half_away(p100.k_m1, 2)
    k80 = None if p80 is None else round_half_away(p80.k_m1, 2)
    nox80 = None if p80 is None else round_half_away(p80.nox_ppm, 0)
    if p100 is not None:
        checks.append(check("lug_down_k100", k100, "m⁻¹", "<=", limit.k_max_m1,
                            basis=f"mean K over seconds {p100.window[0]} … {p100.window[1]} of the 100 % point"))
    if p80 is not None:
        checks.append(check("lug_down_k80", k80, "m⁻¹", "<=", limit.k_max_m1,
                            basis=f"mean K over seconds {p80.window[0]} … {p80.window[1]} of the 80 % point"))
        checks.append(check("lug_down_nox80", nox80, "ppm", "<=", limit.nox_max_ppm,
                            basis="mean NOx of the 80 % point as the analyzer reports it (no correction)"))
    if not void and (p100 is None or p80 is None):
        raise ValueError("a lug-down verdict needs both points, or the reason the test is void")
    verdict: Literal["pass", "fail", "void"]
    verdict = "void" if void else "pass" if all(c.passed for c in checks) else "fail"
    return LugDownVerdict(
        verdict=verdict, limit_set=name, checks=tuple(checks), void_reasons=tuple(void), flags=tuple(flags),
        scan=scan, points=tuple(points), pf=pf, pmax_kw=pmax, corrected_pmax_kw=corrected, power_pct=pct,
        vel_max_hp_kmh=None if scan is None else scan.vel_max_hp_kmh, calculated_vel_max_hp_kmh=calc,
        max_rpm=None if scan is None else scan.max_rpm, idle_rpm=_opt(idle_rpm),
        k100_m1=k100, k80_m1=k80, nox80_ppm=nox80, limits=limit, min_power_pct=lug.min_power_pct,
    )


def _rpm_problem(max_rpm: Decimal | None, rated_rpm: Number, settings: LugDownSettings) -> str | None:
    if max_rpm is None:
        return "no engine speed at maximum power: MaxRPM could not be checked against the rated speed"
    deviation = rpm_deviation_pct(max_rpm, rated_rpm)
    if deviation <= to_decimal(settings.max_rpm_deviation_pct):
        return None
    return (f"engine speed at maximum power {round_half_away(max_rpm, 0)} r/min is "
            f"{round_half_away(deviation, 1)} % from the rated {to_decimal(rated_rpm):f} r/min "
            f"(allowed {settings.max_rpm_deviation_pct:g} %)")
