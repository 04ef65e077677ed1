"""`[inspection.brake]`: the settings of the roller brake test (laned/procedures/brake.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from laned.settings import StandardTiming


class BrakeSettings(BaseModel):
    """`[inspection.brake]`: timings and thresholds of the roller brake test.

    Timeouts and pauses are multiplied by the lane's `time_scale`; `peak_hold_s`
    and `record_limit_s` are tester time (the brakes build up in real time; never
    scaled), like the one-second drag and load windows the standard fixes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    in_position_timeout_s: float = Field(60.0, gt=0, description="'drive on' prompt to IN_POSITION")
    drive_off_timeout_s: float = Field(60.0, gt=0, description="'drive off' prompt to IN_POSITION = 0")
    lift_timeout_s: float = Field(15.0, gt=0, description="LIFT written to LIFT_UP showing it")
    running_timeout_s: float = Field(10.0, gt=0, description="MOTORS = 1 to STATE RUNNING")
    drag_settle_s: float = Field(0.5, ge=0, description="after RUNNING, before the one-second drag window")
    brake_timeout_s: float = Field(15.0, gt=0, description="'brake now' prompt to the start of braking")
    record_limit_s: float = Field(20.0, gt=0, description="longest braking record after the prompt (not scaled)")
    peak_hold_s: float = Field(0.5, gt=0, description="tester time without a rise: the peak has passed")
    peak_rise_n: float = Field(20.0, ge=0, description="a rise smaller than this is noise, not a rise")
    load_steady_n: float = Field(100.0, ge=0, description="wheel load spread allowed over the weighing second")
    load_steady_pct: float = Field(2.0, ge=0, description="... or this % of the load, whichever is larger")
    load_timeout_s: float = Field(10.0, gt=0, description="to get one steady weighing second")
    stop_confirm_s: float = Field(30.0, gt=0, description="after a failure: keep trying MOTORS = 0 this long")
    live_interval_s: float = Field(0.1, gt=0, description="curve samples to …/live/{device} this often")
    curve_poll_s: float = Field(0.05, gt=0, description="how often the procedure looks at the curve")

    def standard_timings(self, prefix: str = "") -> tuple[StandardTiming, ...]:
        """None: the windows the standard fixes (one second of drag before the prompt, one second
        of load before the motors) are fixed in the judging, not settings; these are the lane's own."""
        return ()
