"""The PDA capture contract (devices/pda.md): parsing with field paths, acks, tables, topics."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.pda import (
    CHECK_ITEMS,
    PHOTOS,
    CaptureDocument,
    FieldError,
    PdaAck,
    Platform,
    ack_topic,
    capture_contract_errors,
    capture_topic,
    parse_ack,
    parse_capture,
    parse_photo_topic,
    peek_capture_id,
    photo_topic,
)

SHA_A = "a" * 64

# The manual's example document, with a full hash and every item (the manual's is abridged).
MANUAL_DOC: dict[str, Any] = {
    "schema": "pda-capture/1",
    "capture_id": "0b6c7c1e-6f0e-4a57-9d7a-0c1f2b9e4d11",
    "inspection_no": "370100202611010042",
    "pda_id": "PDA-07",
    "inspector": {"name": "王磊", "id": "370102199001011234"},
    "captured_at": "2026-11-01T09:31:05+08:00",
    "vehicle": {
        "plate": "鲁N12345", "plate_type": "02", "vin": "LSVAU2182N2183290",
        "fuel": "gasoline", "odometer_km": 118342,
    },
    "checks": [{"item": "vin_match", "result": "pass"},
               {"item": "tyres", "result": "fail", "note": "right rear tread under 1.6 mm"},
               {"item": "fire_extinguisher", "result": "na"}],
    "obd": {"mil_on": False, "dtc": [], "readiness_incomplete": [], "link_ok": True,
            "ecu_vin": "LSVAU2182N2183290"},
    "photos": [{"photo": "front_left_45", "sha256": SHA_A, "bytes": 183224,
                "taken_at": "2026-11-01T09:29:41+08:00"}],
}  # fmt: skip


def full_doc() -> dict[str, Any]:
    """The manual's example with every check item once."""
    doc = copy.deepcopy(MANUAL_DOC)
    given_items = {c["item"] for c in doc["checks"]}
    doc["checks"] += [{"item": i, "result": "pass"} for i in CHECK_ITEMS if i not in given_items]
    return doc


def encode(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def errors_of(payload: bytes) -> list[tuple[str, str]]:
    result = parse_capture(payload)
    assert isinstance(result, list), result
    return [(e.field, e.error) for e in result]


# --- parsing ------------------------------------------------------------------------------------


def test_manual_example_document_parses_with_its_values() -> None:
    doc = parse_capture(encode(MANUAL_DOC))
    assert isinstance(doc, CaptureDocument)
    assert doc.capture_id == "0b6c7c1e-6f0e-4a57-9d7a-0c1f2b9e4d11"
    assert doc.captured_at == datetime(2026, 11, 1, 1, 31, 5, tzinfo=UTC)
    assert doc.vehicle.vin == "LSVAU2182N2183290"
    assert doc.vehicle.odometer_km == 118342
    assert doc.checks[1].note == "right rear tread under 1.6 mm"
    assert doc.obd is not None and doc.obd.ecu_vin == "LSVAU2182N2183290"
    assert doc.photos[0].size_bytes == 183224
    assert doc.photos[0].taken_at.utcoffset() == timedelta(hours=8)


def test_document_without_obd_and_with_null_ecu_vin_parse() -> None:
    no_obd = full_doc()
    del no_obd["obd"]
    parsed = parse_capture(encode(no_obd))
    assert isinstance(parsed, CaptureDocument) and parsed.obd is None
    null_vin = full_doc()
    null_vin["obd"]["ecu_vin"] = None
    parsed = parse_capture(encode(null_vin))
    assert isinstance(parsed, CaptureDocument) and parsed.obd is not None
    assert parsed.obd.ecu_vin is None


def test_upper_case_sha256_is_taken_as_lower_case() -> None:
    doc = full_doc()
    doc["photos"][0]["sha256"] = "AB" * 32
    parsed = parse_capture(encode(doc))
    assert isinstance(parsed, CaptureDocument)
    assert parsed.photos[0].sha256 == "ab" * 32


def test_bytes_that_are_not_utf8_are_one_root_error() -> None:
    assert errors_of(b'{"schema": "\xff"}') == [("$", "not UTF-8 text: byte 12 is invalid")]


def test_malformed_json_is_one_root_error() -> None:
    [(field, error)] = errors_of(b'{"schema": "pda-capture/1",')
    assert field == "$"
    assert error.startswith("not valid JSON: ")


def test_nan_is_not_json() -> None:
    [(field, error)] = errors_of(b'{"odometer_km": NaN}')
    assert field == "$"
    assert "NaN is not a JSON number" in error


@pytest.mark.parametrize(("payload", "kind"), [(b"[1, 2]", "list"), (b"null", "null"),
                                               (b'"x"', "str")])
def test_a_payload_that_is_not_an_object_is_refused(payload: bytes, kind: str) -> None:
    assert errors_of(payload) == [("$", f"expected a JSON object, found {kind}")]


def test_wrong_or_missing_schema_is_the_only_error_reported() -> None:
    doc = full_doc()
    doc["schema"] = "pda-capture/2"
    doc["vehicle"] = "garbage"
    assert errors_of(encode(doc)) == [("schema", "expected 'pda-capture/1', found 'pda-capture/2'")]
    del doc["schema"]
    assert errors_of(encode(doc)) == [("schema", "expected 'pda-capture/1', found nothing")]


def test_missing_and_extra_fields_are_named_by_dotted_path() -> None:
    doc = full_doc()
    del doc["vehicle"]["vin"]
    del doc["inspector"]
    doc["colour"] = "red"
    doc["photos"][0]["exif"] = {}
    assert sorted(errors_of(encode(doc))) == [
        ("colour", "unknown field (not in pda-capture/1)"),
        ("inspector", "required field missing"),
        ("photos.0.exif", "unknown field (not in pda-capture/1)"),
        ("vehicle.vin", "required field missing"),
    ]


def test_bad_types_are_named_by_dotted_path_and_show_what_came() -> None:
    doc = full_doc()
    doc["checks"][1]["result"] = "ok"
    doc["vehicle"]["odometer_km"] = "118342"
    doc["obd"]["mil_on"] = 0
    doc["photos"][0]["bytes"] = 0
    doc["captured_at"] = "2026-11-01T09:31:05"
    errors = dict(errors_of(encode(doc)))
    assert set(errors) == {"checks.1.result", "vehicle.odometer_km", "obd.mil_on",
                           "photos.0.bytes", "captured_at"}
    assert errors["checks.1.result"].endswith("found 'ok'")
    assert "'pass', 'fail' or 'na'" in errors["checks.1.result"]
    assert errors["vehicle.odometer_km"].endswith("found '118342'")
    assert errors["obd.mil_on"].endswith("found 0")
    assert errors["photos.0.bytes"].endswith("found 0")
    assert "timezone" in errors["captured_at"]


def test_unknown_item_and_photo_names_are_refused() -> None:
    doc = full_doc()
    doc["checks"][0]["item"] = "wipers"
    doc["photos"][0]["photo"] = "selfie"
    assert sorted(errors_of(encode(doc))) == [
        ("checks.0.item", "unknown check item 'wipers'"),
        ("photos.0.photo", "unknown photo 'selfie'"),
    ]


def test_capture_id_must_be_usable_as_a_topic_level() -> None:
    doc = full_doc()
    doc["capture_id"] = "a/b"
    [(field, _)] = errors_of(encode(doc))
    assert field == "capture_id"


def test_short_sha256_is_refused() -> None:
    doc = full_doc()
    doc["photos"][0]["sha256"] = "abc"
    [(field, _)] = errors_of(encode(doc))
    assert field == "photos.0.sha256"


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_parse_never_raises_on_any_bytes(payload: bytes) -> None:
    result = parse_capture(payload)
    assert isinstance(result, CaptureDocument | list)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(list(MANUAL_DOC)), json_values, max_size=10))
def test_parse_never_raises_on_documents_with_wrong_values(mutation: dict[str, Any]) -> None:
    doc = {**full_doc(), **mutation, "schema": "pda-capture/1"}
    result = parse_capture(encode(doc))
    if isinstance(result, list):
        assert all(isinstance(e, FieldError) and e.field for e in result)


def test_deeply_nested_json_is_an_error_not_a_crash() -> None:
    result = parse_capture(b"[" * 100_000)
    assert isinstance(result, list) and result[0].field == "$"


def test_peek_capture_id_finds_the_id_of_an_invalid_document() -> None:
    assert peek_capture_id(b'{"capture_id": "c-1", "schema": 3}') == "c-1"
    assert peek_capture_id(b'{"capture_id": "a/#"}') is None
    assert peek_capture_id(b"\xff") is None
    assert peek_capture_id(b"[]") is None


# --- what every capture must satisfy ------------------------------------------------------------


def test_full_manual_document_satisfies_the_contract() -> None:
    doc = parse_capture(encode(full_doc()))
    assert isinstance(doc, CaptureDocument)
    assert capture_contract_errors(doc) == []


def test_missing_and_repeated_items_and_photos_are_contract_errors() -> None:
    raw = full_doc()
    raw["checks"] = [c for c in raw["checks"] if c["item"] != "odometer"]
    raw["checks"].append({"item": "tyres", "result": "pass"})
    raw["photos"].append(dict(raw["photos"][0]))
    doc = parse_capture(encode(raw))
    assert isinstance(doc, CaptureDocument)
    assert [(e.field, e.error) for e in capture_contract_errors(doc)] == [
        ("checks.20.item", "item 'tyres' repeated (first at checks.1)"),
        ("checks", "item 'odometer' missing: every check item is sent once, 'na' where it does "
                   "not apply"),
        ("photos.1.photo", "photo 'front_left_45' listed twice (first at photos.0)"),
    ]


def test_bad_vin_check_digit_and_bad_plate_are_contract_errors() -> None:
    raw = full_doc()
    raw["vehicle"]["vin"] = "LSVAU2180N2183290"
    raw["vehicle"]["plate"] = "鲁NI2345"
    doc = parse_capture(encode(raw))
    assert isinstance(doc, CaptureDocument)
    errors = [(e.field, e.error) for e in capture_contract_errors(doc)]
    assert errors[0] == ("vehicle.vin", "check digit computed 2, found 0")
    assert errors[1][0] == "vehicle.plate"
    assert len(errors) == 2


# --- acks ---------------------------------------------------------------------------------------


def test_accepted_ack_has_the_manuals_shape() -> None:
    ack = PdaAck(capture_id="c1", accepted=True, complete=False, missing_photos=["tailpipe"])
    assert ack.to_json_bytes() == (
        b'{"schema": "pda-ack/1", "capture_id": "c1", "accepted": true, "complete": false, '
        b'"missing_photos": ["tailpipe"]}'
    )


def test_refused_ack_has_the_manuals_shape() -> None:
    ack = PdaAck(capture_id="c1", accepted=False,
                 errors=[FieldError(field="vehicle.vin", error="check digit computed 7, found 0")])
    assert ack.to_json_bytes() == (
        b'{"schema": "pda-ack/1", "capture_id": "c1", "accepted": false, "errors": '
        b'[{"field": "vehicle.vin", "error": "check digit computed 7, found 0"}]}'
    )


@pytest.mark.parametrize("line", [
    b'{"schema": "pda-ack/1", "capture_id": "x", "accepted": true, "complete": false, '
    b'"missing_photos": ["tailpipe"]}',
    b'{"schema": "pda-ack/1", "capture_id": "x", "accepted": true, "complete": true, '
    b'"missing_photos": []}',
    b'{"schema": "pda-ack/1", "capture_id": "x", "accepted": false, "errors": '
    b'[{"field": "vehicle.vin", "error": "check digit computed 7, found 0"}]}',
])  # fmt: skip
def test_the_manuals_ack_examples_parse_and_round_trip(line: bytes) -> None:
    assert parse_ack(line).to_json_bytes() == line


# --- tables and topics --------------------------------------------------------------------------


def test_check_items_table_is_the_manuals() -> None:
    assert len(CHECK_ITEMS) == 21
    both = {Platform.SAFETY, Platform.EMISSIONS}
    assert {k for k, v in CHECK_ITEMS.items() if v == both} == {
        "plate_match", "vin_match", "model_match", "odometer"}
    assert {k for k, v in CHECK_ITEMS.items() if v == {Platform.EMISSIONS}} == {
        "mechanical_condition", "visible_smoke", "exhaust_leak", "emission_controls",
        "evap_system", "crankcase_vent"}
    assert CHECK_ITEMS["guards"] == {Platform.SAFETY}


def test_photos_table_is_the_manuals() -> None:
    codes = {name: kind.safety_code for name, kind in PHOTOS.items()}
    assert codes == {
        "front_left_45": "0111", "rear_right_45": "0112", "vin": "0113", "cabin": "0115",
        "tyre_size": "0136", "fire_extinguisher": "0116", "odometer": None, "tailpipe": "0298",
        "obd_port": "0169", "emission_controls": "0137",
    }
    assert PHOTOS["odometer"].for_inspections == {Platform.EMISSIONS}
    assert PHOTOS["cabin"].for_inspections == {Platform.SAFETY}
    assert PHOTOS["vin"].for_inspections == {Platform.SAFETY, Platform.EMISSIONS}


def test_topics_follow_the_manual() -> None:
    base = "laned/v1/ST01/L2/pda"
    assert capture_topic(base) == "laned/v1/ST01/L2/pda/capture"
    assert photo_topic(base, "c1", "vin") == "laned/v1/ST01/L2/pda/photo/c1/vin"
    assert ack_topic(base, "c1") == "laned/v1/ST01/L2/pda/ack/c1"
    assert parse_photo_topic(base, "laned/v1/ST01/L2/pda/photo/c1/vin") == ("c1", "vin")
    assert parse_photo_topic(base, "laned/v1/ST01/L2/pda/photo/c1") is None
    assert parse_photo_topic(base, "laned/v1/ST01/L2/pda/photo/c1/vin/x") is None
    assert parse_photo_topic(base, "laned/v1/ST01/L2/pda/capture") is None


# --- the models as the rest of the lane uses them -----------------------------------------------


def test_document_dumped_to_a_dict_reads_back_equal_as_a_record_does() -> None:
    doc = parse_capture(encode(full_doc()))
    assert isinstance(doc, CaptureDocument)
    dumped = doc.model_dump(mode="json")
    assert dumped["schema"] == "pda-capture/1"  # the manual's names, not the Python ones
    assert dumped["photos"][0]["bytes"] == 183224
    assert CaptureDocument.model_validate(dumped) == doc
    assert parse_capture(doc.to_json_bytes()) == doc


def test_ack_dumped_to_a_dict_uses_the_manuals_names() -> None:
    dumped = PdaAck(capture_id="c1", accepted=True, complete=True).model_dump(mode="json")
    assert dumped == {"schema": "pda-ack/1", "capture_id": "c1", "accepted": True,
                      "complete": True, "missing_photos": [], "errors": []}


def test_an_accepted_ack_says_why_a_photo_is_still_missing() -> None:
    ack = PdaAck(capture_id="c1", accepted=True, complete=False, missing_photos=["vin"],
                 errors=[FieldError(field="photos.2", error="photo 'vin' arrived with 5 bytes")])
    assert ack.to_json_bytes() == (
        b'{"schema": "pda-ack/1", "capture_id": "c1", "accepted": true, "complete": false, '
        b'"missing_photos": ["vin"], "errors": [{"field": "photos.2", "error": "photo \'vin\' arrived with 5 bytes"}]}'
    )
