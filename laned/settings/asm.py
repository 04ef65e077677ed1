"""`[inspection.asm]`: the settings of the steady-state ASM test (GB 18285-2018 Appendix B).

Every number standards.md gives for the method that is not firm is a setting
here with the spec's value as its default, and its description says how sure
the value is (firm / vendor / unconfirmed), so a lane can correct one without a
release. The limits themselves (CO, HC, NO per phase and limit set) are in
config/limits/emissions.toml. This module imports nothing of the procedures'
I/O: the pure judging (laned/judging/asm.py) and the config use it.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from laned.judging.rounding import to_decimal
from laned.settings import StandardTiming

#: the fuels the ASM method takes (protocols.messages.Fuel) and which fuel factor each uses
FUEL_FACTOR_OF = {
    "gasoline": "fuel_factor_gasoline",
    "hybrid_gasoline": "fuel_factor_gasoline",
    "cng": "fuel_factor_natural_gas",
    "lpg": "fuel_factor_lpg",
}


class AsmSettings(BaseModel):
    """`[inspection.asm]`: loads, tolerances, phase timing, restarts and void rules of the ASM test.

    Durations are whole seconds of the dynamometer's per-second grid; `standard_timings()` names
    the ones the standard fixes (shortening them needs `laned run --simulation`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    load_divisor_5025: float = Field(148.0, gt=0, description="P5025 = RM / this, kW (vendor: Nanhua's files)")
    load_divisor_2540: float = Field(185.0, gt=0, description="P2540 = RM / this, kW (vendor: Nanhua's files)")
    reference_mass_add_kg: float = Field(
        100.0, ge=0, description="RM = curb mass + this (firm: HJ/T 291-2006 §3.3)"
    )
    fuel_factor_gasoline: float = Field(4.644, gt=0, description="a of the dilution factor, gasoline (vendor)")
    fuel_factor_natural_gas: float = Field(6.64, gt=0, description="a of the dilution factor, CNG (unconfirmed)")
    fuel_factor_lpg: float = Field(5.39, gt=0, description="a of the dilution factor, LPG (unconfirmed)")
    speed_tolerance_kmh: float = Field(2.0, gt=0, description="in tolerance: mean speed within ± this (vendor)")
    force_tolerance_pct: float = Field(
        5.0, gt=0, description="in tolerance: mean force within ± this % of FORCE_TARGET (unconfirmed; a vendor: 10)"
    )
    stabilise_s: int = Field(5, ge=1, description="consecutive in-tolerance seconds before the clock starts (vendor)")
    response_s: int = Field(10, ge=0, description="t = 1 … this: recorded, not judged (vendor)")
    fast_window_s: int = Field(10, ge=1, description="the fast check averages the next this many seconds (vendor)")
    phase_s: int = Field(90, ge=1, description="the phase result is due at t = this (vendor)")
    result_window_s: int = Field(
        10, ge=1, description="the phase result: mean over the last this many seconds (unconfirmed: window position)"
    )
    moving_average_s: int = Field(10, ge=1, description="recorded moving averages of the corrected gases (vendor)")
    fast_pass_pct: float = Field(50.0, gt=0, description="fast pass: every fast mean ≤ this % of its limit (vendor)")
    fast_fail_pct: float = Field(
        500.0, gt=0, description="fast fail: any fast mean > this % of its limit (unconfirmed)"
    )
    fast_pass_5025_ends_test: bool = Field(
        True, description="a fast pass at ASM5025 passes the test and ASM2540 is not run (vendor: Nanhua, on)"
    )
    restart_consecutive_s: int = Field(
        2, ge=1, description="this many consecutive out-of-tolerance seconds restart the clock (vendor)"
    )
    restart_cumulative_s: int = Field(
        5, ge=1, description="this many out-of-tolerance seconds since t = 0 restart the clock (vendor)"
    )
    max_restarts: int = Field(3, ge=0, description="restarts a phase may need; one more voids the test (unconfirmed)")
    max_phase_s: int = Field(
        180, ge=1, description="seconds from load-on to the phase's decision, else void (unconfirmed)"
    )
    co_co2_min_pct: dict[str, float] = Field(
        default_factory=lambda: {"gasoline": 6.0, "hybrid_gasoline": 6.0, "lpg": 6.0, "cng": 6.0},
        description="raw CO + CO2 of a second below this voids the test (diluted sample), by fuel "
        "(firm for gasoline: exam text and Nanhua's COCO2Min; the other fuels unconfirmed)",
    )
    stall_rpm: float = Field(300.0, ge=0, description="engine speed below this … (unconfirmed)")
    stall_s: int = Field(2, ge=1, description="… for this many consecutive seconds is a stall: void (unconfirmed)")
    oil_temp_min_c: float = Field(80.0, description="oil temperature needed where a probe is fitted (vendor: Nanhua)")
    oil_temp_check: bool = Field(True, description="false skips the oil temperature check")
    oil_temp_timeout_s: float = Field(
        600.0, gt=0, description="after the warm-up prompt, wait this long (scaled) for the oil to reach "
        "oil_temp_min_c, else the item is not completed (unconfirmed)"
    )
    precondition_wait_min: float = Field(
        20.0, ge=0, description="precondition a vehicle that waited longer than this (vendor: exam text)"
    )
    precondition_engine_off_min: float = Field(
        5.0, ge=0, description="… or whose engine was off longer than this (vendor: exam text)"
    )
    precondition_rpm: float = Field(2500.0, gt=0, description="preconditioning without load at this speed (vendor)")
    precondition_unloaded_s: int = Field(240, ge=0, description="… for this long (vendor)")
    precondition_asm5025_s: int = Field(60, ge=0, description="or this long of ASM5025 on the dynamometer (vendor)")

    @model_validator(mode="after")
    def _phase_fits(self) -> AsmSettings:
        fast_at = self.response_s + self.fast_window_s
        if fast_at > self.phase_s:
            raise ValueError(
                f"the fast check at t = {fast_at} (response_s + fast_window_s) is after phase_s = {self.phase_s}"
            )
        for name in ("result_window_s", "moving_average_s"):
            if getattr(self, name) > self.phase_s:
                raise ValueError(f"{name} = {getattr(self, name)} is longer than phase_s = {self.phase_s}")
        if self.max_phase_s < self.stabilise_s + self.phase_s:
            raise ValueError(
                f"max_phase_s = {self.max_phase_s} leaves no time for stabilise_s + phase_s = "
                f"{self.stabilise_s + self.phase_s}"
            )
        return self

    @property
    def fast_check_t(self) -> int:
        """The phase clock's second at which the fast check decides (t = 20 by default)."""
        return self.response_s + self.fast_window_s

    def fuel_factor(self, fuel: str) -> Decimal:
        """a of the dilution factor for `fuel`; ValueError for a fuel the ASM method does not take."""
        name = FUEL_FACTOR_OF.get(fuel)
        if name is None:
            raise ValueError(f"the ASM method has no fuel factor for {fuel!r} (takes: {', '.join(FUEL_FACTOR_OF)})")
        return to_decimal(getattr(self, name))

    def co_co2_min(self, fuel: str) -> Decimal:
        """The dilution threshold (raw CO + CO2, %) for `fuel`; ValueError naming the setting if missing."""
        if fuel not in self.co_co2_min_pct:
            have = ", ".join(sorted(self.co_co2_min_pct)) or "none"
            raise ValueError(f"inspection.asm.co_co2_min_pct has no value for {fuel!r} (have: {have})")
        return to_decimal(self.co_co2_min_pct[fuel])

    def standard_timings(self, prefix: str = "") -> tuple[StandardTiming, ...]:
        """What standards.md fixes for each phase (GB 18285-2018 App. B, vendor): 5 s in
        tolerance before the clock, t = 1 … 10 response, the fast check over t = 11 … 20, the
        phase result at t = 90 over a 10 s window."""
        return tuple(
            StandardTiming(f"{prefix}{name}", float(getattr(self, name)), minimum, "s")
            for name, minimum in (
                ("stabilise_s", 5.0),
                ("response_s", 10.0),
                ("fast_window_s", 10.0),
                ("phase_s", 90.0),
                ("result_window_s", 10.0),
            )
        )
