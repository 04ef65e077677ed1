"""GA-5 / GA-5N gas analyzer simulator: the analyzer's end of the serial line, as its manual says.

The bench updates at 10 Hz (SEQ +1 each time). What reaches it depends on the
pump the host commanded and on the probe and the engine, which a control
client sets while playing the driver (`{"do": "probe", "inserted": true}`,
`{"do": "engine", "mode": "idle"}`): the inlet gas travels down the hose (a
transport delay), then the bench follows it with a first-order lag. Exhaust
composition per engine mode comes from the vehicle file's `[exhaust]` table;
device defaults (warm-up, T90, process times, identity, PEF) come from
config/simulators/gas-analyzer.toml, whose `[fast]` table shortens them for
tests and demos. Updates are computed lazily from the clock when the host or
a control client looks, so the simulated 10 Hz never drifts or bursts.

The device file's `model` makes it a GA-5 (default) or a GA-5N, which answers
READ_NOX with the same update's NO, the NO2 of the inlet and NOX = NO + NO2; a
GA-5 answers READ_NOX with NAK. While the dynamometer simulator sends engine
states (`{"do": "engine_state", ...}`, simulators/tailpipe.py) the tailpipe gas
and the RPM field follow the vehicle's `[exhaust.loaded]` map instead of the
engine mode; the vehicle file's `[ambient]` overrides READ_ENV's weather.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import time
import tomllib
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from protocols import gas_analyzer as ga
from protocols.datafiles import CONFIG_DIR
from protocols.errors import FrameError, ProtocolError
from simulators.control import ControlServer
from simulators.line import SHARED_FAULTS, LineTiming, PacedSerialServer
from simulators.tailpipe import EngineCoupling, EngineState, OperatingMap, vehicle_ambient
from simulators.vehicle import load_vehicle_file, vehicle_identity

log = structlog.get_logger("simulators.gas_analyzer")

DEVICE_CONFIG = CONFIG_DIR / "simulators" / "gas-analyzer.toml"
DEFAULT_LINK = "/tmp/laned-sim/gas-analyzer"
TICK_S = 0.1  # the manual's 10 Hz internal update
MAX_CATCHUP_TICKS = 600  # after a longer quiet spell only the last minute is simulated
PRECONDITION_SHARE = 0.70  # preconditioning runs at 70 % of rated speed (standards.md)
UNSTABLE_SWING_RPM, UNSTABLE_PERIOD_S = 300.0, 3.0
OWN_FAULTS = frozenset(
    {"nak", "frozen_seq", "zero_fails", "leak_fails", "calibrate_fails", "process_stuck", "bench_fault"}
)
FAULTS = SHARED_FAULTS | OWN_FAULTS
PROCESS_FAULTS = {
    ga.Command.ZERO: "zero_fails", ga.Command.LEAK_CHECK: "leak_fails", ga.Command.CALIBRATE: "calibrate_fails"
}
ANSWERED_DURING_PROCESS = frozenset(
    {ga.Command.READ_MAIN, ga.Command.READ_ENV, ga.Command.READ_STATUS, ga.Command.PROCESS_RESULT}
)
PUMPS = {ga.Command.PUMP_AMBIENT: "ambient", ga.Command.PUMP_SAMPLE: "sample", ga.Command.PUMP_STOP: "stop"}
EngineMode = Literal["off", "idle", "high_idle", "precondition"]
ENGINE_MODES = ("off", "idle", "high_idle", "precondition")
FLAG_KEYS = {
    "o2_sensor_aged": ga.Flags.O2_SENSOR_AGED,
    "no_sensor_aged": ga.Flags.NO_SENSOR_AGED,
    "condensate_full": ga.Flags.CONDENSATE_FULL,
    "low_flow": ga.Flags.LOW_FLOW,
}


# ----- configuration as data ------------------------------------------------------


class ScheduledFault(BaseModel):
    """`[[faults]]`: switch `fault` on `at_s` after the simulator starts, for `for_s` (or for good)."""

    model_config = ConfigDict(extra="forbid")
    at_s: float = Field(ge=0)
    fault: str
    for_s: float | None = Field(default=None, gt=0)

    @field_validator("fault")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(FAULTS))}")
        return name


class Ambient(BaseModel):
    model_config = ConfigDict(extra="forbid")
    co2_pct: float = Field(0.04, ge=0)
    o2_pct: float = Field(20.9, ge=0, le=25)
    temp_c: float = 21.5
    baro_kpa: float = Field(100.8, gt=0)
    rh_pct: float = Field(55.3, ge=0, le=100)


class Noise(BaseModel):
    """Standard deviations of the reading noise (0 switches it off)."""

    model_config = ConfigDict(extra="forbid")
    hc_ppm: float = Field(0.5, ge=0)
    co_pct: float = Field(0.003, ge=0)
    co2_pct: float = Field(0.02, ge=0)
    o2_pct: float = Field(0.01, ge=0)
    no_ppm: float = Field(2.0, ge=0)
    no2_ppm: float = Field(1.0, ge=0)
    rpm: float = Field(8.0, ge=0)


class AnalyzerConfig(BaseModel):
    """config/simulators/gas-analyzer.toml: what this simulated bench is like."""

    model_config = ConfigDict(extra="forbid")
    model: Literal["GA-5", "GA-5N"] = "GA-5"
    serial: str = Field("0001", pattern=r"^[^,]*$")
    firmware: str = Field("1.0.0", pattern=r"^[^,]*$")
    pef: float = Field(0.525, gt=0, le=65.535)
    reply_delay_s: float = Field(0.010, ge=0, lt=0.05)
    warmup_s: float = Field(5.0, ge=0)
    transport_delay_s: float = Field(2.0, ge=0)
    t90_s: float = Field(4.5, gt=0)
    zero_s: float = Field(5.0, gt=0)
    leak_check_s: float = Field(10.0, gt=0)
    calibrate_s: float = Field(8.0, gt=0)
    backflush_s: float = Field(10.0, gt=0)
    zero_due_after_s: float = Field(1800.0, gt=0)
    hose_t90_s: float = Field(10.0, gt=0)
    hose_hangup_share: float = Field(0.3, ge=0, le=1)
    hc_residue_ppm: float = Field(3.0, ge=0)
    hc_zero_drift_ppm: float = -2.0
    seed: int | None = None
    ambient: Ambient = Field(default_factory=Ambient)
    noise: Noise = Field(default_factory=Noise)
    faults: list[ScheduledFault] = Field(default_factory=list)

    @model_validator(mode="after")
    def _identity_fits(self) -> AnalyzerConfig:
        try:
            ga.encode_identity(ga.Identity(self.model, f"SIM{self.serial}", self.firmware))
        except ProtocolError as exc:
            raise ValueError(f"serial/firmware: {exc}") from None
        return self


def load_analyzer_config(path: str | Path | None = None, *, fast: bool = False, **overrides: Any) -> AnalyzerConfig:
    """The device file (default: config/simulators/gas-analyzer.toml); `fast` applies its `[fast]`
    table, then `overrides` (e.g. warmup_s=0.5) apply on top."""
    with Path(path or DEVICE_CONFIG).open("rb") as fh:
        data = tomllib.load(fh)
    fast_table = data.pop("fast", {})
    if fast:
        data.update(fast_table)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return AnalyzerConfig.model_validate(data)


class ExhaustMode(BaseModel):
    """Raw exhaust at the tailpipe in one engine mode, before any dilution."""

    model_config = ConfigDict(extra="forbid")
    hc_ppm: float = Field(ge=0, le=30000)
    co_pct: float = Field(ge=0, le=15)
    co2_pct: float = Field(ge=0, le=20)
    o2_pct: float = Field(ge=0, le=21)
    no_ppm: float = Field(ge=0, le=5000)
    no2_ppm: float = Field(0.0, ge=0, le=5000)
    rpm: int | None = Field(default=None, ge=0, le=12000)
    dilution: float | None = Field(default=None, ge=0, lt=1)
    rpm_unstable: bool = False


class LoadedExhaustPoint(BaseModel):
    """One operating point of `[exhaust.loaded]`: raw exhaust where the map's axis reads `at`."""

    model_config = ConfigDict(extra="forbid")
    at: float
    hc_ppm: float = Field(ge=0, le=30000)
    co_pct: float = Field(ge=0, le=15)
    co2_pct: float = Field(ge=0, le=20)
    o2_pct: float = Field(ge=0, le=21)
    no_ppm: float = Field(ge=0, le=5000)
    no2_ppm: float = Field(0.0, ge=0, le=5000)


class LoadedExhaust(OperatingMap):
    """`[exhaust.loaded]`: raw exhaust under load, by operating point (simulators/tailpipe.py),
    used while the dynamometer sends engine states. `dilution` overrides the vehicle's."""

    points: list[LoadedExhaustPoint] = Field(min_length=1)
    dilution: float | None = Field(default=None, ge=0, lt=1)


class ExhaustTable(BaseModel):
    """A vehicle file's `[exhaust]` table. `dilution` is the share of ambient air mixed into the
    sample (a leaking exhaust, a probe not deep enough); a mode may override it. `loaded` is
    the map used while the vehicle runs on the dynamometer."""

    model_config = ConfigDict(extra="forbid")
    description: str = ""
    oil_temp_c: float | None = Field(default=None, ge=-40, le=200)
    dilution: float = Field(0.0, ge=0, lt=1)
    idle: ExhaustMode
    high_idle: ExhaustMode
    precondition: ExhaustMode | None = None
    loaded: LoadedExhaust | None = None
    faults: list[ScheduledFault] = Field(default_factory=list)

    @model_validator(mode="after")
    def _idle_speeds_given(self) -> ExhaustTable:
        for name in ("idle", "high_idle"):
            if getattr(self, name).rpm is None:
                raise ValueError(f"[exhaust.{name}] needs rpm")
        return self


# ----- the bench --------------------------------------------------------------------


@dataclass(frozen=True)
class Gas:
    hc_ppm: float
    co_pct: float
    co2_pct: float
    o2_pct: float
    no_ppm: float
    no2_ppm: float = 0.0

    def toward(self, other: Gas, share: float) -> Gas:
        """This gas moved `share` of the way to `other` (a mix, or one lag step)."""
        return Gas(*(a + (b - a) * share for a, b in zip(_values(self), _values(other), strict=True)))


def _values(gas: Gas) -> tuple[float, ...]:
    return tuple(getattr(gas, f.name) for f in fields(gas))


def _lag_share(dt: float, t90_s: float) -> float:
    """Share of the way a first-order lag with this T90 moves in dt (T90 = τ·ln 10)."""
    return 1.0 - math.exp(-dt * math.log(10) / t90_s)


def _round_half_up(value: float, decimals: int = 0) -> float:
    scale: int = 10**decimals  # int ** int is typed Any (a negative power is a float)
    return math.copysign(math.floor(abs(value) * scale + 0.5), value) / scale


class GasAnalyzerSimulator(PacedSerialServer):
    """A GA-5 (or GA-5N) on a pty at `link`. Use `async with` in tests, or `serve()` until cancelled."""

    def __init__(
        self,
        link: str | Path,
        *,
        config: AnalyzerConfig | None = None,
        vehicle: str | Path = "gasoline-car",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or load_analyzer_config()
        super().__init__(link, LineTiming(9600, 10), reply_delay_s=self.config.reply_delay_s, name="gas_analyzer")
        self._clock = clock
        self._rng = random.Random(self.config.seed)
        self.engine: EngineMode = "off"
        self.probe_inserted = False
        self.flag_overrides = ga.Flags(0)
        self.coupling = EngineCoupling(self.name)
        self._engine_state: EngineState | None = None
        self._task: asyncio.Task[None] | None = None
        self.load_vehicle(vehicle)
        self.power_up()

    # ----- state ----------------------------------------------------------------

    def load_vehicle(self, name_or_path: str | Path) -> None:
        data = load_vehicle_file(name_or_path)
        if "exhaust" not in data:
            raise ValueError(f"vehicle {data['_path']} has no [exhaust] table for the gas analyzer")
        self.exhaust = ExhaustTable.model_validate(data["exhaust"])
        self.vehicle = vehicle_identity(data)
        self.vehicle_path = data["_path"]
        ambient = vehicle_ambient(data) or self.config.ambient
        self.env = ga.EnvReading(ambient.temp_c, ambient.baro_kpa, ambient.rh_pct)

    @property
    def has_nox(self) -> bool:
        """A GA-5N: answers READ_NOX."""
        return self.config.model == ga.MODEL_GA5N

    def power_up(self, now: float | None = None) -> None:
        """Switch-on: warm-up, no process result, zero due, pump off, span at its defaults."""
        t = self._clock() if now is None else now
        cfg = self.config
        self._t0, self._ticks = t, 0
        self._warm_until = t + cfg.warmup_s
        self._process: ga.Command | None = None
        self._process_ends_at = 0.0
        self._process_fails = False
        self.result = ga.ProcessResult.NONE_SINCE_POWER_UP
        self.pump = "stop"
        self._backflush_ends_at = 0.0
        self.span = ga.DEFAULT_SPAN
        self._last_zero_at: float | None = None
        self._hc_offset = cfg.hc_zero_drift_ppm
        self._hose_hc = cfg.hc_residue_ppm
        self._bench = self._air(cfg.hc_residue_ppm)
        slots = round(cfg.transport_delay_s / TICK_S)
        self._hose: deque[Gas] = deque([self._bench] * slots)
        self._seq = 0
        self._engine_state = self.coupling.at(t)
        self._rpm = self._engine_rpm(t)
        self.reading, self.nox = self._make_reading(t)
        log.info("sim_power_up", device=self.name, warmup_s=cfg.warmup_s)

    def state_at(self, t: float) -> ga.AnalyzerState:
        if self.fault_active("bench_fault"):
            return ga.AnalyzerState.FAULT
        if t < self._warm_until:
            return ga.AnalyzerState.WARMING_UP
        if self._process is not None:
            return ga.PROCESS_STATES[self._process]
        return ga.AnalyzerState.READY

    def zero_due(self, t: float) -> bool:
        return self._last_zero_at is None or t - self._last_zero_at >= self.config.zero_due_after_s

    def advance(self, now: float | None = None) -> None:
        """Run the 10 Hz updates due by `now` (default: the clock), then the timers at `now`."""
        now = self._clock() if now is None else now
        due = math.floor((now - self._t0) / TICK_S + 1e-9) - self._ticks
        if due > MAX_CATCHUP_TICKS:
            self._seq = (self._seq + due - MAX_CATCHUP_TICKS) % 0x10000
            self._ticks += due - MAX_CATCHUP_TICKS
            due = MAX_CATCHUP_TICKS
        for _ in range(max(0, due)):
            self._ticks += 1
            self._tick(self._t0 + self._ticks * TICK_S)
        self._timers(now)

    def _timers(self, t: float) -> None:
        if self._process is not None and t >= self._process_ends_at and not self.fault_active("process_stuck"):
            failed = self._process_fails or self.fault_active(PROCESS_FAULTS[self._process])
            self.result = ga.ProcessResult.FAILED if failed else ga.ProcessResult.PASSED
            if self._process is ga.Command.ZERO and not failed:
                self._last_zero_at, self._hc_offset = self._process_ends_at, 0.0
            log.info("sim_process_end", device=self.name, process=self._process.name, result=self.result.name)
            self._process = None
        if self.pump == "backflush" and t >= self._backflush_ends_at:
            self.pump = "stop"

    def _tick(self, t: float) -> None:
        self._timers(t)
        self._engine_state = self.coupling.at(t)
        self._rpm = self._engine_rpm(t)
        self._step_gases(TICK_S)
        self._seq = (self._seq + 1) % 0x10000
        if not self.fault_active("frozen_seq"):
            self.reading, self.nox = self._make_reading(t)

    def _air(self, hc_ppm: float = 0.0) -> Gas:
        return Gas(hc_ppm, 0.0, self.config.ambient.co2_pct, self.config.ambient.o2_pct, 0.0)

    def _mode(self, engine: EngineMode) -> ExhaustMode:
        if engine == "precondition":
            return self.exhaust.precondition or self.exhaust.high_idle.model_copy(update={"rpm": None})
        return self.exhaust.idle if engine == "idle" else self.exhaust.high_idle

    def _tailpipe(self) -> Gas | None:
        """What the probe draws from a running engine (None: probe out or engine off). Under an
        engine state from the dynamometer: the `[exhaust.loaded]` map at that operating point
        (without a map, the engine mode's gases, idle if the mode says off)."""
        state, loaded = self._engine_state, self.exhaust.loaded
        if not self.probe_inserted or (self.engine == "off" and state is None):
            return None
        if state is not None and loaded is not None:
            idle = self.exhaust.idle
            at_idle = {k: getattr(idle, k) for k in ("hc_ppm", "co_pct", "co2_pct", "o2_pct", "no_ppm", "no2_ppm")}
            raw = Gas(**loaded.values_at(state, at_idle))
            dilution = self.exhaust.dilution if loaded.dilution is None else loaded.dilution
            return raw.toward(self._air(), dilution)
        mode = self._mode(self.engine if self.engine != "off" else "idle")
        raw = Gas(mode.hc_ppm, mode.co_pct, mode.co2_pct, mode.o2_pct, mode.no_ppm, mode.no2_ppm)
        dilution = self.exhaust.dilution if mode.dilution is None else mode.dilution
        return raw.toward(self._air(), dilution)

    def _engine_rpm(self, t: float) -> int:
        if self._engine_state is not None:  # the tachometer sees the engine on the dynamometer
            rpm = self._engine_state.rpm + self._rng.gauss(0, self.config.noise.rpm)
            return max(0, min(0xFFFF, round(rpm)))
        if self.engine == "off":
            return 0
        mode = self._mode(self.engine)
        rpm = mode.rpm if mode.rpm is not None else PRECONDITION_SHARE * self.vehicle.rated_engine_speed_rpm
        rpm += self._rng.gauss(0, self.config.noise.rpm)
        if mode.rpm_unstable:
            rpm += UNSTABLE_SWING_RPM * math.sin(2 * math.pi * (t - self._t0) / UNSTABLE_PERIOD_S)
        return max(0, min(0xFFFF, round(rpm)))

    def _step_gases(self, dt: float) -> None:
        cfg = self.config
        tailpipe = self._tailpipe() if self.pump == "sample" else None
        if self.pump in ("ambient", "sample", "backflush"):  # the hose's HC hang-up clears or builds
            floor = cfg.hc_residue_ppm
            target = max(floor, tailpipe.hc_ppm * cfg.hose_hangup_share) if tailpipe else floor
            t90 = cfg.hose_t90_s / (4 if self.pump == "backflush" else 1)
            self._hose_hc += (target - self._hose_hc) * _lag_share(dt, t90)
        if self._process is ga.Command.ZERO:  # the bench draws zero air through its own port
            self._bench = Gas(0.0, 0.0, 0.0, cfg.ambient.o2_pct, 0.0, 0.0)
            return
        if self._process is ga.Command.CALIBRATE:  # span gas flows straight to the bench
            s = self.span
            self._bench = Gas(_round_half_up(s.c3h8_ppm * cfg.pef), s.co_pct, s.co2_pct, 0.0, s.no_ppm)
            return
        if self._process is ga.Command.LEAK_CHECK or self.pump in ("stop", "backflush"):
            return  # nothing flows through the bench
        inlet = tailpipe or self._air(self._hose_hc)
        if self._hose:
            self._hose.append(inlet)
            inlet = self._hose.popleft()
        self._bench = self._bench.toward(inlet, _lag_share(dt, cfg.t90_s))

    def _make_reading(self, t: float) -> tuple[ga.MainReading, ga.NoxReading]:
        """The main frame of this update, and the NOx frame of the same update (GA-5N)."""
        state = self.state_at(t)
        flags = self.flag_overrides
        flags |= ga.Flags.WARMING_UP if state is ga.AnalyzerState.WARMING_UP else 0
        flags |= ga.Flags.ZERO_DUE if self.zero_due(t) else 0
        flags |= {"sample": ga.Flags.PUMP_SAMPLE, "ambient": ga.Flags.PUMP_AMBIENT}.get(self.pump, 0)
        gases: tuple[int, float, float, float, int] = (0, 0.0, 0.0, 0.0, 0)
        no2 = 0
        lam: float | None = None
        if state is not ga.AnalyzerState.WARMING_UP:
            b, n = self._bench, self.config.noise
            exact = self._process in (ga.Command.ZERO, ga.Command.CALIBRATE)
            noise: Callable[[float], float] = (lambda _sd: 0.0) if exact else (lambda sd: self._rng.gauss(0, sd))
            offset = 0.0 if exact else self._hc_offset
            hc = int(max(-0x8000, min(0x7FFF, _round_half_up(b.hc_ppm + offset + noise(n.hc_ppm)))))
            co, co2, o2 = (
                max(0.0, min(655.35, _round_half_up(v + noise(sd), 2)))
                for v, sd in ((b.co_pct, n.co_pct), (b.co2_pct, n.co2_pct), (b.o2_pct, n.o2_pct))
            )
            no = int(max(0, min(0xFFFF, _round_half_up(b.no_ppm + noise(n.no_ppm)))))
            if self.has_nox:  # only a GA-5N draws NO2 noise: a GA-5's readings stay as they were
                no2 = int(max(0, min(0xFFFF, _round_half_up(b.no2_ppm + noise(n.no2_ppm)))))
            gases = (hc, co, co2, o2, no)
            computed = ga.analyzer_lambda(hc, co, co2, o2)
            lam = None if computed is None else min(65.535, _round_half_up(computed, 3)) or None
        main = ga.MainReading(
            *gases, rpm=self._rpm, oil_temp_c=self.exhaust.oil_temp_c, lambda_value=lam,
            pef=self.config.pef, flags=ga.Flags(flags), seq=self._seq,
        )
        return main, ga.nox_of(main.no_ppm, no2)

    # ----- the line ---------------------------------------------------------------

    def request_length(self, buffer: bytes) -> int | None:
        return ga.request_length(buffer)

    def stray_bytes(self) -> bytes:
        """Noise that never holds 06 or 15, the only bytes a GA-5 reply can start with."""
        return bytes(self._rng.choice([b for b in range(256) if b not in (0x06, 0x15)]) for _ in range(3))

    def corrupt_checksum(self, reply: bytes) -> bytes:
        """ACK and NAK carry no checksum: they go out unharmed under the bad_checksum fault."""
        return reply if len(reply) == 1 else super().corrupt_checksum(reply)

    def handle(self, request: bytes) -> bytes | None:
        now = self._clock()
        self.advance(now)
        if self.fault_active("nak"):
            return ga.NAK
        try:
            decoded = ga.decode_request(request)
        except FrameError as exc:
            log.info("sim_request_refused", device=self.name, reason=str(exc))
            return ga.NAK
        command, span = decoded if isinstance(decoded, tuple) else (decoded, None)
        try:
            return self._answer_command(command, span, now)
        except ProtocolError as exc:  # a value set live that the frame cannot carry
            log.error("sim_cannot_encode", device=self.name, command=command.name, error=str(exc))
            return ga.NAK

    def _answer_command(self, command: ga.Command, span: ga.SpanGas | None, now: float) -> bytes:
        state = self.state_at(now)
        if self._process is not None:
            if command is self._process:
                return ga.ACK  # a host repeating after a lost ACK: nothing changes
            if command not in ANSWERED_DURING_PROCESS:
                return ga.NAK
        if command is ga.Command.READ_MAIN:
            return ga.encode_main(self.reading)
        if command is ga.Command.READ_NOX:
            return ga.encode_nox(self.nox) if self.has_nox else ga.NAK
        if command is ga.Command.READ_ENV:
            return ga.encode_env(self.env)
        if command is ga.Command.READ_STATUS:
            left = max(0, math.ceil(self._warm_until - now - 1e-9))
            return ga.encode_status(ga.StatusReading(state, left))
        if command is ga.Command.PROCESS_RESULT:
            return ga.encode_process(self.result)
        if command is ga.Command.IDENTIFY:
            return ga.encode_identity(ga.Identity(self.config.model, f"SIM{self.config.serial}", self.config.firmware))
        if command in PUMPS:
            self.pump = PUMPS[command]
            return ga.ACK
        if command is ga.Command.BACKFLUSH:
            self.pump, self._backflush_ends_at = "backflush", now + self.config.backflush_s
            return ga.ACK
        if state is not ga.AnalyzerState.READY:
            log.info("sim_refused_not_ready", device=self.name, command=command.name, state=state.name)
            return ga.NAK
        if command is ga.Command.WRITE_SPAN:
            assert span is not None
            if problem := ga.span_problem(span):
                log.info("sim_span_refused", device=self.name, reason=problem)
                return ga.NAK
            self.span = span
            return ga.ACK
        # ZERO, LEAK_CHECK, CALIBRATE: state and RESULT 05 are set before the ACK goes out
        self._process, self.result = command, ga.ProcessResult.RUNNING
        self._process_ends_at = now + {
            ga.Command.ZERO: self.config.zero_s,
            ga.Command.LEAK_CHECK: self.config.leak_check_s,
            ga.Command.CALIBRATE: self.config.calibrate_s,
        }[command]
        self._process_fails = self.fault_active(PROCESS_FAULTS[command])
        log.info("sim_process_start", device=self.name, process=command.name)
        return ga.ACK

    # ----- control --------------------------------------------------------------

    def control(self, request: dict[str, Any]) -> Any:
        """The ControlServer handler: faults, the driver's actions, the state."""
        self.advance()
        if "fault" in request:
            self._check_fault(request["fault"])
            self.inject(request["fault"], request.get("for_s"))
            return sorted(self.faults)
        if "clear" in request:
            if request["clear"] is not None:
                self._check_fault(request["clear"])
            self.clear(request["clear"])
            return sorted(self.faults)
        if "do" in request:
            return self._do(request["do"], {k: v for k, v in request.items() if k != "do"})
        if request.get("get") == "state":
            return self.describe()
        raise ValueError('use {"fault": NAME}, {"clear": NAME}, {"do": ACTION, ...} or {"get": "state"}')

    @staticmethod
    def _check_fault(name: Any) -> None:
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(FAULTS))}")

    def _do(self, action: str, args: dict[str, Any]) -> Any:
        if action == "engine_state":  # 10 Hz from the dynamometer: no log line, a short answer
            state = self.coupling.receive(args, self._clock())
            return {"coupled": True, "rpm": state.rpm}
        if action == "probe":
            self.probe_inserted = bool(args.get("inserted", True))
        elif action == "engine":
            if args.get("mode") not in ENGINE_MODES:
                raise ValueError(f"engine mode {args.get('mode')!r}; use one of {', '.join(ENGINE_MODES)}")
            self.engine = args["mode"]
        elif action == "set":
            self._set(args)
        elif action == "vehicle":
            self.load_vehicle(args["name"])
        elif action == "power_cycle":
            self.power_up()
        else:
            raise ValueError(
                f"unknown action {action!r}; use probe, engine, engine_state, set, vehicle or power_cycle"
            )
        log.info("sim_action", device=self.name, action=action, **args)
        return self.describe()

    def _set(self, args: dict[str, Any]) -> None:
        """Live overrides: exhaust values of a mode (default: the running one), oil temperature,
        flags, environment."""
        args = dict(args)
        table = self.exhaust.model_dump()
        named_mode = args.pop("mode", None)
        mode = named_mode or (self.engine if self.engine != "off" else None)
        # `dilution` without a mode is the whole vehicle's; with one, that mode's own
        gas_keys = (set(ExhaustMode.model_fields) - ({"dilution"} if named_mode is None else set())) & set(args)
        if gas_keys:
            if mode not in ("idle", "high_idle", "precondition"):
                raise ValueError('say which engine mode to change: "mode": "idle" | "high_idle" | "precondition"')
            current = table.get(mode) or table["high_idle"] | {"rpm": None}
            table[mode] = current | {k: args.pop(k) for k in gas_keys}
        for key in ("oil_temp_c", "dilution"):
            if key in args:
                table[key] = args.pop(key)
        for key in set(FLAG_KEYS) & set(args):
            flag = FLAG_KEYS[key]
            self.flag_overrides = self.flag_overrides | flag if args.pop(key) else self.flag_overrides & ~flag
        env = {k: args.pop(k) for k in ("ambient_temp_c", "baro_kpa", "rh_pct") if k in args}
        if args:
            raise ValueError(f"cannot set {', '.join(sorted(args))}")
        self.exhaust = ExhaustTable.model_validate(table)
        if env:
            self.env = ga.EnvReading(**(asdict(self.env) | env))

    def describe(self) -> dict[str, Any]:
        now = self._clock()
        reading = asdict(self.reading) | {"flags": [f.name for f in ga.Flags if f in self.reading.flags]}
        return {
            "model": self.config.model,
            "state": self.state_at(now).name,
            "warmup_left_s": max(0, math.ceil(self._warm_until - now)),
            "process": self._process.name if self._process else None,
            "result": self.result.name,
            "pump": self.pump,
            "probe_inserted": self.probe_inserted,
            "engine": self.engine,
            "engine_state": self.coupling.describe(now),
            "vehicle": {"plate": self.vehicle.plate, "vin": self.vehicle.vin, "file": self.vehicle_path},
            "span": asdict(self.span),
            "reading": reading,
            "nox": asdict(self.nox) if self.has_nox else None,
            "faults": sorted(self.faults),
            "requests_served": self.requests_served,
        }

    # ----- running --------------------------------------------------------------

    async def serve(self) -> None:
        schedule = sorted(self.config.faults + self.exhaust.faults, key=lambda f: f.at_s)
        runner = asyncio.create_task(self._run_schedule(schedule)) if schedule else None
        try:
            await super().serve()
        finally:
            if runner is not None:
                runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner

    async def _run_schedule(self, schedule: list[ScheduledFault]) -> None:
        started = time.monotonic()
        for entry in schedule:
            await asyncio.sleep(max(0.0, started + entry.at_s - time.monotonic()))
            self.inject(entry.fault, entry.for_s)

    async def __aenter__(self) -> GasAnalyzerSimulator:
        """Serve in the running loop until the block ends; returns once the link exists."""
        self._task = asyncio.create_task(self.serve())
        while not self.pty.link.exists():
            if self._task.done():
                await self._task  # raises what stopped it
            await asyncio.sleep(0.005)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.close()


# ----- `laned simulate gas-analyzer` ------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options: list[tuple[str, dict[str, Any]]] = [
        ("--link", {"default": DEFAULT_LINK, "help": f"path of the pty link (default {DEFAULT_LINK})"}),
        ("--vehicle", {"default": "gasoline-car", "help": "vehicle name in config/vehicles/ or a file path"}),
        ("--control", {"default": None, "help": "Unix socket for faults and driver actions (JSON lines)"}),
        ("--fast", {"action": "store_true", "help": "short simulated timings (tests, demos)"}),
        ("--config", {"default": str(DEVICE_CONFIG), "help": "device file (default: %(default)s)"}),
        ("--warmup-s", {"type": float, "default": None, "help": "warm-up time, overriding the device file"}),
        ("--seed", {"type": int, "default": None, "help": "seed of the reading noise"}),
        ("--model", {"choices": ("GA-5", "GA-5N"), "default": None,
                     "help": "the model, overriding the device file: GA-5N answers READ_NOX"}),
    ]
    for flag, kwargs in options:
        with contextlib.suppress(argparse.ArgumentError):  # a common option the caller already added
            parser.add_argument(flag, **kwargs)


async def run(args: argparse.Namespace) -> None:
    config = load_analyzer_config(
        getattr(args, "config", None), fast=bool(getattr(args, "fast", False)),
        warmup_s=getattr(args, "warmup_s", None), seed=getattr(args, "seed", None),
        model=getattr(args, "model", None),
    )
    sim = GasAnalyzerSimulator(
        getattr(args, "link", None) or DEFAULT_LINK, config=config,
        vehicle=getattr(args, "vehicle", None) or "gasoline-car",
    )
    control = ControlServer(args.control, sim.control) if getattr(args, "control", None) else None
    if control is not None:
        await control.start()
    log.info("sim_gas_analyzer_start", device=sim.name, link=str(sim.pty.link), vehicle=sim.vehicle.plate,
             control=getattr(args, "control", None), warmup_s=config.warmup_s, model=config.model)
    try:
        await sim.serve()
    finally:
        sim.close()
        if control is not None:
            await control.close()
