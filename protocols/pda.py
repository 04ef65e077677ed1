"""The exterior-inspection PDA's capture contract (devices/pda.md): documents, acks, topics, tables.

One PDA capture serves the safety and the emissions inspection alike; this
module is the contract both ends follow, with no I/O:

- `CaptureDocument` ("pda-capture/1") and `PdaAck` ("pda-ack/1") as pydantic
  models that forbid unknown fields and take JSON types strictly;
- `parse_capture(payload)` turns raw MQTT payload bytes into a document or a
  list of `FieldError`s with dotted field paths ("vehicle.vin",
  "checks.3.result"); it never raises, whatever the bytes;
- `capture_contract_errors(doc)` checks what the manual asks of every capture
  whatever the vehicle: each check item once, each photo once, a VIN with a
  valid check digit, a plate of the right form;
- the manual's check-item and photo tables as data (`CHECK_ITEMS`, `PHOTOS`),
  so the lane routes items and photos to the two platforms by table;
- the topic names under the configured `{base}`.

Errors about the whole payload (not JSON, not an object) carry the field
`ROOT_FIELD` ("$").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from protocols.vin import validate_plate, validate_vin

CAPTURE_SCHEMA = "pda-capture/1"
ACK_SCHEMA = "pda-ack/1"
ROOT_FIELD = "$"

# A capture_id names an MQTT topic level: no '/', '+', '#', nothing a topic could trip on.
CAPTURE_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
_CAPTURE_ID_RE = re.compile(CAPTURE_ID_PATTERN)


class Platform(StrEnum):
    """Which inspection (and so which platform) an item or photo serves: safety (安检) or
    emissions (环检)."""

    SAFETY = "S"
    EMISSIONS = "E"


S = frozenset({Platform.SAFETY})
E = frozenset({Platform.EMISSIONS})
SE = frozenset({Platform.SAFETY, Platform.EMISSIONS})

# The manual's "Check items" table: item -> the inspections it belongs to, in the manual's order.
CHECK_ITEMS: dict[str, frozenset[Platform]] = {
    "plate_match": SE,
    "vin_match": SE,
    "model_match": SE,
    "engine_no_match": S,
    "colour_shape": S,
    "body": S,
    "lights_signals": S,
    "tyres": S,
    "plate_mounting": S,
    "seat_belts": S,
    "warning_triangle": S,
    "fire_extinguisher": S,
    "reflective_marking": S,
    "guards": S,
    "mechanical_condition": E,
    "visible_smoke": E,
    "exhaust_leak": E,
    "emission_controls": E,
    "evap_system": E,
    "crankcase_vent": E,
    "odometer": SE,
}


@dataclass(frozen=True)
class PhotoKind:
    """One row of the manual's "Photos" table."""

    for_inspections: frozenset[Platform]
    # the national safety platform's photo code (zpzl); None: the photo is not sent there
    safety_code: str | None


PHOTOS: dict[str, PhotoKind] = {
    "front_left_45": PhotoKind(SE, "0111"),
    "rear_right_45": PhotoKind(SE, "0112"),
    "vin": PhotoKind(SE, "0113"),
    "cabin": PhotoKind(S, "0115"),
    "tyre_size": PhotoKind(S, "0136"),
    "fire_extinguisher": PhotoKind(S, "0116"),
    "odometer": PhotoKind(E, None),
    "tailpipe": PhotoKind(E, "0298"),
    "obd_port": PhotoKind(E, "0169"),
    "emission_controls": PhotoKind(E, "0137"),
}

Fuel = Literal["gasoline", "diesel", "lpg", "cng", "hybrid_gasoline", "hybrid_diesel", "electric"]
CheckResult = Literal["pass", "fail", "na"]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]
# Bounds on every field: a document is answered in full (every error), so no field may be large.
# Plate and VIN get room beyond their real length so that contract_errors can say what is wrong
# with a mistyped one ("a VIN has 17 characters, found 18"); their patterns are checked there.
PLATE_MAX = 16
VIN_MAX = 32
TEXT_MAX = 64
NOTE_MAX = 500
#: a photo the manual's PDA takes is a few MB; the lane's own limit is mqtt.max_pda_photo_bytes
PHOTO_BYTES_MAX = 256 * 1024 * 1024
#: the largest capture document and photo the lane reads by default (mqtt.max_pda_capture_bytes,
#: mqtt.max_pda_photo_bytes); larger ones are refused unread with a warning event
MAX_CAPTURE_BYTES = 256 * 1024
MAX_PHOTO_BYTES = 16 * 1024 * 1024
MAX_LISTED = 64  # check items (21 in the manual) or photos (10) a document may list, repeats included
DtcCode = Annotated[str, Field(min_length=1, max_length=16)]


# --- topics -------------------------------------------------------------------------------------


def capture_topic(base: str) -> str:
    return f"{base}/capture"


def photo_topic(base: str, capture_id: str, photo: str) -> str:
    return f"{base}/photo/{capture_id}/{photo}"


def ack_topic(base: str, capture_id: str) -> str:
    return f"{base}/ack/{capture_id}"


def parse_photo_topic(base: str, topic: str) -> tuple[str, str] | None:
    """(capture_id, photo) from `{base}/photo/{capture_id}/{photo}`, or None for any other topic."""
    prefix = f"{base}/photo/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix) :].split("/")
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]


def is_valid_capture_id(value: object) -> bool:
    return isinstance(value, str) and _CAPTURE_ID_RE.match(value) is not None


# --- models -------------------------------------------------------------------------------------


class _Strict(BaseModel):
    """Unknown fields refused; manual names ("schema", "bytes") both in and out. JSON from the
    wire is validated strictly (`parse_capture`, `parse_ack`); Python data (a record read back
    from disk) in pydantic's normal mode, so ISO times in a dict still parse."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True,
        serialize_by_alias=True,
    )


class FieldError(_Strict):
    """One thing wrong with a capture: `field` is a dotted path into the document."""

    field: str
    error: str


class Inspector(_Strict):
    name: str = Field(min_length=1, max_length=TEXT_MAX)
    id: str = Field(min_length=1, max_length=32)


class CaptureVehicle(_Strict):
    plate: str = Field(max_length=PLATE_MAX)
    plate_type: str = Field(pattern=r"^[0-9]{2}$")
    vin: str = Field(max_length=VIN_MAX)
    fuel: Fuel
    odometer_km: int = Field(ge=0, le=9_999_999)


class CheckEntry(_Strict):
    item: str = Field(max_length=TEXT_MAX)
    result: CheckResult
    note: str | None = Field(None, max_length=NOTE_MAX)

    @field_validator("item")
    @classmethod
    def _known_item(cls, item: str) -> str:
        if item not in CHECK_ITEMS:
            raise PydanticCustomError("unknown_item", "unknown check item '{item}'", {"item": item})
        return item


class ObdData(_Strict):
    mil_on: bool
    dtc: list[DtcCode] = Field(max_length=200)
    readiness_incomplete: list[Annotated[str, Field(max_length=TEXT_MAX)]] = Field(max_length=32)
    link_ok: bool
    ecu_vin: str | None = Field(max_length=VIN_MAX)


class PhotoEntry(_Strict):
    photo: str = Field(max_length=TEXT_MAX)
    sha256: Sha256Hex
    size_bytes: int = Field(alias="bytes", gt=0, le=PHOTO_BYTES_MAX)
    taken_at: AwareDatetime

    @field_validator("sha256")
    @classmethod
    def _lower_case_hex(cls, sha256: str) -> str:
        return sha256.lower()

    @field_validator("photo")
    @classmethod
    def _known_photo(cls, photo: str) -> str:
        if photo not in PHOTOS:
            raise PydanticCustomError("unknown_photo", "unknown photo '{photo}'", {"photo": photo})
        return photo


class CaptureDocument(_Strict):
    """What the PDA sends on `{base}/capture`: one exterior capture for one inspection."""

    schema_: Literal["pda-capture/1"] = Field(alias="schema")
    capture_id: str = Field(pattern=CAPTURE_ID_PATTERN)
    inspection_no: str = Field(min_length=1, max_length=64)
    pda_id: str = Field(min_length=1, max_length=TEXT_MAX)
    inspector: Inspector
    captured_at: AwareDatetime
    vehicle: CaptureVehicle
    checks: list[CheckEntry] = Field(max_length=MAX_LISTED)
    obd: ObdData | None = None
    photos: list[PhotoEntry] = Field(max_length=MAX_LISTED)

    def photo(self, name: str) -> PhotoEntry | None:
        return next((entry for entry in self.photos if entry.photo == name), None)

    def to_json_bytes(self) -> bytes:
        """The document as the PDA sends it (manual field names, UTF-8)."""
        return self.model_dump_json(by_alias=True).encode("utf-8")


class PdaAck(_Strict):
    """The lane's verdict on one capture, on `{base}/ack/{capture_id}`."""

    schema_: Literal["pda-ack/1"] = Field(default="pda-ack/1", alias="schema")
    capture_id: str
    accepted: bool
    complete: bool = False
    missing_photos: list[str] = Field(default_factory=list)
    errors: list[FieldError] = Field(default_factory=list)

    def to_json_bytes(self) -> bytes:
        """The ack in the manual's shape: accepted acks carry complete and missing_photos (and
        errors when a photo was refused: why it is still missing), refused ones carry errors."""
        body: dict[str, Any] = {
            "schema": ACK_SCHEMA,
            "capture_id": self.capture_id,
            "accepted": self.accepted,
        }
        if self.accepted:
            body["complete"] = self.complete
            body["missing_photos"] = list(self.missing_photos)
        if self.errors or not self.accepted:
            body["errors"] = [{"field": e.field, "error": e.error} for e in self.errors]
        return json.dumps(body, ensure_ascii=False).encode("utf-8")


def parse_ack(payload: bytes) -> PdaAck:
    """An ack from its payload; raises pydantic's ValidationError if it is not one."""
    return PdaAck.model_validate_json(payload, strict=True)


# --- parsing ------------------------------------------------------------------------------------


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) if loc else ROOT_FIELD


_NAMES_THE_INPUT = frozenset({"unknown_item", "unknown_photo"})


def _to_field_error(error: ErrorDetails) -> FieldError:
    kind = error["type"]
    if kind == "missing":
        text = "required field missing"
    elif kind == "extra_forbidden":
        text = f"unknown field (not in {CAPTURE_SCHEMA})"
    else:
        msg: str = error["msg"]
        text = msg[:1].lower() + msg[1:]
        value = error.get("input")
        shows_input = kind not in _NAMES_THE_INPUT
        if shows_input and (isinstance(value, str | int | float | bool) or value is None):
            text = f"{text}, found {_shown(value)}"
    return FieldError(field=_field_path(tuple(error["loc"])), error=text)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_capture(payload: bytes) -> CaptureDocument | list[FieldError]:
    """A capture document from raw payload bytes, or every error found in them. Never raises."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [FieldError(field=ROOT_FIELD, error=f"not UTF-8 text: byte {exc.start} is invalid")]
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        return [FieldError(field=ROOT_FIELD, error=f"not valid JSON: {exc}")]
    if not isinstance(obj, dict):
        kind = type(obj).__name__ if obj is not None else "null"
        return [FieldError(field=ROOT_FIELD, error=f"expected a JSON object, found {kind}")]
    schema = obj.get("schema")
    if schema != CAPTURE_SCHEMA:
        found = "nothing" if "schema" not in obj else _shown(schema)
        return [FieldError(field="schema", error=f"expected {CAPTURE_SCHEMA!r}, found {found}")]
    try:
        return CaptureDocument.model_validate_json(text, strict=True)
    except ValidationError as exc:
        return [_to_field_error(error) for error in exc.errors()]


def peek_capture_id(payload: bytes) -> str | None:
    """The capture_id of a payload that may not be a valid document, so the lane knows where to
    send its refusal; None if there is no usable one (then there is no ack topic to answer on)."""
    try:
        obj = json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    if not isinstance(obj, dict):
        return None
    capture_id = obj.get("capture_id")
    return capture_id if is_valid_capture_id(capture_id) else None


# --- what every capture must satisfy ------------------------------------------------------------


def capture_contract_errors(doc: CaptureDocument) -> list[FieldError]:
    """What the manual asks of every capture whatever the vehicle: every check item exactly once,
    each photo at most once, a VIN with a valid check digit, a plate of the manual's form."""
    errors: list[FieldError] = []
    first_seen: dict[str, int] = {}
    for index, entry in enumerate(doc.checks):
        if entry.item in first_seen:
            first = first_seen[entry.item]
            errors.append(
                FieldError(
                    field=f"checks.{index}.item",
                    error=f"item {entry.item!r} repeated (first at checks.{first})",
                )
            )
        else:
            first_seen[entry.item] = index
    for item in CHECK_ITEMS:
        if item not in first_seen:
            errors.append(
                FieldError(
                    field="checks",
                    error=f"item {item!r} missing: every check item is sent once, 'na' where it "
                    "does not apply",
                )
            )
    photo_seen: dict[str, int] = {}
    for index, photo in enumerate(doc.photos):
        if photo.photo in photo_seen:
            errors.append(
                FieldError(
                    field=f"photos.{index}.photo",
                    error=f"photo {photo.photo!r} listed twice (first at photos."
                    f"{photo_seen[photo.photo]})",
                )
            )
        else:
            photo_seen[photo.photo] = index
    vin_error = validate_vin(doc.vehicle.vin)
    if vin_error is not None:
        errors.append(FieldError(field="vehicle.vin", error=vin_error))
    plate_error = validate_plate(doc.vehicle.plate)
    if plate_error is not None:
        errors.append(FieldError(field="vehicle.plate", error=plate_error))
    return errors
