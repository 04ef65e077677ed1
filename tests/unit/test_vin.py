"""VIN check digit (GB 16735) and plate pattern, with every expected value worked by hand."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.errors import ProtocolError
from protocols.vin import PLATE_PATTERN, validate_plate, validate_vin, vin_check_digit


def test_manual_example_vin_has_check_digit_2_and_is_valid() -> None:
    # L S V A U 2 1 8 [2] N 2 1 8 3 2 9 0
    # values   3 2 5 1 4 2 1 8  -  5 2 1 8 3 2 9 0
    # weights  8 7 6 5 4 3 2 10 0 9 8 7 6 5 4 3 2
    # products 24+14+30+5+16+6+2+80+0+45+16+7+48+15+8+27+0 = 343;  343 mod 11 = 2
    assert vin_check_digit("LSVAU2182N2183290") == "2"
    assert validate_vin("LSVAU2182N2183290") is None


def test_demo_truck_vin_has_check_digit_4() -> None:
    # L Z Z 1 C L S B [4] M A 1 2 3 4 5 6
    # products 24+63+54+5+12+9+4+20+0+36+8+7+12+15+16+15+12 = 312;  312 mod 11 = 4
    assert vin_check_digit("LZZ1CLSB4MA123456") == "4"
    assert validate_vin("LZZ1CLSB4MA123456") is None


def test_remainder_10_is_written_as_x() -> None:
    # 1 M 8 G D M 9 A [X] K P 0 4 2 7 8 8
    # products 8+28+48+35+16+12+18+10+0+18+56+0+24+10+28+24+16 = 351;  351 mod 11 = 10 -> X
    assert vin_check_digit("1M8GDM9AXKP042788") == "X"
    assert validate_vin("1M8GDM9AXKP042788") is None


def test_all_ones_vin_is_valid_because_the_weights_sum_to_89() -> None:
    # 8+7+6+5+4+3+2+10+0+9+8+7+6+5+4+3+2 = 89;  89 mod 11 = 1
    assert vin_check_digit("11111111111111111") == "1"
    assert validate_vin("11111111111111111") is None


def test_wrong_check_digit_names_computed_and_found() -> None:
    assert validate_vin("LSVAU2180N2183290") == "check digit computed 2, found 0"
    assert validate_vin("LZZ1CLSB7MA123456") == "check digit computed 4, found 7"


def test_check_digit_position_itself_does_not_count() -> None:
    assert vin_check_digit("LSVAU218XN2183290") == "2"


@pytest.mark.parametrize(
    ("vin", "expected"),
    [
        ("LSVAU2182N218329", "a VIN has 17 characters, found 16"),
        ("LSVAU2182N21832901", "a VIN has 17 characters, found 18"),
        ("lsvau2182n2183290", "a VIN is written in upper case, found lower-case letters"),
        ("LSVAU2182N2183O90", "a VIN never contains I, O or Q, found O"),
        ("LSVIU2182N2183Q90", "a VIN never contains I, O or Q, found I, Q"),
        ("LSVAU2182N2183-90", "character '-' at position 15 is not allowed in a VIN"),
    ],
)
def test_malformed_vin_is_refused_with_the_reason(vin: str, expected: str) -> None:
    assert validate_vin(vin) == expected


def test_check_digit_of_a_vin_of_wrong_length_raises_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="17 characters"):
        vin_check_digit("LSVAU2182")


@given(st.text(max_size=30))
def test_validate_vin_never_raises(vin: str) -> None:
    result = validate_vin(vin)
    assert result is None or isinstance(result, str)


def test_plate_pattern_is_the_manuals_exactly() -> None:
    assert PLATE_PATTERN == (
        "^[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼][A-HJ-NP-Z]"
        "[A-HJ-NP-Z0-9]{4,5}[A-HJ-NP-Z0-9挂学警港澳]$"
    )


@pytest.mark.parametrize(
    "plate",
    [
        "鲁N12345",  # ordinary: five after the city letter
        "鲁NA7321",
        "京AD12345",  # new energy: six after the city letter
        "鲁N1234挂",  # trailer
        "鲁A1234学",  # driving school
        "粤B1234港",
    ],
)
def test_good_plates_are_accepted(plate: str) -> None:
    assert validate_plate(plate) is None


@pytest.mark.parametrize(
    ("plate", "hint"),
    [
        ("鲁NI2345", "letters I and O"),
        ("鲁N12O45", "letters I and O"),
        ("鲁O12345", "letters I and O"),
        ("XN12345", "province character"),
        ("鲁N1234", "found 5 characters"),
        ("鲁N12345678", "found 9 characters"),
        ("鲁n12345", "upper case"),
        ("鲁N123挂4", "挂"),
        ("", "empty"),
    ],
)
def test_bad_plates_are_refused_with_a_hint(plate: str, hint: str) -> None:
    error = validate_plate(plate)
    assert error is not None
    assert error.startswith(f"plate {plate!r} is not a plate number")
    assert hint in error
