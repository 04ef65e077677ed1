"""The settings of the lane's procedures and checks, one module each, beside nothing else.

`[inspection.*]` of the lane config: the models here import pydantic and the
standard library only (asm.py also the pure rounding of laned/judging), so
laned/config.py assembles them without importing the procedures, and the
procedures, the judging and the daily checks read the one model they use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StandardTiming:
    """A procedure setting for which the standard fixes a least value (standards.md): a duration
    or a count. `key` is its path in the lane's config, e.g. `inspection.two_speed_idle.measure_s`.
    A production lane refuses to run with `value` below `standard_min` (see laned.config)."""

    key: str
    value: float
    standard_min: float
    unit: str

    @property
    def shortened(self) -> bool:
        return self.value < self.standard_min

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "standard_min": self.standard_min, "unit": self.unit}
