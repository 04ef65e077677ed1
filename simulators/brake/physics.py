"""The RB-2 tester and the vehicle on its rollers, stepped one ring sample at a time.

Time is the tester's own: seconds since power-up, advanced by the simulator
from the wall clock so that SAMPLE_RATE samples go into the ring per real
second. Each step runs the scripted driver (axles driving on and off, the
pedal), the lift, the tare, the motors' state machine, each wheel's brake
force along its build-up curve up to the adhesion limit, the third rollers'
slip, and then writes one sample: forces in N to the live registers, in daN to
the ring, and to the sample log that tests compare a capture against.

Host commands (`write_motors`, `write_lift`, ...) apply the manual's
interlocks and return the Modbus exception code to answer, or None.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import Any

from protocols.brake_tester import (
    HOLDING_REGISTERS,
    INDEX_MODULUS,
    MOTORS_RUN_STATES,
    STARTABLE_STATES,
    Coil,
    ExceptionCode,
    FaultCode,
    TesterCoils,
    TesterInputs,
    TesterSettings,
    TesterSnapshot,
    TesterState,
    check_holding_value,
    encode_inputs,
    encode_ring_sample,
    encode_snapshot,
    round_half_away,
)
from protocols.errors import ProtocolError
from simulators.brake.config import BrakeVehicle, ScriptParams, TesterParams, WheelSpec

SIDES = ("left", "right")
#: how many produced samples the log keeps (16 minutes at 100 Hz)
SAMPLE_LOG_SIZE = 100_000


@dataclass(frozen=True)
class ProducedSample:
    """One sample as the tester produced it: `seq` counts from power-up without wrapping."""

    seq: int
    index: int
    left_force_n: int
    right_force_n: int
    left_dan: int
    right_dan: int
    t_s: float


def smoothstep(x: float) -> float:
    """The pedal-to-force build-up shape: 0 at x ≤ 0, 1 at x ≥ 1, S-shaped between."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    return x * x * (3.0 - 2.0 * x)


class TesterModel:
    """State of the tester and of the vehicle on it. Not thread-safe; one event loop drives it."""

    def __init__(
        self,
        params: TesterParams,
        script: ScriptParams,
        vehicle: BrakeVehicle | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.p = params
        self.script = script
        self.rng = rng or random.Random(params.seed)
        self.settings = TesterSettings(params.slip_threshold_pct, params.sample_rate_hz, params.auto_stop_s)
        self.ring_size = params.ring_size
        self.ring = [0] * (2 * self.ring_size)
        self.log: deque[ProducedSample] = deque(maxlen=SAMPLE_LOG_SIZE)
        self.t = 0.0
        self.next_sample_at = 0.0
        self.produced = 0  # samples since power-up; SAMPLE_INDEX = (produced − 1) mod 65536
        self.state = TesterState.IDLE
        self.fault_code = FaultCode.NONE
        self.fault_cause: FaultCode | None = None
        self.speed_kmh = 0.0
        self.run_started_at = 0.0
        self.lift_cmd = False
        self.lift_pos = 0.0  # 0 down … 1 up
        self.tare_until: float | None = None
        self.zero_n = [0.0, 0.0]
        self.slip_pct = [0.0, 0.0]
        self.slip_latched = [False, False]
        self.locked = [False, False]
        self.brake_kind: str | None = None  # "service" | "parking"
        self.brake_at: float | None = None  # the pedal goes down at this time
        self.brake_mode = "auto"  # what the scripted driver does on RUNNING: auto|service|parking|none
        self.force_n = [0, 0]
        self.load_n = [0, 0]
        self.speeds_kmh = [0.0, 0.0]
        self.vehicle: BrakeVehicle | None = None
        self.axle: int | None = None  # 0-based axle on the rollers
        self.next_axle = 0
        self.runs_on_axle = 0
        self.drive_on_at: float | None = None
        self.drive_off_at: float | None = None
        if vehicle is not None:
            self.load_vehicle(vehicle)

    # ----- vehicle and scripted driver ------------------------------------------------

    def load_vehicle(self, vehicle: BrakeVehicle) -> None:
        """A new vehicle approaches: its first axle drives on after the scripted delay."""
        if self.motors_run:
            raise ValueError("the motors run: stop them before the next vehicle")
        self.vehicle = vehicle
        self.axle = None
        self.next_axle = 0
        self.runs_on_axle = 0
        self.drive_off_at = None
        self.drive_on_at = self.t + self.script.drive_on_delay_s if self.script.auto else None

    def drive_on(self, axle_no: int) -> None:
        """Axle `axle_no` (1-based, from the front) rolls onto the rollers now."""
        if self.vehicle is None:
            raise ValueError("no vehicle loaded")
        if not 1 <= axle_no <= len(self.vehicle.axles):
            raise ValueError(f"axle {axle_no}: the vehicle has axles 1–{len(self.vehicle.axles)}")
        if self.motors_run:
            raise ValueError("the motors run: stop them before moving the vehicle")
        self.axle = axle_no - 1
        self.next_axle = axle_no
        self.runs_on_axle = 0
        self.drive_on_at = self.drive_off_at = None

    def drive_off(self) -> None:
        """The axle on the rollers rolls off (the tester stops the motors if they run)."""
        if self.motors_run:
            self._stop(TesterState.STOPPED)
        self.axle = None
        self.drive_off_at = None
        if self.script.auto and self.lift_pos <= 0.0 and self._axles_left():
            self.drive_on_at = self.t + self.script.drive_on_delay_s

    def _axles_left(self) -> bool:
        return self.vehicle is not None and self.next_axle < len(self.vehicle.axles)

    def press(self, kind: str | None) -> None:
        """The driver presses the service or parking brake now (None: releases it)."""
        if kind not in (None, "service", "parking"):
            raise ValueError(f"brake kind {kind!r}: service, parking or None")
        self.brake_kind = kind
        self.brake_at = self.t if kind else None
        if kind is None:
            self.locked = [False, False]

    def _scripted_brake_kind(self) -> str | None:
        if self.brake_mode == "none":
            return None
        if self.brake_mode in ("service", "parking"):
            return self.brake_mode
        axle = self._axle_spec()
        if self.runs_on_axle == 2 and axle is not None and axle.parking:
            return "parking"
        return "service"

    def _axle_spec(self) -> Any:
        if self.vehicle is None or self.axle is None:
            return None
        return self.vehicle.axles[self.axle]

    # ----- host commands (return the exception to answer, or None) -----------------------

    @property
    def motors_run(self) -> bool:
        return self.state in MOTORS_RUN_STATES

    @property
    def in_position(self) -> bool:
        return self.axle is not None

    @property
    def lift_up(self) -> bool:
        return self.lift_pos > 0.0

    def coil_refusal(self, coil: Coil, on: bool) -> ExceptionCode | None:
        """Exception 06 if writing `coil` = `on` is not allowed in the present state (the interlocks)."""
        if coil == Coil.MOTORS:
            if not on or self.motors_run:
                return None  # "writing 1 while STARTING or RUNNING changes nothing"
            startable = self.state in STARTABLE_STATES and self.in_position and not self.lift_up
            return None if startable else ExceptionCode.DEVICE_BUSY
        return ExceptionCode.DEVICE_BUSY if self.motors_run else None  # LIFT, TARE

    def write_coil(self, coil: Coil, on: bool) -> ExceptionCode | None:
        """A host write of one coil; returns the exception to answer, or None when done."""
        if (refused := self.coil_refusal(coil, on)) is not None:
            return refused
        if coil == Coil.LIFT:
            self.lift_cmd = on
        elif coil == Coil.TARE:
            if on and self.tare_until is None:
                self.tare_until = self.t + self.p.tare_s
        elif on:
            if not self.motors_run:
                self._start()
        elif self.motors_run:
            self._stop(TesterState.STOPPED)
        elif self.state == TesterState.FAULT and self.fault_cause is None:
            self.fault_code = FaultCode.NONE
            self.state = TesterState.STOPPED if self.in_position else TesterState.IDLE
        return None

    def _start(self) -> None:
        self.state = TesterState.STARTING
        self.run_started_at = self.t
        self.slip_latched = [False, False]
        self.slip_pct = [0.0, 0.0]
        self.locked = [False, False]
        self.runs_on_axle += 1

    def write_holding(self, address: int, values: list[int]) -> ExceptionCode | None:
        """FC06/FC16: all values checked first, then all applied (nothing half-written)."""
        try:
            for offset, value in enumerate(values):
                check_holding_value(address + offset, value)
        except ProtocolError:
            return ExceptionCode.ILLEGAL_VALUE
        current = [self.settings.slip_threshold_pct, self.settings.sample_rate_set_hz, self.settings.auto_stop_s]
        current[address : address + len(values)] = values
        self.settings = TesterSettings(*current[: len(HOLDING_REGISTERS)])
        return None

    def _stop(self, state: TesterState) -> None:
        self.state = state
        self.press(None)  # the driver lets go when the rollers stop

    # ----- time --------------------------------------------------------------------------

    def advance_to(self, t_s: float) -> int:
        """Produce every sample due up to tester time `t_s`; returns how many."""
        made = 0
        while self.next_sample_at <= t_s:
            self._step(self.next_sample_at)
            self.next_sample_at += 1.0 / self.settings.sample_rate_set_hz
            made += 1
        return made

    def _step(self, t: float) -> None:
        dt = max(0.0, t - self.t)
        self.t = t
        self._run_script(t)
        self._move_lift(dt)
        if self.tare_until is not None and t >= self.tare_until:
            self.tare_until = None
            self.zero_n = [float(self.p.force_offset_n[0]), float(self.p.force_offset_n[1])]
        self._run_motors(t, dt)
        self._run_wheels(t, dt)
        self._sample(t)

    def _run_script(self, t: float) -> None:
        if self.drive_on_at is not None and t >= self.drive_on_at and self.axle is None and self._axles_left():
            self.drive_on(self.next_axle + 1)
        if self.drive_off_at is not None and t >= self.drive_off_at and self.axle is not None:
            self.drive_off()
        if self.brake_at is not None and self.brake_kind is None and t >= self.brake_at:
            self.press(self._scripted_brake_kind())

    def _move_lift(self, dt: float) -> None:
        was_down, was_up = self.lift_pos <= 0.0, self.lift_pos >= 1.0
        step = dt / self.p.lift_travel_s
        self.lift_pos = min(1.0, self.lift_pos + step) if self.lift_cmd else max(0.0, self.lift_pos - step)
        if not self.script.auto:
            return
        if self.lift_pos >= 1.0 and not was_up and self.axle is not None and self.runs_on_axle > 0:
            self.drive_off_at = self.t + self.script.drive_off_delay_s
        if self.lift_pos <= 0.0 and not was_down and self.axle is None and self._axles_left():
            self.drive_on_at = self.t + self.script.drive_on_delay_s

    def _run_motors(self, t: float, dt: float) -> None:
        if self.fault_cause is not None and self.state != TesterState.FAULT:
            self.fault_code = self.fault_cause
            self._stop(TesterState.FAULT)
        if self.state in (TesterState.STOPPED, TesterState.STOPPED_SLIP) and not self.in_position:
            self.state = TesterState.IDLE
        if self.motors_run and not self.in_position:
            self._stop(TesterState.STOPPED)
        if self.motors_run and t - self.run_started_at >= self.settings.auto_stop_s:
            self._stop(TesterState.STOPPED)
        top = self.p.test_speed_kmh
        if self.motors_run:
            self.speed_kmh = min(top, self.speed_kmh + top * dt / self.p.start_s)
            if self.state == TesterState.STARTING and t - self.run_started_at >= self.p.start_s:
                self.state = TesterState.RUNNING
                self.speed_kmh = top
                if self.script.auto and self._scripted_brake_kind() is not None:
                    self.brake_at = t + self.script.brake_delay_s
        else:
            self.speed_kmh = max(0.0, self.speed_kmh - top * dt / self.p.stop_s)

    def _wheel_force(self, wheel: WheelSpec, t: float) -> float:
        if self.brake_kind == "parking":
            top = wheel.parking_max_n if wheel.parking_max_n is not None else wheel.drag_n
            build_up = wheel.parking_build_up_s
        elif self.brake_kind == "service":
            top, build_up = wheel.service_max_n, wheel.build_up_s
        else:
            return wheel.drag_n
        assert self.brake_at is not None
        return wheel.drag_n + (top - wheel.drag_n) * smoothstep((t - self.brake_at) / build_up)

    def _run_wheels(self, t: float, dt: float) -> None:
        axle = self._axle_spec()
        lift_down = self.lift_pos <= 0.0
        turning = min(1.0, self.speed_kmh / self.p.test_speed_kmh)
        for k, wheel in enumerate((axle.left, axle.right) if axle is not None else (None, None)):
            if wheel is None:
                self.force_n[k], self.load_n[k], self.speeds_kmh[k] = self._reading(k, 0.0, 0.0), 0, 0.0
                continue
            adhesion_limit = self.vehicle.adhesion * wheel.load_n if self.vehicle else 0.0
            demand = self._wheel_force(wheel, t)
            if self.motors_run and demand > adhesion_limit:
                self.locked[k] = True
            true_force = min(demand, adhesion_limit) if self.locked[k] else demand
            if self.locked[k] and self.motors_run:
                self.slip_pct[k] = min(100.0, self.slip_pct[k] + self.p.slip_rise_pct_per_s * dt)
                if self.slip_pct[k] >= self.settings.slip_threshold_pct and not self.slip_latched[k]:
                    self.slip_latched[k] = True
            load = wheel.load_n + self.rng.uniform(-1, 1) * self.p.load_noise_n if lift_down else 0.0
            self.load_n[k] = round_half_away(max(0.0, load))
            self.force_n[k] = self._reading(k, true_force * turning if lift_down else 0.0, turning)
            noise = self.rng.uniform(-1, 1) * self.p.speed_noise_kmh if self.speed_kmh > 0 else 0.0
            self.speeds_kmh[k] = max(0.0, self.speed_kmh + noise)
        if any(self.slip_latched) and self.motors_run:
            self._stop(TesterState.STOPPED_SLIP)

    def _reading(self, k: int, force: float, turning: float) -> int:
        """What the force channel shows: the force, its zero offset until TARE, noise while turning."""
        noise = self.rng.uniform(-1, 1) * self.p.force_noise_n if turning > 0 else 0.0
        return round_half_away(force + self.p.force_offset_n[k] - self.zero_n[k] + noise)

    def _sample(self, t: float) -> None:
        index = self.produced % INDEX_MODULUS
        left, right = encode_ring_sample(self.force_n[0], self.force_n[1])
        slot = 2 * (index % self.ring_size)
        self.ring[slot], self.ring[slot + 1] = left, right
        self.log.append(
            ProducedSample(
                self.produced, index, self.force_n[0], self.force_n[1],
                left - 0x10000 if left & 0x8000 else left, right - 0x10000 if right & 0x8000 else right, t,
            )
        )
        self.produced += 1

    # ----- what the registers show ---------------------------------------------------------

    @property
    def sample_index(self) -> int:
        return (self.produced - 1) % INDEX_MODULUS if self.produced else 0

    def snapshot(self) -> TesterSnapshot:
        return TesterSnapshot(
            left_force_n=self.force_n[0],
            right_force_n=self.force_n[1],
            left_load_n=self.load_n[0],
            right_load_n=self.load_n[1],
            left_speed_kmh=round(self.speeds_kmh[0], 2),
            right_speed_kmh=round(self.speeds_kmh[1], 2),
            state=self.state,
            fault_code=self.fault_code,
            sample_index=self.sample_index,
            sample_rate_hz=self.settings.sample_rate_set_hz,
            ring_size=self.ring_size,
        )

    def snapshot_registers(self) -> list[int]:
        return encode_snapshot(self.snapshot())

    def inputs(self) -> TesterInputs:
        return TesterInputs(
            in_position=self.in_position,
            left_slip=self.slip_latched[0],
            right_slip=self.slip_latched[1],
            motors_running=self.state == TesterState.RUNNING,
            lift_up=self.lift_up,
            fault=self.state == TesterState.FAULT,
        )

    def input_bits(self) -> list[bool]:
        return encode_inputs(self.inputs())

    def coils(self) -> TesterCoils:
        return TesterCoils(motors=self.motors_run, lift=self.lift_cmd, tare=self.tare_until is not None)

    def describe(self) -> dict[str, Any]:
        """The state for `{"get": "state"}` and logs."""
        return {
            "t_s": round(self.t, 3),
            "state": self.state.name,
            "fault_code": self.fault_code.name,
            "vehicle": self.vehicle.name if self.vehicle else None,
            "axle": None if self.axle is None else self.axle + 1,
            "axles": len(self.vehicle.axles) if self.vehicle else 0,
            "runs_on_axle": self.runs_on_axle,
            "lift_up": self.lift_up,
            "brake": self.brake_kind,
            "brake_mode": self.brake_mode,
            "slip_latched": list(self.slip_latched),
            "force_n": list(self.force_n),
            "load_n": list(self.load_n),
            "speed_kmh": round(self.speed_kmh, 2),
            "sample_index": self.sample_index,
            "samples_produced": self.produced,
            "settings": {
                "slip_threshold_pct": self.settings.slip_threshold_pct,
                "sample_rate_set_hz": self.settings.sample_rate_set_hz,
                "auto_stop_s": self.settings.auto_stop_s,
            },
        }
