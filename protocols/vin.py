"""Vehicle identity as the PDA manual checks it: the VIN check digit (GB 16735) and the plate form.

The lane refuses a capture whose VIN or plate is not well formed before it
compares them with the inspection the station started: a mistyped VIN with a
wrong check digit must never reach either platform. Both validators return an
error text for a technician (or None when the value is good) and never raise.
"""

from __future__ import annotations

import re

from protocols.errors import ProtocolError

VIN_LENGTH = 17
CHECK_DIGIT_POSITION = 9  # 1-based, as the standard counts
VIN_FORBIDDEN_LETTERS = frozenset("IOQ")

# GB 16735: letters count A1 B2 C3 D4 E5 F6 G7 H8 J1 K2 L3 M4 N5 P7 R9 S2 T3 U4 V5 W6 X7 Y8 Z9,
# digits their value (I, O and Q never appear in a VIN).
VIN_LETTER_VALUES: dict[str, int] = {
    "A": 1, "B": 2, "C": 3, "D": 4, "E": 5, "F": 6, "G": 7, "H": 8,
    "J": 1, "K": 2, "L": 3, "M": 4, "N": 5, "P": 7, "R": 9,
    "S": 2, "T": 3, "U": 4, "V": 5, "W": 6, "X": 7, "Y": 8, "Z": 9,
}  # fmt: skip
VIN_WEIGHTS: tuple[int, ...] = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)

# The manual's plate pattern, exactly: province character, city letter (no I, O), then four or
# five letters/digits and a last character that may also be 挂 学 警 港 澳: five characters after
# the city letter for ordinary plates, six for new-energy plates.
PROVINCE_CHARS = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
PLATE_PATTERN = (
    "^[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼]"
    "[A-HJ-NP-Z][A-HJ-NP-Z0-9]{4,5}[A-HJ-NP-Z0-9挂学警港澳]$"
)
PLATE_RE = re.compile(PLATE_PATTERN)
_PLATE_BODY_RE = re.compile("^[A-HJ-NP-Z0-9]*[A-HJ-NP-Z0-9挂学警港澳]$")


def _char_value(char: str) -> int:
    if char.isascii() and char.isdigit():
        return int(char)
    try:
        return VIN_LETTER_VALUES[char]
    except KeyError:
        raise ProtocolError(f"VIN character {char!r} has no value in GB 16735") from None


def vin_check_digit(vin: str) -> str:
    """The check digit GB 16735 gives for a 17-character VIN: the weighted sum mod 11, 10 as 'X'.

    Position 9 (the check digit itself) has weight 0, so whatever stands there does not matter.
    Raises ProtocolError for a VIN of the wrong length or with a character that has no value.
    """
    if len(vin) != VIN_LENGTH:
        raise ProtocolError(f"a VIN has {VIN_LENGTH} characters, found {len(vin)}: {vin!r}")
    total = sum(_char_value(char) * weight for char, weight in zip(vin, VIN_WEIGHTS, strict=True))
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def validate_vin(vin: str) -> str | None:
    """None for a well-formed VIN, else what is wrong with it.

    The texts are the manual's kind: "check digit computed 7, found 0".
    """
    if len(vin) != VIN_LENGTH:
        return f"a VIN has {VIN_LENGTH} characters, found {len(vin)}"
    if any(char.isascii() and char.islower() for char in vin):
        return "a VIN is written in upper case, found lower-case letters"
    forbidden = sorted({char for char in vin if char in VIN_FORBIDDEN_LETTERS})
    if forbidden:
        return f"a VIN never contains I, O or Q, found {', '.join(forbidden)}"
    for position, char in enumerate(vin, start=1):
        if not (char.isascii() and (char.isdigit() or char in VIN_LETTER_VALUES)):
            return f"character {char!r} at position {position} is not allowed in a VIN"
    computed = vin_check_digit(vin)
    found = vin[CHECK_DIGIT_POSITION - 1]
    if computed != found:
        return f"check digit computed {computed}, found {found}"
    return None


def validate_plate(plate: str) -> str | None:
    """None if the plate matches the manual's pattern, else why not (the pattern decides alone)."""
    if PLATE_RE.match(plate):
        return None
    return f"plate {plate!r} is not a plate number: {_plate_diagnosis(plate)}"


def _plate_diagnosis(plate: str) -> str:
    """A hint for the technician on why the pattern refused a plate; never changes the verdict."""
    if not plate:
        return "it is empty"
    if plate[0] not in PROVINCE_CHARS:
        return f"it must start with a province character, found {plate[0]!r}"
    after_province = plate[1:]
    if len(after_province) not in (6, 7):
        return (
            "a city letter and 5 characters (ordinary) or 6 (new-energy) must follow the province, "
            f"found {len(after_province)} characters"
        )
    if any(char in "IO" for char in after_province):
        return "plates never use the letters I and O"
    if any(char.isascii() and char.islower() for char in after_province):
        return "letters on a plate are upper case"
    if not ("A" <= after_province[0] <= "Z"):
        return f"the city letter must be a letter, found {after_province[0]!r}"
    if not _PLATE_BODY_RE.match(after_province[1:]):
        return "only letters, digits and a last 挂 学 警 港 澳 may follow the city letter"
    return f"it does not match {PLATE_PATTERN}"
