"""Rounding half away from zero from the value's decimal digits, and the comparisons."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from laned.judging.rounding import (
    dan_from_n,
    kg_from_n,
    mean,
    meets,
    ratio_pct,
    round_half_away,
)


@pytest.mark.parametrize(
    ("value", "decimals", "expected"),
    [
        (0.125, 2, "0.13"),  # float 0.125 is exact; tie goes away from zero
        (2.675, 2, "2.68"),  # float is 2.67499999…; the repr "2.675" is what is rounded
        (-0.125, 2, "-0.13"),  # away from zero, not up
        (1.005, 2, "1.01"),  # float 1.00499999…; built-in round() says 1.0
        (59.95, 1, "60.0"),
        (59.94, 1, "59.9"),
        (0.5, 0, "1"),
        (-0.5, 0, "-1"),
        (2.5, 0, "3"),  # not banker's rounding (round(2.5) == 2)
        (1.2049, 2, "1.20"),
        (7, 1, "7.0"),
        ("0.045", 2, "0.05"),
    ],
)
def test_round_half_away_rounds_ties_away_from_zero_from_the_decimal_digits(value, decimals, expected):
    assert round_half_away(value, decimals) == Decimal(expected)


def test_ratio_pct_is_exact_in_decimal_at_a_rounding_tie():
    # 5995 / 10000 × 100 = 59.95 exactly (floats give 59.949999…), which rounds to 60.0
    assert ratio_pct(5995, 10000) == Decimal("59.95")
    assert round_half_away(ratio_pct(5995, 10000), 1) == Decimal("60.0")


def test_ratio_pct_of_zero_denominator_is_an_error():
    with pytest.raises(ValueError, match="denominator 0"):
        ratio_pct(1, 0)


def test_mean_is_the_decimal_mean_of_the_values_as_read():
    # (1.204 + 1.205 + 1.206) / 3 = 3.615 / 3 = 1.205 exactly
    assert mean([1.204, 1.205, 1.206]) == Decimal("1.205")


@pytest.mark.parametrize(
    ("force_n", "expected_kg"),
    [
        (8826, 900),  # 8826 / 9.80665 = 900.0015… → 900
        (4413, 450),  # 4413 / 9.80665 = 450.0007… → 450
        (985.568325, 101),  # = 100.5 × 9.80665 exactly: a tie, away from zero → 101
        (985.56, 100),  # 100.4999… → 100
    ],
)
def test_kg_from_n_divides_by_standard_gravity_and_rounds_to_whole_kg(force_n, expected_kg):
    assert kg_from_n(force_n) == expected_kg


def test_dan_from_n_is_n_over_ten():
    assert dan_from_n(3050) == 305.0
    assert dan_from_n(2994.5) == 299.45


@pytest.mark.parametrize(
    ("value", "comparison", "limit", "expected"),
    [
        ("60.0", ">=", 60.0, True),  # limits inclusive
        ("59.9", ">=", 60.0, False),
        ("0.30", "<=", 0.3, True),  # Decimal 0.30 vs float 0.3 (0.2999…): compared as 0.3
        ("0.31", "<=", 0.3, False),
        ("20", "<", 20.0, False),  # the one strict "below" limit
        ("19", "<", 20.0, True),
        ("0.95", "within", (0.95, 1.05), True),
        ("1.05", "within", (0.95, 1.05), True),
        ("1.06", "within", (0.95, 1.05), False),
    ],
)
def test_meets_compares_inclusively_against_the_limit_as_written(value, comparison, limit, expected):
    assert meets(Decimal(value), comparison, limit) is expected


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), st.integers(min_value=0, max_value=4))
def test_round_half_away_is_symmetric_and_within_half_a_unit(value, decimals):
    rounded = round_half_away(value, decimals)
    assert round_half_away(-value, decimals) == -rounded
    assert abs(rounded - Decimal(repr(value))) <= Decimal(1).scaleb(-decimals) / 2
