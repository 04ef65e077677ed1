"""Rounding and comparing against limits, the way the standards' numbers are judged.

Lane vendors round every judged number half away from zero to the digits the
standard reports (percentages to 0.1, CO to 0.01 %, HC to 1 ppm, λ and K to
0.01) and only then compare it with an inclusive limit. Binary floats cannot
do that: 2.675 is stored as 2.67499999…, so `round(2.675, 2)` gives 2.67 and a
ratio computed in floats lands a hair below a boundary it sits on. Here every
number enters `Decimal` through its shortest repr (the digits a person reads),
ratios and means are computed in `Decimal`, and rounding uses ROUND_HALF_UP,
which in `Decimal` means half away from zero.

`Check` is the one shape every judged item takes in a verdict: the value as
judged, the limit with its clause and certainty, the comparison and the outcome.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from typing import Any, Literal

Number = float | int | Decimal | str
Comparison = Literal[">=", "<=", "<", "within"]
Outcome = Literal["pass", "fail", "not_judged"]

# Enough digits that a ratio of two sensor values never loses one that rounding needs.
_PRECISION = Context(prec=40)


def to_decimal(value: Number) -> Decimal:
    """The decimal a person reads in `value`: floats via their shortest repr (0.1 → 0.1)."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool):
        raise TypeError(f"expected a number, got the boolean {value!r}")
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value!r}")
        result = Decimal(repr(value))
    else:
        result = Decimal(value)
    if not result.is_finite():
        raise ValueError(f"expected a finite number, got {value!r}")
    return result


def round_half_away(value: Number, decimals: int) -> Decimal:
    """`value` rounded to `decimals` places, ties away from zero: 0.125 → 0.13, −0.125 → −0.13."""
    with localcontext(_PRECISION):
        return to_decimal(value).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)


def ratio_pct(numerator: Number, denominator: Number) -> Decimal:
    """numerator / denominator × 100, unrounded, in Decimal (so 5995 / 10000 is exactly 59.95)."""
    den = to_decimal(denominator)
    if den == 0:
        raise ValueError("a percentage of zero is undefined (denominator 0)")
    with localcontext(_PRECISION):
        return to_decimal(numerator) * 100 / den


def mean(values: Iterable[Number]) -> Decimal:
    """Arithmetic mean in Decimal of the decimals the values read as."""
    items = [to_decimal(v) for v in values]
    if not items:
        raise ValueError("the mean of no values is undefined")
    with localcontext(_PRECISION):
        return sum(items, Decimal(0)) / len(items)


def decimal_mean(values: Sequence[Decimal]) -> Decimal:
    """Arithmetic mean of values already in Decimal (a phase's or a point's seconds), at the judging
    precision; unlike `mean`, no conversion and no check: no values is Decimal's 0/0 error."""
    with localcontext(_PRECISION):
        return sum(values, Decimal(0)) / len(values)


def decimal_mean_or_none(values: Sequence[Decimal | None]) -> Decimal | None:
    """`decimal_mean` of the values present; None when none is (e.g. no rpm read in the phase)."""
    present = [v for v in values if v is not None]
    return decimal_mean(present) if present else None


def kg_from_n(force_n: Number) -> int:
    """A load in N as whole kilograms: N / 9.80665 rounded half away from zero."""
    with localcontext(_PRECISION):
        return int(round_half_away(to_decimal(force_n) / Decimal("9.80665"), 0))


def dan_from_n(force_n: Number) -> float:
    """A force in N as daN (N / 10), exact in decimal: 3050 N → 305.0 daN."""
    with localcontext(_PRECISION):
        return float(to_decimal(force_n) / 10)


def meets(value: Decimal, comparison: Comparison, limit: float | tuple[float, float]) -> bool:
    """Whether `value` meets an inclusive limit (`<` for the one strict "below" limit)."""
    if comparison == "within":
        if not isinstance(limit, tuple):
            raise TypeError("a 'within' comparison needs a (low, high) limit")
        low, high = limit
        return to_decimal(low) <= value <= to_decimal(high)
    if isinstance(limit, tuple):
        raise TypeError(f"a {comparison!r} comparison needs a single limit")
    bound = to_decimal(limit)
    if comparison == ">=":
        return value >= bound
    if comparison == "<=":
        return value <= bound
    return value < bound


@dataclass(frozen=True)
class Check:
    """One judged item: `value` (already rounded) against `limit`, and where the limit comes from.

    `outcome` is "not_judged" where the limits table has no value ("—"): the
    value is still reported. `basis` says in words what was divided by what,
    so a technician reading the result can redo the arithmetic.
    """

    item: str
    value: float | None
    unit: str
    comparison: Comparison | None
    limit: float | tuple[float, float] | None
    outcome: Outcome
    clause: str = ""
    certainty: str = ""
    source: str = ""
    basis: str = ""
    note: str = ""

    @property
    def passed(self) -> bool:
        """True unless the check failed (a not-judged item does not fail)."""
        return self.outcome != "fail"


def check_dict(c: Check) -> dict[str, Any]:
    """A check as the results carry it (JSON): `pass` is null where the item was not judged."""
    limit = list(c.limit) if isinstance(c.limit, tuple) else c.limit
    return {
        "item": c.item, "value": c.value, "unit": c.unit, "comparison": c.comparison, "limit": limit,
        "pass": None if c.outcome == "not_judged" else c.outcome == "pass", "outcome": c.outcome,
        "clause": c.clause, "certainty": c.certainty, "source": c.source, "basis": c.basis, "note": c.note,
    }
