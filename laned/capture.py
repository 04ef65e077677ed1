"""Assembling the one PDA capture of an inspection: document + photos, checked, stored, complete.

`CaptureAssembler` is a pure state machine (no MQTT): the daemon feeds it what
arrives on `{base}/capture` and `{base}/photo/{capture_id}/{photo}` with the
lane's receive time, and publishes the `PdaAck`s it returns on
`{base}/ack/{capture_id}`. Photos may come before or after their document and
any message twice (QoS 1). Every document is answered at once (accepted, with
the photos still missing, or refused with every error found), and again when
the capture completes. A refused capture changes nothing; the PDA sends a
corrected one under a new capture_id. Once a capture completes the inspection
has its capture: `completed` holds the document, the stored photos and both
clocks' times.

Which photos and judged items a vehicle must have is a setting per vehicle
class, fuel and OBD (`config/capture/required-photos.toml`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import tomllib
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from laned.capture_journal import CaptureJournal, JournalCapture
from laned.capture_journal import StoredPhoto as StoredPhoto
from laned.errors import ConfigError
from laned.private_files import private_dir
from protocols.datafiles import CONFIG_DIR
from protocols.pda import (
    CHECK_ITEMS,
    PHOTOS,
    CaptureDocument,
    CheckEntry,
    FieldError,
    PdaAck,
    Platform,
    capture_contract_errors,
    parse_capture,
    peek_capture_id,
)

log = structlog.get_logger("laned.capture")

DEFAULT_REQUIREMENTS_PATH = (
    CONFIG_DIR / "capture" / "required-photos.toml"
)
VEHICLE_CLASSES = (
    "passenger_car", "bus", "truck", "articulated_bus", "road_train", "trailer",
    "special_purpose", "other",
)  # fmt: skip
FUELS = ("gasoline", "diesel", "lpg", "cng", "hybrid_gasoline", "hybrid_diesel", "electric")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


# --- requirements per vehicle -------------------------------------------------------------------


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    photos: list[str] = Field(default_factory=list)
    checks: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_names(self) -> _Rule:
        unknown = [p for p in self.photos if p not in PHOTOS] + [
            c for c in self.checks if c not in CHECK_ITEMS
        ]
        if unknown:
            raise ValueError(f"names not in the PDA manual: {', '.join(unknown)}")
        return self


class _ClassRule(_Rule):
    emissions: bool = True  # False: no emissions inspection (trailers), the [fuel.*] rules skip


@dataclass(frozen=True)
class Required:
    """What one vehicle's capture must have; each name maps to why (for the refusal text)."""

    photos: dict[str, str]
    checks: dict[str, str]


class CaptureRequirements(BaseModel):
    """`required-photos.toml`: photos to list and items to judge, by class, fuel and OBD."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    every_vehicle: _Rule = Field(default_factory=_Rule)
    classes: dict[str, _ClassRule] = Field(alias="class")
    fuel: dict[str, _Rule]
    obd: _Rule = Field(default_factory=_Rule)

    @model_validator(mode="after")
    def _complete_tables(self) -> CaptureRequirements:
        missing = [f"class.{c}" for c in VEHICLE_CLASSES if c not in self.classes]
        missing += [f"fuel.{f}" for f in FUELS if f not in self.fuel]
        if missing:
            raise ValueError(f"tables missing: {', '.join(missing)}")
        return self

    @classmethod
    def load(cls, path: str | Path = DEFAULT_REQUIREMENTS_PATH) -> CaptureRequirements:
        """Read and check the settings file; a ConfigError lists each problem with its key path."""
        path = Path(path)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
            return cls.model_validate(data)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(str(path), [str(exc)]) from exc
        except ValidationError as exc:
            problems = [
                f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: "
                f"{e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            ]
            raise ConfigError(str(path), problems) from exc

    def for_vehicle(self, vehicle_class: str, fuel: str, has_obd: bool) -> Required:
        class_rule = self.classes.get(vehicle_class)
        if class_rule is None:
            raise ValueError(f"unknown vehicle class {vehicle_class!r}")
        rules: list[tuple[_Rule, str]] = [
            (self.every_vehicle, "every vehicle"),
            (class_rule, f"vehicle class {vehicle_class}"),
        ]
        if class_rule.emissions:
            fuel_rule = self.fuel.get(fuel)
            if fuel_rule is None:
                raise ValueError(f"unknown fuel {fuel!r}")
            rules.append((fuel_rule, f"fuel {fuel}"))
        if has_obd:
            rules.append((self.obd, "vehicles with an OBD port"))
        photos: dict[str, str] = {}
        checks: dict[str, str] = {}
        for rule, reason in rules:
            for name in rule.photos:
                photos.setdefault(name, reason)
            for name in rule.checks:
                checks.setdefault(name, reason)
        return Required(photos=photos, checks=checks)


# --- the photo store ----------------------------------------------------------------------------


class PhotoStoreLike(Protocol):
    """Content-addressed photo storage: the same bytes are stored once, under their SHA-256."""

    def put(self, sha256: str, data: bytes) -> str:
        """Store `data` (whose SHA-256 is `sha256`) and return where it lies."""
        ...

    def has(self, sha256: str) -> bool: ...


class PhotoStore:
    """Photos as files `<root>/<sha[:2]>/<sha>.jpg`, each written atomically (temp file + rename),
    so a crash never leaves a half photo under a valid name."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path_for(self, sha256: str) -> Path:
        if not _SHA256_RE.match(sha256):
            raise ValueError(f"not a lower-case SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / f"{sha256}.jpg"

    def has(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def put(self, sha256: str, data: bytes) -> str:
        path = self.path_for(sha256)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError(f"photo bytes do not hash to {sha256}")
        if path.is_file():
            return str(path)
        private_dir(self.root)
        private_dir(path.parent)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".jpg")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
        return str(path)


# --- inputs and outputs -------------------------------------------------------------------------


@dataclass(frozen=True)
class CaptureInspection:
    """What the station's `start` command says about the inspection the capture must belong to."""

    inspection_no: str
    plate: str
    plate_type: str
    vin: str
    vehicle_class: str
    fuel: str
    has_obd: bool


@dataclass(frozen=True)
class CompletedCapture:
    """The inspection's one capture, every listed photo verified and stored."""

    inspection: CaptureInspection
    document: CaptureDocument
    document_received_at: datetime  # lane clock
    completed_at: datetime  # lane clock: when the last missing piece arrived
    photos: tuple[StoredPhoto, ...]  # in the document's order

    @property
    def capture_id(self) -> str:
        return self.document.capture_id

    @property
    def pda_clock_offset_s(self) -> float:
        """Lane receive time of the document − the PDA's captured_at: positive when the PDA's
        clock is behind the lane's (plus the few seconds of upload)."""
        return (self.document_received_at - self.document.captured_at).total_seconds()

    def checks_for(self, platform: Platform) -> list[CheckEntry]:
        return [c for c in self.document.checks if platform in CHECK_ITEMS[c.item]]

    def photos_for(self, platform: Platform) -> list[StoredPhoto]:
        return [p for p in self.photos if platform in PHOTOS[p.photo].for_inspections]


@dataclass
class _Capture:
    document: CaptureDocument
    digest: str
    received_at: datetime
    state: Literal["open", "complete"] = "open"
    photos: dict[str, StoredPhoto] = field(default_factory=dict)
    payload: bytes = b""  # the document as received, kept in the journal

    def missing(self) -> list[str]:
        return [p.photo for p in self.document.photos if p.photo not in self.photos]

    def ack(self, errors: list[FieldError] | None = None) -> PdaAck:
        missing = self.missing()
        return PdaAck(
            capture_id=self.document.capture_id,
            accepted=True,
            complete=not missing,
            missing_photos=missing,
            errors=errors or [],
        )

    def to_journal(self) -> JournalCapture:
        return JournalCapture(payload=self.payload, received_at=self.received_at, photos=tuple(self.photos.values()))


@dataclass(frozen=True)
class _Refused:
    digest: str
    document: CaptureDocument | None
    ack: PdaAck


@dataclass(frozen=True)
class _Held:
    payload: bytes
    received_at: datetime


def _require_aware(received_at: datetime) -> None:
    if received_at.tzinfo is None or received_at.utcoffset() is None:
        raise ValueError("received_at must be a timezone-aware time from the lane's clock")


# --- the assembler ------------------------------------------------------------------------------


class CaptureAssembler:
    """The lane's side of the PDA capture contract for the inspection running on the lane."""

    def __init__(
        self,
        requirements: CaptureRequirements,
        store: PhotoStoreLike,
        *,
        inspection: CaptureInspection | None = None,
        max_held_photos: int = 200,
        max_held_bytes: int = 64 * 1024 * 1024,
        max_remembered_refusals: int = 256,
        journal: CaptureJournal | None = None,
    ) -> None:
        self._requirements = requirements
        self._store = store
        self._journal = journal
        self._inspection = inspection
        self._max_held_photos = max_held_photos
        self._max_held_bytes = max_held_bytes
        self._max_refusals = max_remembered_refusals
        self._captures: dict[str, _Capture] = {}
        self._refused: OrderedDict[str, _Refused] = OrderedDict()
        self._held: OrderedDict[tuple[str, str], _Held] = OrderedDict()
        self._held_bytes = 0
        self._completed: CompletedCapture | None = None

    @property
    def inspection(self) -> CaptureInspection | None:
        return self._inspection

    @property
    def completed(self) -> CompletedCapture | None:
        return self._completed

    @property
    def held_photo_count(self) -> int:
        return len(self._held)

    def begin(self, inspection: CaptureInspection) -> None:
        """A new inspection starts on the lane: captures of the previous one are forgotten.
        Held photos stay: their document may belong to the new inspection."""
        self._inspection = inspection
        self._captures.clear()
        self._completed = None
        if self._journal is not None:
            self._journal.forget(keep=inspection.inspection_no)
        log.info("capture_waiting", inspection_no=inspection.inspection_no)

    def end(self, *, keep_journal: bool = False) -> None:
        """The inspection is over on this lane. `keep_journal`: it is only interrupted (the lane
        stops with it unpublished), so what the PDA sent stays on disk for the restart."""
        self._inspection = None
        self._captures.clear()
        self._completed = None
        if self._journal is not None and not keep_journal:
            self._journal.forget()

    def restore(self) -> list[PdaAck]:
        """After a restart: the running inspection's captures as the journal kept them (document
        and verified photos), and the acks to publish at once: what each still misses, so the PDA
        sends only that, or complete if nothing is missing."""
        inspection = self._inspection
        if self._journal is None or inspection is None:
            return []
        for saved in self._journal.load(inspection.inspection_no):
            parsed = parse_capture(saved.payload)
            if not isinstance(parsed, CaptureDocument) or parsed.inspection_no != inspection.inspection_no:
                log.error("pda_capture_not_restored", inspection_no=inspection.inspection_no,
                          reason="the saved document is not a capture of this inspection")
                continue
            capture = _Capture(document=parsed, digest=hashlib.sha256(saved.payload).hexdigest(),
                               received_at=saved.received_at, payload=saved.payload)
            for photo in saved.photos:
                entry = parsed.photo(photo.photo)
                if entry is None or entry.sha256 != photo.sha256 or not self._store.has(photo.sha256):
                    continue  # not in the store any more: missing again, the PDA sends it again
                capture.photos[photo.photo] = photo
            self._captures[parsed.capture_id] = capture
            log.warning("pda_capture_restored", capture_id=parsed.capture_id,
                        inspection_no=inspection.inspection_no, missing_photos=capture.missing())
        whole = next((c for c in self._captures.values() if not c.missing()), None)
        if whole is not None:
            return self._complete(whole, max((p.received_at for p in whole.photos.values()),
                                             default=whole.received_at))
        return [capture.ack() for capture in self._captures.values()]

    def _persist(self) -> None:
        if self._journal is not None and self._inspection is not None:
            self._journal.save(self._inspection.inspection_no,
                               [capture.to_journal() for capture in self._captures.values()])

    def current_ack(self, capture_id: str) -> PdaAck | None:
        capture = self._captures.get(capture_id)
        if capture is not None:
            return capture.ack()
        refused = self._refused.get(capture_id)
        return refused.ack if refused is not None else None

    # ---- documents

    def on_document(self, payload: bytes, received_at: datetime) -> list[PdaAck]:
        """Answer one capture document; [] only if it has no capture_id to answer on."""
        _require_aware(received_at)
        digest = hashlib.sha256(payload).hexdigest()
        parsed = parse_capture(payload)
        doc = parsed if isinstance(parsed, CaptureDocument) else None
        capture_id = doc.capture_id if doc is not None else peek_capture_id(payload)
        if capture_id is None:
            log.warning("pda_capture_unanswerable", reason="no usable capture_id",
                        errors=[e.error for e in parsed] if isinstance(parsed, list) else [])
            return []
        known = self._known(capture_id, digest, doc)
        if known is not None:
            return [known]
        if isinstance(parsed, list):
            return [self._refuse(capture_id, digest, None, parsed)]
        assert doc is not None
        errors = self._document_errors(doc)
        if errors:
            return [self._refuse(capture_id, digest, doc, errors)]
        capture = _Capture(document=doc, digest=digest, received_at=received_at, payload=payload)
        self._captures[capture_id] = capture
        log.info("pda_capture_accepted", capture_id=capture_id, inspection_no=doc.inspection_no,
                 photos=len(doc.photos), clock_offset_s=(received_at - doc.captured_at).total_seconds())
        for entry in doc.photos:
            held = self._held.pop((capture_id, entry.photo), None)
            if held is not None:
                self._held_bytes -= len(held.payload)
                self._take_photo(capture, entry.photo, held.payload, held.received_at)
        for key in [key for key in self._held if key[0] == capture_id]:
            self._held_bytes -= len(self._held.pop(key).payload)
            log.warning("pda_photo_ignored", capture_id=capture_id, photo=key[1],
                        reason="not listed in the capture document")
        if not capture.missing():
            return self._complete(capture, received_at)
        self._persist()
        return [capture.ack()]

    def _known(self, capture_id: str, digest: str, doc: CaptureDocument | None) -> PdaAck | None:
        """The current ack for a repeated document; a refusal if the id is reused for another."""
        capture = self._captures.get(capture_id)
        refused = self._refused.get(capture_id)
        if capture is not None:
            same = capture.digest == digest or capture.document == doc
        elif refused is not None:
            same = refused.digest == digest or (doc is not None and refused.document == doc)
        else:
            return None
        if same:
            log.info("pda_capture_duplicate", capture_id=capture_id)
            current = self.current_ack(capture_id)
            assert current is not None
            return current
        log.warning("pda_capture_id_reused", capture_id=capture_id)
        return PdaAck(capture_id=capture_id, accepted=False, errors=[FieldError(
            field="capture_id",
            error="this capture_id was already used for a different document; "
                  "send the capture under a new capture_id",
        )])

    def _document_errors(self, doc: CaptureDocument) -> list[FieldError]:
        errors = capture_contract_errors(doc)
        inspection = self._inspection
        if inspection is None:
            return [FieldError(field="inspection_no", error="no inspection is running on this lane"),
                    *errors]
        if doc.inspection_no != inspection.inspection_no:
            return [FieldError(field="inspection_no", error=(
                f"inspection {doc.inspection_no} is not the one running on this lane "
                f"({inspection.inspection_no})")), *errors]
        if self._completed is not None:
            errors.append(FieldError(field="inspection_no", error=(
                f"inspection {inspection.inspection_no} already has a complete capture "
                f"({self._completed.capture_id})")))
        vehicle = doc.vehicle
        for name, found, expected in (("vin", vehicle.vin, inspection.vin),
                                      ("plate", vehicle.plate, inspection.plate),
                                      ("plate_type", vehicle.plate_type, inspection.plate_type)):
            if found != expected:
                errors.append(FieldError(field=f"vehicle.{name}", error=(
                    f"{found!r} differs from the inspection's {expected!r}")))
        required = self._requirements.for_vehicle(
            inspection.vehicle_class, inspection.fuel, inspection.has_obd)
        listed = {p.photo for p in doc.photos}
        for photo, reason in required.photos.items():
            if photo not in listed:
                errors.append(FieldError(field="photos",
                                         error=f"required photo {photo!r} not listed ({reason})"))
        for index, entry in enumerate(doc.checks):
            if entry.result == "na" and entry.item in required.checks:
                errors.append(FieldError(field=f"checks.{index}.result", error=(
                    f"item {entry.item!r} must be judged pass or fail "
                    f"({required.checks[entry.item]}), found 'na'")))
        if inspection.has_obd and doc.obd is None:
            errors.append(FieldError(field="obd", error=(
                "required field missing: the vehicle has an OBD port; send the scan tool's result")))
        if vehicle.fuel != inspection.fuel:
            log.warning("pda_fuel_differs", capture_id=doc.capture_id, found=vehicle.fuel,
                        expected=inspection.fuel)
        return errors

    def _refuse(self, capture_id: str, digest: str, doc: CaptureDocument | None,
                errors: list[FieldError]) -> PdaAck:
        ack = PdaAck(capture_id=capture_id, accepted=False, errors=errors)
        self._remember_refusal(capture_id, _Refused(digest=digest, document=doc, ack=ack))
        dropped = [key for key in self._held if key[0] == capture_id]
        for key in dropped:
            self._held_bytes -= len(self._held.pop(key).payload)
        log.warning("pda_capture_refused", capture_id=capture_id,
                    errors=[f"{e.field}: {e.error}" for e in errors], held_photos_dropped=len(dropped))
        return ack

    def _remember_refusal(self, capture_id: str, refused: _Refused) -> None:
        self._refused[capture_id] = refused
        self._refused.move_to_end(capture_id)
        while len(self._refused) > self._max_refusals:
            self._refused.popitem(last=False)

    # ---- photos

    def on_photo(self, capture_id: str, photo_name: str, payload: bytes,
                 received_at: datetime) -> list[PdaAck]:
        """Take one photo; acks when it completes a capture, or the current ack if it is refused."""
        _require_aware(received_at)
        capture = self._captures.get(capture_id)
        if capture is None:
            if capture_id in self._refused:
                log.info("pda_photo_ignored", capture_id=capture_id, photo=photo_name,
                         reason="its capture was refused")
                return []
            self._hold(capture_id, photo_name, payload, received_at)
            return []
        if capture.state == "complete" or photo_name in capture.photos:
            log.info("pda_photo_duplicate", capture_id=capture_id, photo=photo_name)
            return []
        problem = self._take_photo(capture, photo_name, payload, received_at)
        if problem is not None:  # the ack says which photo is still missing, and why
            return [capture.ack([problem])] if capture.document.photo(photo_name) is not None else []
        if not capture.missing():
            return self._complete(capture, received_at)
        self._persist()
        return []

    def _take_photo(self, capture: _Capture, name: str, payload: bytes,
                    received_at: datetime) -> FieldError | None:
        """None when the photo is verified and stored; else what is wrong with it."""
        capture_id = capture.document.capture_id
        entry = capture.document.photo(name)
        if entry is None:
            log.warning("pda_photo_ignored", capture_id=capture_id, photo=name,
                        reason="not listed in the capture document")
            return FieldError(field="photos", error=f"photo {name!r} is not listed in the document")
        where = f"photos.{capture.document.photos.index(entry)}"
        sha256 = hashlib.sha256(payload).hexdigest()
        if len(payload) != entry.size_bytes or sha256 != entry.sha256:
            log.warning("pda_photo_rejected", capture_id=capture_id, photo=name,
                        expected_bytes=entry.size_bytes, found_bytes=len(payload),
                        expected_sha256=entry.sha256, found_sha256=sha256)
            return FieldError(field=where, error=(
                f"photo {name!r} arrived with {len(payload)} bytes and SHA-256 {sha256}, the document "
                f"lists {entry.size_bytes} bytes and SHA-256 {entry.sha256}; send it again"))
        try:
            path = self._store.put(sha256, payload)
        except OSError as exc:
            log.error("pda_photo_store_failed", capture_id=capture_id, photo=name, error=str(exc))
            return FieldError(field=where, error=(
                f"photo {name!r} could not be stored on the lane ({exc.strerror or exc}); send it again"))
        capture.photos[name] = StoredPhoto(photo=name, sha256=sha256, path=path,
                                           size_bytes=len(payload), taken_at=entry.taken_at,
                                           received_at=received_at)
        return None

    def _hold(self, capture_id: str, photo: str, payload: bytes, received_at: datetime) -> None:
        """Keep a photo whose document has not arrived, within the memory cap (oldest dropped)."""
        key = (capture_id, photo)
        if len(payload) > self._max_held_bytes:
            log.warning("pda_held_photo_dropped", capture_id=capture_id, photo=photo,
                        reason="larger than the whole hold cap", bytes=len(payload))
            return
        previous = self._held.pop(key, None)
        if previous is not None:
            self._held_bytes -= len(previous.payload)
        self._held[key] = _Held(payload=payload, received_at=received_at)
        self._held_bytes += len(payload)
        log.info("pda_photo_held", capture_id=capture_id, photo=photo, held=len(self._held))
        while len(self._held) > self._max_held_photos or self._held_bytes > self._max_held_bytes:
            (old_id, old_photo), old = self._held.popitem(last=False)
            self._held_bytes -= len(old.payload)
            log.warning("pda_held_photo_dropped", capture_id=old_id, photo=old_photo,
                        reason="hold cap reached, oldest dropped",
                        max_photos=self._max_held_photos, max_bytes=self._max_held_bytes)

    def _complete(self, capture: _Capture, completed_at: datetime) -> list[PdaAck]:
        assert self._inspection is not None
        capture.state = "complete"
        doc = capture.document
        self._completed = CompletedCapture(
            inspection=self._inspection, document=doc, document_received_at=capture.received_at,
            completed_at=completed_at, photos=tuple(capture.photos[p.photo] for p in doc.photos))
        log.info("pda_capture_complete", capture_id=doc.capture_id,
                 inspection_no=doc.inspection_no, photos=len(doc.photos))
        acks = [capture.ack()]
        for other_id, other in list(self._captures.items()):
            if other.state == "open":
                del self._captures[other_id]
                acks.append(self._refuse(other_id, other.digest, other.document, [FieldError(
                    field="inspection_no", error=(
                        f"inspection {doc.inspection_no} already has a complete capture "
                        f"({doc.capture_id})"))]))
        self._persist()
        return acks
