"""Tailpipe coupling: a vehicle on the dynamometer drives the gas analyzer's and the opacimeter's inlet.

While a vehicle is on the rollers the dynamometer simulator sends, at 10 Hz, to the
control socket of each exhaust simulator (simulators/control.py) the line

    {"do": "engine_state", "rpm": 2350.0, "load": 0.62, "power_kw": 11.4, "speed_kmh": 25.1}

— engine speed (r/min), load as delivered engine power over full-load power at this
speed (0..1), delivered power (kW) and roller speed (km/h). `EngineCoupling` keeps
the latest one; once none has arrived for ENGINE_STATE_TIMEOUT_S the simulator
falls back to its engine-mode behaviour (idle, high idle, free accelerations).

What the engine emits at an operating point is data in the vehicle file: an
operating-point map, `[exhaust.loaded]` for the gas analyzer and `[smoke.loaded]`
for the opacimeter, whose `points` are ordered along one `axis` (rpm, load,
speed_kmh or power_kw) and interpolated linearly, clamped at the ends:

    [exhaust.loaded]
    axis = "speed_kmh"
    points = [
      { at = 25, hc_ppm = 60, co_pct = 0.30, co2_pct = 14.5, o2_pct = 0.4, no_ppm = 450 },
      { at = 40, hc_ppm = 50, co_pct = 0.25, co2_pct = 14.6, o2_pct = 0.4, no_ppm = 420 },
    ]

With `scale_with_load = true` the points are full-load values (a diesel's smoke and
NOx curves by rpm at full throttle): at load L a value is idle + (point − idle) · L,
the idle values being the vehicle's `[exhaust.idle]` gases or `[smoke]` idle_k_m1.

The vehicle file's `[ambient]` (temp_c, rh_pct, baro_kpa) overrides the device's
ambient for READ_ENV / ENV, so a test case can fix the humidity correction.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

log = structlog.get_logger("simulators.tailpipe")

#: without an engine state for this long the simulator is back to its engine modes
ENGINE_STATE_TIMEOUT_S = 1.0
Axis = Literal["rpm", "load", "speed_kmh", "power_kw"]


class EngineState(BaseModel):
    """One `engine_state` control message (the `do` key removed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rpm: float = Field(ge=0, le=12000, description="engine speed, r/min")
    load: float = Field(ge=0, le=1, description="delivered engine power / full-load power at this rpm")
    power_kw: float = Field(description="delivered power, kW")
    speed_kmh: float = Field(ge=0, le=300, description="roller speed, km/h")

    def on(self, axis: Axis) -> float:
        """This operating point's coordinate on a map's axis."""
        return float(getattr(self, axis))


class EngineCoupling:
    """The latest engine state and when it came, on the simulator's own clock."""

    def __init__(self, device: str, timeout_s: float = ENGINE_STATE_TIMEOUT_S) -> None:
        self.device = device
        self.timeout_s = timeout_s
        self.state: EngineState | None = None
        self.received_at = float("-inf")
        self._was_active = False

    def receive(self, args: dict[str, Any], now: float) -> EngineState:
        """Take one message's fields; ValueError naming the bad field (the control socket answers it)."""
        try:
            state = EngineState.model_validate(args)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"engine_state: {problems}") from None
        if not self.active(now):
            log.info("sim_engine_coupled", device=self.device, rpm=state.rpm, load=state.load,
                     speed_kmh=state.speed_kmh)
        self.state, self.received_at, self._was_active = state, now, True
        return state

    def active(self, t: float) -> bool:
        return self.state is not None and t - self.received_at <= self.timeout_s

    def at(self, t: float) -> EngineState | None:
        """The engine state in force at time `t`, or None once it timed out (logged once)."""
        if self.active(t):
            return self.state
        if self._was_active:
            self._was_active = False
            log.info("sim_engine_uncoupled", device=self.device, silent_s=round(t - self.received_at, 2))
        return None

    def describe(self, t: float) -> dict[str, Any] | None:
        state = self.at(t)
        return None if state is None else state.model_dump() | {"age_s": round(t - self.received_at, 3)}


def interpolate(points: Sequence[tuple[float, dict[str, float]]], x: float) -> dict[str, float]:
    """Values at `x` on a piecewise-linear map of (at, values) points sorted by `at`; clamped at
    both ends (a point outside the map takes the nearest end's values)."""
    if x <= points[0][0]:
        return dict(points[0][1])
    for (x0, v0), (x1, v1) in itertools.pairwise(points):
        if x <= x1:
            share = (x - x0) / (x1 - x0)
            return {k: v0[k] + (v1[k] - v0[k]) * share for k in v0}
    return dict(points[-1][1])


class OperatingMap(BaseModel):
    """Base of `[exhaust.loaded]` and `[smoke.loaded]`: points along one axis, linear between them."""

    model_config = ConfigDict(extra="forbid")
    description: str = ""
    axis: Axis = Field(description="what `at` of each point is: rpm, load (0..1), speed_kmh or power_kw")
    scale_with_load: bool = Field(
        False, description="the points are full-load values: at load L the value is idle + (point - idle) * L"
    )

    @model_validator(mode="after")
    def _points_ordered(self) -> OperatingMap:
        points: list[Any] = getattr(self, "points", [])
        ats = [p.at for p in points]
        if not ats:
            raise ValueError("needs at least one point")
        if any(b <= a for a, b in itertools.pairwise(ats)):
            raise ValueError(f"points must be in increasing `at` ({self.axis}) without repeats, got {ats}")
        return self

    def values_at(self, state: EngineState, idle: dict[str, float] | None = None) -> dict[str, float]:
        """The map's values at this operating point; with `scale_with_load`, moved from `idle`
        (the engine's no-load values, required then) towards the map's by the load fraction."""
        points: list[Any] = getattr(self, "points", [])
        table = [(p.at, p.model_dump(exclude={"at"}, exclude_none=False)) for p in points]
        full = interpolate(table, state.on(self.axis))
        if not self.scale_with_load:
            return full
        if idle is None:
            raise ValueError("a map with scale_with_load needs the engine's idle values")
        return {k: idle[k] + (v - idle[k]) * state.load for k, v in full.items()}


class VehicleAmbient(BaseModel):
    """A vehicle file's `[ambient]`: the test's weather, as READ_ENV / ENV report it."""

    model_config = ConfigDict(extra="forbid")
    temp_c: float = Field(ge=-40, le=60)
    rh_pct: float = Field(ge=0, le=100)
    baro_kpa: float = Field(gt=50, lt=120)


def vehicle_ambient(data: dict[str, Any]) -> VehicleAmbient | None:
    """The vehicle file's `[ambient]`, validated, or None when it has none."""
    if "ambient" not in data:
        return None
    try:
        return VehicleAmbient.model_validate(data["ambient"])
    except ValidationError as exc:
        raise ValueError(f"{data.get('_path', 'vehicle file')} [ambient]: {exc}") from None
