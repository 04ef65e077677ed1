"""The lane's MQTT messages with the station software: commands, replies, events.

Each payload carries a `schema` field naming its kind and version. The models
forbid unknown fields, so a station that misspells a field is told which one
instead of having it ignored. JSON Schemas generated from these models are
shipped in `docs/schemas/` (tests check they match).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

VehicleClass = Literal[
    "passenger_car", "bus", "truck", "articulated_bus", "road_train", "trailer", "special_purpose", "other"
]
Fuel = Literal["gasoline", "diesel", "lpg", "cng", "hybrid_gasoline", "hybrid_diesel", "electric"]
EmissionsMethod = Literal["two_speed_idle", "free_acceleration"]

GASOLINE_LIKE = frozenset({"gasoline", "lpg", "cng", "hybrid_gasoline"})
DIESEL_LIKE = frozenset({"diesel", "hybrid_diesel"})


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Vehicle(_Message):
    plate: str = Field(description="plate number, e.g. 鲁N12345 (hphm)")
    plate_type: str = Field(description="plate type code, e.g. 02 small car (hpzl)")
    vin: str = Field(description="17-character VIN (clsbdh)")
    vehicle_class: VehicleClass
    fuel: Fuel
    curb_mass_kg: int = Field(gt=0)
    total_mass_kg: int = Field(gt=0)
    registration_date: date
    new_registration: bool = Field(description="true for a first registration, false for a vehicle in use")
    rated_engine_speed_rpm: int | None = Field(None, gt=0)
    has_obd: bool = True


class Axle(_Message):
    position: Literal["front", "rear"]
    parking_brake: bool = False


class Items(_Message):
    brake_axles: list[int] = Field(default_factory=list, description="axle numbers (1 = front) to test on rollers")
    parking_brake: bool = False
    emissions: EmissionsMethod | None = None
    exterior: bool = Field(True, description="wait for the PDA's exterior capture")
    road_test_axles: dict[int, str] = Field(
        default_factory=dict, description="axles reported as not tested on rollers, with the reason"
    )


class StartCommand(_Message):
    """`…/cmd/start`: the station starts an inspection on this lane."""

    schema_: Literal["lane-cmd-start/1"] = Field(alias="schema")
    request_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    inspection_no: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9]+$", description="jylsh")
    station_time: AwareDatetime | None = Field(
        None, description="the station's clock when it sent the command, with its UTC offset"
    )
    vehicle: Vehicle
    axles: list[Axle] = Field(min_length=1, max_length=6)
    items: Items
    limit_overrides: dict[str, Any] = Field(default_factory=dict, description="limits sent by the regulator")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _consistent(self) -> StartCommand:
        problems = []
        for axle_no in self.items.brake_axles:
            if not 1 <= axle_no <= len(self.axles):
                problems.append(f"items.brake_axles: axle {axle_no} does not exist (vehicle has {len(self.axles)})")
        if len(set(self.items.brake_axles)) != len(self.items.brake_axles):
            problems.append("items.brake_axles: an axle is listed twice")
        if self.items.parking_brake and not any(a.parking_brake for a in self.axles):
            problems.append("items.parking_brake: no axle is marked parking_brake")
        method = self.items.emissions
        if method == "two_speed_idle" and self.vehicle.fuel not in GASOLINE_LIKE:
            problems.append(f"items.emissions: two_speed_idle is for gasoline vehicles, not {self.vehicle.fuel}")
        if method == "free_acceleration" and self.vehicle.fuel not in DIESEL_LIKE:
            problems.append(f"items.emissions: free_acceleration is for diesel vehicles, not {self.vehicle.fuel}")
        if method is not None and self.vehicle.rated_engine_speed_rpm is None:
            problems.append("vehicle.rated_engine_speed_rpm: required for an emissions test")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class AbortCommand(_Message):
    """`…/cmd/abort`: stop the inspection in progress (motors stop, pump stops)."""

    schema_: Literal["lane-cmd-abort/1"] = Field(alias="schema")
    request_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    inspection_no: str
    reason: str = ""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


DailyCheck = Literal["leak_check", "zero", "hc_residue"]
DAILY_CHECKS: tuple[DailyCheck, ...] = ("leak_check", "zero", "hc_residue")


class DailyCheckCommand(_Message):
    """`…/cmd/daily-check`: run the gas analyzer's leak check and zero (and HC residue)."""

    schema_: Literal["lane-cmd-daily-check/1"] = Field(alias="schema")
    request_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    checks: list[DailyCheck] = Field(default_factory=lambda: list(DAILY_CHECKS))

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Reply(_Message):
    """`…/reply/{request_id}`: accepted, or refused with every reason."""

    schema_: Literal["lane-reply/1"] = Field("lane-reply/1", alias="schema")
    request_id: str
    command: str
    accepted: bool
    reasons: list[str] = Field(default_factory=list)
    inspection_no: str | None = None
    lane_time: datetime

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


EventType = Literal[
    "inspection_started", "step_started", "step_finished", "prompt", "warning", "inspection_finished",
    "inspection_aborted", "capture", "lane_restarted",
]


class Event(_Message):
    """`…/event`: progress of an inspection, prompts for the driver, warnings."""

    schema_: Literal["lane-event/1"] = Field("lane-event/1", alias="schema")
    event_id: str
    type: EventType
    inspection_no: str | None = None
    step: str | None = Field(None, description="e.g. brake.axle2, parking_brake, two_speed_idle.high_idle")
    action: str | None = Field(None, description="what the driver should do, machine-readable (prompts)")
    text: str = Field("", description="for people: the message for the driver's display or the technician")
    data: dict[str, Any] = Field(default_factory=dict)
    lane_time: datetime

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("text")
    @classmethod
    def _short(cls, value: str) -> str:
        return value[:500]


def dump(message: BaseModel) -> dict[str, Any]:
    """A message as the JSON document published: field aliases (`schema`), no None-pruning."""
    return message.model_dump(mode="json", by_alias=True)
