"""The PDA simulator's pure half: valid JPEGs worked out by hand, and capture documents built from
the vehicle files as the manual asks, good or bad on purpose."""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import subprocess
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from protocols.pda import CHECK_ITEMS, CaptureDocument, capture_contract_errors, parse_capture
from simulators.pda import build_capture, make_jpeg
from simulators.vehicle import load_vehicle_file

NOW = datetime(2026, 11, 1, 1, 31, 5, tzinfo=UTC)
INSPECTION_NO = "370100202611010042"


def entropy(jpeg: bytes) -> bytes:
    """The scan data: after the 10-byte SOS segment (FFDA, length 8), before EOI."""
    start = jpeg.index(b"\xff\xda") + 10
    assert jpeg.endswith(b"\xff\xd9")
    return jpeg[start:-2]


# --- JPEG ---------------------------------------------------------------------------------------


def test_one_mid_grey_tile_is_the_whole_file_written_out_by_hand() -> None:
    expected = b"".join([
        bytes.fromhex("ffd8"),
        bytes.fromhex("ffe0 0010 4a46494600 0101 00 0001 0001 0000"),  # JFIF 1.01
        bytes.fromhex("fffe 0004") + b"hi",  # COM
        bytes.fromhex("ffdb 0043 00") + b"\x01" * 64,  # DQT 0: all ones
        bytes.fromhex("ffc0 000b 08 0008 0008 01 01 11 00"),  # SOF0 8x8, one component
        bytes.fromhex("ffc4 0031"),  # DHT, two tables
        bytes.fromhex("00 00 01 05 01 01 01 01 01 01 00 00 00 00 00 00 00"),  # DC 0: T.81 K.3
        bytes(range(12)),
        bytes.fromhex("10 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"),  # AC 0: EOB only
        bytes.fromhex("ffda 0008 01 01 00 00 3f 00"),  # SOS
        # grey 128: DC 0, diff 0 -> category 0 code 00; EOB 0; pad 11111 -> 0001 1111
        bytes.fromhex("1f"),
        bytes.fromhex("ffd9"),
    ])  # fmt: skip
    assert make_jpeg("hi", width_blocks=1, height_blocks=1, greys=[128]) == expected


def test_dc_differences_are_coded_with_the_standard_dc_table() -> None:
    # grey 129: DC 8, diff 8: category 4 code 101, bits 1000, EOB 0   -> 1011 0000
    # grey 127: DC -8, diff -16: category 5 code 110, bits 01111 (-16 + 31), EOB 0, pad 1111111
    #   -> 1100 1111 | 0111 1111
    jpeg = make_jpeg("x", width_blocks=2, height_blocks=1, greys=[129, 127])
    assert entropy(jpeg) == bytes.fromhex("b0 cf 7f")


def test_a_ff_byte_in_the_scan_is_stuffed_with_00() -> None:
    # grey 0: DC -1024: category 11 code 111111110, bits 01111111111 (-1024 + 2047), EOB 0
    #   -> 1111 1111 | 0011 1111 | 1111 0 + pad 111
    jpeg = make_jpeg("x", width_blocks=1, height_blocks=1, greys=[0])
    assert entropy(jpeg) == bytes.fromhex("ff 00 3f f7")


def test_different_comments_give_different_photos() -> None:
    assert make_jpeg("capture 1 vin") != make_jpeg("capture 1 tailpipe")


@pytest.mark.skipif(shutil.which("djpeg") is None and not os.environ.get("CI"),
                    reason="djpeg (libjpeg-turbo-progs) not here; CI installs it, and there the test runs")
def test_libjpeg_decodes_the_tiles_to_their_greys() -> None:
    greys = [0, 40, 128, 255, 200, 17]
    jpeg = make_jpeg("decode me", width_blocks=3, height_blocks=2, greys=greys)
    run = subprocess.run(["djpeg", "-pnm"], input=jpeg, capture_output=True, check=True)
    assert run.stderr == b""  # libjpeg warns on any corrupt data
    header = b"P5\n24 16\n255\n"
    assert run.stdout.startswith(header)
    pixels = run.stdout[len(header):]
    tiles = [pixels[row * 8 * 24 + col * 8] for row in range(2) for col in range(3)]
    assert tiles == greys


# --- capture documents --------------------------------------------------------------------------


def test_gasoline_car_capture_is_a_valid_document_with_matching_photos() -> None:
    built = build_capture(load_vehicle_file("gasoline-car"), INSPECTION_NO, capture_id="c-1",
                          now=NOW)
    doc = parse_capture(built.payload)
    assert isinstance(doc, CaptureDocument)
    assert capture_contract_errors(doc) == []
    assert doc.capture_id == "c-1"
    assert doc.inspection_no == INSPECTION_NO
    assert (doc.vehicle.plate, doc.vehicle.vin) == ("鲁N12345", "LSVAU2182N2183290")
    assert [c.item for c in doc.checks] == list(CHECK_ITEMS)
    assert doc.obd is not None and doc.obd.ecu_vin == "LSVAU2182N2183290"
    for entry in doc.photos:
        data = built.photos[entry.photo]
        assert data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9")
        assert (entry.size_bytes, entry.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert len({hashlib.sha256(d).digest() for d in built.photos.values()}) == len(built.photos)


def test_clock_skew_moves_the_pdas_times() -> None:
    built = build_capture(load_vehicle_file("gasoline-car"), INSPECTION_NO, now=NOW)
    # true time 01:31:05Z = 09:31:05+08:00; this PDA runs 37 s ahead
    assert built.document["captured_at"] == "2026-11-01T09:31:42+08:00"
    # nine photos 15 s apart, the last 15 s before captured_at: the first 135 s before
    assert built.document["photos"][0]["taken_at"] == "2026-11-01T09:29:27+08:00"
    truck = build_capture(load_vehicle_file("diesel-truck"), INSPECTION_NO, now=NOW)
    assert truck.document["captured_at"] == "2026-11-01T09:28:35+08:00"  # 150 s behind


def test_bad_vin_replaces_the_check_digit() -> None:
    built = build_capture(load_vehicle_file("gasoline-car"), INSPECTION_NO, bad="bad_vin")
    assert built.document["vehicle"]["vin"] == "LSVAU2180N2183290"


def test_wrong_plate_is_another_well_formed_plate() -> None:
    built = build_capture(load_vehicle_file("gasoline-car"), INSPECTION_NO, bad="wrong_plate")
    assert built.document["vehicle"]["plate"] == "鲁N12346"


def test_missing_item_leaves_out_tyres() -> None:
    built = build_capture(load_vehicle_file("diesel-truck"), INSPECTION_NO, bad="missing_item")
    items = [c["item"] for c in built.document["checks"]]
    assert "tyres" not in items and len(items) == 20


def test_wrong_hash_lists_a_hash_the_first_photo_does_not_have() -> None:
    built = build_capture(load_vehicle_file("gasoline-car"), INSPECTION_NO, bad="wrong_hash")
    first = built.document["photos"][0]
    data = built.photos[first["photo"]]
    assert first["bytes"] == len(data)
    assert first["sha256"] != hashlib.sha256(data).hexdigest()
    second = built.document["photos"][1]
    assert second["sha256"] == hashlib.sha256(built.photos[second["photo"]]).hexdigest()


def test_other_inspection_changes_the_inspection_number() -> None:
    built = build_capture(load_vehicle_file("gasoline-car"), INSPECTION_NO, bad="other_inspection")
    assert built.document["inspection_no"] == "370100202611010043"


def test_a_capture_table_missing_an_item_is_refused_when_loaded() -> None:
    data = copy.deepcopy(load_vehicle_file("gasoline-car"))
    del data["capture"]["checks"]["guards"]
    with pytest.raises(ValidationError, match="check item 'guards' missing"):
        build_capture(data, INSPECTION_NO)
