"""The lane's MQTT messages with the station software: commands, replies, events.

Each payload carries a `schema` field naming its kind and version. The models
forbid unknown fields, so a station that misspells a field is told which one
instead of having it ignored. JSON Schemas generated from these models are
shipped in `docs/schemas/` (tests check they match).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from protocols.vin import PLATE_PATTERN, validate_vin

VehicleClass = Literal[
    "passenger_car", "bus", "truck", "articulated_bus", "road_train", "trailer", "special_purpose", "other"
]
Fuel = Literal["gasoline", "diesel", "lpg", "cng", "hybrid_gasoline", "hybrid_diesel", "electric"]
EmissionsMethod = Literal["two_speed_idle", "free_acceleration", "asm", "lug_down"]

#: request_id: names the reply topic (`…/reply/{request_id}`) and a key of the lane's request log
REQUEST_ID_PATTERN = r"^[A-Za-z0-9_.:-]+$"
REQUEST_ID_MAX = 64
#: inspection_no (jylsh): names the inspection record's file in the state directory
INSPECTION_NO_PATTERN = r"^[A-Za-z0-9]+$"
INSPECTION_NO_MAX = 32
#: axles a vehicle may have on the lane (the station lists each; items name them 1…MAX_AXLES)
MAX_AXLES = 6
#: a command's JSON nests no deeper than this (limit_overrides is the deepest part: 4 levels)
MAX_NESTING = 16
#: 17 characters of GB 16735 (digits and capital letters without I, O, Q); check digit checked too
VIN_PATTERN = r"^[A-HJ-NPR-Z0-9]{17}$"
REASON_MAX = 200
#: the largest command payload the lane reads by default (mqtt.max_command_bytes); a larger one is
#: refused unread with a warning event
MAX_COMMAND_BYTES = 64 * 1024

RequestId = Annotated[
    str, Field(min_length=1, max_length=REQUEST_ID_MAX, pattern=REQUEST_ID_PATTERN,
               description="names the reply topic; unique per command (a repeat gets the first reply again)")
]
InspectionNo = Annotated[
    str, Field(min_length=1, max_length=INSPECTION_NO_MAX, pattern=INSPECTION_NO_PATTERN, description="jylsh")
]
AxleNo = Annotated[int, Field(ge=1, le=MAX_AXLES)]

GASOLINE_LIKE = frozenset({"gasoline", "lpg", "cng", "hybrid_gasoline"})
DIESEL_LIKE = frozenset({"diesel", "hybrid_diesel"})


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Vehicle(_Message):
    plate: str = Field(max_length=8, pattern=PLATE_PATTERN, description="plate number, e.g. 鲁N12345 (hphm)")
    plate_type: str = Field(pattern=r"^[0-9]{2}$", description="plate type code, e.g. 02 small car (hpzl)")
    vin: str = Field(
        min_length=17, max_length=17, pattern=VIN_PATTERN,
        description="17-character VIN (clsbdh) with a valid GB 16735 check digit (position 9), as the PDA checks it",
    )
    vehicle_class: VehicleClass
    fuel: Fuel
    curb_mass_kg: int = Field(gt=0, le=100_000)
    total_mass_kg: int = Field(gt=0, le=100_000)
    registration_date: date
    new_registration: bool = Field(description="true for a first registration, false for a vehicle in use")
    rated_engine_speed_rpm: int | None = Field(None, gt=0, le=20_000)
    rated_engine_power_kw: float | None = Field(
        None, gt=0, le=2_000, description="rated engine power (kW), from the registration; required for lug_down"
    )
    has_obd: bool = True

    @field_validator("vin")
    @classmethod
    def _check_digit(cls, vin: str) -> str:
        problem = validate_vin(vin)  # the PDA's rule: a start the capture could never match is refused
        if problem is not None:
            raise ValueError(problem)
        return vin


class Axle(_Message):
    position: Literal["front", "rear"]
    parking_brake: bool = False


class Items(_Message):
    brake_axles: list[AxleNo] = Field(
        default_factory=list, max_length=MAX_AXLES, description="axle numbers (1 = front) to test on rollers"
    )
    parking_brake: bool = False
    emissions: EmissionsMethod | None = None
    exterior: bool = Field(True, description="wait for the PDA's exterior capture")
    road_test_axles: dict[AxleNo, Annotated[str, Field(min_length=1, max_length=REASON_MAX)]] = Field(
        default_factory=dict,
        max_length=MAX_AXLES,
        description="axles reported as not tested on rollers, with the reason",
        json_schema_extra={"propertyNames": {"pattern": f"^[1-{MAX_AXLES}]$"}},
    )


class StartCommand(_Message):
    """`…/cmd/start`: the station starts an inspection on this lane."""

    schema_: Literal["lane-cmd-start/1"] = Field(alias="schema")
    request_id: RequestId
    inspection_no: InspectionNo
    station_time: AwareDatetime | None = Field(
        None, description="the station's clock when it sent the command, with its UTC offset"
    )
    vehicle: Vehicle
    axles: list[Axle] = Field(min_length=1, max_length=MAX_AXLES)
    items: Items
    limit_overrides: dict[Annotated[str, Field(max_length=64)], Any] = Field(
        default_factory=dict, max_length=16, description="limits sent by the regulator"
    )

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
        if method == "asm" and self.vehicle.fuel not in GASOLINE_LIKE:
            problems.append(f"items.emissions: asm is for gasoline vehicles, not {self.vehicle.fuel}")
        if method == "lug_down" and self.vehicle.fuel not in DIESEL_LIKE:
            problems.append(f"items.emissions: lug_down is for diesel vehicles, not {self.vehicle.fuel}")
        if method == "lug_down" and self.vehicle.rated_engine_power_kw is None:
            problems.append("vehicle.rated_engine_power_kw: required for a lug_down test")
        if method is not None and self.vehicle.rated_engine_speed_rpm is None:
            problems.append("vehicle.rated_engine_speed_rpm: required for an emissions test")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class AbortCommand(_Message):
    """`…/cmd/abort`: stop the inspection in progress (motors stop, pump stops)."""

    schema_: Literal["lane-cmd-abort/1"] = Field(alias="schema")
    request_id: RequestId
    inspection_no: InspectionNo
    reason: str = Field("", max_length=REASON_MAX)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


DailyCheck = Literal["leak_check", "zero", "hc_residue", "dyno_coast_down", "dyno_parasitic"]
#: the gas analyzer's checks: what a daily-check command without `checks` runs
ANALYZER_CHECKS: tuple[DailyCheck, ...] = ("leak_check", "zero", "hc_residue")
#: the chassis dynamometer's: loaded coast-down (gates ASM and lug-down) and parasitic loss
DYNO_CHECKS: tuple[DailyCheck, ...] = ("dyno_coast_down", "dyno_parasitic")
DAILY_CHECKS: tuple[DailyCheck, ...] = ANALYZER_CHECKS + DYNO_CHECKS


class DailyCheckCommand(_Message):
    """`…/cmd/daily-check`: run the gas analyzer's leak check and zero (and HC residue), and/or the
    dynamometer's loaded coast-down and parasitic loss."""

    schema_: Literal["lane-cmd-daily-check/1"] = Field(alias="schema")
    request_id: RequestId
    checks: list[DailyCheck] = Field(
        default_factory=lambda: list(ANALYZER_CHECKS), max_length=len(DAILY_CHECKS),
        description="which checks; default the gas analyzer's three (leak_check, zero, hc_residue)")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Reply(_Message):
    """`…/reply/{request_id}`: accepted, or refused with every reason."""

    schema_: Literal["lane-reply/1"] = Field("lane-reply/1", alias="schema")
    request_id: str = Field(max_length=REQUEST_ID_MAX)
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


def nesting_depth(document: Any) -> int:
    """How deep objects and arrays nest in a parsed JSON document (a scalar: 0). Iterative, so a
    document nested deeper than Python's recursion limit is measured, not a RecursionError."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def dump(message: BaseModel) -> dict[str, Any]:
    """A message as the JSON document published: field aliases (`schema`), no None-pruning."""
    return message.model_dump(mode="json", by_alias=True)
