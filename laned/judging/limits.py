"""Limits as data: `config/limits/brakes.toml` and `emissions.toml` as validated models.

Every limit in standards.md is a default, never a constant in code: provinces
tighten limits, the regulator's platform sends limits per vehicle, and an
unconfirmed value must be correctable without a release. So each value here is
a small table that carries its `clause` and its `certainty` (firm / vendor /
unconfirmed, as standards.md marks it), and a verdict quotes them back.

Per-inspection overrides (`apply_overrides`) use the files' own keys under
`{"brakes": {...}, "emissions": {...}}`; a bare number replaces a limit's
`value`, a table merges into it, and every limit touched is marked
`source = "override"` so the result says which limits the regulator set.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from laned.errors import ConfigError
from laned.judging.rounding import Check, Comparison, meets
from protocols.datafiles import CONFIG_DIR

DEFAULT_LIMITS_DIR = CONFIG_DIR / "limits"

Certainty = Literal["firm", "vendor", "unconfirmed"]
Source = Literal["config", "override"]
LimitSetName = Literal["a", "b"]
VehicleClass = Literal[
    "passenger_car", "bus", "truck", "articulated_bus", "road_train", "trailer", "special_purpose", "other"
]


class LimitsError(ConfigError, ValueError):
    """A limits file or a limits override that cannot be used; each problem names its key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Cited(_Model):
    """Where a limit or setting comes from and how sure it is."""

    clause: str = Field(min_length=1)
    certainty: Certainty
    source: Source = "config"
    note: str = ""


class CitedValue(Cited):
    value: float = Field(allow_inf_nan=False)


class CitedBand(Cited):
    """An inclusive band, e.g. high-idle speed 2300…2700 r/min or λ 0.95…1.05."""

    min: float = Field(allow_inf_nan=False)
    max: float = Field(allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> CitedBand:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class DragDivisor(Cited):
    value: Literal["wheel", "axle"] = "wheel"


class ExactRatioCase(Cited):
    value: Literal["standard", "reduced"] = "standard"


class LimitSetChoice(Cited):
    value: LimitSetName


# ---------------------------------------------------------------- brakes


class BrakeRow(_Model):
    """One row of the unladen roller-test table; a column left out is "—", not judged."""

    description: str = ""
    vehicle_classes: tuple[VehicleClass, ...] | None = None  # None: any class
    total_mass_over_kg: float | None = None  # row applies when total mass > this
    total_mass_at_most_kg: float | None = None  # row applies when total mass ≤ this
    whole_vehicle_min_pct: CitedValue | None = None
    front_axle_min_pct: CitedValue | None = None
    rear_axle_min_pct: CitedValue | None = None

    def matches(self, vehicle_class: str, total_mass_kg: float) -> bool:
        if self.vehicle_classes is not None and vehicle_class not in self.vehicle_classes:
            return False
        if self.total_mass_over_kg is not None and not total_mass_kg > self.total_mass_over_kg:
            return False
        return self.total_mass_at_most_kg is None or total_mass_kg <= self.total_mass_at_most_kg


class ImbalanceSet(_Model):
    front_max_pct: CitedValue  # ΔF / max(F_L,max, F_R,max)
    rear_max_pct: CitedValue  # rear axle at or above the rate switch, same basis
    rear_low_rate_max_pct: CitedValue  # rear axle below the switch: ΔF / axle load


class ImbalanceLimits(_Model):
    rear_rate_switch_pct: CitedValue
    new_registration: ImbalanceSet
    in_use: ImbalanceSet


class DragLimits(_Model):
    wheel_max_pct: CitedValue
    divisor: DragDivisor


class ParkingLimits(_Model):
    min_pct: CitedValue
    reduced_min_pct: CitedValue
    reduced_below_mass_ratio: CitedValue  # reduced limit when total mass < ratio × curb mass
    exact_ratio_case: ExactRatioCase  # which limit applies at exactly ratio × curb mass


class BrakingStart(_Model):
    wheel_load_pct: CitedValue  # force must exceed drag by this % of the wheel's static load


class BrakeLimits(_Model):
    rows: dict[str, BrakeRow] = Field(min_length=1)  # first matching row applies, in file order
    imbalance: ImbalanceLimits
    drag: DragLimits
    parking: ParkingLimits
    braking_start: BrakingStart


# ---------------------------------------------------------------- emissions


class _SetChooser(_Model):
    """A method with limit sets a / b and the one that applies by default."""

    limit_set: LimitSetChoice
    sets: dict[LimitSetName, Any]

    @model_validator(mode="after")
    def _set_exists(self) -> _SetChooser:
        if self.limit_set.value not in self.sets:
            have = ", ".join(sorted(self.sets)) or "none"
            raise ValueError(f"limit_set {self.limit_set.value!r} has no sets.{self.limit_set.value} (have: {have})")
        return self


class TwoSpeedIdleSet(_Model):
    idle_co_max_pct: CitedValue
    idle_hc_max_ppm: CitedValue
    high_idle_co_max_pct: CitedValue
    high_idle_hc_max_ppm: CitedValue
    high_idle_lambda: CitedBand


class RpmBands(_Model):
    high_idle_light: CitedBand
    high_idle_heavy: CitedBand
    light_max_total_mass_kg: CitedValue  # light vehicle: total mass ≤ this
    idle: CitedBand  # default idle band; the vehicle's own comes as an override


class TwoSpeedIdleLimits(_SetChooser):
    sets: dict[LimitSetName, TwoSpeedIdleSet]
    lambda_cross_check_tolerance: CitedValue
    dilution_min_co_co2_pct: dict[str, CitedValue]  # by fuel
    hc_residue_max_ppm: CitedValue
    rpm: RpmBands


class FreeAccelerationSet(_Model):
    k_max_m1: CitedValue


class FreeAccelerationLimits(_SetChooser):
    sets: dict[LimitSetName, FreeAccelerationSet]
    measured_accelerations: CitedValue
    optical_path_length_m: CitedValue
    n_k_tolerance_pct: CitedValue


class AsmSet(_Model):
    asm5025_co_max_pct: CitedValue
    asm5025_hc_max_ppm: CitedValue
    asm5025_no_max_ppm: CitedValue
    asm2540_co_max_pct: CitedValue
    asm2540_hc_max_ppm: CitedValue
    asm2540_no_max_ppm: CitedValue


class AsmLimits(_SetChooser):
    sets: dict[LimitSetName, AsmSet]

    def phase(self, mode: str, limit_set: str | None = None) -> AsmPhaseLimits:
        """The CO / HC / NO limits of phase `mode` ("ASM5025" or "ASM2540") in the set in force."""
        name = limit_set or self.limit_set.value
        if name not in self.sets:
            raise LimitsError("emission limits", [f"asm.sets.{name}: no such limit set"])
        prefix = {"ASM5025": "asm5025", "ASM2540": "asm2540"}.get(mode)
        if prefix is None:
            raise ValueError(f"unknown ASM phase {mode!r} (ASM5025 or ASM2540)")
        s = self.sets[name]
        return AsmPhaseLimits(
            limit_set=name,
            co_max_pct=getattr(s, f"{prefix}_co_max_pct"),
            hc_max_ppm=getattr(s, f"{prefix}_hc_max_ppm"),
            no_max_ppm=getattr(s, f"{prefix}_no_max_ppm"),
        )


class AsmPhaseLimits(_Model):
    """One ASM phase's limits as applied (the set's name kept for the result)."""

    limit_set: str
    co_max_pct: CitedValue
    hc_max_ppm: CitedValue
    no_max_ppm: CitedValue


class LugDownSet(_Model):
    k_max_m1: CitedValue  # K at the 100 % and the 80 % point
    nox_max_ppm: CitedValue  # NOx at the 80 % point


class LugDownLimits(_SetChooser):
    sets: dict[LimitSetName, LugDownSet]
    min_power_pct: CitedValue  # corrected Pmax as a % of rated power, at least


class EmissionsLimits(_Model):
    two_speed_idle: TwoSpeedIdleLimits
    free_acceleration: FreeAccelerationLimits
    asm: AsmLimits
    lug_down: LugDownLimits


class Limits(_Model):
    brakes: BrakeLimits
    emissions: EmissionsLimits


class BrakeRowChoice(_Model):
    """The row that applies to a vehicle, with its name and the clause of the table."""

    name: str
    row: BrakeRow
    clause: str


# ---------------------------------------------------------------- loading


_FILES: dict[str, type[_Model]] = {"brakes": BrakeLimits, "emissions": EmissionsLimits}


def _problems(exc: ValidationError, prefix: str = "") -> list[str]:
    out = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        got = f" (got {err['input']!r})" if err["type"] != "missing" else ""
        out.append(f"{prefix}{key}: {err['msg']}{got}")
    return out


def load_limits(directory: str | Path = DEFAULT_LIMITS_DIR) -> Limits:
    """Read and validate `brakes.toml` and `emissions.toml` from `directory`."""
    parts: dict[str, _Model] = {}
    for name, model in _FILES.items():
        path = Path(directory) / f"{name}.toml"
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise LimitsError(str(path), ["file not found (every lane needs its limits)"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise LimitsError(str(path), [f"not valid TOML: {exc}"]) from None
        try:
            parts[name] = model.model_validate(data)
        except ValidationError as exc:
            raise LimitsError(str(path), _problems(exc)) from None
    return Limits.model_validate({k: v.model_dump() for k, v in parts.items()})


def _is_cited(node: Mapping[str, Any]) -> bool:
    return "clause" in node and "certainty" in node


def _merge(base: Any, over: Any, path: str, problems: list[str]) -> Any:
    """`over` merged into the dumped model `base`; unknown keys are collected as problems."""
    if isinstance(base, dict) and _is_cited(base):
        if isinstance(over, Mapping):
            merged = _merge_table(base, over, path, problems)
        elif "value" in base and over is not None:
            merged = {**base, "value": over}
        elif over is None:
            return None  # the limit becomes "—", not judged
        else:
            problems.append(f"{path}: a band needs a table with min and max, got {over!r}")
            return base
        merged["source"] = "override"
        return merged
    if isinstance(base, dict):
        if not isinstance(over, Mapping):
            problems.append(f"{path}: expected a table of keys, got {over!r}")
            return base
        return _merge_table(base, over, path, problems)
    if base is None and isinstance(over, Mapping):
        return {**over, "source": "override"}  # a limit that was "—" gets one (whole table)
    return over


def _merge_table(base: dict[str, Any], over: Mapping[str, Any], path: str, problems: list[str]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        where = f"{path}.{key}"
        if key not in base:
            known = ", ".join(sorted(str(k) for k in base))
            problems.append(f"{where}: no such key (known here: {known})")
            continue
        merged[key] = _merge(base[key], value, where, problems)
    return merged


def apply_overrides(limits: Limits, overrides: Mapping[str, Any] | None) -> Limits:
    """`limits` with the regulator's per-inspection overrides applied (a new object).

    Shape: {"brakes": {...}, "emissions": {...}} with brakes.toml / emissions.toml
    keys, e.g. {"brakes": {"drag": {"wheel_max_pct": 8}}} or
    {"emissions": {"two_speed_idle": {"limit_set": "a"}}}.
    """
    if not overrides:
        return limits
    if not isinstance(overrides, Mapping):
        raise LimitsError("limit overrides", [f"expected a table, got {overrides!r}"])
    problems: list[str] = []
    merged = _merge_table(limits.model_dump(), overrides, "overrides", problems)
    problems = [p.removeprefix("overrides.") for p in problems]
    if problems:
        raise LimitsError("limit overrides", problems)
    try:
        return Limits.model_validate(merged)
    except ValidationError as exc:
        raise LimitsError("limit overrides", _problems(exc)) from None


def select_brake_row(limits: Limits | BrakeLimits, vehicle_class: str, total_mass_kg: float) -> BrakeRowChoice:
    """The first row of the brake table that matches the vehicle's class and total mass."""
    if vehicle_class not in get_args(VehicleClass):
        known = ", ".join(get_args(VehicleClass))
        raise ValueError(f"unknown vehicle class {vehicle_class!r} (known: {known})")
    brakes = limits.brakes if isinstance(limits, Limits) else limits
    for name, row in brakes.rows.items():
        if row.matches(vehicle_class, total_mass_kg):
            cited = row.whole_vehicle_min_pct or row.front_axle_min_pct or row.rear_axle_min_pct
            return BrakeRowChoice(name=name, row=row, clause=cited.clause if cited else "")
    raise LimitsError(
        "brake limits",
        [f"rows: no row for vehicle class {vehicle_class!r} of total mass {total_mass_kg} kg"],
    )


def check(
    item: str,
    value: Decimal | None,
    unit: str,
    comparison: Comparison,
    limit: CitedValue | CitedBand | None,
    *,
    basis: str = "",
    note: str = "",
) -> Check:
    """A `Check` of an already rounded `value` against a cited limit (None: "—", not judged)."""
    shown = None if value is None else float(value)
    if limit is None:
        return Check(item, shown, unit, None, None, "not_judged", basis=basis, note=note)
    bound: float | tuple[float, float]
    bound = (limit.min, limit.max) if isinstance(limit, CitedBand) else limit.value
    if isinstance(limit, CitedBand):
        comparison = "within"
    outcome: Literal["pass", "fail"]
    outcome = "fail" if value is None or not meets(value, comparison, bound) else "pass"
    return Check(
        item,
        shown,
        unit,
        comparison,
        bound,
        outcome,
        clause=limit.clause,
        certainty=limit.certainty,
        source=limit.source,
        basis=basis,
        note=note,
    )
