"""The CD-1 dynamometer and the vehicle on its rollers, integrated at 100 Hz, sampled at 10 Hz.

Time is the machine's own: seconds since power-up, advanced by the simulator
from the wall clock. Each 10 ms step runs the driver (throttle controller,
scripted excursions, brake, stall), the engine and gearbox (rpm = k_gear · v,
F_wheel = P_engine · η / v), the lift, the motor, the roller brake, the PAU
(first-order lag towards the command of the control mode, limited to the
build's rated force and power), the roller dynamics

    M_eff · dv/dt = F_wheel + F_motor − F_pl,true(v) − F_pau − F_brake

with the machine's *true* parasitic coefficients (not its PL_A…PL_C
registers, so a coast-down finds them), the watchdog and the faults. Every
tenth step writes one ring sample (SPEED, FORCE) and the sample log tests
compare a capture against.

Host writes go through `write_coils` / `write_holding`, which apply
protocols.dynamometer's ranges and interlocks (`check_write`) and return the
exception code to answer, or None.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import Any

from protocols import dynamometer as dy
from protocols.brake_tester import Table, round_half_away
from protocols.ring import INDEX_MODULUS
from simulators.dyno.config import DynoParams, DynoVehicle

STEP_S = 0.01
STEPS_PER_SAMPLE = 10
SAMPLE_LOG_SIZE = 100_000
KMH = 3.6
STOPPED_KMH = 0.5
PAU_TEMP_TRIP_C, PAU_TEMP_CLEAR_C = 120.0, 80.0
OVER_SPEED_MARGIN_KMH = 5.0


@dataclass(frozen=True)
class ProducedSample:
    """One ring sample as the machine produced it: `seq` counts from power-up without wrapping."""

    seq: int
    index: int
    speed_raw: int
    force_n: int
    t_s: float


class VehicleDriver:
    """The person in the vehicle: throttle, brake pedal, engine switch."""

    def __init__(self, vehicle: DynoVehicle, rng: random.Random) -> None:
        self.v = vehicle
        self.rng = rng
        self.mode = "idle"  # idle | hold | full | release
        self.target_kmh = 0.0
        self.excursion_kmh = 0.0
        self.excursion_until = 0.0
        self.brake_until = 0.0
        self.engine_on = True
        self.throttle = 0.0
        self._integral = 0.0
        self._aim_offset = 0.0

    def step(self, t: float, speed_kmh: float) -> None:
        if not self.engine_on or self.mode in ("idle", "release") or t < self.brake_until:
            self.throttle, self._integral = 0.0, 0.0
            return
        if self.mode == "full":
            self.throttle = 1.0
            return
        # hold: a PI controller on the speed the driver aims at (wandering a little)
        self._aim_offset += (self.rng.gauss(0.0, 1.0) * self.v.speed_noise_kmh * 0.1 - self._aim_offset * 0.02)
        aim = self.target_kmh + (self.excursion_kmh if t < self.excursion_until else 0.0) + self._aim_offset
        error = aim - speed_kmh
        raw = self.v.driver_kp * error + self.v.driver_ki * self._integral
        if 0.0 < raw < 1.0 or (raw <= 0.0 < error) or (raw >= 1.0 > error):
            self._integral += error * STEP_S  # no wind-up against the throttle's stops
        self.throttle = min(1.0, max(0.0, raw))


class DynoModel:
    """State of the dynamometer and of the vehicle on it. Not thread-safe; one event loop drives it."""

    def __init__(self, params: DynoParams, vehicle: DynoVehicle | None = None, *,
                 rng: random.Random | None = None) -> None:
        self.p = params
        self.build = dy.BUILDS[params.model]
        self.rng = rng or random.Random(params.seed)
        self.ring_size = params.ring_size
        self.ring = [0] * (dy.SAMPLE_REGISTERS * self.ring_size)
        self.log: deque[ProducedSample] = deque(maxlen=SAMPLE_LOG_SIZE)
        self.t = 0.0
        self.steps = 0
        self.produced = 0
        self.holding = [0, 0, 0, 0, 0, self.build.base_inertia_kg, 0, 500, 1200, 120, 6000, 20]
        self.coils = [False] * len(dy.COILS)
        self.lift_pos = 0.0  # 0 down … 1 up
        self.v_ms = 0.0
        self.a_filtered = 0.0
        self.stopped_since: float | None = 0.0
        self.distance_m = 0.0
        self.pau_force_n = 0.0
        self.pau_temp_c = params.ambient_c + 10.0
        self.roller_temp_c = params.ambient_c + 2.0
        self.speed_setpoint_kmh = 0.0
        self._speed_integral = 0.0
        self.fault_code = dy.FaultCode.NONE
        self.fault_cause: dy.FaultCode | None = None  # a fault injected from outside (control socket)
        self.motor_on = False
        self.tare_until: float | None = None
        self.zero_n = 0.0
        self.last_request_t = 0.0
        self.force_n = 0
        self.cell_n = 0.0
        self.wheel_force_n = 0.0
        self.engine_kw = 0.0
        self.rpm = 0.0
        self.vehicle: DynoVehicle | None = None
        self.in_position = False
        self.driver: VehicleDriver | None = None
        self._snapshot: dy.DynoSnapshot | None = None
        if vehicle is not None:
            self.load_vehicle(vehicle)

    # ----- the vehicle ------------------------------------------------------------------------

    def load_vehicle(self, vehicle: DynoVehicle) -> None:
        self.vehicle = vehicle
        self.driver = VehicleDriver(vehicle, self.rng)

    def drive_on(self) -> None:
        if self.vehicle is None:
            raise ValueError("no vehicle loaded (--vehicle NAME or load_vehicle)")
        if self.motor_on:
            raise ValueError("the drive motor runs: no vehicle onto turning rollers")
        self.in_position = True
        assert self.driver is not None
        self.driver.mode, self.driver.engine_on = "idle", True

    def drive_off(self) -> None:
        if self.speed_kmh >= STOPPED_KMH:
            raise ValueError(f"the rollers turn at {self.speed_kmh:.1f} km/h: stop before driving off")
        self.in_position = False
        if self.driver is not None:
            self.driver.mode = "idle"

    def _vehicle_driving(self) -> bool:
        return self.in_position and self.lift_pos <= 0.0 and self.driver is not None and self.vehicle is not None

    # ----- what the interlocks see ---------------------------------------------------------------

    @property
    def speed_kmh(self) -> float:
        return self.v_ms * KMH

    @property
    def fault(self) -> bool:
        return self.fault_code != dy.FaultCode.NONE

    @property
    def rollers_stopped(self) -> bool:
        return self.stopped_since is not None and self.t - self.stopped_since >= 1.0

    @property
    def pau_ready(self) -> bool:
        return self.coils[dy.Coil.PAU_ENABLE] and not self.fault

    @property
    def control_mode(self) -> int:
        return self.holding[dy.HoldingRegister.CONTROL_MODE]

    def status(self) -> dy.DeviceStatus:
        return dy.DeviceStatus(
            in_position=self.in_position, lift_down=self.lift_pos <= 0.0, rollers_stopped=self.rollers_stopped,
            roller_brake_on=self.coils[dy.Coil.ROLLER_BRAKE], pau_ready=self.pau_ready, motor_running=self.motor_on,
            fault=self.fault, control_mode=self.control_mode, speed_raw=self.speed_raw, coils=tuple(self.coils),
        )

    # ----- host writes ------------------------------------------------------------------------------

    def write_coils(self, address: int, values: list[bool]) -> dy.ExceptionCode | None:
        code = dy.check_write(Table.COIL, address, values, self.status(), self.build,
                              self.holding[dy.HoldingRegister.BASE_INERTIA])
        if code is not None:
            return code
        for offset, value in enumerate(values):
            self._set_coil(address + offset, value)
        return None

    def _set_coil(self, coil: int, on: bool) -> None:
        if coil == dy.Coil.TARE:
            if on and self.tare_until is None:
                self.tare_until = self.t + self.p.tare_s
            return
        if coil == dy.Coil.PAU_ENABLE and not on:
            self._drop_mode("PAU_ENABLE = 0")
            if self.fault and self._fault_cause_gone():
                self.fault_code = dy.FaultCode.NONE  # the one write of an unchanged value that acts
        if coil == dy.Coil.MOTOR:
            self.motor_on = on
        self.coils[coil] = on

    def write_holding(self, address: int, values: list[int]) -> dy.ExceptionCode | None:
        code = dy.check_write(Table.HOLDING_REGISTER, address, values, self.status(), self.build,
                              self.holding[dy.HoldingRegister.BASE_INERTIA])
        if code is not None:
            return code
        for offset, value in enumerate(values):
            a = address + offset
            if a == dy.HoldingRegister.CONTROL_MODE and value != self.control_mode:
                self.speed_setpoint_kmh = self.speed_kmh  # mode 3 starts from the speed the rollers have
                self._speed_integral = self.pau_force_n / self.p.speed_ki_n_per_kmh_s if (
                    self.p.speed_ki_n_per_kmh_s) else 0.0
            self.holding[a] = value
        return None

    def note_request(self) -> None:
        """A valid request reached the device: the host watchdog is fed."""
        self.last_request_t = self.t

    def _drop_mode(self, why: str) -> None:
        self.holding[dy.HoldingRegister.CONTROL_MODE] = 0

    def _fault_cause_gone(self) -> bool:
        if self.fault_cause is not None:
            return False
        if self.fault_code == dy.FaultCode.PAU_OVER_TEMPERATURE:
            return self.pau_temp_c < PAU_TEMP_CLEAR_C
        if self.fault_code == dy.FaultCode.OVER_SPEED:
            return self.speed_kmh <= self.build.top_speed_raw / 100
        return True

    def trip(self, code: dy.FaultCode) -> None:
        """A fault: FAULT = 1, the mode dropped, the motor cut, the PAU's power stage off."""
        if self.fault_code == dy.FaultCode.NONE:
            self.fault_code = code
        self._drop_mode(code.name)
        self.motor_on = False
        self.coils[dy.Coil.MOTOR] = False

    # ----- time ---------------------------------------------------------------------------------------

    def advance_to(self, t_s: float) -> int:
        """Integrate up to machine time `t_s` in 10 ms steps; returns the ring samples produced."""
        made = 0
        while self.steps * STEP_S <= t_s + 1e-9:  # 1e-9: a step due "now" despite float rounding
            self._step()
            if self.steps % STEPS_PER_SAMPLE == 0:
                self._sample()
                made += 1
            self.steps += 1
        return made

    def _step(self) -> None:
        t = self.steps * STEP_S
        self.t = t
        self._faults_and_watchdog(t)
        self._move_lift()
        if self.tare_until is not None and t >= self.tare_until:
            self.tare_until = None
            self.zero_n = self.p.force_offset_n
        v_kmh = self.speed_kmh
        f_wheel = self._vehicle(t, v_kmh)
        f_motor = self._motor(v_kmh)
        self._pau(v_kmh)
        mass = self.true_mass
        f_pl = self._true_parasitic(v_kmh) if self.v_ms > 0 else 0.0
        f_brake = mass * (10 / KMH) / self.p.brake_stop_s if self.coils[dy.Coil.ROLLER_BRAKE] else 0.0
        net = f_wheel + f_motor - self.pau_force_n
        resist = f_pl + f_brake
        if self.v_ms <= 0.0 and net <= resist:
            a = 0.0
            self.v_ms = 0.0
        else:
            a = (net - resist) / mass
            self.v_ms = max(0.0, self.v_ms + a * STEP_S)
        self.a_filtered += (a - self.a_filtered) * STEP_S / self.p.accel_filter_s
        self.distance_m += self.v_ms * STEP_S
        if self.speed_kmh < STOPPED_KMH:
            if self.stopped_since is None:
                self.stopped_since = t
        else:
            self.stopped_since = None
        self._temperatures(v_kmh)
        if self.speed_kmh > self.build.top_speed_raw / 100 + OVER_SPEED_MARGIN_KMH:
            self.trip(dy.FaultCode.OVER_SPEED)
        self._reported()

    def _faults_and_watchdog(self, t: float) -> None:
        if self.fault_cause is not None and self.fault_code != self.fault_cause:
            self.fault_code = dy.FaultCode.NONE
            self.trip(self.fault_cause)
        watchdog_s = self.holding[dy.HoldingRegister.WATCHDOG] / 10
        active = self.control_mode != 0 or self.motor_on
        if watchdog_s > 0 and active and t - self.last_request_t > watchdog_s:
            self.trip(dy.FaultCode.HOST_WATCHDOG)
        if self.fault:
            self._drop_mode("fault")
            self.motor_on = False

    def _move_lift(self) -> None:
        step = STEP_S / self.p.lift_travel_s
        was_down = self.lift_pos <= 0.0
        up = self.coils[dy.Coil.LIFT]
        self.lift_pos = min(1.0, self.lift_pos + step) if up else max(0.0, self.lift_pos - step)
        if was_down and self.lift_pos > 0.0:
            self._drop_mode("LIFT_DOWN fell")

    def _vehicle(self, t: float, v_kmh: float) -> float:
        """The force the driven wheels put into the rollers (N); sets rpm and engine power."""
        driver, vehicle = self.driver, self.vehicle
        if not self.in_position or driver is None or vehicle is None:
            self.rpm = self.engine_kw = 0.0
            return 0.0
        driver.step(t, v_kmh)
        braking = t < driver.brake_until
        if not driver.engine_on:
            self.rpm = self.engine_kw = 0.0
            power_kw = 0.0
        else:
            self.rpm = max(vehicle.idle_rpm, vehicle.rpm_per_kmh * v_kmh)
            full = vehicle.full_load_kw(self.rpm)
            drag = vehicle.engine_drag_pct / 100 * vehicle.rated_power_kw * self.rpm / vehicle.rated_speed_rpm
            coupled = vehicle.rpm_per_kmh * v_kmh >= vehicle.idle_rpm
            closed = -drag if coupled else 0.0  # closed throttle: engine braking once the clutch is in
            power_kw = driver.throttle * full if driver.throttle > 0.0 else closed
            self.engine_kw = max(0.0, power_kw)
        if self.lift_pos > 0.0:
            return 0.0  # the wheels sit on the lift, not on the rollers
        v_floor = vehicle.idle_rpm / vehicle.rpm_per_kmh / KMH  # below it the clutch slips
        force = power_kw * 1000 * (vehicle.efficiency if power_kw > 0 else 1 / vehicle.efficiency) / max(
            self.v_ms, v_floor)
        if braking and self.v_ms > 0:
            force -= vehicle.brake_force_n
        self.wheel_force_n = force
        return force

    def _motor(self, v_kmh: float) -> float:
        if not self.motor_on:
            return 0.0
        target = self.holding[dy.HoldingRegister.MOTOR_SPEED] / 100
        mass = self.true_mass
        run_up = mass * (target / KMH) / self.p.motor_run_up_s  # constant push: 0 → target in run-up time
        hold = self._true_parasitic(v_kmh) + mass * (target - v_kmh) / KMH / 0.5
        return max(0.0, min(run_up + self._true_parasitic(v_kmh), hold))

    def _device_parasitic(self, v_kmh: float) -> float:
        """F_pl(v) from the PL_A…PL_C registers: what the device believes (0 while stopped)."""
        if self.rollers_stopped:
            return 0.0
        h = self.holding
        return dy.parasitic_force_n(v_kmh, h[7] / 10, h[8] / 1000, h[9] / 10000)

    def _true_parasitic(self, v_kmh: float) -> float:
        return dy.parasitic_force_n(v_kmh, self.p.true_pl_a_n, self.p.true_pl_b, self.p.true_pl_c)

    @property
    def true_mass(self) -> float:
        base = self.p.true_base_inertia_kg or float(self.build.base_inertia_kg)
        rotating = self.vehicle.rotating_mass_kg if self.vehicle is not None and self._vehicle_driving() else 0.0
        return base + rotating

    def _pau(self, v_kmh: float) -> None:
        h, mode = self.holding, self.control_mode
        command = 0.0
        if self.pau_ready and mode:
            if mode == dy.ControlMode.CONSTANT_POWER:
                command = h[1] * 10 / max(v_kmh, 5.0) * KMH - self._device_parasitic(v_kmh)
            elif mode == dy.ControlMode.CONSTANT_FORCE:
                command = h[2] - self._device_parasitic(v_kmh)
            else:
                command = self._speed_control(v_kmh)
            if mode in (1, 2) and h[6]:
                command += (h[6] - h[5]) * self.a_filtered
        limit = float(self.build.rated_force_n)
        if self.v_ms > 0:
            limit = min(limit, self.build.rated_power_raw * 100 / self.v_ms)
        command = min(max(command, 0.0), limit)
        if not self.pau_ready:
            self.pau_force_n = 0.0  # the power stage is off: no field, no force
            return
        self.pau_force_n += (command - self.pau_force_n) * STEP_S / self.p.pau_lag_s

    def _speed_control(self, v_kmh: float) -> float:
        h = self.holding
        target, ramp = h[3] / 100, h[4] / 100
        if ramp == 0:
            self.speed_setpoint_kmh = target
        else:
            delta = max(-ramp * STEP_S, min(ramp * STEP_S, target - self.speed_setpoint_kmh))
            self.speed_setpoint_kmh += delta
        error = v_kmh - self.speed_setpoint_kmh
        ki = self.p.speed_ki_n_per_kmh_s
        raw = self.p.speed_kp_n_per_kmh * error + ki * self._speed_integral
        if raw > 0 or error > 0:
            self._speed_integral += error * STEP_S
        self._speed_integral = max(0.0, self._speed_integral)
        return raw

    def _temperatures(self, v_kmh: float) -> None:
        p = self.p
        absorbed_kw = self.pau_force_n * self.v_ms / 1000
        self.pau_temp_c += (absorbed_kw * p.pau_heat_c_per_kj - (self.pau_temp_c - p.ambient_c) / p.pau_cool_s) * STEP_S
        self.roller_temp_c += (0.002 * v_kmh - (self.roller_temp_c - p.ambient_c) / 900) * STEP_S
        if self.pau_temp_c >= PAU_TEMP_TRIP_C:
            self.trip(dy.FaultCode.PAU_OVER_TEMPERATURE)

    def _reported(self) -> None:
        v_kmh = self.speed_kmh
        noise = self.rng.uniform(-1, 1) * self.p.force_noise_n if self.v_ms > 0 or self.pau_force_n > 0 else 0.0
        self.cell_n = self.pau_force_n + self.p.force_offset_n - self.zero_n + noise
        f = self.cell_n + self._device_parasitic(v_kmh) + self.holding[5] * self.a_filtered
        self.force_n = round_half_away(f)

    @property
    def speed_raw(self) -> int:
        if self.v_ms <= 0:
            return 0
        noisy = self.speed_kmh + self.rng.uniform(-1, 1) * self.p.speed_noise_kmh
        return max(0, min(0xFFFF, round_half_away(max(0.0, noisy) * 100)))

    def _sample(self) -> None:
        index = self.produced % INDEX_MODULUS
        speed = self.speed_raw
        slot = dy.SAMPLE_REGISTERS * (index % self.ring_size)
        self.ring[slot : slot + 3] = dy.encode_ring_sample(speed, self.force_n)
        self.log.append(ProducedSample(self.produced, index, speed, self.force_n, self.t))
        self.produced += 1
        self._snapshot = self._make_snapshot(speed)

    # ----- what the registers show ------------------------------------------------------------------

    @property
    def sample_index(self) -> int:
        return (self.produced - 1) % INDEX_MODULUS if self.produced else 0

    def state(self) -> dy.DynoState:
        if self.fault:
            return dy.DynoState.FAULT
        if self.control_mode:
            return dy.DynoState.LOADED
        if self.motor_on:
            return dy.DynoState.MOTORING
        if self.coils[dy.Coil.ROLLER_BRAKE]:
            return dy.DynoState.BRAKING
        return dy.DynoState.IDLE

    def _make_snapshot(self, speed_raw: int) -> dy.DynoSnapshot:
        v = speed_raw / 100
        h = self.holding
        parasitic = dy.parasitic_force_n(v, h[7] / 10, h[8] / 1000, h[9] / 10000) if speed_raw else 0.0
        return dy.DynoSnapshot(
            speed_kmh=v, force_n=self.force_n, pau_force_n=round_half_away(self.cell_n),
            power_kw=round(self.force_n * v / KMH / 1000, 2), parasitic_power_kw=round(parasitic * v / KMH / 1000, 2),
            distance_m=int(self.distance_m), roller_temp_c=round(self.roller_temp_c, 1),
            pau_temp_c=round(self.pau_temp_c, 1), state=self.state(), fault_code=self.fault_code,
            sample_index=self.sample_index, sample_rate_hz=dy.DEFAULT_SAMPLE_RATE_HZ, ring_size=self.ring_size,
            accel_ms2=round(self.a_filtered, 2), rated_power_kw=self.build.rated_power_kw,
            rated_force_n=self.build.rated_force_n, top_speed_kmh=self.build.top_speed_raw / 100,
        )

    def snapshot(self) -> dy.DynoSnapshot:
        """Input registers 0..19: the newest sample's values, with the present state and fault."""
        snap = self._snapshot or self._make_snapshot(0)
        if snap.state != self.state() or snap.fault_code != self.fault_code:
            snap = dy.DynoSnapshot(**{**snap.__dict__, "state": self.state(), "fault_code": self.fault_code})
        return snap

    def snapshot_registers(self) -> list[int]:
        return dy.encode_snapshot(self.snapshot())

    def inputs(self) -> dy.DynoInputs:
        return dy.DynoInputs(
            in_position=self.in_position, lift_up=self.lift_pos >= 1.0, lift_down=self.lift_pos <= 0.0,
            rollers_stopped=self.rollers_stopped, roller_brake_on=self.coils[dy.Coil.ROLLER_BRAKE],
            pau_ready=self.pau_ready, motor_running=self.motor_on, fault=self.fault,
        )

    def coil_bits(self) -> list[bool]:
        bits = list(self.coils)
        bits[dy.Coil.TARE] = self.tare_until is not None
        bits[dy.Coil.MOTOR] = self.motor_on
        return bits

    def engine_state(self) -> dict[str, float]:
        """What the tailpipe simulators get: rpm, load (delivered / full-load power at this rpm), power, speed."""
        full = self.vehicle.full_load_kw(self.rpm) if self.vehicle is not None and self.rpm > 0 else 0.0
        load = min(1.0, max(0.0, self.engine_kw / full)) if full > 0 else 0.0
        return {"rpm": round(self.rpm, 1), "load": round(load, 4), "power_kw": round(self.engine_kw, 3),
                "speed_kmh": round(self.speed_kmh, 2)}

    def describe(self) -> dict[str, Any]:
        d = self.driver
        return {
            "t_s": round(self.t, 3), "state": self.state().name, "fault_code": self.fault_code.name,
            "control_mode": self.control_mode, "holding": list(self.holding), "coils": self.coil_bits(),
            "speed_kmh": round(self.speed_kmh, 3), "force_n": self.force_n, "pau_force_n": round(self.pau_force_n, 1),
            "lift_pos": round(self.lift_pos, 3), "in_position": self.in_position,
            "vehicle": self.vehicle.name if self.vehicle else None,
            "driver": None if d is None else {"mode": d.mode, "target_kmh": d.target_kmh, "engine_on": d.engine_on,
                                               "throttle": round(d.throttle, 3)},
            "engine": self.engine_state(), "sample_index": self.sample_index, "samples_produced": self.produced,
            "pau_temp_c": round(self.pau_temp_c, 1),
        }
