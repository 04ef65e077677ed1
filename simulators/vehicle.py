"""Simulated vehicles as data: one TOML file per vehicle in `config/vehicles/`.

A vehicle file has a `[vehicle]` table (identity, class, fuel, masses: what a
station's `start` command would say about it) and one table per simulated
device that meets it: `[brake]` for the roller tester, `[exhaust]` for the gas
analyzer, `[smoke]` for the opacimeter, `[capture]` for the PDA. Each
simulator validates only its own table (extra keys forbidden there) and
ignores the others, so a new test vehicle is a new file, not new code.
"""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from protocols.datafiles import CONFIG_DIR

VEHICLES_DIR = CONFIG_DIR / "vehicles"

VehicleClass = Literal[
    "passenger_car", "bus", "truck", "articulated_bus", "road_train", "trailer", "special_purpose", "other"
]
Fuel = Literal["gasoline", "diesel", "lpg", "cng", "hybrid_gasoline", "hybrid_diesel", "electric"]


class VehicleIdentity(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plate: str
    plate_type: str = "02"
    vin: str
    vehicle_class: VehicleClass
    fuel: Fuel
    curb_mass_kg: int = Field(gt=0)
    total_mass_kg: int = Field(gt=0)
    registration_date: date
    new_registration: bool = False
    rated_engine_speed_rpm: int = Field(gt=0)
    rated_engine_power_kw: float | None = Field(None, gt=0, description="for lug-down: the 40 % power check")
    description: str = ""


def resolve_vehicle_path(name_or_path: str | Path) -> Path:
    """A vehicle by file path, or by name in config/vehicles/ (`gasoline-car` → gasoline-car.toml)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    candidate = VEHICLES_DIR / f"{name_or_path}.toml"
    if candidate.exists():
        return candidate
    known = ", ".join(sorted(p.stem for p in VEHICLES_DIR.glob("*.toml"))) or "none"
    raise FileNotFoundError(f"no vehicle file {name_or_path!r} (known vehicles: {known})")


def load_vehicle_file(name_or_path: str | Path) -> dict[str, Any]:
    """The whole vehicle file as a dict, with `[vehicle]` validated."""
    path = resolve_vehicle_path(name_or_path)
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    if "vehicle" not in data:
        raise ValueError(f"{path}: missing the [vehicle] table")
    VehicleIdentity.model_validate(data["vehicle"])
    data["_path"] = str(path)
    return data


def vehicle_identity(data: dict[str, Any]) -> VehicleIdentity:
    return VehicleIdentity.model_validate(data["vehicle"])
