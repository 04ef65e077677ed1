"""Simulated OP-1 opacimeter on a pty: warm-up, zero, free accelerations, peak registers, faults.

The meter updates at 20 Hz (SEQ +1 each time). Its K is the raw smoke through a
Bessel filter with a 0.5 s response, approximated as in the UN ECE R24/R49 smoke
algorithm: one second-order Bessel section applied twice, its time constant
chosen so that a step rises from 10 % to 90 % in 0.5 s. N follows from K
through L = 0.430 m, so every reading is consistent. A free acceleration starts
on the control action `{"do": "accelerate"}`: RPM rises to the governed speed
within about 1 s, is held, and falls back to idle; the raw smoke rises in
0.6 s and decays over a few seconds, scaled so that the *filtered* peak equals
the vehicle's next `peak_k_m1`. The physics advances lazily, tick by tick, up
to the time of each request, so it is deterministic for a given seed.

The vehicle's `[smoke]` table (config/vehicles/*.toml) gives idle and governed
speed, oil temperature, noise, and one entry per acceleration in order: the
purges, then the measured ones (after the last entry the last one repeats). An
entry's `max_rpm` below the governed speed is an acceleration that does not
reach governed speed. Device defaults (warm-up, zero time, ambient) are in
config/simulators/opacimeter.toml.

Tailpipe coupling (simulators/tailpipe.py): while the dynamometer simulator sends
engine states (`{"do": "engine_state", ...}`) the raw smoke is the vehicle's
`[smoke.loaded]` map at that operating point (idle_k_m1 without a map) and RPM
is the engine's; the filter, N and the peak registers work as ever. The
vehicle file's `[ambient]` overrides ENV's weather.

Faults: the shared ones of simulators/line.py, plus `error_reply` (every
command answered `15 ERR`, ERR from the fault's `code`, default busy),
`frozen_seq` (the firmware repeats its last REALTIME) and `zero_fails`.

`{"do": "set", "oil_temp_k": 330}` changes the oil probe's reading live (null: no probe), so a
test can bring a cold engine that warms up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, model_validator

from protocols import opacimeter as op
from protocols.datafiles import CONFIG_DIR
from simulators.control import ControlServer
from simulators.line import SHARED_FAULTS, LateReply, LineTiming, PacedSerialServer
from simulators.tailpipe import EngineCoupling, EngineState, OperatingMap, vehicle_ambient
from simulators.vehicle import load_vehicle_file

log = structlog.get_logger("simulators.opacimeter")

DEFAULT_SETTINGS = CONFIG_DIR / "simulators" / "opacimeter.toml"
FAULTS = SHARED_FAULTS | {"error_reply", "frozen_seq", "zero_fails"}

TICK_S = 0.05  # the meter's 20 Hz internal update
FILTER_RESPONSE_S = 0.5  # 10-90 % step response of the Bessel filter
_RISE_PER_TF = 1.536  # that response in units of the R49 algorithm's t_F (two sections)

# free acceleration timing (s): the driver floors the throttle, holds, releases
RPM_RISE_S, RPM_HOLD_S, RPM_FALL_TAU_S = 0.8, 1.2, 0.7
SMOKE_RISE_S, SMOKE_DECAY_TAU_S = 0.6, 0.8
ACCELERATION_LENGTH_S = 8.0  # after this the engine is back at idle


# ----- data: the vehicle's [smoke] table and the device's defaults -------------------


class SmokeAcceleration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    peak_k_m1: float = Field(ge=0, le=10, description="peak of the filtered K, 1/m")
    max_rpm: int | None = Field(None, gt=0, description="top speed if below governed")


class LoadedSmokePoint(BaseModel):
    """One operating point of `[smoke.loaded]`: the raw smoke where the map's axis reads `at`."""

    model_config = ConfigDict(extra="forbid")
    at: float
    k_m1: float = Field(ge=0, le=10, description="raw (unfiltered) K, 1/m")


class LoadedSmoke(OperatingMap):
    """`[smoke.loaded]`: smoke under load by operating point, while the dynamometer sends engine
    states (simulators/tailpipe.py)."""

    points: list[LoadedSmokePoint] = Field(min_length=1)


class SmokeTable(BaseModel):
    """The `[smoke]` table of a vehicle file."""

    model_config = ConfigDict(extra="forbid")

    idle_rpm: int = Field(gt=0)
    governed_rpm: int = Field(gt=0)
    idle_k_m1: float = Field(0.05, ge=0, le=10)
    oil_temp_k: int | None = Field(None, gt=200, lt=500, description="omit: no oil probe")
    noise_k_m1: float = Field(0.005, ge=0, le=0.5)
    noise_rpm: float = Field(5.0, ge=0)
    accelerations: list[SmokeAcceleration] = Field(min_length=1)
    loaded: LoadedSmoke | None = None

    @model_validator(mode="after")
    def _plausible(self) -> SmokeTable:
        if self.governed_rpm <= self.idle_rpm:
            raise ValueError(f"governed_rpm {self.governed_rpm} must exceed idle_rpm {self.idle_rpm}")
        for i, acc in enumerate(self.accelerations, 1):
            if acc.peak_k_m1 < self.idle_k_m1:
                raise ValueError(f"acceleration {i}: peak_k_m1 below idle_k_m1 {self.idle_k_m1}")
        return self


class _Timings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    warmup_s: float | None = Field(None, ge=0)
    zero_s: float | None = Field(None, gt=0)


class MeterSettings(BaseModel):
    """config/simulators/opacimeter.toml; `[fast]` replaces the times under --fast."""

    model_config = ConfigDict(extra="forbid")

    warmup_s: float = Field(3.0, ge=0)
    zero_s: float = Field(2.5, gt=0, le=10)
    reply_delay_s: float = Field(0.010, ge=0, le=0.1)
    ambient_temp_k: float = Field(294.6, gt=200, lt=400)
    rh_pct: float = Field(55.3, ge=0, le=100)
    baro_kpa: float = Field(100.8, gt=50, lt=120)
    fast: _Timings = _Timings(warmup_s=None, zero_s=None)

    def fast_timings(self) -> MeterSettings:
        return self.model_copy(update=self.fast.model_dump(exclude_none=True))


def load_meter_settings(path: str | Path | None = None, *, fast: bool = False) -> MeterSettings:
    with Path(path or DEFAULT_SETTINGS).open("rb") as fh:
        settings = MeterSettings.model_validate(tomllib.load(fh))
    return settings.fast_timings() if fast else settings


def load_smoke(vehicle: str | Path) -> tuple[SmokeTable, str]:
    """The `[smoke]` table of a vehicle file, and the file's path."""
    data = load_vehicle_file(vehicle)
    if "smoke" not in data:
        raise ValueError(f"{data['_path']}: no [smoke] table, so the opacimeter cannot meet it")
    return SmokeTable.model_validate(data["smoke"]), str(data["_path"])


# ----- physics --------------------------------------------------------------------------


class BesselFilter:
    """Two cascaded second-order Bessel sections (UN ECE R49's smoke filter) at 20 Hz."""

    def __init__(self, value: float = 0.0, response_s: float = FILTER_RESPONSE_S) -> None:
        t_f = response_s / _RISE_PER_TF
        damping = 0.618034
        omega = 1.0 / math.tan(math.pi * TICK_S * math.pi / (10.0 * t_f))
        self._e = 1.0 / (1.0 + omega * math.sqrt(3.0 * damping) + damping * omega * omega)
        self._k = 2.0 * self._e * (damping * omega * omega - 1.0) - 1.0
        self.reset(value)

    def reset(self, value: float) -> None:
        """Settle on `value`: inputs and outputs of both sections equal it."""
        self._state = [[value] * 4 for _ in range(2)]  # per section: s1, s2, y1, y2

    def step(self, x: float) -> float:
        for section in self._state:
            s1, s2, y1, y2 = section
            y = y1 + self._e * (x + 2 * s1 + s2 - 4 * y2) + self._k * (y1 - y2)
            section[:] = [x, s1, y, y1]
            x = y
        return x


def _smoke_shape(tau_s: float) -> float:
    """The raw smoke pulse of one free acceleration, peak 1, `tau_s` after the throttle."""
    if tau_s < 0:
        return 0.0
    if tau_s < SMOKE_RISE_S:
        return math.sin(math.pi / 2 * tau_s / SMOKE_RISE_S) ** 2
    return math.exp(-(tau_s - SMOKE_RISE_S) / SMOKE_DECAY_TAU_S)


def _filtered_peak_gain() -> float:
    """The filtered peak of a unit raw pulse, sampled on the meter's ticks."""
    bessel = BesselFilter()
    return max(bessel.step(_smoke_shape(i * TICK_S)) for i in range(int(ACCELERATION_LENGTH_S / TICK_S)))


_PEAK_GAIN = _filtered_peak_gain()


@dataclass
class _Acceleration:
    started_s: float
    smoke_k_m1: float  # amplitude of the raw pulse
    from_rpm: float
    top_rpm: float


class SmokeModel:
    """Engine speed and smoke of the vehicle, and the meter's filtered K, N and peak registers."""

    def __init__(
        self,
        smoke: SmokeTable,
        *,
        seed: int | None = None,
        engine_state: Callable[[float], EngineState | None] | None = None,
    ) -> None:
        self.smoke = smoke
        self._engine_state = engine_state  # model time (s) -> the dynamometer's engine state then
        self.rng = random.Random(seed)
        self.ticks = 0
        self.seq = 0
        self.accelerations_done = 0
        self._acc: _Acceleration | None = None
        self._bessel = BesselFilter(smoke.idle_k_m1)
        self._rpm = float(smoke.idle_rpm)
        self.reading = self._measure(smoke.idle_k_m1)
        self.peak = op.PeakReading(self.reading.opacity_pct, self.reading.k_m1, self.reading.rpm)

    @property
    def now_s(self) -> float:
        return self.ticks * TICK_S

    def advance(self, ticks: int) -> None:
        """Run `ticks` internal updates; a long idle stretch jumps SEQ and settles the physics."""
        if ticks > 1200:
            skipped = ticks - 1200
            self.ticks += skipped
            self.seq = (self.seq + skipped) & 0xFFFF
            ticks = 1200
        for _ in range(ticks):
            self._tick()

    def accelerate(self, peak_k_m1: float | None = None, max_rpm: int | None = None) -> dict[str, Any]:
        """Floor the throttle at the next tick; the filtered K will peak at the planned value."""
        plan = self.smoke.accelerations[min(self.accelerations_done, len(self.smoke.accelerations) - 1)]
        peak = plan.peak_k_m1 if peak_k_m1 is None else peak_k_m1
        top = plan.max_rpm if max_rpm is None else max_rpm
        top = min(top or self.smoke.governed_rpm, self.smoke.governed_rpm)
        self.accelerations_done += 1
        self._acc = _Acceleration(
            started_s=self.now_s + TICK_S,
            smoke_k_m1=(peak - self.smoke.idle_k_m1) / _PEAK_GAIN,
            from_rpm=self._rpm,
            top_rpm=float(top),
        )
        return {"acceleration": self.accelerations_done, "peak_k_m1": peak, "top_rpm": top}

    def clear_peak(self) -> None:
        self.peak = op.PeakReading(self.reading.opacity_pct, self.reading.k_m1, self.reading.rpm)

    def _engine_rpm(self, acc: _Acceleration, tau_s: float) -> float:
        idle = float(self.smoke.idle_rpm)
        if tau_s < RPM_RISE_S:
            x = tau_s / RPM_RISE_S
            return acc.from_rpm + (acc.top_rpm - acc.from_rpm) * x * x * (3 - 2 * x)
        if tau_s < RPM_RISE_S + RPM_HOLD_S:
            return acc.top_rpm
        return idle + (acc.top_rpm - idle) * math.exp(-(tau_s - RPM_RISE_S - RPM_HOLD_S) / RPM_FALL_TAU_S)

    def _tick(self) -> None:
        self.ticks += 1
        self.seq = (self.seq + 1) & 0xFFFF
        raw_k_m1 = self.smoke.idle_k_m1
        self._rpm = float(self.smoke.idle_rpm)
        acc = self._acc
        state = self._engine_state(self.now_s) if self._engine_state is not None else None
        if state is not None:  # on the dynamometer: the operating point makes the smoke
            self._acc = acc = None
            loaded = self.smoke.loaded
            raw_k_m1 = (
                loaded.values_at(state, {"k_m1": self.smoke.idle_k_m1})["k_m1"]
                if loaded is not None
                else self.smoke.idle_k_m1
            )
            self._rpm = state.rpm
        if acc is not None:
            tau_s = self.now_s - acc.started_s
            if tau_s > ACCELERATION_LENGTH_S:
                self._acc = None
            elif tau_s >= 0:
                raw_k_m1 += acc.smoke_k_m1 * _smoke_shape(tau_s)
                self._rpm = self._engine_rpm(acc, tau_s)
            else:
                self._rpm = acc.from_rpm
        raw_k_m1 += self.rng.gauss(0.0, self.smoke.noise_k_m1) if self.smoke.noise_k_m1 else 0.0
        self.reading = self._measure(self._bessel.step(raw_k_m1))
        if self.reading.k_m1 > self.peak.k_m1:
            self.peak = op.PeakReading(self.reading.opacity_pct, self.reading.k_m1, self.reading.rpm)

    def _measure(self, k_m1: float) -> op.RealtimeReading:
        k_m1 = round(max(0.0, k_m1), 2)
        rpm = self._rpm + (self.rng.gauss(0.0, self.smoke.noise_rpm) if self.smoke.noise_rpm else 0.0)
        return op.RealtimeReading(
            opacity_pct=round(op.opacity_from_k(k_m1), 1),
            k_m1=k_m1,
            rpm=max(0, round(rpm)),
            oil_temp_k=self.smoke.oil_temp_k,
            seq=self.seq,
        )


# ----- the meter on the line --------------------------------------------------------------


class OpacimeterSimulator(PacedSerialServer):
    """The OP-1 at the end of a pty. Use as `async with OpacimeterSimulator(link, ...) as sim:`."""

    def __init__(
        self,
        link: str | Path,
        *,
        vehicle: str | Path = "diesel-truck",
        settings: MeterSettings | None = None,
        control_path: str | Path | None = None,
        seed: int | None = None,
    ) -> None:
        self.settings = settings or load_meter_settings()
        super().__init__(link, LineTiming(9600), reply_delay_s=self.settings.reply_delay_s, name="opacimeter")
        self.seed = seed
        self.error_code = op.ErrorCode.BUSY
        self.zero_results: list[bool] = []
        self._control = ControlServer(control_path, self.control) if control_path else None
        self._task: asyncio.Task[None] | None = None
        self._frozen: op.RealtimeReading | None = None
        self.coupling = EngineCoupling(self.name)
        self.load_vehicle(vehicle)
        self.power_up()

    # ----- scenario -------------------------------------------------------------------

    def load_vehicle(self, vehicle: str | Path) -> None:
        """Meet another vehicle: its [smoke] table, accelerations counted from the first."""
        smoke, self.vehicle_path = load_smoke(vehicle)
        ambient = vehicle_ambient(load_vehicle_file(vehicle))
        s = self.settings
        self.env = (
            op.EnvReading(_kelvin(ambient.temp_c), ambient.rh_pct, ambient.baro_kpa)
            if ambient is not None
            else op.EnvReading(s.ambient_temp_k, s.rh_pct, s.baro_kpa)
        )
        previous: SmokeModel | None = getattr(self, "model", None)
        self.model = SmokeModel(
            smoke, seed=self.seed, engine_state=lambda model_s: self.coupling.at(self._model_t0 + model_s)
        )
        if previous is not None:
            self.model.seq = previous.seq  # the meter's counter runs on; only the engine changed
        self._model_t0 = time.monotonic()
        log.info("sim_vehicle", device=self.name, vehicle=self.vehicle_path)

    def power_up(self) -> None:
        """Switch on: warm-up from now, no zero running."""
        self._warm_until = time.monotonic() + self.settings.warmup_s
        self._zero_until = 0.0

    def state(self) -> op.MeterState:
        now = time.monotonic()
        if now < self._warm_until:
            return op.MeterState.WARMING_UP
        if now < self._zero_until:
            return op.MeterState.ZEROING
        return op.MeterState.READY

    def _advance(self) -> None:
        due = int((time.monotonic() - self._model_t0) / TICK_S)
        self.model.advance(due - self.model.ticks)

    # ----- requests -------------------------------------------------------------------

    def request_length(self, buffer: bytes) -> int | None:
        return op.REQUEST_LENGTH

    def handle(self, request: bytes) -> bytes | LateReply | None:
        self._advance()
        return self._reply(op.parse_request(request))

    def _reply(self, command: op.Command | op.ErrorCode) -> bytes | LateReply:
        if isinstance(command, op.ErrorCode):
            return op.encode_reply(op.ErrorReply(command))
        if self.fault_active("error_reply"):
            return op.encode_reply(op.ErrorReply(self.error_code))
        state = self.state()
        if command == op.Command.STATUS:
            return op.encode_reply(op.StatusReply(state))
        if state == op.MeterState.ZEROING:
            return op.encode_reply(op.ErrorReply(op.ErrorCode.BUSY))
        if command == op.Command.ENV:
            return op.encode_reply(self.env)
        if state == op.MeterState.WARMING_UP:
            return op.encode_reply(op.ErrorReply(op.ErrorCode.NOT_READY))
        if command == op.Command.ZERO:
            self._zero_until = time.monotonic() + self.settings.zero_s
            log.info("sim_zero_started", device=self.name, zero_s=self.settings.zero_s)
            return LateReply(self.settings.zero_s, self._zero_done)
        if command == op.Command.REALTIME:
            return op.encode_reply(self._realtime())
        if command == op.Command.PEAK:
            return op.encode_reply(self.model.peak)
        self.model.clear_peak()  # CLEAR_PEAK
        return op.encode_reply(op.Ack())

    def _realtime(self) -> op.RealtimeReading:
        if self.fault_active("frozen_seq"):
            if self._frozen is None:
                self._frozen = self.model.reading
            return self._frozen
        self._frozen = None
        return self.model.reading

    def _zero_done(self) -> bytes:
        passed = not self.fault_active("zero_fails")
        self.zero_results.append(passed)
        log.info("sim_zero_done", device=self.name, passed=passed)
        return op.encode_reply(op.ZeroReply(passed))

    # ----- control ----------------------------------------------------------------------

    def control(self, request: dict[str, Any]) -> Any:
        """A control-socket request (simulators/control.py): fault, clear, do, get."""
        if "fault" in request:
            fault = str(request["fault"])
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}; known: {', '.join(sorted(FAULTS))}")
            if fault == "error_reply":
                self.error_code = _error_code(request.get("code", "busy"))
            self.inject(fault, request.get("for_s"))
            return {"fault": fault, "for_s": request.get("for_s")}
        if "clear" in request:
            self.clear(request["clear"])
            return {"cleared": request["clear"] or "all"}
        if "do" in request:
            return self.do(str(request["do"]), request)
        if request.get("get") == "state":
            return self.snapshot()
        raise ValueError(f"unknown control request {request!r}: use fault, clear, do or get")

    def do(self, action: str, request: dict[str, Any] | None = None) -> Any:
        """accelerate [peak_k_m1, max_rpm] · engine_state rpm load power_kw speed_kmh · vehicle NAME · power_up
        · set oil_temp_k (null: no probe)."""
        request = request or {}
        self._advance()
        if action == "engine_state":  # 10 Hz from the dynamometer: no log line, a short answer
            state = self.coupling.receive({k: v for k, v in request.items() if k != "do"}, time.monotonic())
            return {"coupled": True, "rpm": state.rpm}
        if action == "accelerate":
            max_rpm = request.get("max_rpm")
            peak = request.get("peak_k_m1")
            result = self.model.accelerate(
                None if peak is None else float(peak), None if max_rpm is None else int(max_rpm)
            )
            log.info("sim_free_acceleration", device=self.name, **result)
            return result
        if action == "vehicle":
            self.load_vehicle(str(request["name"]))
            return {"vehicle": self.vehicle_path}
        if action == "power_up":
            self.power_up()
            return {"state": self.state().name.lower()}
        if action == "set":
            unknown = set(request) - {"do", "oil_temp_k"}
            if unknown or "oil_temp_k" not in request:
                raise ValueError(f"set takes oil_temp_k (K, or null: no probe); got {', '.join(sorted(request))}")
            table = self.model.smoke.model_dump() | {"oil_temp_k": request["oil_temp_k"]}
            self.model.smoke = SmokeTable.model_validate(table)
            log.info("sim_set", device=self.name, oil_temp_k=self.model.smoke.oil_temp_k)
            return {"oil_temp_k": self.model.smoke.oil_temp_k}
        raise ValueError(f"unknown action {action!r}: accelerate, engine_state, vehicle, power_up, set")

    def snapshot(self) -> dict[str, Any]:
        self._advance()
        reading, peak = self.model.reading, self.model.peak
        return {
            "state": self.state().name.lower(),
            "vehicle": self.vehicle_path,
            "seq": reading.seq,
            "opacity_pct": reading.opacity_pct,
            "k_m1": reading.k_m1,
            "rpm": reading.rpm,
            "peak": {"opacity_pct": peak.opacity_pct, "k_m1": peak.k_m1, "rpm": peak.rpm},
            "accelerations_done": self.model.accelerations_done,
            "engine_state": self.coupling.describe(time.monotonic()),
            "zero_results": list(self.zero_results),
            "faults": sorted(f for f in list(self.faults) if self.fault_active(f)),
            "requests_served": self.requests_served,
        }

    # ----- life -------------------------------------------------------------------------

    async def start(self) -> None:
        """Serve in the background; returns once the link exists."""
        if self._control is not None:
            await self._control.start()
        self._task = asyncio.create_task(self.serve(), name="opacimeter-sim")
        while not self.pty.link.is_symlink():
            if self._task.done():
                await self._task  # raises what went wrong
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._control is not None:
            await self._control.close()

    async def __aenter__(self) -> OpacimeterSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _kelvin(temp_c: float) -> float:
    """°C as the meter's 0.1 K, rounded half up in decimal (17.0 °C → 290.2 K, not float's 290.1)."""
    return float((Decimal(repr(temp_c)) + Decimal("273.15")).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def _error_code(code: Any) -> op.ErrorCode:
    if isinstance(code, str) and not code.isdigit():
        return op.ErrorCode[code.upper()]
    return op.ErrorCode(int(code))


# ----- CLI (wired as `laned simulate opacimeter`) --------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--link", required=True, help="path where the meter's pty appears")
    parser.add_argument("--vehicle", default="diesel-truck", help="vehicle name in config/vehicles or a file")
    parser.add_argument("--control", default=None, help="Unix socket for faults and actions (JSON lines)")
    parser.add_argument("--fast", action="store_true", help="short warm-up and zero, for tests and demos")
    parser.add_argument("--config", "--settings", dest="settings", default=None,
                        help=f"device file (default {DEFAULT_SETTINGS}); --settings is the old name")
    parser.add_argument("--warmup-s", type=float, default=None, help="override the warm-up time")
    parser.add_argument("--seed", type=int, default=None, help="seed of the measurement noise")


async def run(args: argparse.Namespace) -> None:
    settings = load_meter_settings(args.settings, fast=args.fast)
    if args.warmup_s is not None:
        settings = settings.model_copy(update={"warmup_s": args.warmup_s})
    sim = OpacimeterSimulator(
        args.link, vehicle=args.vehicle, settings=settings, control_path=args.control, seed=args.seed
    )
    async with sim:
        log.info("sim_ready", device=sim.name, link=str(sim.pty.link), warmup_s=settings.warmup_s,
                 control=args.control, vehicle=sim.vehicle_path)
        await asyncio.Event().wait()
