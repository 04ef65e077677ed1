"""`[inspection.lug_down]`: the settings of the lug-down test (GB 3847-2018 Appendix B).

standards.md calls these `lug.*`: every number of the method that is not firm is
a setting with the spec's value as its default, and its description says how
sure it is. The limits (K at 100 % and 80 %, NOx at 80 %, the minimum power)
are in config/limits/emissions.toml. This module imports nothing of the
procedures' I/O: the pure judging (laned/judging/lug_down.py) and the config use it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from laned.settings import StandardTiming


class LugDownSettings(BaseModel):
    """`[inspection.lug_down]`: scan start, power scan, measurement points and the checks' actions.

    Durations are whole seconds of the dynamometer's per-second grid; `standard_timings()` names
    the ones the standard fixes (shortening them needs `laned run --simulation`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gear_target_speed_kmh: float = Field(
        70.0, gt=0, description="told to the driver: the gear whose full-throttle speed is nearest this (unconfirmed)"
    )
    start_speed_min_kmh: float = Field(
        40.0, ge=0, description="the scan starts at or above this (unconfirmed; a vendor uses 60)"
    )
    start_speed_max_kmh: float = Field(100.0, gt=0, description="… and at or below this (unconfirmed)")
    start_steady_kmh: float = Field(
        0.5, ge=0, description="steady: the last seconds' speeds within this of each other (unconfirmed)"
    )
    start_steady_s: int = Field(3, ge=1, description="… over this many consecutive seconds (unconfirmed)")
    wrong_gear_outside_s: int = Field(
        60, ge=1, description="this many consecutive seconds outside the start range: void, wrong gear (unconfirmed)"
    )
    start_timeout_s: int = Field(120, ge=1, description="no scan start this long after the prompt: void (unconfirmed)")
    scan_rate_kmh_s: float = Field(2.0, gt=0, description="SPEED_RAMP of the power scan (vendor: Nanhua 2.0)")
    scan_floor_kmh: float = Field(20.0, ge=0, description="SPEED_TARGET the scan ramps towards (vendor)")
    scan_end_fraction: float = Field(
        0.75, gt=0, lt=1, description="the scan ends at the first second with v ≤ this × VelMaxHP (vendor)"
    )
    scan_max_s: int = Field(60, ge=3, description="a scan needing more seconds than this is void (unconfirmed)")
    scan_min_max_second: int = Field(
        3, ge=1, description="the maximum power must be in scan second this or later, else void (unconfirmed)"
    )
    power_correction: Literal["none"] = Field(
        "none", description="ambient power correction of Pmax: 'none' gives PF = 1.00 (formula not yet confirmed)"
    )
    max_rpm_deviation_pct: float = Field(
        10.0, ge=0, description="MaxRPM within ± this % of the rated speed (unconfirmed)"
    )
    rpm_check: Literal["flag", "void", "off"] = Field(
        "flag", description="a MaxRPM outside that, or an RPM signal lost in a point: 'flag' (warn), 'void' or 'off'"
    )
    rpm_lost_s: int = Field(
        3, ge=0, description="more consecutive seconds than this without RPM in a point: lost (vendor)"
    )
    point_speed_tolerance_kmh: float = Field(
        1.0, gt=0, description="a point's second is stable within ± this (unconfirmed)"
    )
    settle_s: int = Field(3, ge=1, description="stable seconds before a point's measuring window (vendor: Nanhua 3)")
    measure_s: int = Field(3, ge=1, description="a point's measuring window (vendor: Nanhua 3)")
    point_timeout_s: int = Field(
        30, ge=1, description="a point not complete this long after its target's write: void (unconfirmed)"
    )
    idle_rpm_s: int = Field(3, ge=1, description="idle speed: mean over this long before the test (vendor: Nanhua 3)")
    oil_temp_min_c: float = Field(80.0, description="oil temperature needed where measured (vendor)")
    oil_temp_check: bool = Field(True, description="false skips the oil temperature check")
    oil_temp_timeout_s: float = Field(
        600.0, gt=0, description="after the warm-up prompt, wait this long (scaled) for the oil to reach "
        "oil_temp_min_c, else the item is not completed (unconfirmed)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> LugDownSettings:
        if self.start_speed_min_kmh > self.start_speed_max_kmh:
            raise ValueError(f"start_speed_min_kmh {self.start_speed_min_kmh} is above start_speed_max_kmh")
        if self.settle_s + self.measure_s > self.point_timeout_s:
            raise ValueError("settle_s + measure_s do not fit in point_timeout_s")
        if self.scan_min_max_second > self.scan_max_s:
            raise ValueError("scan_min_max_second is beyond scan_max_s")
        return self

    def standard_timings(self, prefix: str = "") -> tuple[StandardTiming, ...]:
        """What standards.md fixes for the points (GB 3847-2018 App. B, vendor): 3 stable
        seconds of settling, then a 3 s measuring window."""
        return tuple(
            StandardTiming(f"{prefix}{name}", float(getattr(self, name)), minimum, "s")
            for name, minimum in (("settle_s", 3.0), ("measure_s", 3.0))
        )
