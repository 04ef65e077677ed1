"""The emissions procedures' shared half: fresh readings, one-second rows, and the result items.

`two_speed_idle.py` and `free_acceleration.py` drive the devices; what they
measured becomes result items here, with the judging of laned/judging/emissions.py.
Everything but `ReadingFeed` is free of I/O, so it is tested with values worked
out by hand.

Item codes (the emissions platform's own, pinyin initials as the safety side's):

- `SDS` (双怠速, item `two_speed_idle`): GB 18285-2018 Appendix A. `values` holds
  each phase's means as judged (`high_idle`, `idle`: CO %, HC ppm, CO2 %, O2 %,
  NO ppm, λ, r/min), the λ cross-check, the ambient conditions and the oil
  temperature; `checks` the five judged limits, `void_reasons` why a void test
  says nothing (diluted sample, engine speed out of its band), `flags` what was
  noticed but does not change the verdict (λ disagreement), `pre_checks` the HC
  residue and the analyzer's daily checks.
- `ZYJS` (自由加速, item `free_acceleration`): GB 3847-2018 Appendix A. `values`
  holds the counted peaks (K, N, r/min at the peak, top r/min) and their mean K
  as judged; `accelerations` every free acceleration made (purges, measured,
  repeated), each with whether it reached governed speed and whether N and K agree.

Both carry `method`, `limit_set` (a or b, as applied), `limits` (each with its
clause, certainty and source: config or the regulator's override) and
`process_data`: one row per second of procedure time (`interval_s`; under a
lane `time_scale` below 1 a row covers that share of a second, never less than
`min_window_s` of real time) with the phase, the device's readings averaged
over the row, the engine speed, the oil temperature and the ambient conditions.

Over 400 lines: the SDS and ZYJS item shapes are the emissions result contract
and are kept together with the rows and checks they carry.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from drivers.errors import DeviceError, DeviceStale, DeviceTimeout, DeviceUnavailable
from laned.judging.emissions import (
    FreeAccelerationVerdict,
    GasSecond,
    PhaseMeans,
    PhaseReport,
    TwoSpeedIdleVerdict,
    opacity_consistent,
    opacity_pct_from_k,
)
from laned.judging.limits import CitedBand, CitedValue
from laned.judging.rounding import Check, check_dict, round_half_away

ItemVerdict = Literal["pass", "fail", "void", "not_tested", "not_completed"]
M = TypeVar("M", bound=BaseModel)

TSI_CODE, TSI_ITEM = "SDS", "two_speed_idle"
FA_CODE, FA_ITEM = "ZYJS", "free_acceleration"

COMPARISON_TEXT = {">=": "≥", "<=": "≤", "<": "<", "within": "within"}
LABELS = {
    "high_idle_co": "high-idle CO",
    "high_idle_hc": "high-idle HC",
    "high_idle_lambda": "high-idle λ",
    "idle_co": "idle CO",
    "idle_hc": "idle HC",
    "hc_residue": "HC residue",
    "free_acceleration_k": "mean K",
}
DECIMALS = {"%": 2, "ppm": 0, "": 2, "m⁻¹": 2}


def settings_from(ctx_settings: Any, name: str, model: type[M]) -> M:
    """The `name` table of the lane's inspection settings as `model`, or the model's defaults."""
    raw = getattr(ctx_settings, name, None)
    if raw is None:
        return model()
    if isinstance(raw, model):
        return raw
    return model.model_validate(raw if isinstance(raw, dict) else raw.model_dump())


def windows(duration_s: float, interval_s: float) -> int:
    """How many rows of `interval_s` a procedure duration takes (at least one; halves round up)."""
    return max(1, int(round_half_away(duration_s / interval_s, 0)))


def rounded(value: float | None, decimals: int) -> float | None:
    return None if value is None else float(round_half_away(value, decimals))


def cancelling() -> bool:
    """Whether the running task is being cancelled (the daemon is stopping: send nothing more)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


# ----- fresh readings (the one I/O helper here) -------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One fresh reading (a new SEQ), `t_s` seconds after the feed started, in `phase`."""

    t_s: float
    reading: Any
    phase: str


class ReadingFeed:
    """The fresh readings of a driver's background poll, timed and labelled with the phase.

    The driver polls its device at its own rate and publishes every reply; a
    reading whose SEQ was seen already is the same measurement and is dropped.
    `check_alive()` raises DeviceTimeout when the device stopped giving new
    readings for `silence_s` (or the driver lost it), so a procedure notices an
    analyzer that drops out mid-measurement within that time.
    """

    def __init__(self, driver: Any, *, silence_s: float) -> None:
        self.driver = driver
        self.silence_s = silence_s
        self.samples: list[Sample] = []
        self.phase = ""
        self.started = time.monotonic()
        self.last_fresh = self.started
        self._seq: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._subscription: Any = None

    async def __aenter__(self) -> ReadingFeed:
        self._subscription = self.driver.readings.subscription(maxsize=2000)
        queue = self._subscription.__enter__()
        self._task = asyncio.create_task(self._pump(queue), name=f"feed-{self.driver.name}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._subscription is not None:
            self._subscription.__exit__(None, None, None)

    async def _pump(self, queue: asyncio.Queue[Any]) -> None:
        while True:
            self.add(await queue.get())

    def add(self, reading: Any, now: float | None = None) -> None:
        seq = getattr(reading, "seq", None)
        if seq is not None and seq == self._seq:
            return
        self._seq = seq
        at = time.monotonic() if now is None else now
        self.last_fresh = at
        self.samples.append(Sample(at - self.started, reading, self.phase))

    def now_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def latest(self) -> Any:
        return self.samples[-1].reading if self.samples else None

    def between(self, t0_s: float, t1_s: float) -> list[Any]:
        """Readings that arrived in [t0_s, t1_s)."""
        return [s.reading for s in self.samples if t0_s <= s.t_s < t1_s]

    def restart_silence_clock(self) -> None:
        """From now on, count silence afresh (after a phase in which the device polls no readings)."""
        self.last_fresh = max(self.last_fresh, time.monotonic())

    def check_alive(self) -> None:
        age = time.monotonic() - self.last_fresh
        if self.driver.is_connected and age <= self.silence_s:
            return
        last = self.driver.health.last_error or "no reply"
        raise DeviceTimeout(
            self.driver.name, f"no new reading for {age:.1f} s (last error: {last})", port=self.driver.port
        )


def dropout_reason(driver: Any, phase: str, exc: DeviceError) -> str:
    """Why an item ended because its device failed, naming the phase, the cause and the port.

    When the driver has already closed the port after failed exchanges, the request that
    found it closed says only that; the driver's last error says why it was closed."""
    detail = exc.detail
    if isinstance(exc, DeviceUnavailable) and driver.health.last_error:
        detail = str(driver.health.last_error).removeprefix(f"{driver.name} on {driver.port}: ")
    port = f" (port {exc.port or driver.port})"
    if isinstance(exc, DeviceTimeout | DeviceUnavailable | DeviceStale):
        return f"{driver.name} stopped answering during the {phase}: {detail}{port}"
    return f"{driver.name} failed during the {phase}: {detail}{port}"


# ----- one-second means and rows ---------------------------------------------------------------


def gas_second(readings: Sequence[Any]) -> GasSecond:
    """The mean of the analyzer's readings (MainReading) in one row.

    HC is averaged signed (zero drift can make it negative; the judging reports
    a negative mean as 0). A reading without λ (CO2 under 0.10 %) is left out of
    the λ mean; a row without any λ has λ 0.
    """
    if not readings:
        raise ValueError("a one-second mean needs at least one reading")
    n = len(readings)

    def avg(name: str) -> float:
        return sum(float(getattr(r, name)) for r in readings) / n

    lambdas = [r.lambda_value for r in readings if r.lambda_value is not None]
    return GasSecond(
        hc_ppm=avg("hc_ppm"),
        co_pct=avg("co_pct"),
        co2_pct=avg("co2_pct"),
        o2_pct=avg("o2_pct"),
        no_ppm=avg("no_ppm"),
        lambda_value=sum(lambdas) / len(lambdas) if lambdas else 0.0,
        rpm=avg("rpm"),
    )


def gas_row(
    t_s: float,
    phase: str,
    readings: Sequence[Any],
    *,
    measured: bool,
    held: bool,
    env: Any,
    started_at: datetime,
) -> dict[str, Any]:
    """One process-data row of the two-speed idle test: the row's means, as HJ 1237 lists them."""
    s = gas_second(readings)
    oil = [r.oil_temp_c for r in readings if r.oil_temp_c is not None]
    return {
        "t_s": round(t_s, 3),
        "time": (started_at + timedelta(seconds=t_s)).isoformat(),
        "phase": phase,
        "measured": measured,
        "readings": len(readings),
        "held": held,
        "hc_ppm": rounded(s.hc_ppm, 1),
        "co_pct": rounded(s.co_pct, 2),
        "co2_pct": rounded(s.co2_pct, 2),
        "o2_pct": rounded(s.o2_pct, 2),
        "no_ppm": rounded(s.no_ppm, 0),
        "lambda": rounded(s.lambda_value, 3),
        "rpm": rounded(s.rpm, 0),
        "oil_temp_c": rounded(sum(oil) / len(oil), 1) if oil else None,
        **env_fields(env),
    }


def env_fields(env: Any) -> dict[str, float | None]:
    """Ambient conditions in °C, % and kPa from either device's ENV reply (None: not read)."""
    if env is None:
        return {"ambient_temp_c": None, "rh_pct": None, "baro_kpa": None}
    # the analyzer reports °C, the opacimeter kelvin
    temp_c = float(env.ambient_temp_c) if hasattr(env, "ambient_temp_c") else float(env.ambient_temp_k) - 273.15
    return {
        "ambient_temp_c": rounded(temp_c, 1), "rh_pct": rounded(env.rh_pct, 1), "baro_kpa": rounded(env.baro_kpa, 1),
    }


def smoke_row(
    t_s: float, phase: str, readings: Sequence[Any], *, env: Any, started_at: datetime
) -> dict[str, Any]:
    """One process-data row of the free acceleration: mean and largest K, N and engine speed."""
    n = len(readings)
    oil = [r.oil_temp_k for r in readings if r.oil_temp_k is not None]
    return {
        "t_s": round(t_s, 3),
        "time": (started_at + timedelta(seconds=t_s)).isoformat(),
        "phase": phase,
        "readings": n,
        "k_m1": rounded(sum(r.k_m1 for r in readings) / n, 2),
        "k_max_m1": rounded(max(r.k_m1 for r in readings), 2),
        "opacity_pct": rounded(sum(r.opacity_pct for r in readings) / n, 1),
        "rpm": rounded(sum(r.rpm for r in readings) / n, 0),
        "rpm_max": max(r.rpm for r in readings),
        "oil_temp_c": rounded(sum(oil) / len(oil) - 273.15, 1) if oil else None,
        **env_fields(env),
    }


def bucket_rows(samples: Sequence[Sample], window_s: float) -> list[tuple[float, str, list[Any]]]:
    """Samples cut into consecutive windows of `window_s` within each run of one phase.

    Returns (start t_s, phase, readings) per non-empty window, in time order.
    """
    out: list[tuple[float, str, list[Any]]] = []
    start: float | None = None
    phase: str | None = None
    current: list[Any] = []
    for s in samples:
        if phase != s.phase or start is None or s.t_s >= start + window_s:
            if current and start is not None and phase is not None:
                out.append((start, phase, current))
            if phase != s.phase or start is None:
                start = s.t_s
            else:
                start += window_s * int((s.t_s - start) // window_s)
            phase, current = s.phase, []
        current.append(s.reading)
    if current and start is not None and phase is not None:
        out.append((start, phase, current))
    return out


# ----- checks and limits as JSON ----------------------------------------------------------------


def cited(limit: CitedValue | CitedBand) -> dict[str, Any]:
    value = [limit.min, limit.max] if isinstance(limit, CitedBand) else limit.value
    return {"value": value, "clause": limit.clause, "certainty": limit.certainty, "source": limit.source}


def _shown(value: float, unit: str) -> str:
    decimals = DECIMALS.get(unit, 2)
    return f"{value:.{decimals}f}{' ' + unit if unit else ''}"


def failure_reason(checks: Sequence[Check]) -> str | None:
    """The failed checks in words: 'idle CO 1.10 %, limit ≤ 0.40 %'."""
    parts = []
    for c in checks:
        if c.outcome != "fail" or c.value is None or c.limit is None:
            continue
        label = LABELS.get(c.item, c.item.replace("_", " "))
        if isinstance(c.limit, tuple):
            low, high = c.limit
            limit = f"{_shown(low, c.unit)} to {_shown(high, c.unit)}"
        else:
            limit = f"{COMPARISON_TEXT[c.comparison or '<=']} {_shown(c.limit, c.unit)}"
        parts.append(f"{label} {_shown(c.value, c.unit)}, limit {limit}")
    return "; ".join(parts) or None


# ----- two-speed idle ---------------------------------------------------------------------------


def phase_values(report: PhaseReport) -> dict[str, Any]:
    return {
        "hc_ppm": report.hc_ppm, "co_pct": report.co_pct, "co2_pct": report.co2_pct, "o2_pct": report.o2_pct,
        "no_ppm": report.no_ppm, "lambda": report.lambda_value, "rpm": report.rpm,
    }


def two_speed_idle_item(
    verdict: TwoSpeedIdleVerdict,
    *,
    high_idle: PhaseMeans,
    tolerance: CitedValue,
    bands: dict[str, CitedBand],
    ambient: dict[str, Any],
    oil_temp_c: float | None,
    pre_checks: dict[str, Any],
    process_data: dict[str, Any],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """The SDS item (see the module docstring) from the judged phases."""
    reason: str | None
    if verdict.verdict == "void":
        reason = "void: " + "; ".join(verdict.void_reasons)
    elif verdict.verdict == "fail":
        reason = failure_reason(verdict.checks)
    else:
        reason = None
    difference = verdict.lambda_difference
    return {
        "code": TSI_CODE,
        "item": TSI_ITEM,
        "method": "two_speed_idle",
        "standard": "GB 18285-2018 Appendix A",
        "verdict": verdict.verdict,
        "reason": reason,
        "limit_set": verdict.limit_set,
        "values": {
            "high_idle": phase_values(verdict.high_idle),
            "idle": phase_values(verdict.idle),
            "lambda_analyzer": verdict.high_idle.lambda_value,
            "lambda_brettschneider": rounded(verdict.lambda_brettschneider, 3),
            "ambient": ambient,
            "oil_temp_c": oil_temp_c,
        },
        "lambda_cross_check": {
            "analyzer_mean": rounded(high_idle.lambda_value, 3),
            "brettschneider_of_mean_gases": rounded(verdict.lambda_brettschneider, 3),
            "difference": difference,
            "tolerance": cited(tolerance),
            "agrees": difference is not None and difference <= tolerance.value,
        },
        "limits": {c.item: _limit_of(c) for c in verdict.checks}
        | {f"rpm_{name}": cited(band) for name, band in bands.items()},
        "checks": [check_dict(c) for c in verdict.checks],
        "void_reasons": list(verdict.void_reasons),
        "flags": list(verdict.flags),
        "pre_checks": pre_checks,
        "settings": settings,
        "process_data": process_data,
    }


def _limit_of(c: Check) -> dict[str, Any]:
    return {
        "value": list(c.limit) if isinstance(c.limit, tuple) else c.limit, "comparison": c.comparison,
        "unit": c.unit, "clause": c.clause, "certainty": c.certainty, "source": c.source,
    }


# ----- free acceleration ------------------------------------------------------------------------


@dataclass(frozen=True)
class Acceleration:
    """One free acceleration as made: a purge or a measured one, and what the meter saw."""

    number: int
    purpose: Literal["purge", "measured"]
    max_rpm: int
    peak_k_m1: float | None = None
    peak_opacity_pct: float | None = None
    rpm_at_peak: int | None = None
    reached_governed: bool = True
    counted: bool = False
    n_k_consistent: bool | None = None


def n_k_consistent(n_pct: float, k_m1: float, path: CitedValue, tolerance: CitedValue) -> bool:
    """Whether the meter's N and K agree through its optical path length (within the tolerance)."""
    return opacity_consistent(n_pct, k_m1, path.value, tolerance.value)


def acceleration_dict(a: Acceleration, path: CitedValue) -> dict[str, Any]:
    return {
        "number": a.number,
        "purpose": a.purpose,
        "counted": a.counted,
        "max_rpm": a.max_rpm,
        "reached_governed_speed": a.reached_governed,
        "peak_k_m1": a.peak_k_m1,
        "peak_opacity_pct": a.peak_opacity_pct,
        "rpm_at_peak": a.rpm_at_peak,
        "opacity_from_k_pct": None if a.peak_k_m1 is None else rounded(opacity_pct_from_k(a.peak_k_m1, path.value), 1),
        "n_k_consistent": a.n_k_consistent,
    }


def free_acceleration_item(
    verdict: FreeAccelerationVerdict | None,
    *,
    accelerations: Sequence[Acceleration],
    governed: dict[str, Any],
    path: CitedValue,
    tolerance: CitedValue,
    limit: CitedValue | None,
    limit_set: str,
    void_reason: str | None,
    flags: Sequence[str],
    ambient: dict[str, Any],
    oil_temp_c: float | None,
    process_data: dict[str, Any],
    settings: dict[str, Any],
    zero: dict[str, Any] | None,
) -> dict[str, Any]:
    """The ZYJS item (see the module docstring); `verdict` None with `void_reason` when too few
    accelerations counted."""
    counted = [a for a in accelerations if a.counted]
    result: ItemVerdict
    reason: str | None
    if verdict is None:
        result, reason = "void", f"void: {void_reason}"
    else:
        result = verdict.verdict
        reason = failure_reason([verdict.check])
    return {
        "code": FA_CODE,
        "item": FA_ITEM,
        "method": "free_acceleration",
        "standard": "GB 3847-2018 Appendix A",
        "verdict": result,
        "reason": reason,
        "limit_set": limit_set,
        "values": {
            "mean_k_m1": None if verdict is None else verdict.mean_k_m1,
            "peak_k_m1": [a.peak_k_m1 for a in counted],
            "peak_opacity_pct": [a.peak_opacity_pct for a in counted],
            "rpm_at_peak": [a.rpm_at_peak for a in counted],
            "max_rpm": [a.max_rpm for a in counted],
            "ambient": ambient,
            "oil_temp_c": oil_temp_c,
        },
        "accelerations": [acceleration_dict(a, path) for a in accelerations],
        "governed_speed": governed,
        "limits": {
            "free_acceleration_k": None if limit is None else {**cited(limit), "comparison": "<=", "unit": "m⁻¹"},
            "optical_path_length_m": cited(path),
            "n_k_tolerance_pct": cited(tolerance),
        },
        "checks": [] if verdict is None else [check_dict(verdict.check)],
        "flags": list(flags),
        "zero": zero,
        "settings": settings,
        "process_data": process_data,
    }
