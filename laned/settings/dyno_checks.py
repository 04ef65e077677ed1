"""`[inspection.daily_checks.dynamometer]`: the dynamometer's self-checks (laned/daily_checks_dyno.py).

The speeds, load, limit and bands come from one lane's vendor daily record
(spec/devices/dynamometer.md "Self-checks"); HJ/T 291 may allow other values
(unconfirmed), so every one of them is a setting.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: the vendor's parasitic-loss bands: (v_hi, v_lo, v_nominal) km/h
DEFAULT_BANDS: tuple[tuple[float, float, float], ...] = (
    (54.0, 46.0, 50.0), (48.0, 32.0, 40.0), (40.0, 24.0, 32.0), (33.0, 17.0, 25.0), (19.0, 13.0, 16.0),
)


class DynoCheckSettings(BaseModel):
    """Loaded coast-down and parasitic loss of the chassis dynamometer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    motor_speed_kmh: float = Field(60.0, gt=0, description="the drive motor spins the rollers up to this")
    at_speed_within_kmh: float = Field(1.0, gt=0, description="the motor is cut once SPEED is this close")
    coast_v1_kmh: float = Field(50.0, gt=0, description="loaded coast-down: timed from this speed …")
    coast_v2_kmh: float = Field(30.0, gt=0, description="… down to this one")
    coast_power_kw: float = Field(18.0, gt=0, description="P_cd: POWER_TARGET during the loaded coast-down")
    coast_limit_pct: float = Field(4.0, gt=0, description="pass if |ACDT − CCDT| / CCDT ≤ this (vendor 4 %)")
    bands: list[tuple[float, float, float]] = Field(
        default_factory=lambda: [(b[0], b[1], b[2]) for b in DEFAULT_BANDS], min_length=3,
        description="parasitic-loss bands [v_hi, v_lo, v_nominal] km/h (at least 3 for the quadratic fit)")
    parasitic_until_kmh: float = Field(10.0, ge=0, description="parasitic coast: the rollers coast down to this")
    parasitic_tolerance_kw: float = Field(0.1, ge=0, description="fit reproduces each band within this or …")
    parasitic_tolerance_pct: float = Field(10.0, ge=0, description="… this percentage, whichever is larger")
    write_coefficients: bool = Field(True, description="write the fitted PL_A…PL_C when the parasitic check passes")
    run_up_timeout_s: float = Field(60.0, gt=0, description="the motor reaches its speed within this (real)")
    coast_timeout_s: float = Field(300.0, gt=0, description="a coast ends within this (real)")
    lift_timeout_s: float = Field(15.0, gt=0, description="the lift is down within this (real)")
    stop_timeout_s: float = Field(30.0, gt=0, description="the rollers stop within this once braked (real)")

    @model_validator(mode="after")
    def _speeds(self) -> DynoCheckSettings:
        if not self.coast_v2_kmh < self.coast_v1_kmh < self.motor_speed_kmh - self.at_speed_within_kmh:
            raise ValueError("need coast_v2_kmh < coast_v1_kmh < motor_speed_kmh − at_speed_within_kmh")
        for hi, lo, nominal in self.bands:
            if not (self.parasitic_until_kmh < lo < nominal < hi < self.motor_speed_kmh - self.at_speed_within_kmh):
                raise ValueError(f"band {hi:g} → {lo:g} (nominal {nominal:g}) km/h: need parasitic_until_kmh < v_lo "
                                 "< v_nominal < v_hi < the motor's speed")
        return self
