"""The loaded emissions methods' result items: ASM and lug-down verdicts as JSON-ready dicts. Pure.

The procedures that drive the dynamometer feed laned/judging/asm.py and lug_down.py
and hand what they judged to these builders, as two_speed_idle.py does with
emissions_items.py. Item codes (the emissions platform's own, pinyin initials):

- `WT` (稳态工况法, item `asm`): GB 18285-2018 Appendix B. `values` holds each phase
  (`asm5025`, `asm2540`): its decision (fast_pass / fast_fail / pass / fail / void /
  not_run), the corrected HC ppm, CO % and NO ppm as judged (rounded), the same
  window's mean CO2 %, O2 %, λ, r/min and oil temperature, the load (P kW and
  FORCE_TARGET N), the mean DF and kH, the restart count and the judged window (t);
  plus the ambient conditions. `void_reason` says why a void test says nothing.
- `JZJS` (加载减速法, item `lug_down`): GB 3847-2018 Appendix B. `values` holds Pmax,
  corrected Pmax and PF, the power percentage, VelMaxHP (actual and calculated),
  MaxRPM, idle r/min, and per point (`point_100`, `point_80`) its target, K, N,
  NOx, CO2, power, speed and r/min; `flags` what was noticed without changing the
  verdict (MaxRPM far from rated, an RPM signal lost).

Both carry `method`, `standard`, `limit_set`, `limits` (each with its clause,
certainty and source), `checks`, `settings` and `process_data` (one row per
second; the procedure adds clock times and the dynamometer's parasitic and PAU
powers to each row through `extra`). Values are reported with units in their
names, rounded for reporting only: speeds 0.1 km/h, powers 0.1 kW (loads 0.01),
r/min 1, gases as judged, DF and kH 0.0001.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from laned.judging.asm import AsmPhaseResult, AsmRecord, AsmVerdict
from laned.judging.limits import CitedValue
from laned.judging.lug_down import LugDownVerdict, PointResult, PointSecond, ScanSecond
from laned.judging.rounding import Check, check_dict, round_half_away, to_decimal

ASM_CODE, ASM_ITEM = "WT", "asm"
LUG_CODE, LUG_ITEM = "JZJS", "lug_down"

LABELS = {
    "asm5025_hc": "ASM5025 HC", "asm5025_co": "ASM5025 CO", "asm5025_no": "ASM5025 NO",
    "asm2540_hc": "ASM2540 HC", "asm2540_co": "ASM2540 CO", "asm2540_no": "ASM2540 NO",
    "lug_down_power": "maximum wheel power", "lug_down_k100": "K at 100 %", "lug_down_k80": "K at 80 %",
    "lug_down_nox80": "NOx at 80 %",
}
DECIMALS = {"%": 2, "ppm": 0, "m⁻¹": 2}
COMPARISON_TEXT = {">=": "≥", "<=": "≤", "<": "<", "within": "within"}


def num(value: Decimal | float | int | None, decimals: int) -> float | None:
    """A value for the result: rounded half away from zero to `decimals`, as a JSON number."""
    return None if value is None else float(round_half_away(to_decimal(value), decimals))


def whole(value: Decimal | float | int | None) -> int | None:
    return None if value is None else int(round_half_away(to_decimal(value), 0))


def cited(limit: CitedValue, comparison: str, unit: str) -> dict[str, Any]:
    return {
        "value": limit.value, "comparison": comparison, "unit": unit, "clause": limit.clause,
        "certainty": limit.certainty, "source": limit.source,
    }


def failure_reason(checks: Sequence[Check]) -> str | None:
    """The failed checks in words: 'ASM5025 HC 48 ppm, limit ≤ 47 ppm'."""
    parts = []
    for c in checks:
        if c.outcome != "fail" or c.value is None or c.limit is None or isinstance(c.limit, tuple):
            continue
        decimals = 1 if c.item == "lug_down_power" else DECIMALS.get(c.unit, 2)
        comparison = COMPARISON_TEXT[c.comparison or "<="]
        parts.append(f"{LABELS.get(c.item, c.item)} {c.value:.{decimals}f} {c.unit}, "
                     f"limit {comparison} {c.limit:.{decimals}f} {c.unit}")
    return "; ".join(parts) or None


# ----- ASM -------------------------------------------------------------------------------------


def asm_phase_values(r: AsmPhaseResult | None) -> dict[str, Any]:
    """One phase's values as reported; `{"decision": "not_run"}` for a phase the test did not need."""
    if r is None:
        return {"decision": "not_run"}
    return {
        "decision": r.decision,
        "hc_ppm": whole(r.hc_ppm), "co_pct": num(r.co_pct, 2), "no_ppm": whole(r.no_ppm),
        "co2_pct": num(r.co2_pct, 2), "o2_pct": num(r.o2_pct, 2), "lambda": num(r.lambda_value, 2),
        "rpm": whole(r.rpm), "oil_temp_c": num(r.oil_temp_c, 1),
        "speed_kmh": num(r.speed_kmh, 1), "force_n": whole(r.force_n), "power_kw": num(r.power_kw, 2),
        "power_target_kw": num(r.power_target_kw, 2), "force_target_n": r.force_target_n,
        "df": num(r.df, 4), "kh": num(r.kh, 4), "restarts": r.restarts,
        "window_t": None if r.window is None else list(r.window),
        "void_reason": r.void_reason,
    }


def asm_row(record: AsmRecord, **extra: Any) -> dict[str, Any]:
    """One second of ASM process data (HJ/T 291's list); `extra` adds the procedure's fields
    (clock times, parasitic and PAU power, ambient)."""
    return {
        "phase": record.phase, "second": record.second, "step": record.step, "t": record.t,
        "restarts": record.restarts, "speed_kmh": num(record.speed_kmh, 2), "force_target_n": record.force_target_n,
        "force_n": whole(record.force_n), "power_kw": num(record.power_kw, 2),
        "power_target_kw": num(record.power_target_kw, 2), "in_tolerance": record.in_tolerance,
        "braking": record.braking, "rpm": whole(record.rpm), "oil_temp_c": num(record.oil_temp_c, 1),
        "hc_ppm": num(record.hc_ppm, 1), "co_pct": num(record.co_pct, 2), "no_ppm": whole(record.no_ppm),
        "co2_pct": num(record.co2_pct, 2), "o2_pct": num(record.o2_pct, 2), "lambda": num(record.lambda_value, 3),
        "df": num(record.df, 4), "kh": num(record.kh, 4),
        "hc_corrected_ppm": num(record.hc_corrected_ppm, 1), "co_corrected_pct": num(record.co_corrected_pct, 3),
        "no_corrected_ppm": num(record.no_corrected_ppm, 1),
        "hc_avg_ppm": num(record.hc_avg_ppm, 1), "co_avg_pct": num(record.co_avg_pct, 3),
        "no_avg_ppm": num(record.no_avg_ppm, 1),
        **extra,
    }


def asm_item(
    verdict: AsmVerdict,
    *,
    ambient: Mapping[str, Any],
    process_data: Mapping[str, Any],
    settings: Mapping[str, Any],
    pre_checks: Mapping[str, Any] | None = None,
    flags: Sequence[str] = (),
    preconditioning: str | None = None,
) -> dict[str, Any]:
    """The WT item (see the module docstring) from the judged test."""
    by_mode = {p.mode: p for p in verdict.phases}
    reason: str | None
    if verdict.verdict == "void":
        reason = f"void: {verdict.void_reason}"
    elif verdict.verdict == "fail":
        reason = failure_reason(verdict.checks)
    else:
        reason = None
    limits: dict[str, Any] = {}
    for p in verdict.phases:
        prefix = p.mode.lower()
        limits[f"{prefix}_hc"] = cited(p.limits.hc_max_ppm, "<=", "ppm")
        limits[f"{prefix}_co"] = cited(p.limits.co_max_pct, "<=", "%")
        limits[f"{prefix}_no"] = cited(p.limits.no_max_ppm, "<=", "ppm")
    return {
        "code": ASM_CODE,
        "item": ASM_ITEM,
        "method": "asm",
        "standard": "GB 18285-2018 Appendix B",
        "verdict": verdict.verdict,
        "reason": reason,
        "limit_set": verdict.limit_set,
        "values": {
            "asm5025": asm_phase_values(by_mode.get("ASM5025")),
            "asm2540": asm_phase_values(by_mode.get("ASM2540")),
            "ambient": dict(ambient),
            "preconditioning": preconditioning,
        },
        "limits": limits,
        "checks": [check_dict(c) for c in verdict.checks],
        "void_reasons": [] if verdict.void_reason is None else [verdict.void_reason],
        "not_run": list(verdict.not_run),
        "flags": list(flags),
        "pre_checks": dict(pre_checks or {}),
        "settings": dict(settings),
        "process_data": dict(process_data),
    }


# ----- lug-down --------------------------------------------------------------------------------


def point_values(p: PointResult | None, target_kmh: Decimal | None = None) -> dict[str, Any]:
    """One point as reported (K 0.01 m⁻¹, N 0.1 %, NOx 1 ppm, power 0.1 kW, speed 0.1 km/h)."""
    if p is None:
        return {"target_kmh": num(target_kmh, 2), "completed": False}
    return {
        "target_kmh": num(p.target_kmh, 2), "completed": True, "window_s": list(p.window),
        "k_m1": num(p.k_m1, 2), "opacity_pct": num(p.opacity_pct, 1), "nox_ppm": whole(p.nox_ppm),
        "co2_pct": num(p.co2_pct, 2), "power_kw": num(p.power_kw, 1), "speed_kmh": num(p.speed_kmh, 1),
        "rpm": whole(p.rpm), "rpm_lost": p.rpm_lost,
    }


def lug_row(stage: int, second: int, s: ScanSecond | PointSecond, **extra: Any) -> dict[str, Any]:
    """One second of lug-down process data: `stage` 0 power scan · 1 moving to a point · 2 the
    100 % point · 3 the 80 % point; `extra` adds clock times, force, parasitic and PAU power, PF,
    oil temperature and ambient."""
    row: dict[str, Any] = {
        "stage": stage, "second": second, "speed_kmh": num(to_decimal(s.speed_kmh), 2),
        "power_kw": num(to_decimal(s.power_kw), 2), "rpm": whole(None if s.rpm is None else to_decimal(s.rpm)),
    }
    if isinstance(s, PointSecond):
        row |= {"k_m1": num(to_decimal(s.k_m1), 2), "opacity_pct": num(to_decimal(s.opacity_pct), 1),
                "nox_ppm": whole(to_decimal(s.nox_ppm)), "co2_pct": num(to_decimal(s.co2_pct), 2)}
    return row | extra


def lug_down_item(
    verdict: LugDownVerdict,
    *,
    targets: tuple[Decimal, Decimal] | None,
    ambient: Mapping[str, Any],
    process_data: Mapping[str, Any],
    settings: Mapping[str, Any],
    oil_temp_c: float | None = None,
    pre_checks: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JZJS item (see the module docstring) from the judged test. `targets` are the 100 % and
    80 % point targets as written (None when the scan did not complete)."""
    reason: str | None
    if verdict.verdict == "void":
        reason = "void: " + "; ".join(verdict.void_reasons)
    elif verdict.verdict == "fail":
        reason = failure_reason(verdict.checks)
    else:
        reason = None
    by_name = {p.name: p for p in verdict.points}
    t100, t80 = targets if targets is not None else (None, None)
    limit = verdict.limits
    return {
        "code": LUG_CODE,
        "item": LUG_ITEM,
        "method": "lug_down",
        "standard": "GB 3847-2018 Appendix B",
        "verdict": verdict.verdict,
        "reason": reason,
        "limit_set": verdict.limit_set,
        "values": {
            "k100_m1": num(verdict.k100_m1, 2), "k80_m1": num(verdict.k80_m1, 2),
            "nox80_ppm": whole(verdict.nox80_ppm),
            "pmax_kw": num(verdict.pmax_kw, 1), "corrected_pmax_kw": num(verdict.corrected_pmax_kw, 1),
            "pf": num(verdict.pf, 2), "power_pct": num(verdict.power_pct, 1),
            "vel_max_hp_kmh": num(verdict.vel_max_hp_kmh, 1),
            "calculated_vel_max_hp_kmh": num(verdict.calculated_vel_max_hp_kmh, 1),
            "max_rpm": whole(verdict.max_rpm), "idle_rpm": whole(verdict.idle_rpm),
            "scan_seconds": None if verdict.scan is None else verdict.scan.seconds,
            "point_100": point_values(by_name.get("100"), t100),
            "point_80": point_values(by_name.get("80"), t80),
            "ambient": dict(ambient),
            "oil_temp_c": oil_temp_c,
        },
        "limits": {
            "lug_down_power": cited(verdict.min_power_pct, ">=", "%"),
            "lug_down_k100": cited(limit.k_max_m1, "<=", "m⁻¹"),
            "lug_down_k80": cited(limit.k_max_m1, "<=", "m⁻¹"),
            "lug_down_nox80": cited(limit.nox_max_ppm, "<=", "ppm"),
        },
        "checks": [check_dict(c) for c in verdict.checks],
        "void_reasons": list(verdict.void_reasons),
        "flags": list(verdict.flags),
        "pre_checks": dict(pre_checks or {}),
        "settings": dict(settings),
        "process_data": dict(process_data),
    }
