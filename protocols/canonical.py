"""RFC 8785 (JCS) canonical JSON: the exact bytes a result's signature covers.

Any language can reproduce these bytes from the parsed message: object members sorted by
their names' UTF-16 code units, no whitespace, strings with only the escapes JSON requires
(`\\"`, `\\\\`, `\\b \\f \\n \\r \\t`, other controls as lower-case `\\u00xx`), every number
written as ECMAScript's `Number.prototype.toString` writes the IEEE 754 double (`270.0` is
`270`, `1e21` is `1e+21`, `-0.0` is `0`). JCS libraries exist for Java, C#, Go, JavaScript
(where `JSON.stringify` of a member-sorted object already is JCS).
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

#: integers beyond ±2^53 cannot pass through an IEEE 754 double unchanged
MAX_SAFE_INTEGER = 2**53


class CanonicalJsonError(ValueError):
    """The value has no RFC 8785 form (NaN, an infinity, a huge integer, a non-JSON type)."""


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical form of a JSON value (dicts, lists, str, int, float, bool, None)."""
    parts: list[str] = []
    _write(value, parts)
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: not representable in I-JSON
        raise CanonicalJsonError(f"string with a lone surrogate at {exc.start}") from None


def format_number(number: float) -> str:
    """ECMAScript's Number.prototype.toString of a finite double (RFC 8785 section 3.2.2.3)."""
    if not math.isfinite(number):
        raise CanonicalJsonError(f"{number!r} is not a JSON number")
    if number == 0:
        return "0"  # also -0
    if number < 0:
        return "-" + format_number(-number)
    # repr gives the shortest digits that round-trip (closest to the value on a tie), as ES does
    sign, digits_tuple, exponent = Decimal(repr(number)).as_tuple()
    assert isinstance(exponent, int) and sign == 0
    digits = "".join(map(str, digits_tuple)).rstrip("0")
    exponent += len(digits_tuple) - len(digits)  # value = int(digits) × 10^exponent
    k = len(digits)
    n = k + exponent  # value = 0.digits × 10^n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    power = n - 1
    return f"{mantissa}e{'+' if power >= 0 else '-'}{abs(power)}"


def _utf16_key(name: str) -> bytes:
    return name.encode("utf-16-be", "surrogatepass")


def _write(value: Any, parts: list[str]) -> None:
    if value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, str):
        parts.append(json.dumps(value, ensure_ascii=False))  # escapes exactly what JCS escapes
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise CanonicalJsonError(f"integer {value} is beyond ±2^53: not exact as an IEEE 754 double")
        parts.append(format_number(float(value)))
    elif isinstance(value, float):
        parts.append(format_number(value))
    elif isinstance(value, dict):
        for name in value:
            if not isinstance(name, str):
                raise CanonicalJsonError(f"object member name {name!r} is not a string")
        parts.append("{")
        for index, name in enumerate(sorted(value, key=_utf16_key)):
            if index:
                parts.append(",")
            parts.append(json.dumps(name, ensure_ascii=False))
            parts.append(":")
            _write(value[name], parts)
        parts.append("}")
    elif isinstance(value, list | tuple):
        parts.append("[")
        for index, item in enumerate(value):
            if index:
                parts.append(",")
            _write(item, parts)
        parts.append("]")
    else:
        raise CanonicalJsonError(f"{type(value).__name__} is not a JSON value")
