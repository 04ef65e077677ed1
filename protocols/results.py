"""The two result messages of an inspection: `…/result/safety` and `…/result/emissions`.

Each is complete on its own: a consumer of one never needs the other. The
envelope is the same for both (ids, clocks, vehicle, verdict, devices,
signature); `items` and `photos` hold what belongs to that platform, in the
lane's canonical English form with units in the field names; `platform_record`
repeats the same content under the platform's own field names, codes and time
format, as the lane's platform mapping file says (a province with other field
standards changes that file, not code).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Verdict = Literal["pass", "fail", "incomplete"]
ItemVerdict = Literal["pass", "fail", "void", "not_tested", "not_completed"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Clocks(_Model):
    """The lane's clock is the record's clock; the others are kept beside it with their offsets."""

    lane_received_at: datetime = Field(description="lane clock: the start command arrived")
    lane_finished_at: datetime = Field(description="lane clock: the result was built")
    station_time: datetime | None = Field(None, description="the station's clock in its start command")
    station_clock_offset_s: float | None = Field(None, description="lane − station, seconds")
    pda_captured_at: datetime | None = Field(None, description="the PDA's clock: capture taken")
    pda_clock_offset_s: float | None = Field(None, description="lane receive time − PDA captured_at, seconds")


class VehicleInfo(_Model):
    plate: str
    plate_type: str
    vin: str
    vehicle_class: str
    fuel: str
    curb_mass_kg: int
    total_mass_kg: int
    registration_date: str
    new_registration: bool
    odometer_km: int | None = None


class FigureRef(_Model):
    """A picture the lane drew of an item's process data, kept beside the inspection record."""

    kind: Literal["brake_curves", "asm_trace", "lug_down_trace"] = Field(
        description="brake_curves: left/right force over time, window, F_max; asm_trace: one ASM phase's speed, "
        "force and corrected HC/CO/NO per second with bands, limits and windows; lug_down_trace: power over "
        "speed in the scan with Pmax, K and NOx at the 100 % and 80 % points"
    )
    axle_no: int | None = Field(None, description="brake_curves: the axle whose run it shows")
    phase: str | None = Field(None, description="asm_trace: the phase it shows (ASM5025, ASM2540)")
    path: str = Field(description="where the lane keeps the SVG, relative to its state_dir")
    sha256: str = Field(description="SHA-256 of the SVG file")


class ResultItem(BaseModel):
    """One judged item. Beyond these fields each kind of item carries its own values, limits,
    checks and process data (see docs/mqtt-api.md)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    code: str = Field(description="the platform's item code, e.g. F1, B1, B0")
    item: str = Field(description="stable English name, e.g. service_brake_axle_1")
    verdict: ItemVerdict
    reason: str | None = None
    figures: list[FigureRef] | None = Field(
        None, description="pictures of the item's process data for the report, as SVG (brake curves, ASM and "
        "lug-down traces)"
    )


class PhotoRef(_Model):
    photo: str
    code: str | None = Field(description="the platform's photo code")
    sha256: str
    bytes: int
    taken_at_pda: datetime
    taken_at_lane: datetime = Field(description="taken_at corrected by the PDA's clock offset")
    received_at_lane: datetime
    ref: str = Field(description="where the lane keeps the JPEG (content-addressed)")


class Signature(_Model):
    """Over the RFC 8785 canonical JSON (UTF-8) of the message without its `signature` field."""

    algorithm: Literal["HMAC-SHA256", "Ed25519"] = "HMAC-SHA256"
    key_id: str = Field(description="the key's name as configured on the lane (lane.signing_key_id)")
    value: str = Field(description="lower-case hex: the HMAC-SHA256, or the 64-byte Ed25519 signature")


class ProcedureTiming(_Model):
    """A procedure setting for which the standard fixes a least value, as the inspection used it."""

    value: float = Field(description="the value the lane ran with")
    standard_min: float = Field(description="the standard's value; a production lane never runs below it")
    unit: str = Field(description="s, accelerations, or empty for the time scale")


class _Result(_Model):
    result_id: str = Field(description="unique per result; the same on every delivery — drop repeats by it")
    inspection_no: str
    station: str
    lane: str
    clocks: Clocks
    vehicle: VehicleInfo
    verdict: Verdict
    items: list[ResultItem]
    photos: list[PhotoRef]
    devices: dict[str, dict[str, Any]]
    not_completed: dict[str, str] = Field(default_factory=dict)
    aborted: str | None = None
    inspector: dict[str, Any] | None = None
    simulation: bool = Field(
        description="true: measured by a lane started as a simulation (`laned run --simulation`: simulated "
        "devices, possibly shortened procedures); never an official result"
    )
    procedure_timings: dict[str, ProcedureTiming] = Field(
        description="by config key path (e.g. inspection.time_scale, inspection.two_speed_idle.measure_s): "
        "the timings the procedures ran with and the standard's"
    )
    platform_record: dict[str, Any]
    signature: Signature


#: the `schema` of each platform's result (version 2 since laned 0.2: docs/mqtt-api.md)
RESULT_SCHEMAS = {"safety": "result-safety/2", "emissions": "result-emissions/2"}


class SafetyResult(_Result):
    schema_: Literal["result-safety/2"] = Field("result-safety/2", alias="schema")


class EmissionsResult(_Result):
    schema_: Literal["result-emissions/2"] = Field("result-emissions/2", alias="schema")
    method: str | None = Field(None, description="two_speed_idle, free_acceleration, or null")
    obd: dict[str, Any] | None = None
