"""Judging: verdicts as pure functions of measured values and a limits table.

`limits` loads `config/limits/*.toml` (every value with its clause and
certainty) and applies the regulator's per-inspection overrides; `brakes`,
`emissions`, `asm` and `lug_down` judge against them (the last two as state
machines over per-second records); `rounding` holds the half-away-from-zero
rounding and the `Check` every judged item reports.
"""

from laned.judging.limits import (
    BrakeRowChoice,
    Limits,
    LimitsError,
    apply_overrides,
    load_limits,
    select_brake_row,
)
from laned.judging.rounding import Check, round_half_away

__all__ = [
    "BrakeRowChoice",
    "Check",
    "Limits",
    "LimitsError",
    "apply_overrides",
    "load_limits",
    "round_half_away",
    "select_brake_row",
]
