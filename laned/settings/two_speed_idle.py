"""`[inspection.two_speed_idle]`: the settings of the two-speed idle test and of its HC residue
check, which the daily checks run too (laned/procedures/two_speed_idle.py, laned/daily_checks.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from laned.settings import StandardTiming


class HcResidueSettings(BaseModel):
    """The HC residue check: pump on ambient air, then the mean HC must be below the limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    settle_s: float = Field(10.0, ge=0, description="on ambient air before measuring (scaled)")
    measure_s: float = Field(5.0, gt=0, description="HC is averaged over this (scaled)")
    min_measure_real_s: float = Field(0.5, gt=0, description="never average over less real time than this")
    timeout_s: float = Field(60.0, gt=0, description="keep purging this long for HC to fall below the limit (scaled)")


class TwoSpeedIdleSettings(BaseModel):
    """`[inspection.two_speed_idle]`: durations (scaled by time_scale) and thresholds of the test."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    precondition_share_of_rated: float = Field(0.70, gt=0, le=1, description="preconditioning speed / rated speed")
    precondition_tolerance_pct: float = Field(10.0, gt=0, description="± % of the preconditioning speed")
    precondition_s: float = Field(30.0, ge=0)
    high_idle_settle_s: float = Field(15.0, ge=0)
    idle_settle_s: float = Field(15.0, ge=0)
    measure_s: float = Field(30.0, gt=0, description="each measurement phase; its mean is the phase result")
    sample_interval_s: float = Field(1.0, gt=0, description="one row of process data (a one-second mean)")
    min_window_s: float = Field(0.25, gt=0, description="real time a row covers at least (small time_scale)")
    engine_speed_timeout_s: float = Field(60.0, gt=0, description="prompt to the engine speed in its band")
    probe_depth_mm: int = Field(400, gt=0, description="told to the driver: insert the probe this deep")
    probe_timeout_s: float = Field(60.0, gt=0, description="probe prompt to exhaust seen at the analyzer")
    exhaust_detect_co2_pct: float = Field(1.0, gt=0, description="CO2 above this: the probe draws exhaust")
    env_interval_s: float = Field(5.0, gt=0, description="READ_ENV this often for the process data")
    zero_when_due: bool = Field(True, description="zero the analyzer first when it flags 'zero due'")
    hc_residue_max_age_s: float = Field(
        600.0, ge=0, description="a passed HC residue check younger than this (wall clock) is not repeated"
    )
    hc_residue: HcResidueSettings = Field(default_factory=HcResidueSettings)
    analyzer_silence_s: float = Field(1.5, gt=0, description="no new reading this long (real): it dropped out")
    warmup_timeout_s: float = Field(900.0, gt=0, description="wait this long (real) for a warming analyzer")

    def standard_timings(self, prefix: str = "") -> tuple[StandardTiming, ...]:
        """The durations standards.md gives for the test (GB 18285-2018 App. A, vendor): 30 s
        preconditioning, 15 s settling before each phase, 30 s measurement per phase."""
        return tuple(
            StandardTiming(f"{prefix}{name}", float(getattr(self, name)), minimum, "s")
            for name, minimum in (
                ("precondition_s", 30.0),
                ("high_idle_settle_s", 15.0),
                ("idle_settle_s", 15.0),
                ("measure_s", 30.0),
            )
        )
