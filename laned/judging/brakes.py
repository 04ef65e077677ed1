"""Brake verdicts from roller-tester curves: pure functions over a limits row.

`analyse_axle` turns one axle's curves into the numbers the standard names
(F_max per wheel, drag, start of braking, the imbalance window and ΔF);
`judge_axle`, `judge_vehicle` and `judge_parking` compare them with the
limits. Ratios are computed in N; percentages are rounded to 0.1 half away
from zero before any comparison (the rear-axle 60 % switch included). Results
report forces in daN, loads in whole kg and rates in %.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from laned.judging.limits import (
    BrakeLimits,
    BrakeRow,
    CitedValue,
    DragLimits,
    ImbalanceLimits,
    ParkingLimits,
    check,
    select_brake_row,
)
from laned.judging.rounding import (
    Check,
    dan_from_n,
    kg_from_n,
    mean,
    ratio_pct,
    round_half_away,
    to_decimal,
)

AxlePosition = Literal["front", "rear"]
Verdict = Literal["pass", "fail"]


@dataclass(frozen=True)
class AxleMeasurement:
    """One axle on the rollers: static wheel loads and both force curves, in N.

    The curves are sampled at `sample_rate_hz` and hold at least one second
    before `prompt_index` (the "brake now" prompt; braking can only start after
    it). `*_slip_index` is the first sample at which the wheel's slip was seen
    latched (the third roller stopped the wheel), or None.
    """

    axle_no: int
    position: AxlePosition
    parking_brake: bool
    left_wheel_load_n: float
    right_wheel_load_n: float
    left_force_n: Sequence[float]
    right_force_n: Sequence[float]
    sample_rate_hz: int
    prompt_index: int
    left_slip_index: int | None = None
    right_slip_index: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "left_force_n", tuple(self.left_force_n))
        object.__setattr__(self, "right_force_n", tuple(self.right_force_n))
        where = f"axle {self.axle_no}"
        n = len(self.left_force_n)
        if len(self.right_force_n) != n:
            counts = f"{n} vs {len(self.right_force_n)} samples"
            raise ValueError(f"{where}: left and right force curves differ in length ({counts})")
        if self.sample_rate_hz <= 0:
            raise ValueError(f"{where}: sample rate must be positive, got {self.sample_rate_hz} Hz")
        if self.left_wheel_load_n <= 0 or self.right_wheel_load_n <= 0:
            loads = f"left {self.left_wheel_load_n} N, right {self.right_wheel_load_n} N"
            raise ValueError(f"{where}: static wheel loads must be positive, got {loads}")
        if self.prompt_index < self.sample_rate_hz - 1:
            raise ValueError(
                f"{where}: the prompt at sample {self.prompt_index} leaves less than one second "
                f"({self.sample_rate_hz} samples) of drag before it"
            )
        if self.prompt_index >= n - 1:
            raise ValueError(f"{where}: no samples after the prompt at sample {self.prompt_index} (curve has {n})")
        for side, slip in (("left", self.left_slip_index), ("right", self.right_slip_index)):
            if slip is not None and not self.prompt_index < slip < n:
                raise ValueError(
                    f"{where}: {side} slip at sample {slip} is not between the prompt "
                    f"(sample {self.prompt_index}) and the end of the curve ({n} samples)"
                )

    @property
    def axle_load_n(self) -> float:
        return float(to_decimal(self.left_wheel_load_n) + to_decimal(self.right_wheel_load_n))


@dataclass(frozen=True)
class DiffPoint:
    """The sample of largest left-right difference in the imbalance window."""

    index: int
    left_n: float
    right_n: float


@dataclass(frozen=True)
class AxleAnalysis:
    """What the curves say, in N; `braking_start_index` is None if braking never started.

    `left_braking` / `right_braking`: the wheel's own force exceeded its drag by
    the braking-start share of its load at some sample after the prompt. The
    imbalance window is `window_start_index` … `window_end_index` (both
    included): from braking start, or from the first sample after the prompt
    (the whole braking phase) when neither wheel braked.
    """

    measurement: AxleMeasurement
    left_max_n: float
    right_max_n: float
    left_max_index: int
    right_max_index: int
    left_drag_n: float
    right_drag_n: float
    braking_start_index: int | None
    window_end_index: int | None
    diff_n: float | None
    diff_point: DiffPoint | None
    left_braking: bool = False
    right_braking: bool = False
    window_start_index: int | None = None

    @property
    def axle_load_n(self) -> float:
        return self.measurement.axle_load_n


def _phase_max(curve: Sequence[float], prompt: int, slip: int | None) -> tuple[Decimal, int]:
    """Largest force after the prompt, up to and including lock-up; first index reaching it."""
    end = len(curve) - 1 if slip is None else slip
    best_i = prompt + 1
    best = to_decimal(curve[best_i])
    for i in range(prompt + 2, end + 1):
        value = to_decimal(curve[i])
        if value > best:
            best, best_i = value, i
    return best, best_i


def _first_above(curve: Sequence[float], prompt: int, threshold: Decimal) -> int | None:
    """First sample after the prompt whose force exceeds `threshold` (strictly), or None."""
    return next((i for i in range(prompt + 1, len(curve)) if to_decimal(curve[i]) > threshold), None)


def analyse_axle(m: AxleMeasurement, braking_start_wheel_load_pct: float) -> AxleAnalysis:
    """F_max, drag, start of braking and ΔF for one axle (standards.md, Brakes: definitions).

    A wheel is braking once its own force has exceeded its drag by the
    braking-start share of its wheel load; braking starts at the first sample
    where either wheel does. The imbalance window runs from braking start to
    the earliest sample, at or after it, where a *braking* wheel first reaches
    its F_max or has its slip latched. A wheel that never brakes (a dead brake,
    whatever its noise) ends nothing: its noise peak would cut the window short
    and hide the imbalance. If neither wheel ever brakes, the window is the
    whole braking phase (every sample after the prompt).
    """
    left, right, prompt = m.left_force_n, m.right_force_n, m.prompt_index
    first = prompt - m.sample_rate_hz + 1
    drag_l = mean(left[first : prompt + 1])
    drag_r = mean(right[first : prompt + 1])
    max_l, max_l_i = _phase_max(left, prompt, m.left_slip_index)
    max_r, max_r_i = _phase_max(right, prompt, m.right_slip_index)
    share = to_decimal(braking_start_wheel_load_pct) / 100
    cross_l = _first_above(left, prompt, drag_l + share * to_decimal(m.left_wheel_load_n))
    cross_r = _first_above(right, prompt, drag_r + share * to_decimal(m.right_wheel_load_n))
    crossings = [i for i in (cross_l, cross_r) if i is not None]
    start = min(crossings, default=None)
    last = len(left) - 1
    if start is None:
        window_start, end = prompt + 1, last
    else:
        ends = [
            i
            for cross, max_i, slip in ((cross_l, max_l_i, m.left_slip_index), (cross_r, max_r_i, m.right_slip_index))
            if cross is not None
            for i in (max_i, slip)
            if i is not None and i >= start
        ]
        window_start, end = start, min(ends, default=last)
    diff: Decimal | None = None
    point: DiffPoint | None = None
    for i in range(window_start, end + 1):
        d = abs(to_decimal(left[i]) - to_decimal(right[i]))
        if diff is None or d > diff:
            diff, point = d, DiffPoint(i, left[i], right[i])
    return AxleAnalysis(
        measurement=m,
        left_max_n=float(max_l),
        right_max_n=float(max_r),
        left_max_index=max_l_i,
        right_max_index=max_r_i,
        left_drag_n=float(drag_l),
        right_drag_n=float(drag_r),
        braking_start_index=start,
        window_end_index=end,
        diff_n=None if diff is None else float(diff),
        diff_point=point,
        left_braking=cross_l is not None,
        right_braking=cross_r is not None,
        window_start_index=window_start,
    )


@dataclass(frozen=True)
class AxleVerdict:
    """An axle's result: reported values (daN, kg) and its checks (rate, imbalance, drag)."""

    axle_no: int
    position: AxlePosition
    left_wheel_load_kg: int
    right_wheel_load_kg: int
    axle_load_kg: int
    left_max_dan: float
    right_max_dan: float
    left_drag_dan: float
    right_drag_dan: float
    diff_dan: float | None
    diff_index: int | None
    diff_left_dan: float | None
    diff_right_dan: float | None
    braking_start_index: int | None
    window_end_index: int | None
    checks: tuple[Check, ...]
    verdict: Verdict

    @property
    def item_code(self) -> str:
        return f"B{self.axle_no}"

    def check_named(self, item: str) -> Check:
        return next(c for c in self.checks if c.item == item)


@dataclass(frozen=True)
class NotTested:
    """An item the rollers could not test (e.g. full-time 4WD, axle over the tester's rating)."""

    item: str
    reason: str
    verdict: Literal["not_tested"] = "not_tested"


def _pct(numerator: float | Decimal, denominator: float | Decimal) -> Decimal:
    return round_half_away(ratio_pct(numerator, denominator), 1)


def _verdict(checks: Sequence[Check]) -> Verdict:
    return "pass" if all(c.passed for c in checks) else "fail"


def _imbalance(
    a: AxleAnalysis, rate_pct: Decimal, position: AxlePosition, limits: ImbalanceLimits, new_registration: bool
) -> Check:
    table = limits.new_registration if new_registration else limits.in_use
    biggest = max(to_decimal(a.left_max_n), to_decimal(a.right_max_n))
    low_rate = position == "rear" and rate_pct < to_decimal(limits.rear_rate_switch_pct.value)
    limit: CitedValue
    if low_rate:
        limit, basis = table.rear_low_rate_max_pct, "ΔF / axle load (rear axle, brake rate below the switch)"
    else:
        limit = table.front_max_pct if position == "front" else table.rear_max_pct
        basis = "ΔF / max(F_L,max, F_R,max)"
    if a.diff_n is None or (not low_rate and biggest == 0):
        return check("imbalance", None, "%", "<=", limit, basis=basis, note="no brake force measured")
    note = "" if a.braking_start_index is not None else "neither wheel braked: window is the whole braking phase"
    value = _pct(a.diff_n, a.axle_load_n if low_rate else biggest)
    return check("imbalance", value, "%", "<=", limit, basis=basis, note=note)


def judge_axle(
    analysis: AxleAnalysis,
    limits_row: BrakeRow,
    imbalance_limits: ImbalanceLimits,
    position: AxlePosition | None,
    new_registration: bool,
    *,
    drag_limits: DragLimits,
) -> AxleVerdict:
    """Axle brake rate, imbalance and each wheel's drag rate against the limits.

    `position` None takes the measurement's; `new_registration` picks the
    imbalance column (new registration or in use).
    """
    m = analysis.measurement
    where: AxlePosition = position or m.position
    total = to_decimal(analysis.left_max_n) + to_decimal(analysis.right_max_n)
    rate = _pct(total, analysis.axle_load_n)
    rate_limit = limits_row.front_axle_min_pct if where == "front" else limits_row.rear_axle_min_pct
    checks = [
        check("axle_brake_rate", rate, "%", ">=", rate_limit, basis="(F_L,max + F_R,max) / axle load"),
        _imbalance(analysis, rate, where, imbalance_limits, new_registration),
    ]
    by_axle = drag_limits.divisor.value == "axle"
    for side, drag_n, wheel_n in (
        ("left", analysis.left_drag_n, m.left_wheel_load_n),
        ("right", analysis.right_drag_n, m.right_wheel_load_n),
    ):
        divisor = analysis.axle_load_n if by_axle else wheel_n
        basis = f"{side} drag / {'axle load' if by_axle else f'{side} wheel load'}"
        checks.append(
            check(f"drag_rate_{side}", _pct(drag_n, divisor), "%", "<=", drag_limits.wheel_max_pct, basis=basis)
        )
    p = analysis.diff_point
    return AxleVerdict(
        axle_no=m.axle_no,
        position=where,
        left_wheel_load_kg=kg_from_n(m.left_wheel_load_n),
        right_wheel_load_kg=kg_from_n(m.right_wheel_load_n),
        axle_load_kg=kg_from_n(analysis.axle_load_n),
        left_max_dan=dan_from_n(analysis.left_max_n),
        right_max_dan=dan_from_n(analysis.right_max_n),
        left_drag_dan=dan_from_n(analysis.left_drag_n),
        right_drag_dan=dan_from_n(analysis.right_drag_n),
        diff_dan=None if analysis.diff_n is None else dan_from_n(analysis.diff_n),
        diff_index=None if p is None else p.index,
        diff_left_dan=None if p is None else dan_from_n(p.left_n),
        diff_right_dan=None if p is None else dan_from_n(p.right_n),
        braking_start_index=analysis.braking_start_index,
        window_end_index=analysis.window_end_index,
        checks=tuple(checks),
        verdict=_verdict(checks),
    )


@dataclass(frozen=True)
class SumVerdict:
    """Whole-vehicle service brake or parking brake: summed forces over summed loads."""

    force_dan: float
    load_kg: int
    check: Check
    verdict: Verdict


def _sum_forces(analyses: Sequence[AxleAnalysis]) -> Decimal:
    return sum((to_decimal(a.left_max_n) + to_decimal(a.right_max_n) for a in analyses), Decimal(0))


def _sum_verdict(
    item: str, force: Decimal, load: Decimal, limit: CitedValue | None, basis: str, note: str = ""
) -> SumVerdict:
    c = check(item, _pct(force, load), "%", ">=", limit, basis=basis, note=note)
    return SumVerdict(dan_from_n(force), kg_from_n(load), c, _verdict([c]))


def judge_vehicle(analyses: Sequence[AxleAnalysis], limits_row: BrakeRow) -> SumVerdict:
    """Whole-vehicle service brake rate Σ(F_L,max + F_R,max) / Σ G over the tested axles."""
    if not analyses:
        raise ValueError("whole-vehicle brake rate needs at least one tested axle")
    force = _sum_forces(analyses)
    load = sum((to_decimal(a.axle_load_n) for a in analyses), Decimal(0))
    basis = "Σ(F_L,max + F_R,max) / Σ axle load"
    return _sum_verdict("vehicle_brake_rate", force, load, limits_row.whole_vehicle_min_pct, basis)


def parking_limit(limits: ParkingLimits, total_mass_kg: float, curb_mass_kg: float) -> tuple[CitedValue, str]:
    """The parking limit for the vehicle's masses, with the reason in words."""
    ratio = to_decimal(limits.reduced_below_mass_ratio.value)
    bound = ratio * to_decimal(curb_mass_kg)
    total = to_decimal(total_mass_kg)
    reduced = total < bound or (total == bound and limits.exact_ratio_case.value == "reduced")
    relation = "<" if total < bound else "=" if total == bound else ">"
    reason = f"total mass {total} kg {relation} {ratio} × curb mass {curb_mass_kg} kg = {bound} kg"
    return (limits.reduced_min_pct if reduced else limits.min_pct), reason


def judge_parking(
    parking_analyses: Sequence[AxleAnalysis],
    all_axle_loads_n: Sequence[float],
    limits: ParkingLimits,
    total_mass_kg: float,
    curb_mass_kg: float,
) -> SumVerdict:
    """Parking brake rate: Σ over the parking axles' forces / Σ G over ALL axles."""
    if not parking_analyses:
        raise ValueError("parking brake rate needs the curves of at least one parking axle")
    for a in parking_analyses:
        if not a.measurement.parking_brake:
            raise ValueError(f"axle {a.measurement.axle_no} does not carry the parking brake")
    force = _sum_forces(parking_analyses)
    load = sum((to_decimal(g) for g in all_axle_loads_n), Decimal(0))
    limit, reason = parking_limit(limits, total_mass_kg, curb_mass_kg)
    basis = "Σ parking axles (F_L,max + F_R,max) / Σ all axle loads"
    return _sum_verdict("parking_brake_rate", force, load, limit, basis, reason)


@dataclass(frozen=True)
class BrakeVerdict:
    """The whole brake item of one inspection, with the limits row it was judged by."""

    row: str
    axles: tuple[AxleVerdict | NotTested, ...]
    vehicle: SumVerdict | NotTested
    parking: SumVerdict | NotTested | None
    verdict: Literal["pass", "fail", "not_tested"]


def judge_brakes(
    service: Sequence[AxleMeasurement | NotTested],
    parking: Sequence[AxleMeasurement] | NotTested | None,
    limits: BrakeLimits,
    *,
    vehicle_class: str,
    total_mass_kg: float,
    curb_mass_kg: float,
    new_registration: bool,
) -> BrakeVerdict:
    """Every brake check of one vehicle: per axle, whole vehicle and parking brake.

    The whole-vehicle and parking rates need every axle's load, so if any axle
    was not tested they are reported as not tested too.
    """
    choice = select_brake_row(limits, vehicle_class, total_mass_kg)
    start_pct = limits.braking_start.wheel_load_pct.value
    analyses = [analyse_axle(m, start_pct) for m in service if isinstance(m, AxleMeasurement)]
    by_no = {a.measurement.axle_no: a for a in analyses}
    axles: list[AxleVerdict | NotTested] = [
        m
        if isinstance(m, NotTested)
        else judge_axle(by_no[m.axle_no], choice.row, limits.imbalance, None, new_registration, drag_limits=limits.drag)
        for m in service
    ]
    skipped = [a for a in axles if isinstance(a, NotTested)]
    vehicle: SumVerdict | NotTested
    park: SumVerdict | NotTested | None
    if skipped:
        why = "not every axle was tested on the rollers: " + "; ".join(f"{s.item}: {s.reason}" for s in skipped)
        vehicle = NotTested("vehicle", why)
        park = None if parking is None else NotTested("B0", why)
    else:
        vehicle = judge_vehicle(analyses, choice.row)
        if parking is None or isinstance(parking, NotTested):
            park = parking
        else:
            parked = [analyse_axle(m, start_pct) for m in parking]
            loads = [a.axle_load_n for a in analyses]
            park = judge_parking(parked, loads, limits.parking, total_mass_kg, curb_mass_kg)
    parts = [*axles, vehicle, *([park] if park is not None else [])]
    verdicts = {p.verdict for p in parts}
    overall: Literal["pass", "fail", "not_tested"]
    overall = "fail" if "fail" in verdicts else "pass" if "pass" in verdicts else "not_tested"
    return BrakeVerdict(choice.name, tuple(axles), vehicle, park, overall)
