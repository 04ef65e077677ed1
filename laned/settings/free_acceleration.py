"""`[inspection.free_acceleration]`: the settings of the free acceleration test
(laned/procedures/free_acceleration.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from laned.settings import StandardTiming


class FreeAccelerationSettings(BaseModel):
    """`[inspection.free_acceleration]`: the test's pauses, thresholds and what to do when an
    acceleration stays under governed speed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    purge_accelerations: int = Field(3, ge=0, description="free accelerations that purge the exhaust first")
    governed_min_share_of_rated: float = Field(
        0.9, gt=0, le=1.5, description="top speed needed, as a share of the rated speed in the start command"
    )
    governed_min_rpm: int | None = Field(None, gt=0, description="top speed needed, r/min (overrides the share)")
    below_governed: Literal["repeat", "flag"] = Field(
        "repeat", description="an acceleration under governed speed: make it again, or count it and flag it"
    )
    max_repeats: int = Field(2, ge=0, description="repeats allowed for accelerations under governed speed")
    zero_before_test: bool = True
    idle_between_s: float = Field(5.0, ge=0, description="engine at idle between accelerations (scaled)")
    start_rise_rpm: float = Field(300.0, gt=0, description="this far above idle: the acceleration has begun")
    idle_return_rpm: float = Field(300.0, gt=0, description="back within this of idle: the acceleration is over")
    start_timeout_s: float = Field(15.0, gt=0, description="prompt to the engine speed rising (real seconds)")
    acceleration_timeout_s: float = Field(20.0, gt=0, description="rise to back at idle (real seconds)")
    sample_interval_s: float = Field(1.0, gt=0, description="one row of process data")
    min_window_s: float = Field(0.25, gt=0, description="real time a row covers at least (small time_scale)")
    meter_silence_s: float = Field(1.5, gt=0, description="no new reading this long (real): it dropped out")
    warmup_timeout_s: float = Field(600.0, gt=0, description="wait this long (real) for a warming meter")

    def standard_timings(self, prefix: str = "") -> tuple[StandardTiming, ...]:
        """What standards.md fixes for the test (GB 3847-2018 App. A): three purging free
        accelerations before the measured ones (their count is in the limits table, not here)."""
        return (StandardTiming(f"{prefix}purge_accelerations", float(self.purge_accelerations), 3.0, "accelerations"),)
