"""The brake tester simulator's data: the vehicle's `[brake]` table and the tester's own settings.

A vehicle file's `[brake]` table lists the axles from the front, each with
its left and right wheel (static load, drag with the brake released, the
service brake force the wheel reaches, its build-up time, and on a parking
axle the parking brake force). The tester's own settings (speeds, timings,
noise, the scripted driver's delays) live in config/simulators/brake-tester.toml;
`--fast` applies its `[fast]` table over them. Extra keys are errors, so a
typo in a scenario file is caught when the simulator starts.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from protocols.datafiles import CONFIG_DIR
from simulators.vehicle import load_vehicle_file

DEFAULT_TESTER_CONFIG = CONFIG_DIR / "simulators" / "brake-tester.toml"


class WheelSpec(BaseModel):
    """One wheel on the rollers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    load_n: float = Field(gt=0, description="static wheel load")
    drag_n: float = Field(ge=0, description="roller force with the brake released")
    service_max_n: float = Field(ge=0, description="largest service brake force the wheel reaches")
    build_up_s: float = Field(gt=0, default=0.6, description="time from pedal to full service force")
    parking_max_n: float | None = Field(default=None, ge=0, description="parking brake force (parking axle)")
    parking_build_up_s: float = Field(gt=0, default=1.0)

    @model_validator(mode="after")
    def _forces_above_drag(self) -> WheelSpec:
        if self.service_max_n < self.drag_n:
            raise ValueError(f"service_max_n {self.service_max_n} is below drag_n {self.drag_n}")
        if self.parking_max_n is not None and self.parking_max_n < self.drag_n:
            raise ValueError(f"parking_max_n {self.parking_max_n} is below drag_n {self.drag_n}")
        return self


class AxleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    parking: bool = False
    left: WheelSpec
    right: WheelSpec

    @model_validator(mode="after")
    def _parking_forces(self) -> AxleSpec:
        if self.parking and (self.left.parking_max_n is None or self.right.parking_max_n is None):
            raise ValueError("a parking axle needs parking_max_n on both wheels")
        return self


class BrakeVehicle(BaseModel):
    """The `[brake]` table of a vehicle file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    adhesion: float = Field(default=0.7, gt=0, le=1.5, description="tyre-to-roller adhesion (0.7 dry)")
    axles: list[AxleSpec] = Field(min_length=1)
    name: str = ""


class TesterParams(BaseModel):
    """How the RB-2 itself behaves (not the vehicle)."""

    model_config = ConfigDict(extra="forbid")

    unit_id: int = Field(default=1, ge=1, le=247)
    ring_size: int = Field(default=512, ge=16, le=32768)
    sample_rate_hz: int = Field(default=100, ge=10, le=200)
    slip_threshold_pct: int = Field(default=25, ge=5, le=60)
    auto_stop_s: int = Field(default=60, ge=5, le=300)
    test_speed_kmh: float = Field(default=2.5, gt=0)
    start_s: float = Field(default=1.5, gt=0)
    stop_s: float = Field(default=0.3, gt=0)
    tare_s: float = Field(default=0.3, gt=0, lt=0.5)
    lift_travel_s: float = Field(default=1.0, gt=0)
    force_offset_n: tuple[float, float] = (14.0, -9.0)
    force_noise_n: float = Field(default=4.0, ge=0)
    load_noise_n: float = Field(default=12.0, ge=0)
    speed_noise_kmh: float = Field(default=0.02, ge=0)
    slip_rise_pct_per_s: float = Field(default=400.0, gt=0)
    seed: int | None = 38900


class ScriptParams(BaseModel):
    """The scripted driver: when the next axle drives on and off, when the driver brakes."""

    model_config = ConfigDict(extra="forbid")

    auto: bool = True
    drive_on_delay_s: float = Field(default=4.0, ge=0)
    drive_off_delay_s: float = Field(default=2.0, ge=0)
    brake_delay_s: float = Field(default=3.0, ge=0)


class LineParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    baudrate: int = 19200
    parity: str = Field(default="E", pattern="^[NEO]$")
    tcp_host: str = "127.0.0.1"
    tcp_port: int = Field(default=502, ge=0, le=65535)


class TesterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tester: TesterParams = TesterParams()
    script: ScriptParams = ScriptParams()
    line: LineParams = LineParams()
    fast: dict[str, Any] = Field(default_factory=dict)

    def fast_applied(self) -> TesterConfig:
        """This configuration with its `[fast]` values applied over [tester] and [script]."""
        tester = self.tester.model_dump()
        script = self.script.model_dump()
        for key, value in self.fast.items():
            if key in tester:
                tester[key] = value
            elif key in script:
                script[key] = value
            else:
                raise ValueError(f"[fast] {key}: not a [tester] or [script] key")
        return TesterConfig(
            tester=TesterParams.model_validate(tester),
            script=ScriptParams.model_validate(script),
            line=self.line,
            fast={},
        )


def load_tester_config(path: str | Path | None = None, *, fast: bool = False) -> TesterConfig:
    """The tester's settings from TOML (the project's default file if `path` is None)."""
    source = Path(path) if path is not None else DEFAULT_TESTER_CONFIG
    if source.exists():
        with source.open("rb") as fh:
            config = TesterConfig.model_validate(tomllib.load(fh))
    elif path is None:
        config = TesterConfig()
    else:
        raise FileNotFoundError(f"no brake tester config file {source}")
    return config.fast_applied() if fast else config


def load_brake_vehicle(name_or_path: str | Path) -> BrakeVehicle:
    """The `[brake]` table of a vehicle file (by name in config/vehicles/ or by path)."""
    data = load_vehicle_file(name_or_path)
    if "brake" not in data:
        raise ValueError(f"{data['_path']}: no [brake] table: this vehicle cannot go on the brake tester")
    table = dict(data["brake"])
    table.setdefault("name", Path(data["_path"]).stem)
    try:
        return BrakeVehicle.model_validate(table)
    except ValueError as exc:
        raise ValueError(f"{data['_path']} [brake]: {exc}") from None
