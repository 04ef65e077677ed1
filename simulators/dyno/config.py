"""The dynamometer simulator's data: the vehicle's `[dynamometer]` table and the machine's own settings.

A vehicle file's `[dynamometer]` table says how the vehicle drives the rollers:
its engine's full-load power curve, gears (engine r/min per km/h of roller
speed), the gear the driver picks, drivetrain efficiency, rotating mass and the
driver's throttle controller. The machine's own settings (build, its "true"
parasitic coefficients, PAU lag and noise, timings, the mode-3 controller) live
in config/simulators/dynamometer.toml; `--fast` applies its `[fast]` table,
which may shorten the lift travel, the motor's run-up and the scripted delays,
never the 10 Hz ring or the 100 Hz physics. Extra keys are errors.
"""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from protocols.datafiles import CONFIG_DIR
from protocols.dynamometer import BUILDS
from simulators.brake.config import LineParams
from simulators.vehicle import load_vehicle_file

DEFAULT_DYNO_CONFIG = CONFIG_DIR / "simulators" / "dynamometer.toml"


class DynoVehicle(BaseModel):
    """The `[dynamometer]` table of a vehicle file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Literal["gasoline", "diesel"]
    rated_power_kw: float = Field(gt=0, description="engine's rated power")
    rated_speed_rpm: float = Field(gt=0, description="engine speed at rated power")
    idle_rpm: float = Field(gt=0)
    #: full-load power curve: [[r/min, kW], …] ascending; the last point is where power ends
    #: (a diesel's governed high idle at 0 kW; a gasoline engine's rev limit)
    power_curve: list[tuple[float, float]] = Field(min_length=2)
    gears_rpm_per_kmh: list[float] = Field(min_length=1, description="engine r/min per km/h in each gear")
    gear: int = Field(ge=1, description="the gear the driver picks (1-based)")
    efficiency: float = Field(default=0.85, gt=0, le=1)
    rotating_mass_kg: float = Field(default=50.0, ge=0)
    engine_drag_pct: float = Field(default=4.0, ge=0, description="closed-throttle drag, % of rated power")
    driver_kp: float = Field(default=0.08, ge=0, description="throttle per km/h of speed error")
    driver_ki: float = Field(default=0.05, ge=0, description="throttle per km/h·s")
    speed_noise_kmh: float = Field(default=0.25, ge=0, description="how far the driver's aim wanders")
    brake_force_n: float = Field(default=3000.0, gt=0, description="the driver's service brake at the wheels")
    name: str = ""

    @model_validator(mode="after")
    def _curve_and_gear(self) -> DynoVehicle:
        rpms = [p[0] for p in self.power_curve]
        if rpms != sorted(rpms) or len(set(rpms)) != len(rpms):
            raise ValueError("power_curve r/min must rise strictly")
        if self.gear > len(self.gears_rpm_per_kmh):
            raise ValueError(f"gear {self.gear}: the vehicle has {len(self.gears_rpm_per_kmh)} gears")
        return self

    @property
    def rpm_per_kmh(self) -> float:
        return self.gears_rpm_per_kmh[self.gear - 1]

    def full_load_kw(self, rpm: float) -> float:
        """Full-load power at `rpm`, linear between the curve's points, 0 outside it."""
        curve = self.power_curve
        if rpm <= curve[0][0]:
            return curve[0][1] * max(0.0, rpm / curve[0][0])
        for (r0, p0), (r1, p1) in itertools.pairwise(curve):
            if rpm <= r1:
                return p0 + (p1 - p0) * (rpm - r0) / (r1 - r0)
        return 0.0


class DynoParams(BaseModel):
    """How the CD-1 itself behaves (not the vehicle)."""

    model_config = ConfigDict(extra="forbid")

    model: Literal["CD-1L", "CD-1H"] = "CD-1L"
    unit_id: int = Field(default=1, ge=1, le=247)
    ring_size: int = Field(default=512, ge=16, le=32768)
    #: the machine's true parasitic loss (N, km/h), distinct from its PL_A…PL_C registers
    true_pl_a_n: float = 62.0
    true_pl_b: float = 1.05
    true_pl_c: float = 0.0135
    #: the machine's true equivalent mass; None: the build's BASE_INERTIA default
    true_base_inertia_kg: float | None = None
    pau_lag_s: float = Field(default=0.2, gt=0)
    force_noise_n: float = Field(default=5.0, ge=0)
    force_offset_n: float = Field(default=12.0, description="load cell zero error until a TARE")
    speed_noise_kmh: float = Field(default=0.01, ge=0)
    accel_filter_s: float = Field(default=0.3, gt=0)
    speed_kp_n_per_kmh: float = Field(default=1500.0, ge=0, description="mode 3 PAU controller")
    speed_ki_n_per_kmh_s: float = Field(default=3000.0, ge=0)
    lift_travel_s: float = Field(default=3.0, gt=0)
    motor_run_up_s: float = Field(default=10.0, gt=0, description="0 → MOTOR_SPEED")
    brake_stop_s: float = Field(default=2.0, gt=0, description="the roller brake stops 10 km/h in this time")
    tare_s: float = Field(default=0.3, gt=0, lt=0.5)
    ambient_c: float = 18.0
    pau_heat_c_per_kj: float = Field(default=0.01, ge=0)
    pau_cool_s: float = Field(default=300.0, gt=0)
    seed: int | None = 18001


class ScriptParams(BaseModel):
    """The scripted driver: how soon after the simulator starts the vehicle is on the rollers."""

    model_config = ConfigDict(extra="forbid")

    drive_on_at_start: bool = True


class DynoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dyno: DynoParams = DynoParams()
    script: ScriptParams = ScriptParams()
    line: LineParams = LineParams()
    fast: dict[str, Any] = Field(default_factory=dict)

    def fast_applied(self) -> DynoConfig:
        """This configuration with its `[fast]` values applied over [dyno] (never the time base)."""
        dyno = self.dyno.model_dump()
        for key, value in self.fast.items():
            if key not in dyno:
                raise ValueError(f"[fast] {key}: not a [dyno] key")
            dyno[key] = value
        return DynoConfig(dyno=DynoParams.model_validate(dyno), script=self.script, line=self.line, fast={})

    @property
    def build(self) -> Any:
        return BUILDS[self.dyno.model]


def load_dyno_config(path: str | Path | None = None, *, fast: bool = False) -> DynoConfig:
    """The dynamometer's settings from TOML (the project's default file if `path` is None)."""
    source = Path(path) if path is not None else DEFAULT_DYNO_CONFIG
    if source.exists():
        with source.open("rb") as fh:
            config = DynoConfig.model_validate(tomllib.load(fh))
    elif path is None:
        config = DynoConfig()
    else:
        raise FileNotFoundError(f"no dynamometer config file {source}")
    return config.fast_applied() if fast else config


def load_dyno_vehicle(name_or_path: str | Path) -> DynoVehicle:
    """The `[dynamometer]` table of a vehicle file (by name in config/vehicles/ or by path)."""
    data = load_vehicle_file(name_or_path)
    if "dynamometer" not in data:
        raise ValueError(f"{data['_path']}: no [dynamometer] table: this vehicle cannot go on the dynamometer")
    table = dict(data["dynamometer"])
    table.setdefault("name", Path(data["_path"]).stem)
    try:
        return DynoVehicle.model_validate(table)
    except ValueError as exc:
        raise ValueError(f"{data['_path']} [dynamometer]: {exc}") from None
