"""The brake test's pure half: settings, peak detection, and the judged result items.

`laned/procedures/brake.py` drives the tester; everything here is free of I/O
so that it can be tested with curves written by hand:

- `BrakeSettings`: the procedure's timings and thresholds (`[inspection.brake]`).
- `PeakWatch`: decides, sample by sample after the "brake now" prompt, when
  braking started and when the peak has passed (no wheel's force rose by more
  than `peak_rise_n` for `peak_hold_s` of tester time).
- `BrakeRun` / `BrakeRecord`: what the rollers measured (and what they could not).
- `build_brake_items()`: judges the runs with laned/judging and writes the items.

Item codes (standards.md, "Safety item and photo codes"): `B1` … `Bn` one per
service-brake axle (item `service_brake_axle_{n}`), `B0` the parking brake
(item `parking_brake`). The platform table has no code for the whole-vehicle
service brake rate; it is reported as `BZ` (整车, item `service_brake_vehicle`),
a code the safety platform mapping passes through unchanged.

Units: loads in whole kg (N / 9.80665), forces in daN rounded to 0.1 daN half
away from zero (curve samples are the tester's whole daN), rates in % as judged
(0.1 %). Indices in `process_data` are positions in that run's curve arrays;
the tester's own number of array position i is (first_sample_index + i) mod 65536.

Over 400 lines: the item shapes (B{n}, BZ, B0, not tested / not completed) are
the result contract of the brake test and are kept together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from laned.judging.brakes import (
    AxleAnalysis,
    AxleMeasurement,
    AxleVerdict,
    SumVerdict,
    analyse_axle,
    judge_axle,
    judge_parking,
    judge_vehicle,
    parking_limit,
)
from laned.judging.limits import Limits, select_brake_row
from laned.judging.rounding import Check, check_dict, dan_from_n, kg_from_n, mean, round_half_away, to_decimal
from laned.settings.brake import BrakeSettings
from protocols.messages import StartCommand

RunKind = Literal["service", "parking", "weigh"]
RUN_KINDS: tuple[RunKind, ...] = ("service", "parking", "weigh")
ItemVerdict = Literal["pass", "fail", "void", "not_tested", "not_completed"]
INDEX_MODULUS = 65536
COMPARISON_TEXT = {">=": "≥", "<=": "≤", "<": "<", "within": "within"}


def settings_from(ctx_settings: Any) -> BrakeSettings:
    """The brake settings of the lane's InspectionSettings (`brake`), or the defaults."""
    raw = getattr(ctx_settings, "brake", None)
    if raw is None:
        return BrakeSettings()
    if isinstance(raw, BrakeSettings):
        return raw
    return BrakeSettings.model_validate(raw if isinstance(raw, dict) else raw.model_dump())


# ----- peak detection ---------------------------------------------------------------------------


@dataclass
class PeakWatch:
    """Braking start and peak from the samples after the prompt, fed in order (offsets, N).

    Braking starts at the first sample where either wheel exceeds its threshold
    (its drag + the braking-start share of its wheel load, as the judging
    defines it). A wheel "rises" when it exceeds the highest level it has
    reached by more than `rise_n`; a slow creep adds up and counts. The peak
    has passed once braking started and neither wheel rose for `hold_samples`.
    """

    left_threshold_n: float
    right_threshold_n: float
    rise_n: float
    hold_samples: int
    start_offset: int | None = None
    last_rise_offset: int | None = None
    newest_offset: int | None = None
    level_n: list[float] = field(default_factory=list)

    def feed(self, offset: int, left_n: float, right_n: float) -> None:
        values = (left_n, right_n)
        if not self.level_n:
            self.level_n = list(values)
        for k, value in enumerate(values):
            if value > self.level_n[k] + self.rise_n:
                self.level_n[k] = value
                self.last_rise_offset = offset
        if self.start_offset is None and (left_n > self.left_threshold_n or right_n > self.right_threshold_n):
            self.start_offset = offset
            self.last_rise_offset = offset
        self.newest_offset = offset

    @property
    def braking(self) -> bool:
        return self.start_offset is not None

    @property
    def peak_passed(self) -> bool:
        if self.start_offset is None or self.newest_offset is None or self.last_rise_offset is None:
            return False
        return self.newest_offset - self.last_rise_offset >= self.hold_samples


# ----- what was measured ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BrakeRun:
    """One run of the rollers on one axle: the curves from the motor start through the end."""

    kind: Literal["service", "parking"]
    measurement: AxleMeasurement
    first_sample_index: int  # the tester's SAMPLE_INDEX of curve position 0
    started_at: datetime | None = None  # lane clock, MOTORS = 1 written
    load_readings: int = 0  # weighing-plate readings averaged for the loads
    lost_samples: int = 0
    end_reason: str = ""


@dataclass
class BrakeRecord:
    """Everything the procedure gathered: runs, weighed axles, and why something is missing."""

    service: dict[int, BrakeRun] = field(default_factory=dict)
    parking: dict[int, BrakeRun] = field(default_factory=dict)
    loads_n: dict[int, tuple[float, float]] = field(default_factory=dict)  # axle -> (left, right) N
    failed: dict[tuple[RunKind, int], str] = field(default_factory=dict)  # (kind, axle) -> reason

    def failure(self, axle_no: int) -> str | None:
        for kind in RUN_KINDS:
            reason = self.failed.get((kind, axle_no))
            if reason is not None:
                return reason
        return None

    def has(self, kind: RunKind, axle_no: int) -> bool:
        """Whether that run (or weighing) of the axle is in."""
        if kind == "weigh":
            return axle_no in self.loads_n
        return axle_no in (self.service if kind == "service" else self.parking)

    def axle_loads_n(self, axle_no: int) -> tuple[float, float] | None:
        """The axle's static wheel loads from whichever time it was weighed."""
        if axle_no in self.loads_n:
            return self.loads_n[axle_no]
        for runs in (self.service, self.parking):
            if axle_no in runs:
                m = runs[axle_no].measurement
                return m.left_wheel_load_n, m.right_wheel_load_n
        return None


# ----- building the items ------------------------------------------------------------------------------


def dan(force_n: float) -> float:
    """A force in N as daN, rounded to 0.1 daN half away from zero (2704 N → 270.4 daN)."""
    return float(round_half_away(dan_from_n(force_n), 1))


def curve_dan(forces_n: Sequence[float]) -> list[float | int]:
    """Curve samples in daN: the tester's whole daN stay integers (2700 N → 270)."""
    out: list[float | int] = []
    for value in forces_n:
        d = dan_from_n(value)
        out.append(int(d) if d.is_integer() else d)
    return out


def limits_dict(checks: Sequence[Check]) -> dict[str, Any]:
    """The limits applied, keyed by the value they judge (e.g. `axle_brake_rate_pct`)."""
    return {
        f"{c.item}_pct" if c.unit == "%" else c.item: {
            "value": list(c.limit) if isinstance(c.limit, tuple) else c.limit,
            "comparison": c.comparison, "unit": c.unit, "clause": c.clause, "certainty": c.certainty,
            "source": c.source,
        }
        for c in checks
    }


def failure_reason(checks: Sequence[Check]) -> str | None:
    """The failed checks in words: 'axle brake rate 16.2 %, limit ≥ 20.0 %'."""
    parts = []
    for c in checks:
        if c.outcome != "fail":
            continue
        label = c.item.replace("_", " ")
        if c.value is None:
            parts.append(f"{label}: {c.note or 'not measured'}")
        else:
            shown_limit = c.limit if isinstance(c.limit, tuple) else f"{c.limit:.1f}"
            parts.append(f"{label} {c.value:.1f} {c.unit}, limit {COMPARISON_TEXT[c.comparison or '']} "
                         f"{shown_limit} {c.unit}")
    return "; ".join(parts) or None


def curve_data(run: BrakeRun, analysis: AxleAnalysis | None = None) -> dict[str, Any]:
    """The run's process data: both curves in daN with their sample rate and marks."""
    m = run.measurement
    data: dict[str, Any] = {
        "axle_no": m.axle_no,
        "test": run.kind,
        "sample_rate_hz": m.sample_rate_hz,
        "first_sample_index": run.first_sample_index,
        "sample_count": len(m.left_force_n),
        "left_force_dan": curve_dan(m.left_force_n),
        "right_force_dan": curve_dan(m.right_force_n),
        "prompt_index": m.prompt_index,
        "drag_window": [m.prompt_index - m.sample_rate_hz + 1, m.prompt_index],
        "left_slip_index": m.left_slip_index,
        "right_slip_index": m.right_slip_index,
        "left_wheel_load_n": m.left_wheel_load_n,
        "right_wheel_load_n": m.right_wheel_load_n,
        "load_readings": run.load_readings,
        "lost_samples": run.lost_samples,
        "end_reason": run.end_reason,
        "motors_started_at": run.started_at.isoformat() if run.started_at else None,
    }
    if analysis is not None:
        data |= {
            "braking_start_index": analysis.braking_start_index,
            "window_start_index": analysis.window_start_index,
            "window_end_index": analysis.window_end_index,
            "braking_wheels": {"left": analysis.left_braking, "right": analysis.right_braking},
            "left_max_index": analysis.left_max_index,
            "right_max_index": analysis.right_max_index,
        }
    return data


def axle_item(run: BrakeRun, analysis: AxleAnalysis, verdict: AxleVerdict, row_name: str) -> dict[str, Any]:
    """Item B{n}: one axle's service brake, judged."""
    m = run.measurement
    rate, imbalance = verdict.check_named("axle_brake_rate"), verdict.check_named("imbalance")
    drag_l, drag_r = verdict.check_named("drag_rate_left"), verdict.check_named("drag_rate_right")
    p = analysis.diff_point
    point = None if p is None else {
        "index": p.index,
        "time_s": round(p.index / m.sample_rate_hz, 3),
        "tester_index": (run.first_sample_index + p.index) % INDEX_MODULUS,
        "left_force_dan": dan(p.left_n),
        "right_force_dan": dan(p.right_n),
    }
    checks = verdict.checks
    return {
        "code": verdict.item_code,
        "item": f"service_brake_axle_{m.axle_no}",
        "verdict": verdict.verdict,
        "reason": failure_reason(checks),
        "axle_no": m.axle_no,
        "position": verdict.position,
        "values": {
            "left_wheel_load_kg": verdict.left_wheel_load_kg,
            "right_wheel_load_kg": verdict.right_wheel_load_kg,
            "axle_load_kg": verdict.axle_load_kg,
            "left_max_force_dan": dan(analysis.left_max_n),
            "right_max_force_dan": dan(analysis.right_max_n),
            "left_drag_force_dan": dan(analysis.left_drag_n),
            "right_drag_force_dan": dan(analysis.right_drag_n),
            "left_drag_rate_pct": drag_l.value,
            "right_drag_rate_pct": drag_r.value,
            "axle_brake_rate_pct": rate.value,
            "imbalance_pct": imbalance.value,
            "imbalance_basis": imbalance.basis,
            "max_difference_dan": None if analysis.diff_n is None else dan(analysis.diff_n),
            "max_difference_point": point,
            "wheel_locked": {"left": m.left_slip_index is not None, "right": m.right_slip_index is not None},
        },
        "limits_row": row_name,
        "limits": limits_dict(checks),
        "checks": [check_dict(c) for c in checks],
        "process_data": curve_data(run, analysis),
    }


def _sum_item(code: str, item: str, judged: SumVerdict, row_name: str, values: dict[str, Any],
              **extra: Any) -> dict[str, Any]:
    c = judged.check
    return {
        "code": code,
        "item": item,
        "verdict": judged.verdict,
        "reason": failure_reason([c]),
        "values": {
            "brake_rate_pct": c.value,
            "brake_force_dan": float(round_half_away(judged.force_dan, 1)),
            "vehicle_load_kg": judged.load_kg,
            **values,
        },
        "limits_row": row_name,
        "limits": limits_dict([c]),
        "checks": [check_dict(c)],
        **extra,
    }


def missing_item(code: str, item: str, verdict: ItemVerdict, reason: str) -> dict[str, Any]:
    return {"code": code, "item": item, "verdict": verdict, "reason": reason}


def overall_verdict(items: Sequence[dict[str, Any]]) -> ItemVerdict:
    """fail if any item fails; else not_completed if one is; else pass if any passed; else not_tested."""
    verdicts = {i["verdict"] for i in items}
    order: tuple[ItemVerdict, ...] = ("fail", "not_completed", "pass")
    for verdict in order:
        if verdict in verdicts:
            return verdict
    return "not_tested"


def _why_missing(n: int, command: StartCommand, record: BrakeRecord) -> tuple[ItemVerdict, str]:
    road = command.items.road_test_axles
    if n in road:
        return "not_tested", f"axle {n}: road test ({road[n]})"
    failure = record.failure(n)
    if failure is not None:
        return "not_completed", failure if failure.startswith(f"axle {n}") else f"axle {n}: {failure}"
    return "not_tested", f"axle {n}: not tested on the rollers (not in items.brake_axles)"


def _needs_every_axle(what: str, gaps: list[tuple[ItemVerdict, str]]) -> tuple[ItemVerdict, str]:
    verdict: ItemVerdict = "not_completed" if any(v == "not_completed" for v, _ in gaps) else "not_tested"
    return verdict, f"{what} needs every axle: " + "; ".join(r for _, r in gaps)


def build_brake_items(command: StartCommand, limits: Limits, record: BrakeRecord) -> tuple[list[dict[str, Any]],
                                                                                          ItemVerdict]:
    """B1…Bn, BZ and B0 for what the station asked, judged with `limits`; and the overall verdict."""
    vehicle, wanted = command.vehicle, command.items
    brakes = limits.brakes
    choice = select_brake_row(brakes, vehicle.vehicle_class, vehicle.total_mass_kg)
    start_pct = brakes.braking_start.wheel_load_pct.value
    items: list[dict[str, Any]] = []
    analyses: dict[int, AxleAnalysis] = {}
    road = wanted.road_test_axles
    for n in [*wanted.brake_axles, *sorted(a for a in road if a not in wanted.brake_axles)]:
        run = record.service.get(n)
        if run is None or n in road:
            verdict, reason = _why_missing(n, command, record)
            items.append(missing_item(f"B{n}", f"service_brake_axle_{n}", verdict, reason))
            continue
        analysis = analyse_axle(run.measurement, start_pct)
        analyses[n] = analysis
        judged = judge_axle(analysis, choice.row, brakes.imbalance, None, vehicle.new_registration,
                            drag_limits=brakes.drag)
        items.append(axle_item(run, analysis, judged, choice.name))
    every_axle = range(1, len(command.axles) + 1)
    if wanted.brake_axles or road:
        gaps = [_why_missing(n, command, record) for n in every_axle if n not in analyses]
        if gaps:
            items.append(missing_item("BZ", "service_brake_vehicle",
                                      *_needs_every_axle("the whole-vehicle brake rate", gaps)))
        else:
            judged_sum = judge_vehicle([analyses[n] for n in every_axle], choice.row)
            items.append(_sum_item("BZ", "service_brake_vehicle", judged_sum, choice.name,
                                   {"axles": list(every_axle)}))
    if wanted.parking_brake:
        items.append(_parking_item(command, limits, record, choice.name))
    return items, overall_verdict(items)


def _parking_item(command: StartCommand, limits: Limits, record: BrakeRecord, row_name: str) -> dict[str, Any]:
    """B0: Σ over the parking axles' forces / Σ G over ALL axles (the 1.2 × curb mass rule)."""
    parking_axles = [i + 1 for i, axle in enumerate(command.axles) if axle.parking_brake]
    gaps = [_why_missing(n, command, record) for n in parking_axles if n not in record.parking]
    weighed = {n: record.axle_loads_n(n) for n in range(1, len(command.axles) + 1)}
    gaps += [_why_missing(n, command, record) for n, loads_n in weighed.items()
             if loads_n is None and n not in parking_axles]
    if gaps:
        return missing_item("B0", "parking_brake", *_needs_every_axle("the parking brake rate", gaps))
    start_pct = limits.brakes.braking_start.wheel_load_pct.value
    runs = [record.parking[n] for n in parking_axles]
    analyses = [analyse_axle(run.measurement, start_pct) for run in runs]
    loads = [float(to_decimal(pair[0]) + to_decimal(pair[1])) for pair in weighed.values() if pair is not None]
    vehicle = command.vehicle
    judged = judge_parking(analyses, loads, limits.brakes.parking, vehicle.total_mass_kg, vehicle.curb_mass_kg)
    _, limit_case = parking_limit(limits.brakes.parking, vehicle.total_mass_kg, vehicle.curb_mass_kg)
    per_axle = [
        {
            "axle_no": run.measurement.axle_no,
            "left_max_force_dan": dan(a.left_max_n),
            "right_max_force_dan": dan(a.right_max_n),
            "left_wheel_load_kg": kg_from_n(run.measurement.left_wheel_load_n),
            "right_wheel_load_kg": kg_from_n(run.measurement.right_wheel_load_n),
        }
        for run, a in zip(runs, analyses, strict=True)
    ]
    return _sum_item(
        "B0", "parking_brake", judged, row_name, {"limit_case": limit_case, "axles": per_axle},
        process_data={"axles": [curve_data(run, a) for run, a in zip(runs, analyses, strict=True)]},
    )


def mean_n(values: Sequence[float | int]) -> float:
    """Mean in N, exact in decimal (the judging's mean), as a float."""
    return float(mean(values))
