"""The simulated CD-1's physics, run in its own time (no event loop, no wire).

Expected values are the manual's formulas ("Self-checks", "Force and power"), worked by hand.
"""

from __future__ import annotations

import random

import pytest

from protocols import dynamometer as dy
from simulators.dyno.config import DynoParams, load_dyno_vehicle
from simulators.dyno.physics import DynoModel


def machine(model: str = "CD-1L", vehicle: str | None = None) -> DynoModel:
    return DynoModel(DynoParams(model=model, force_noise_n=0.0, speed_noise_kmh=0.0),
                     load_dyno_vehicle(vehicle) if vehicle else None, rng=random.Random(1))


def run_until(m: DynoModel, condition: object, limit_s: float) -> float:
    """Advance 10 ms at a time (feeding the host watchdog) until `condition()`; the time it took."""
    start = m.t
    while not condition():  # type: ignore[operator]
        m.note_request()
        m.advance_to(m.t + 0.01)
        assert m.t - start < limit_s, "condition not reached"
    return m.t - start


def crossing_time(m: DynoModel, v_hi: float, v_lo: float) -> float:
    run_until(m, lambda: m.speed_kmh <= v_hi, 60)
    return run_until(m, lambda: m.speed_kmh <= v_lo, 60)


def motor_to_60(m: DynoModel) -> None:
    assert m.write_coils(dy.Coil.MOTOR, [True]) is None
    run_until(m, lambda: m.speed_kmh >= 59.5, 15)
    assert m.write_coils(dy.Coil.MOTOR, [False]) is None


def test_the_parasitic_coast_down_finds_the_machines_true_loss_not_its_registers() -> None:
    m = machine()
    run_until(m, lambda: m.rollers_stopped, 2)
    motor_to_60(m)
    dt = crossing_time(m, 54, 46)
    pl_w = 910 * ((54 / 3.6) ** 2 - (46 / 3.6) ** 2) / (2 * dt)
    # the machine's true F_pl(50) = 62 + 1.05·50 + 0.0135·50² = 148.25 N → 2059 W at 50 km/h;
    # the registers' defaults would give 50 + 60 + 30 = 140 N → 1944 W
    assert pl_w == pytest.approx(148.25 * 50 / 3.6, rel=0.02)


def test_the_loaded_coast_down_takes_the_manuals_time() -> None:
    m = machine()
    run_until(m, lambda: m.rollers_stopped, 2)
    assert m.write_coils(dy.Coil.PAU_ENABLE, [True]) is None
    motor_to_60(m)
    assert m.write_holding(dy.HoldingRegister.POWER_TARGET, [1800]) is None  # 18 kW
    assert m.write_holding(dy.HoldingRegister.CONTROL_MODE, [1]) is None
    acdt = crossing_time(m, 50, 30)
    assert acdt == pytest.approx(3.121, rel=0.04)  # CCDT = 910·(13.89² − 8.33²)/(2·18000) = 3.121 s


def test_constant_force_with_a_driver_holding_25_kmh_reports_the_target_force() -> None:
    m = machine(vehicle="asm-car")
    m.drive_on()
    run_until(m, lambda: m.rollers_stopped, 2)
    assert m.driver is not None
    m.driver.mode, m.driver.target_kmh = "hold", 25.0
    run_until(m, lambda: m.speed_kmh > 24.5, 10)
    m.write_coils(dy.Coil.PAU_ENABLE, [True])
    m.write_holding(dy.HoldingRegister.FORCE_TARGET, [1381])
    m.write_holding(dy.HoldingRegister.CONTROL_MODE, [2])
    run_until(m, lambda: m.t >= 20, 30)
    forces = [s.force_n for s in list(m.log)[-100:]]  # the last 10 s
    speeds = [s.speed_raw / 100 for s in list(m.log)[-100:]]
    # FORCE = PAU + F_pl + M·a: the tare offset (12 N, no TARE) on top of the held 1381 N
    assert sum(forces) / 100 == pytest.approx(1381 + 12, rel=0.02)
    assert all(23 <= v <= 27 for v in speeds)  # the driver stays in the ASM band
    state = m.engine_state()
    assert 1700 < state["rpm"] < 1900 and 0 < state["load"] < 1  # 2nd gear, part throttle


def test_mode_3_ramps_down_a_truck_at_full_throttle() -> None:
    m = machine("CD-1H", "lug-truck")
    m.drive_on()
    run_until(m, lambda: m.rollers_stopped, 2)
    assert m.driver is not None
    m.driver.mode = "full"
    run_until(m, lambda: m.t > 30, 40)
    free = m.speed_kmh
    assert 75 < free < 79  # governed high idle 2750 r/min in 5th (35.3 r/min per km/h): about 77.6 km/h
    assert m.engine_state()["load"] == 1.0
    m.write_coils(dy.Coil.PAU_ENABLE, [True])
    m.write_holding(dy.HoldingRegister.SPEED_TARGET, [round(free * 100), 200])
    m.write_holding(dy.HoldingRegister.CONTROL_MODE, [3])
    m.write_holding(dy.HoldingRegister.SPEED_TARGET, [5000])  # 50 km/h at 2 km/h/s: about 14 s
    run_until(m, lambda: m.t > 36, 10)
    assert abs(m.speed_kmh - m.speed_setpoint_kmh) < 1.0  # the PAU holds the moving setpoint
    run_until(m, lambda: m.t > 50, 20)
    assert m.speed_kmh == pytest.approx(50, abs=0.5)
    # at 50 km/h: 1765 r/min, full load about 120 kW: the wheels put 0.85 × that into the rollers
    assert m.force_n * 50 / 3.6 / 1000 == pytest.approx(0.85 * 119.9, rel=0.05)


def test_the_watchdog_drops_the_mode_and_switches_the_pau_off() -> None:
    m = machine()
    run_until(m, lambda: m.rollers_stopped, 2)
    m.write_coils(dy.Coil.PAU_ENABLE, [True])
    m.write_holding(dy.HoldingRegister.CONTROL_MODE, [2])
    m.note_request()
    m.advance_to(m.t + 1.9)
    assert m.control_mode == 2  # WATCHDOG 2.0 s not yet run out
    m.advance_to(m.t + 0.2)
    assert (m.control_mode, m.fault_code, m.state()) == (0, dy.FaultCode.HOST_WATCHDOG, dy.DynoState.FAULT)
    assert not m.inputs().pau_ready
    assert m.write_coils(dy.Coil.PAU_ENABLE, [True]) is None  # the value it has: accepted, changes nothing
    assert not m.inputs().pau_ready
    assert m.write_coils(dy.Coil.PAU_ENABLE, [False]) is None  # clears it: the cause is gone
    assert m.state() == dy.DynoState.IDLE


def test_a_fault_whose_cause_remains_is_not_cleared_and_refuses_pau_enable() -> None:
    m = machine()
    m.fault_cause = dy.FaultCode.FORCE_SENSOR
    m.advance_to(0.5)
    assert (m.fault_code, m.state()) == (dy.FaultCode.FORCE_SENSOR, dy.DynoState.FAULT)
    assert m.write_coils(dy.Coil.PAU_ENABLE, [False]) is None
    assert m.fault_code == dy.FaultCode.FORCE_SENSOR  # the sensor is still broken
    assert m.write_coils(dy.Coil.PAU_ENABLE, [True]) == dy.ExceptionCode.DEVICE_BUSY
    m.fault_cause = None
    m.advance_to(0.6)
    assert m.write_coils(dy.Coil.PAU_ENABLE, [False]) is None
    assert m.state() == dy.DynoState.IDLE and m.write_coils(dy.Coil.PAU_ENABLE, [True]) is None
