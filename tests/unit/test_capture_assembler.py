"""The capture assembler: one PDA capture per inspection, photos in any order, refusals that change
nothing. Documents are built here by hand from the manual's example, not by the simulator."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from laned.capture import (
    CaptureAssembler,
    CaptureInspection,
    CaptureRequirements,
    PhotoStore,
)
from laned.capture_journal import CaptureJournal
from laned.errors import ConfigError
from protocols.pda import CHECK_ITEMS, FieldError, PdaAck, Platform

INSPECTION = CaptureInspection(
    inspection_no="370100202611010042", plate="鲁N12345", plate_type="02",
    vin="LSVAU2182N2183290", vehicle_class="passenger_car", fuel="gasoline", has_obd=True,
)  # fmt: skip
# Photo bytes: any bytes do for the assembler; the lane checks size and hash only.
PHOTO_BYTES = {"front_left_45": b"front left 45 photo", "vin": b"stamped VIN photo!",
               "tailpipe": b"tailpipe with probe"}
SMALL_RULES: dict[str, Any] = {
    "every_vehicle": {"photos": ["front_left_45", "vin"], "checks": ["vin_match"]},
    "class": {c: {} for c in ("passenger_car", "truck", "articulated_bus", "road_train",
                              "special_purpose", "other")}
    | {"bus": {"photos": ["fire_extinguisher"], "checks": ["fire_extinguisher"]},
       "trailer": {"emissions": False}},
    "fuel": {f: {} for f in ("diesel", "lpg", "cng", "hybrid_gasoline", "hybrid_diesel",
                             "electric")}
    | {"gasoline": {"photos": ["tailpipe"], "checks": ["evap_system"]}},
    "obd": {"photos": []},
}
T0 = datetime(2026, 11, 1, 1, 32, 10, tzinfo=UTC)  # lane clock; 09:32:10 in China


def document(capture_id: str = "cap-1", **changes: Any) -> dict[str, Any]:
    """The manual's example document, every item once, listing PHOTO_BYTES."""
    doc: dict[str, Any] = {
        "schema": "pda-capture/1",
        "capture_id": capture_id,
        "inspection_no": "370100202611010042",
        "pda_id": "PDA-07",
        "inspector": {"name": "王磊", "id": "370102199001011234"},
        "captured_at": "2026-11-01T09:31:05+08:00",
        "vehicle": {"plate": "鲁N12345", "plate_type": "02", "vin": "LSVAU2182N2183290",
                    "fuel": "gasoline", "odometer_km": 118342},
        "checks": [{"item": item, "result": "pass"} for item in CHECK_ITEMS],
        "obd": {"mil_on": False, "dtc": [], "readiness_incomplete": [], "link_ok": True,
                "ecu_vin": "LSVAU2182N2183290"},
        "photos": [
            {"photo": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
             "taken_at": f"2026-11-01T09:2{i}:41+08:00"}
            for i, (name, data) in enumerate(PHOTO_BYTES.items())
        ],
    }
    for key, value in changes.items():
        doc[key] = value
    return doc


def payload(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


@pytest.fixture
def requirements() -> CaptureRequirements:
    return CaptureRequirements.model_validate(SMALL_RULES)


@pytest.fixture
def assembler(requirements: CaptureRequirements, tmp_path: Path) -> CaptureAssembler:
    return CaptureAssembler(requirements, PhotoStore(tmp_path / "photos"), inspection=INSPECTION)


def ack(capture_id: str = "cap-1", *, complete: bool = False,
        missing: list[str] | None = None, errors: list[FieldError] | None = None) -> PdaAck:
    return PdaAck(capture_id=capture_id, accepted=True, complete=complete,
                  missing_photos=missing or [], errors=errors or [])


ALL_MISSING = ["front_left_45", "vin", "tailpipe"]


def send_photos(assembler: CaptureAssembler, capture_id: str = "cap-1",
                at: datetime = T0) -> list[PdaAck]:
    acks: list[PdaAck] = []
    for name, data in PHOTO_BYTES.items():
        acks += assembler.on_photo(capture_id, name, data, at)
    return acks


def refusal(acks: list[PdaAck]) -> list[tuple[str, str]]:
    [only] = acks
    assert only.accepted is False
    return [(e.field, e.error) for e in only.errors]


# --- the good paths -----------------------------------------------------------------------------


def test_document_first_is_answered_at_once_then_again_when_complete(
        assembler: CaptureAssembler, tmp_path: Path) -> None:
    assert assembler.on_document(payload(document()), T0) == [ack(missing=ALL_MISSING)]
    assert assembler.on_photo("cap-1", "front_left_45", PHOTO_BYTES["front_left_45"],
                              T0 + timedelta(seconds=1)) == []
    assert assembler.on_photo("cap-1", "vin", PHOTO_BYTES["vin"], T0) == []
    assert assembler.completed is None
    last = T0 + timedelta(seconds=3)
    assert assembler.on_photo("cap-1", "tailpipe", PHOTO_BYTES["tailpipe"], last) == [
        ack(complete=True)]
    done = assembler.completed
    assert done is not None
    assert done.capture_id == "cap-1"
    assert done.document_received_at == T0
    assert done.completed_at == last
    # lane 01:32:10Z − PDA 09:31:05+08:00 (= 01:31:05Z) = 65 s
    assert done.pda_clock_offset_s == 65.0
    front = done.photos[0]
    sha = hashlib.sha256(b"front left 45 photo").hexdigest()
    assert (front.photo, front.sha256, front.size_bytes) == ("front_left_45", sha, 19)
    assert front.path == str(tmp_path / "photos" / sha[:2] / f"{sha}.jpg")
    assert Path(front.path).read_bytes() == b"front left 45 photo"
    assert front.taken_at == datetime(2026, 11, 1, 1, 20, 41, tzinfo=UTC)
    assert front.received_at == T0 + timedelta(seconds=1)
    assert [p.photo for p in done.photos] == ALL_MISSING
    assert [p.photo for p in done.photos_for(Platform.SAFETY)] == ["front_left_45", "vin"]
    assert "evap_system" in [c.item for c in done.checks_for(Platform.EMISSIONS)]
    assert "guards" not in [c.item for c in done.checks_for(Platform.EMISSIONS)]


def test_photos_before_document_are_held_and_the_document_completes_at_once(
        assembler: CaptureAssembler) -> None:
    assert send_photos(assembler) == []
    assert assembler.held_photo_count == 3
    assert assembler.on_document(payload(document()), T0) == [ack(complete=True)]
    assert assembler.held_photo_count == 0
    assert assembler.completed is not None


def test_duplicates_get_the_current_ack_and_change_nothing(assembler: CaptureAssembler) -> None:
    assert assembler.on_document(payload(document()), T0) == [ack(missing=ALL_MISSING)]
    assert assembler.on_photo("cap-1", "vin", PHOTO_BYTES["vin"], T0) == []
    assert assembler.on_photo("cap-1", "vin", PHOTO_BYTES["vin"], T0) == []
    assert assembler.on_document(payload(document()), T0) == [
        ack(missing=["front_left_45", "tailpipe"])]
    assert send_photos(assembler) == [ack(complete=True)]
    assert send_photos(assembler) == []
    assert assembler.on_document(payload(document()), T0) == [ack(complete=True)]


def test_a_duplicate_re_serialised_document_counts_as_the_same(assembler: CaptureAssembler) -> None:
    assembler.on_document(payload(document()), T0)
    spaced = json.dumps(document(), ensure_ascii=True, indent=2).encode()
    assert assembler.on_document(spaced, T0) == [ack(missing=ALL_MISSING)]


# --- photos that are not right ------------------------------------------------------------------


def test_photo_with_wrong_bytes_is_not_accepted_and_stays_missing(
        assembler: CaptureAssembler) -> None:
    assembler.on_document(payload(document()), T0)
    with capture_logs() as logs:
        acks = assembler.on_photo("cap-1", "vin", b"stamped VIN photo?", T0)  # same size
    # the ack says the photo is still missing, and why (the document's entry photos.1)
    listed = hashlib.sha256(b"stamped VIN photo!").hexdigest()
    found = hashlib.sha256(b"stamped VIN photo?").hexdigest()
    assert acks == [ack(missing=ALL_MISSING, errors=[FieldError(field="photos.1", error=(
        f"photo 'vin' arrived with 18 bytes and SHA-256 {found}, the document lists 18 bytes "
        f"and SHA-256 {listed}; send it again"))])]
    [event] = [e for e in logs if e["event"] == "pda_photo_rejected"]
    assert event["photo"] == "vin" and event["expected_bytes"] == 18 and event["found_bytes"] == 18
    assert event["expected_sha256"] == listed
    [short] = assembler.on_photo("cap-1", "vin", b"short", T0)
    assert short.missing_photos == ALL_MISSING
    assert [e.field for e in short.errors] == ["photos.1"]
    assert short.errors[0].error.startswith("photo 'vin' arrived with 5 bytes and SHA-256 ")
    assert send_photos(assembler) == [ack(complete=True)]
    # the current ack, asked again, is the manual's accepted shape with nothing to add
    assert assembler.current_ack("cap-1") == ack(complete=True)


def test_document_listing_a_wrong_hash_never_completes(assembler: CaptureAssembler) -> None:
    doc = document()
    doc["photos"][0]["sha256"] = "0" * 64
    assembler.on_document(payload(doc), T0)
    # the rejected photo comes first, so the ack sent then still misses all three, and says why
    [refused_photo] = send_photos(assembler)
    assert refused_photo.missing_photos == ALL_MISSING
    assert [e.field for e in refused_photo.errors] == ["photos.0"]
    assert refused_photo.errors[0].error.endswith(f"the document lists 19 bytes and SHA-256 {'0' * 64}; send it again")
    assert assembler.current_ack("cap-1") == ack(missing=["front_left_45"])
    assert assembler.completed is None


def test_held_photos_are_capped_oldest_dropped(requirements: CaptureRequirements,
                                               tmp_path: Path) -> None:
    assembler = CaptureAssembler(requirements, PhotoStore(tmp_path), inspection=INSPECTION,
                                 max_held_photos=2)
    with capture_logs() as logs:
        send_photos(assembler)
    assert assembler.held_photo_count == 2
    [dropped] = [e for e in logs if e["event"] == "pda_held_photo_dropped"]
    assert dropped["photo"] == "front_left_45"
    assert assembler.on_document(payload(document()), T0) == [ack(missing=["front_left_45"])]


def test_held_photos_are_capped_by_bytes(requirements: CaptureRequirements, tmp_path: Path) -> None:
    assembler = CaptureAssembler(requirements, PhotoStore(tmp_path), inspection=INSPECTION,
                                 max_held_bytes=40)
    send_photos(assembler)  # 19 + 18 + 19 bytes: the first must go
    assert assembler.held_photo_count == 2
    assert assembler.on_document(payload(document()), T0) == [ack(missing=["front_left_45"])]


# --- refusals -----------------------------------------------------------------------------------


def test_missing_required_photo_is_refused_naming_why(assembler: CaptureAssembler) -> None:
    doc = document()
    doc["photos"] = [p for p in doc["photos"] if p["photo"] != "tailpipe"]
    assert refusal(assembler.on_document(payload(doc), T0)) == [
        ("photos", "required photo 'tailpipe' not listed (fuel gasoline)")]


def test_required_item_judged_na_is_refused(assembler: CaptureAssembler) -> None:
    doc = document()
    doc["checks"][18]["result"] = "na"  # evap_system, the 19th item of the manual
    assert refusal(assembler.on_document(payload(doc), T0)) == [
        ("checks.18.result", "item 'evap_system' must be judged pass or fail (fuel gasoline), "
                             "found 'na'")]


def test_missing_and_repeated_items_are_refused(assembler: CaptureAssembler) -> None:
    doc = document()
    doc["checks"] = [*doc["checks"][1:], {"item": "tyres", "result": "fail"}]
    assert refusal(assembler.on_document(payload(doc), T0)) == [
        ("checks.20.item", "item 'tyres' repeated (first at checks.6)"),
        ("checks", "item 'plate_match' missing: every check item is sent once, 'na' where it "
                   "does not apply"),
    ]


def test_another_inspection_number_is_refused(assembler: CaptureAssembler) -> None:
    doc = document(inspection_no="370100202611010043")
    assert refusal(assembler.on_document(payload(doc), T0)) == [
        ("inspection_no", "inspection 370100202611010043 is not the one running on this lane "
                          "(370100202611010042)")]


def test_vin_and_plate_differing_from_the_inspection_are_refused(
        assembler: CaptureAssembler) -> None:
    doc = document()
    doc["vehicle"]["vin"] = "LZZ1CLSB4MA123456"  # a valid VIN, but another vehicle's
    doc["vehicle"]["plate"] = "鲁N12346"
    assert refusal(assembler.on_document(payload(doc), T0)) == [
        ("vehicle.vin", "'LZZ1CLSB4MA123456' differs from the inspection's 'LSVAU2182N2183290'"),
        ("vehicle.plate", "'鲁N12346' differs from the inspection's '鲁N12345'"),
    ]


def test_bad_check_digit_is_refused_with_the_manuals_wording(assembler: CaptureAssembler) -> None:
    doc = document()
    doc["vehicle"]["vin"] = "LSVAU2180N2183290"
    errors = refusal(assembler.on_document(payload(doc), T0))
    assert ("vehicle.vin", "check digit computed 2, found 0") in errors


def test_missing_obd_result_is_refused_for_a_vehicle_with_obd(assembler: CaptureAssembler) -> None:
    doc = document()
    del doc["obd"]
    assert refusal(assembler.on_document(payload(doc), T0)) == [
        ("obd", "required field missing: the vehicle has an OBD port; send the scan tool's result")]


def test_no_inspection_running_refuses_every_capture(requirements: CaptureRequirements,
                                                     tmp_path: Path) -> None:
    assembler = CaptureAssembler(requirements, PhotoStore(tmp_path))
    assert refusal(assembler.on_document(payload(document()), T0)) == [
        ("inspection_no", "no inspection is running on this lane")]


def test_malformed_document_with_a_capture_id_is_refused_with_field_paths(
        assembler: CaptureAssembler) -> None:
    doc = document()
    doc["vehicle"]["odometer_km"] = -1
    [(field, _)] = refusal(assembler.on_document(payload(doc), T0))
    assert field == "vehicle.odometer_km"


def test_payload_without_a_capture_id_cannot_be_answered(assembler: CaptureAssembler) -> None:
    with capture_logs() as logs:
        assert assembler.on_document(b"not json", T0) == []
    assert [e["event"] for e in logs] == ["pda_capture_unanswerable"]


def test_refused_capture_changes_nothing_and_a_corrected_one_completes(
        assembler: CaptureAssembler) -> None:
    bad = document("cap-bad")
    bad["vehicle"]["plate"] = "鲁NI2345"
    assert send_photos(assembler, "cap-bad") == []
    assert refusal(assembler.on_document(payload(bad), T0))[0][0] == "vehicle.plate"
    assert assembler.held_photo_count == 0  # its held photos went with it
    assert send_photos(assembler, "cap-bad") == []  # photos of a refused capture are ignored
    assert assembler.held_photo_count == 0
    assert assembler.completed is None
    assert assembler.on_document(payload(bad), T0)[0].accepted is False  # duplicate: same answer
    assert assembler.on_document(payload(document("cap-2")), T0) == [
        ack("cap-2", missing=ALL_MISSING)]
    assert send_photos(assembler, "cap-2") == [ack("cap-2", complete=True)]


def test_a_second_capture_after_a_complete_one_is_refused(assembler: CaptureAssembler) -> None:
    assembler.on_document(payload(document()), T0)
    send_photos(assembler)
    assert refusal(assembler.on_document(payload(document("cap-2")), T0)) == [
        ("inspection_no", "inspection 370100202611010042 already has a complete capture (cap-1)")]
    assert assembler.completed is not None and assembler.completed.capture_id == "cap-1"


def test_open_captures_are_refused_when_another_completes(assembler: CaptureAssembler) -> None:
    assembler.on_document(payload(document("cap-1")), T0)
    assembler.on_document(payload(document("cap-2")), T0)
    acks = send_photos(assembler, "cap-2")
    assert acks[0] == ack("cap-2", complete=True)
    assert acks[1].capture_id == "cap-1" and acks[1].accepted is False
    assert acks[1].errors[0].error == (
        "inspection 370100202611010042 already has a complete capture (cap-2)")
    assert send_photos(assembler, "cap-1") == []


def test_a_capture_id_reused_for_another_document_is_refused_and_the_first_kept(
        assembler: CaptureAssembler) -> None:
    assembler.on_document(payload(document()), T0)
    other = document()
    other["vehicle"]["odometer_km"] = 5
    assert refusal(assembler.on_document(payload(other), T0)) == [
        ("capture_id", "this capture_id was already used for a different document; send the "
                       "capture under a new capture_id")]
    assert send_photos(assembler) == [ack(complete=True)]
    assert assembler.completed is not None
    assert assembler.completed.document.vehicle.odometer_km == 118342


def test_a_new_inspection_forgets_the_previous_capture(assembler: CaptureAssembler) -> None:
    assembler.on_document(payload(document()), T0)
    send_photos(assembler)
    assembler.begin(CaptureInspection(**{**INSPECTION.__dict__, "inspection_no": "X2"}))
    assert assembler.completed is None
    assert assembler.on_document(payload(document("cap-9", inspection_no="X2")), T0) == [
        ack("cap-9", missing=ALL_MISSING)]


def test_receive_time_must_be_timezone_aware(assembler: CaptureAssembler) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        assembler.on_document(payload(document()), datetime(2026, 11, 1, 9, 32))


# --- the photo store ----------------------------------------------------------------------------


def test_photo_store_writes_content_addressed_files_once(tmp_path: Path) -> None:
    store = PhotoStore(tmp_path)
    data = b"\xff\xd8 a photo \xff\xd9"
    sha = hashlib.sha256(data).hexdigest()
    assert not store.has(sha)
    path = store.put(sha, data)
    assert path == str(tmp_path / sha[:2] / f"{sha}.jpg")
    assert store.has(sha)
    assert store.put(sha, data) == path
    assert sorted(p.name for p in (tmp_path / sha[:2]).iterdir()) == [f"{sha}.jpg"]  # no temp left


def test_photo_store_refuses_bytes_that_do_not_match_the_hash(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="do not hash"):
        PhotoStore(tmp_path).put("a" * 64, b"x")
    with pytest.raises(ValueError, match="SHA-256"):
        PhotoStore(tmp_path).put("../../etc/passwd", b"x")


# --- the shipped settings -----------------------------------------------------------------------


def test_shipped_settings_load_and_a_bus_needs_its_extinguisher() -> None:
    rules = CaptureRequirements.load()
    bus = rules.for_vehicle("bus", "diesel", has_obd=True)
    assert bus.photos["fire_extinguisher"] == "vehicle class bus"
    assert bus.checks["fire_extinguisher"] == "vehicle class bus"
    assert bus.photos["obd_port"] == "vehicles with an OBD port"


def test_shipped_settings_a_car_without_obd_needs_no_obd_port() -> None:
    car = CaptureRequirements.load().for_vehicle("passenger_car", "gasoline", has_obd=False)
    assert "obd_port" not in car.photos
    assert "fire_extinguisher" not in car.photos
    assert {"front_left_45", "rear_right_45", "vin", "tailpipe"} <= set(car.photos)


def test_shipped_settings_a_trailer_has_no_emissions_photos() -> None:
    trailer = CaptureRequirements.load().for_vehicle("trailer", "diesel", has_obd=False)
    assert "tailpipe" not in trailer.photos
    assert "mechanical_condition" not in trailer.checks


def test_settings_with_an_unknown_name_are_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "required.toml"
    path.write_text('fuel = {}\n[every_vehicle]\nphotos = ["selfie"]\n[class]\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        CaptureRequirements.load(path)
    assert info.value.problems == [
        "every_vehicle: names not in the PDA manual: selfie"]


def test_settings_missing_a_class_or_fuel_table_are_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "required.toml"
    classes = "".join(f"[class.{c}]\n" for c in SMALL_RULES["class"] if c != "bus")
    fuels = "".join(f"[fuel.{f}]\n" for f in SMALL_RULES["fuel"] if f != "cng")
    path.write_text(classes + fuels, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        CaptureRequirements.load(path)
    assert info.value.problems == ["(file): tables missing: class.bus, fuel.cng"]


# --- a restart in the middle of an upload ---------------------------------------------------------


def restarted(requirements: CaptureRequirements, tmp_path: Path) -> CaptureAssembler:
    """The assembler of a lane started again on the same state directory, its inspection resumed."""
    again = CaptureAssembler(requirements, PhotoStore(tmp_path / "photos"),
                             journal=CaptureJournal(tmp_path / "captures"))
    again.begin(INSPECTION)
    return again


@pytest.fixture
def journaled(requirements: CaptureRequirements, tmp_path: Path) -> CaptureAssembler:
    first = CaptureAssembler(requirements, PhotoStore(tmp_path / "photos"),
                             journal=CaptureJournal(tmp_path / "captures"))
    first.begin(INSPECTION)
    return first


def test_after_a_restart_the_ack_names_only_the_photos_still_missing(
        journaled: CaptureAssembler, requirements: CaptureRequirements, tmp_path: Path) -> None:
    journaled.on_document(payload(document()), T0)
    journaled.on_photo("cap-1", "front_left_45", PHOTO_BYTES["front_left_45"], T0 + timedelta(seconds=1))
    # the process dies here; a new one resumes the inspection
    again = restarted(requirements, tmp_path)
    assert again.restore() == [ack(missing=["vin", "tailpipe"])]
    # the PDA sends its document again (QoS 1 redelivery, or the app retrying): the same answer
    assert again.on_document(payload(document()), T0 + timedelta(minutes=1)) == [ack(missing=["vin", "tailpipe"])]
    assert again.on_photo("cap-1", "vin", PHOTO_BYTES["vin"], T0 + timedelta(minutes=2)) == []
    assert again.on_photo("cap-1", "tailpipe", PHOTO_BYTES["tailpipe"],
                          T0 + timedelta(minutes=2)) == [ack(complete=True)]
    completed = again.completed
    assert completed is not None and completed.document_received_at == T0  # the first arrival's time
    assert [(p.photo, p.received_at) for p in completed.photos] == [
        ("front_left_45", T0 + timedelta(seconds=1)),
        ("vin", T0 + timedelta(minutes=2)),
        ("tailpipe", T0 + timedelta(minutes=2)),
    ]
    again.end()
    assert list((tmp_path / "captures").glob("*.json")) == []  # the inspection is over: its journal goes


def test_a_photo_gone_from_the_store_is_asked_for_again(
        journaled: CaptureAssembler, requirements: CaptureRequirements, tmp_path: Path) -> None:
    journaled.on_document(payload(document()), T0)
    journaled.on_photo("cap-1", "vin", PHOTO_BYTES["vin"], T0)
    PhotoStore(tmp_path / "photos").path_for(hashlib.sha256(PHOTO_BYTES["vin"]).hexdigest()).unlink()
    assert restarted(requirements, tmp_path).restore() == [ack(missing=ALL_MISSING)]


def test_a_capture_whose_last_photo_arrived_just_before_the_crash_completes_on_restore(
        journaled: CaptureAssembler, requirements: CaptureRequirements, tmp_path: Path) -> None:
    journaled.on_document(payload(document()), T0)
    assert send_photos(journaled, at=T0 + timedelta(seconds=5)) == [ack(complete=True)]
    again = restarted(requirements, tmp_path)  # the record had not been saved with the capture
    assert again.restore() == [ack(complete=True)]
    assert again.completed is not None and again.completed.completed_at == T0 + timedelta(seconds=5)


def test_a_new_inspection_does_not_inherit_another_ones_partial_capture(
        journaled: CaptureAssembler, requirements: CaptureRequirements, tmp_path: Path) -> None:
    journaled.on_document(payload(document()), T0)
    other = CaptureAssembler(requirements, PhotoStore(tmp_path / "photos"),
                             journal=CaptureJournal(tmp_path / "captures"))
    other.begin(CaptureInspection(**{**INSPECTION.__dict__, "inspection_no": "370100202611010043"}))
    assert other.restore() == []
    assert restarted(requirements, tmp_path).restore() == []  # forgotten when the other began


def test_journal_files_are_private(journaled: CaptureAssembler, tmp_path: Path) -> None:
    journaled.on_document(payload(document()), T0)
    [path] = (tmp_path / "captures").glob("*.json")
    assert path.name == "370100202611010042.json"
    assert (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["captures"][0]["document"] == payload(document()).decode("utf-8")  # as received
