"""A PDA app simulator: one exterior capture for an inspection, sent over MQTT as the PDA sends it.

For a vehicle file ([vehicle] + [capture] tables, see `CaptureProfile`) and an
inspection number it builds the capture document, makes a small but valid
JPEG for each photo (a baseline grey-scale image from a tiny encoder below,
with a COM segment naming the capture and photo so each photo's bytes
differ), publishes document and photos at QoS 1 to `{base}/capture` and
`{base}/photo/{capture_id}/{photo}` in the order asked (photos first,
document first, everything twice), and returns the lane's acks from
`{base}/ack/{capture_id}`. Bad captures on demand (`BAD_KINDS`) test the
lane's refusals.

    laned simulate pda --broker HOST:PORT --base TOPIC --vehicle NAME --inspection-no N [--bad KIND]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal, get_args

import aiomqtt
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from protocols.pda import (
    CAPTURE_SCHEMA,
    CHECK_ITEMS,
    PHOTOS,
    CheckResult,
    PdaAck,
    ack_topic,
    capture_topic,
    parse_ack,
    photo_topic,
)
from protocols.vin import vin_check_digit
from simulators.control import ControlServer
from simulators.vehicle import load_vehicle_file, vehicle_identity

log = structlog.get_logger("simulators.pda")

BadKind = Literal["bad_vin", "wrong_plate", "missing_item", "wrong_hash", "other_inspection"]
BAD_KINDS: tuple[str, ...] = get_args(BadKind)
Order = Literal["document_first", "photos_first"]
ORDERS: tuple[str, ...] = get_args(Order)
MISSING_ITEM = "tyres"  # the item a "missing_item" capture leaves out
PDA_TZ = timezone(timedelta(hours=8))  # the PDA's clock shows China time, as in the manual
PHOTO_SPACING_S = 15.0  # simulated time between two photos, the last one just before captured_at


# --- the [capture] table ------------------------------------------------------------------------


class _Inspector(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    id: str


class _Obd(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mil_on: bool = False
    dtc: list[str] = Field(default_factory=list)
    readiness_incomplete: list[str] = Field(default_factory=list)
    link_ok: bool = True
    ecu_vin: str | None = None  # TOML has no null: leave it out when the ECU reports no VIN


class CaptureProfile(BaseModel):
    """A vehicle file's `[capture]` table: what the inspector records and photographs.

    `checks` must name every check item of the manual (the PDA sends each once);
    `[capture.obd]` present means the vehicle has an OBD port; `clock_skew_s` is how far the
    PDA's clock is ahead of true time (negative: behind).
    """

    model_config = ConfigDict(extra="forbid")

    inspector: _Inspector
    pda_id: str
    clock_skew_s: float = 0.0
    odometer_km: int = Field(ge=0)
    checks: dict[str, CheckResult]
    notes: dict[str, str] = Field(default_factory=dict)
    obd: _Obd | None = None
    photos: list[str]

    @model_validator(mode="after")
    def _names_from_the_manual(self) -> CaptureProfile:
        problems = [f"unknown check item {k!r}" for k in self.checks if k not in CHECK_ITEMS]
        problems += [f"check item {k!r} missing" for k in CHECK_ITEMS if k not in self.checks]
        problems += [f"note for unknown item {k!r}" for k in self.notes if k not in CHECK_ITEMS]
        problems += [f"unknown photo {p!r}" for p in self.photos if p not in PHOTOS]
        if problems:
            raise ValueError("; ".join(problems))
        return self


# --- small valid JPEGs --------------------------------------------------------------------------

# DC table K.3 of ITU-T T.81 (categories 0..11); the AC table holds only EOB: every block is flat.
_DC_BITS = (0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0)
_AC_BITS = (1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


def _huffman_codes(bits: tuple[int, ...], count: int) -> list[tuple[int, int]]:
    """(code, length) per symbol index, generated as T.81 Annex C does."""
    codes: list[tuple[int, int]] = []
    code = 0
    for length, n in enumerate(bits, start=1):
        for _ in range(n):
            codes.append((code, length))
            code += 1
        code <<= 1
    return codes[:count]


_DC_CODES = _huffman_codes(_DC_BITS, 12)
_EOB = (0, 1)


class _BitWriter:
    def __init__(self) -> None:
        self.out = bytearray()
        self._acc = 0
        self._n = 0

    def write(self, value: int, length: int) -> None:
        for shift in range(length - 1, -1, -1):
            self._acc = (self._acc << 1) | ((value >> shift) & 1)
            self._n += 1
            if self._n == 8:
                self.out.append(self._acc)
                if self._acc == 0xFF:
                    self.out.append(0x00)  # byte stuffing
                self._acc = self._n = 0

    def flush(self) -> bytes:
        if self._n:
            self.write((1 << (8 - self._n)) - 1, 8 - self._n)  # pad with 1 bits
        return bytes(self.out)


def _segment(marker: int, body: bytes) -> bytes:
    return bytes((0xFF, marker)) + (len(body) + 2).to_bytes(2, "big") + body


def make_jpeg(comment: str, *, width_blocks: int = 8, height_blocks: int = 6,
              greys: Sequence[int] | None = None) -> bytes:
    """A valid baseline grey-scale JPEG of flat 8×8 tiles, the tile pattern and COM from `comment`.

    Quantisation is all ones, so a tile of grey g has DC coefficient 8·(g − 128). `greys`
    (row by row, 0..255) replaces the pattern drawn from the comment.
    """
    if greys is None:
        seed = hashlib.sha256(comment.encode("utf-8")).digest()
        greys = [40 + seed[i % len(seed)] % 176 for i in range(width_blocks * height_blocks)]
    if len(greys) != width_blocks * height_blocks or not all(0 <= g <= 255 for g in greys):
        raise ValueError(f"need {width_blocks * height_blocks} tile greys in 0..255")
    bits = _BitWriter()
    previous_dc = 0
    for grey in greys:
        dc = 8 * (grey - 128)
        diff, previous_dc = dc - previous_dc, dc
        category = abs(diff).bit_length()
        code, length = _DC_CODES[category]
        bits.write(code, length)
        if category:
            bits.write(diff if diff > 0 else diff + (1 << category) - 1, category)
        bits.write(*_EOB)
    height, width = 8 * height_blocks, 8 * width_blocks
    jfif = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    dqt = b"\x00" + bytes([1] * 64)
    sof0 = b"\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big") + b"\x01\x01\x11\x00"
    dht = (b"\x00" + bytes(_DC_BITS) + bytes(range(12))) + (b"\x10" + bytes(_AC_BITS) + b"\x00")
    sos = b"\x01\x01\x00\x00\x3f\x00"
    return b"".join((
        b"\xff\xd8",
        _segment(0xE0, jfif),
        _segment(0xFE, comment.encode("utf-8")),
        _segment(0xDB, dqt),
        _segment(0xC0, sof0),
        _segment(0xC4, dht),
        _segment(0xDA, sos),
        bits.flush(),
        b"\xff\xd9",
    ))  # fmt: skip


# --- building a capture -------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltCapture:
    """One capture as the PDA will send it: the document's JSON body and each photo's bytes."""

    capture_id: str
    document: dict[str, Any]
    photos: dict[str, bytes]

    @property
    def payload(self) -> bytes:
        return json.dumps(self.document, ensure_ascii=False).encode("utf-8")


def _bump_last_digit(text: str) -> str:
    last = text[-1]
    return text[:-1] + (str((int(last) + 1) % 10) if last.isdigit() else "0")


def build_capture(
    vehicle_data: dict[str, Any],
    inspection_no: str,
    *,
    bad: BadKind | None = None,
    capture_id: str | None = None,
    now: datetime | None = None,
) -> BuiltCapture:
    """The capture for one inspection from a vehicle file's data; `bad` spoils it on purpose."""
    identity = vehicle_identity(vehicle_data)
    if "capture" not in vehicle_data:
        raise ValueError(f"{vehicle_data.get('_path', 'vehicle file')}: no [capture] table")
    profile = CaptureProfile.model_validate(vehicle_data["capture"])
    capture_id = capture_id or str(uuid.uuid4())
    pda_now = (now or datetime.now(UTC)).astimezone(PDA_TZ) + timedelta(seconds=profile.clock_skew_s)
    captured_at = pda_now.replace(microsecond=0)
    vin, plate = identity.vin, identity.plate
    if bad == "bad_vin":
        wrong = "1" if vin_check_digit(vin) == "0" else "0"
        vin = vin[:8] + wrong + vin[9:]
    elif bad == "wrong_plate":
        plate = _bump_last_digit(plate)
    if bad == "other_inspection":
        inspection_no = _bump_last_digit(inspection_no)
    checks: list[dict[str, Any]] = []
    for item, result in profile.checks.items():
        if bad == "missing_item" and item == MISSING_ITEM:
            continue
        entry: dict[str, Any] = {"item": item, "result": result}
        if item in profile.notes:
            entry["note"] = profile.notes[item]
        checks.append(entry)
    photos: dict[str, bytes] = {}
    photo_entries: list[dict[str, Any]] = []
    count = len(profile.photos)
    for index, name in enumerate(profile.photos):
        taken_at = captured_at - timedelta(seconds=PHOTO_SPACING_S * (count - index))
        data = make_jpeg(f"laned PDA simulator {profile.pda_id} {capture_id} {name} "
                         f"{taken_at.isoformat()}")
        sha256 = hashlib.sha256(data).hexdigest()
        if bad == "wrong_hash" and index == 0:
            sha256 = hashlib.sha256(data + b"\x00").hexdigest()
        photos[name] = data
        photo_entries.append({"photo": name, "sha256": sha256, "bytes": len(data),
                              "taken_at": taken_at.isoformat()})
    document: dict[str, Any] = {
        "schema": CAPTURE_SCHEMA,
        "capture_id": capture_id,
        "inspection_no": inspection_no,
        "pda_id": profile.pda_id,
        "inspector": {"name": profile.inspector.name, "id": profile.inspector.id},
        "captured_at": captured_at.isoformat(),
        "vehicle": {"plate": plate, "plate_type": identity.plate_type, "vin": vin,
                    "fuel": identity.fuel, "odometer_km": profile.odometer_km},
        "checks": checks,
    }
    if profile.obd is not None:
        document["obd"] = profile.obd.model_dump()
    document["photos"] = photo_entries
    return BuiltCapture(capture_id=capture_id, document=document, photos=photos)


# --- sending ------------------------------------------------------------------------------------


class PdaSimulator:
    """A PDA on the station's broker: build a capture, send it, collect the lane's acks.

    Each `send` connects, subscribes to its ack topic before publishing, publishes at QoS 1 and
    waits until an ack says complete or refused (after one ack per document sent), or until no
    ack came for `ack_timeout_s`.
    """

    def __init__(self, vehicle: str | Path | dict[str, Any], *, host: str, port: int, base: str,
                 ack_timeout_s: float = 10.0, pace_s: float = 0.0) -> None:
        self.vehicle_data = vehicle if isinstance(vehicle, dict) else load_vehicle_file(vehicle)
        CaptureProfile.model_validate(self.vehicle_data.get("capture", {}))
        self.host, self.port, self.base = host, port, base
        self.ack_timeout_s = ack_timeout_s
        self.pace_s = pace_s
        self.last_acks: dict[str, list[PdaAck]] = {}

    def build(self, inspection_no: str, *, bad: BadKind | None = None,
              capture_id: str | None = None) -> BuiltCapture:
        return build_capture(self.vehicle_data, inspection_no, bad=bad, capture_id=capture_id)

    async def capture(self, inspection_no: str, *, bad: BadKind | None = None,
                      order: Order = "document_first", duplicates: bool = False) -> list[PdaAck]:
        return await self.send(self.build(inspection_no, bad=bad), order=order,
                               duplicates=duplicates)

    async def send(self, built: BuiltCapture, *, order: Order = "document_first",
                   duplicates: bool = False) -> list[PdaAck]:
        times = 2 if duplicates else 1
        document = [(capture_topic(self.base), built.payload)] * times
        photos = [(photo_topic(self.base, built.capture_id, name), data)
                  for name, data in built.photos.items() for _ in range(times)]
        messages = document + photos if order == "document_first" else photos + document
        acks: list[PdaAck] = []
        self.last_acks[built.capture_id] = acks
        identifier = f"pda-sim-{uuid.uuid4().hex[:12]}"
        async with aiomqtt.Client(self.host, self.port, identifier=identifier) as client:
            await client.subscribe(ack_topic(self.base, built.capture_id), qos=1)
            last_ack_at = [0.0]
            receiver = asyncio.create_task(
                self._collect(client, built.capture_id, acks, times, last_ack_at))
            try:
                for topic, payload in messages:
                    await client.publish(topic, payload, qos=1)
                    if self.pace_s:
                        await asyncio.sleep(self.pace_s)
                published_at = time.monotonic()
                log.info("pda_capture_sent", capture_id=built.capture_id, order=order,
                         duplicates=duplicates, messages=len(messages))
                while not receiver.done():
                    idle_since = max(published_at, last_ack_at[0])
                    remaining = self.ack_timeout_s - (time.monotonic() - idle_since)
                    if remaining <= 0:
                        log.warning("pda_ack_timeout", capture_id=built.capture_id,
                                    acks=len(acks), waited_s=self.ack_timeout_s)
                        break
                    await asyncio.wait({receiver}, timeout=remaining)
                if receiver.done():
                    receiver.result()  # an MQTT error while receiving surfaces here
            finally:
                receiver.cancel()
        return acks

    async def _collect(self, client: aiomqtt.Client, capture_id: str, acks: list[PdaAck],
                       documents_sent: int, last_ack_at: list[float]) -> None:
        """Gather acks until one says complete or refused, after one ack per document sent."""
        async for message in client.messages:
            last_ack_at[0] = time.monotonic()
            payload = message.payload
            raw = bytes(payload) if isinstance(payload, bytes | bytearray) else str(payload).encode()
            try:
                ack = parse_ack(raw)
            except ValidationError as exc:
                log.warning("pda_ack_unreadable", capture_id=capture_id, error=str(exc))
                continue
            acks.append(ack)
            log.info("pda_ack", capture_id=capture_id, accepted=ack.accepted,
                     complete=ack.complete, missing_photos=ack.missing_photos,
                     errors=[f"{e.field}: {e.error}" for e in ack.errors])
            if len(acks) >= documents_sent and (ack.complete or not ack.accepted):
                return


# --- CLI ----------------------------------------------------------------------------------------


def _broker(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        return value, 1883
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--broker wants HOST:PORT, got {value!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", type=_broker, required=True, metavar="HOST:PORT",
                        help="the station's MQTT broker")
    parser.add_argument("--base", required=True, metavar="TOPIC",
                        help="the PDA topic root, e.g. laned/v1/STATION/LANE/pda")
    parser.add_argument("--vehicle", default="gasoline-car", metavar="NAME_OR_PATH",
                        help="vehicle file with [vehicle] and [capture] tables")
    parser.add_argument("--inspection-no", required=True, help="the inspection to capture for")
    parser.add_argument("--bad", choices=BAD_KINDS, default=None,
                        help="send a capture the lane must refuse (or never complete)")
    parser.add_argument("--order", choices=ORDERS, default="document_first")
    parser.add_argument("--duplicates", action="store_true", help="send every message twice")
    parser.add_argument("--ack-timeout", type=float, default=None, metavar="S",
                        help="give up after S seconds without an ack (default 10, --fast 2)")
    parser.add_argument("--pace", type=float, default=0.0, metavar="S",
                        help="pause between published messages")
    parser.add_argument("--control", default=None, metavar="PATH",
                        help='stay up; send more captures on {"do": "send", "bad": ..., ...}')
    parser.add_argument("--fast", action="store_true", help="short timeouts for tests and demos")


async def run(args: argparse.Namespace) -> None:
    """Send one capture and report the acks; with --control, stay up for more until cancelled."""
    host, port = args.broker
    timeout_s = args.ack_timeout if args.ack_timeout is not None else (2.0 if args.fast else 10.0)
    sim = PdaSimulator(args.vehicle, host=host, port=port, base=args.base,
                       ack_timeout_s=timeout_s, pace_s=args.pace)
    acks = await sim.capture(args.inspection_no, bad=args.bad, order=args.order,
                             duplicates=args.duplicates)
    log.info("pda_capture_done", acks=len(acks),
             complete=any(a.complete for a in acks), refused=any(not a.accepted for a in acks))
    if args.control is None:
        return
    tasks: set[asyncio.Task[list[PdaAck]]] = set()

    def handle(request: dict[str, Any]) -> Any:
        if request.get("get") == "state":
            return {cid: [json.loads(a.to_json_bytes()) for a in acks]
                    for cid, acks in sim.last_acks.items()}
        if request.get("do") != "send":
            raise ValueError('known requests: {"do": "send", ...}, {"get": "state"}')
        bad = request.get("bad")
        if bad is not None and bad not in BAD_KINDS:
            raise ValueError(f"bad must be one of {', '.join(BAD_KINDS)}")
        order = request.get("order", "document_first")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}")
        built = sim.build(str(request.get("inspection_no", args.inspection_no)), bad=bad)
        task = asyncio.get_running_loop().create_task(
            sim.send(built, order=order, duplicates=bool(request.get("duplicates", False))))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return {"capture_id": built.capture_id}

    control = ControlServer(args.control, handle)
    await control.start()
    try:
        await asyncio.Event().wait()
    finally:
        await control.close()
        for task in tasks:
            task.cancel()
