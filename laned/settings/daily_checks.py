"""`[inspection.daily_checks]`: the settings of the daily checks of the gas analyzer and the dynamometer
(laned/daily_checks.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from laned.settings.dyno_checks import DynoCheckSettings
from laned.settings.two_speed_idle import HcResidueSettings


class DailyCheckSettings(BaseModel):
    """`[inspection.daily_checks]`: timings of the analyzer's daily checks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cap_wait_s: float = Field(10.0, ge=0, description="after the cap_probe prompt, before LEAK_CHECK (scaled)")
    ready_timeout_s: float = Field(900.0, gt=0, description="wait this long (real) for a warming analyzer")
    connect_timeout_s: float = Field(15.0, gt=0, description="CLI: wait this long for the analyzer to answer")
    analyzer_silence_s: float = Field(1.5, gt=0, description="no new reading this long (real): it dropped out")
    hc_residue: HcResidueSettings = Field(default_factory=HcResidueSettings)
    dynamometer: DynoCheckSettings = Field(default_factory=DynoCheckSettings,
                                           description="[inspection.daily_checks.dynamometer]: its self-checks")
