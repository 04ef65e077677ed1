"""The simulated RB-2's behaviour (the manual's "Behaviour" section), its data files, control socket
and CLI. Physics runs on the tester's own clock here (simulated seconds), so it is exact and fast."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from laned.broker import free_port
from protocols import brake_tester as bt
from simulators import brake_tester as cli
from simulators.brake.config import (
    BrakeVehicle,
    ScriptParams,
    load_brake_vehicle,
    load_tester_config,
)
from simulators.brake.config import TesterParams as Params  # not Test*: pytest would collect it
from simulators.brake.physics import TesterModel as Model
from simulators.brake_tester import BrakeTesterSimulator
from simulators.control import send_control

pytestmark = pytest.mark.integration

QUIET = Params(force_offset_n=(0.0, 0.0), force_noise_n=0, load_noise_n=0, speed_noise_kmh=0,
                     start_s=1.5, stop_s=0.3, tare_s=0.3, lift_travel_s=1.0)
NO_SCRIPT = ScriptParams(auto=False)


def model(vehicle: str = "gasoline-car", params: Params = QUIET, script: ScriptParams = NO_SCRIPT) -> Model:
    return Model(params.model_copy(), script.model_copy(), load_brake_vehicle(vehicle))


def run_for(m: Model, seconds: float) -> None:
    m.advance_to(m.t + seconds + 1e-9)


def start_running(m: Model) -> None:
    m.drive_on(1)
    run_for(m, 0.1)
    assert m.write_coil(bt.Coil.MOTORS, True) is None
    run_for(m, 1.6)
    assert m.state == bt.TesterState.RUNNING


def test_motors_start_for_start_s_then_run_at_test_speed_showing_drag() -> None:
    m = model()
    m.drive_on(1)
    run_for(m, 0.1)
    m.write_coil(bt.Coil.MOTORS, True)
    run_for(m, 1.4)
    assert m.state == bt.TesterState.STARTING and not m.inputs().motors_running
    run_for(m, 0.11)
    snap = m.snapshot()
    assert snap.state == bt.TesterState.RUNNING and m.inputs().motors_running
    assert (snap.left_speed_kmh, snap.right_speed_kmh) == (2.5, 2.5)
    assert (snap.left_force_n, snap.right_force_n) == (60, 55)  # gasoline-car front drag
    assert (snap.left_load_n, snap.right_load_n) == (4200, 4100)
    assert m.coils().motors


def test_service_brake_builds_up_along_each_wheels_curve_and_holds_at_its_maximum() -> None:
    m = model()
    start_running(m)
    m.press("service")
    run_for(m, 0.22)
    # left: build-up 0.55 s, x = 0.22 / 0.55 = 0.4, 3x² − 2x³ = 0.352: 60 + 2640 × 0.352 = 989.28 → 989 N
    assert m.snapshot().left_force_n == 989
    # right: build-up 0.60 s, x = 0.22 / 0.6 = 0.3667, 3x² − 2x³ = 0.30474: 55 + 2545 × 0.30474 = 830.6 → 831 N
    assert m.snapshot().right_force_n == 831
    run_for(m, 0.5)
    assert (m.snapshot().left_force_n, m.snapshot().right_force_n) == (2700, 2600)
    run_for(m, 2.0)
    assert (m.snapshot().left_force_n, m.snapshot().right_force_n) == (2700, 2600)
    assert m.state == bt.TesterState.RUNNING  # holds until the motors are stopped


def test_a_wheel_asked_beyond_adhesion_locks_latches_slip_and_stops_the_motors() -> None:
    m = model("brake-wheel-lock")
    start_running(m)
    first = m.produced
    m.press("service")
    run_for(m, 1.0)
    forces = [s.left_force_n for s in m.log if s.seq >= first]
    assert max(forces) == 2940  # stops rising at 0.7 × 4200 N
    assert m.state == bt.TesterState.STOPPED_SLIP
    inputs = m.inputs()
    assert inputs.left_slip and not inputs.right_slip  # left locks first; the stop ends the right's slip
    assert not m.coils().motors
    m.write_coil(bt.Coil.MOTORS, True)
    assert not m.inputs().left_slip  # latched until the next start


def test_auto_stop_s_stops_the_motors() -> None:
    m = model()
    assert m.write_holding(bt.HoldingRegister.AUTO_STOP_S, [5]) is None
    start_running(m)
    run_for(m, 3.3)
    assert m.state == bt.TesterState.RUNNING
    run_for(m, 0.3)  # 5 s after the start
    assert m.state == bt.TesterState.STOPPED and not m.coils().motors


def test_stopped_holds_until_the_axle_leaves_then_idle() -> None:
    m = model()
    start_running(m)
    m.write_coil(bt.Coil.MOTORS, False)
    run_for(m, 1.0)
    assert m.state == bt.TesterState.STOPPED and m.snapshot().left_speed_kmh == 0
    m.drive_off()
    run_for(m, 0.05)
    assert m.state == bt.TesterState.IDLE and not m.inputs().in_position


def test_lift_up_reads_1_until_the_lift_is_fully_down() -> None:
    m = model()
    m.write_coil(bt.Coil.LIFT, True)
    run_for(m, 0.05)
    assert m.inputs().lift_up
    m.write_coil(bt.Coil.LIFT, False)
    run_for(m, 0.02)
    assert m.inputs().lift_up  # still on its way down
    run_for(m, 0.1)
    assert not m.inputs().lift_up


def test_fault_stops_the_motors_and_motors_0_clears_it_after_the_cause_is_gone() -> None:
    m = model()
    start_running(m)
    m.fault_cause = bt.FaultCode.EMERGENCY_STOP
    run_for(m, 0.02)
    assert (m.state, m.fault_code) == (bt.TesterState.FAULT, bt.FaultCode.EMERGENCY_STOP)
    assert m.write_coil(bt.Coil.MOTORS, True) == bt.ExceptionCode.DEVICE_BUSY
    m.write_coil(bt.Coil.MOTORS, False)
    assert m.state == bt.TesterState.FAULT
    m.fault_cause = None
    m.write_coil(bt.Coil.MOTORS, False)
    assert (m.state, m.fault_code) == (bt.TesterState.STOPPED, bt.FaultCode.NONE)


def test_ring_holds_every_sample_in_dan_rounded_half_away_from_zero() -> None:
    m = model(params=Params(force_offset_n=(14.0, -9.0), force_noise_n=4.0))
    start_running(m)
    m.press("service")
    run_for(m, 1.0)
    for s in list(m.log)[-512:]:
        assert (s.left_dan, s.right_dan) == (bt.n_to_dan(s.left_force_n), bt.n_to_dan(s.right_force_n))
        slot = 2 * (s.index % 512)
        assert m.ring[slot : slot + 2] == list(bt.encode_ring_sample(s.left_force_n, s.right_force_n))


def test_sample_rate_set_changes_the_samples_per_second() -> None:
    m = model()
    run_for(m, 1.0)
    m.write_holding(bt.HoldingRegister.SAMPLE_RATE_SET, [50])
    before = m.produced
    run_for(m, 2.0)
    assert m.produced - before == 100  # 2 s at 50 Hz
    assert m.snapshot().sample_rate_hz == 50


def test_sample_index_wraps_at_65536_and_the_ring_slots_follow() -> None:
    m = model()
    m.produced = 65534
    m.next_sample_at = m.t + 0.01
    run_for(m, 0.04)
    assert [s.index for s in list(m.log)[-4:]] == [65534, 65535, 0, 1]
    assert m.snapshot().sample_index == 1


def test_scripted_driver_drives_on_brakes_and_uses_the_parking_brake_on_the_second_run() -> None:
    script = ScriptParams(drive_on_delay_s=0.5, drive_off_delay_s=0.3, brake_delay_s=1.0)
    m = model(script=script)
    run_for(m, 0.45)
    assert not m.inputs().in_position
    run_for(m, 0.1)
    assert m.inputs().in_position and m.axle == 0
    m.write_coil(bt.Coil.MOTORS, True)
    run_for(m, 1.5 + 0.9)
    assert m.brake_kind is None  # 1.0 s after RUNNING, not yet
    run_for(m, 0.8)
    assert m.brake_kind == "service" and m.snapshot().left_force_n == 2700
    m.write_coil(bt.Coil.MOTORS, False)
    m.write_coil(bt.Coil.LIFT, True)
    run_for(m, 1.0 + 0.35)  # the lift is up, then the axle rolls off
    assert not m.inputs().in_position
    m.write_coil(bt.Coil.LIFT, False)
    run_for(m, 1.0 + 0.55)  # the lift is down, then axle 2 rolls on
    assert m.axle == 1
    for run, kind, force in ((1, "service", 1400), (2, "parking", 1450)):
        m.write_coil(bt.Coil.MOTORS, True)
        run_for(m, 1.5 + 1.0 + 1.1)  # start, scripted delay, parking build-up 1.0 s
        assert (m.runs_on_axle, m.brake_kind, m.snapshot().left_force_n) == (run, kind, force)
        m.write_coil(bt.Coil.MOTORS, False)
        run_for(m, 0.5)


@pytest.mark.parametrize(
    "name",
    ["gasoline-car", "diesel-truck", "brake-weak-rear", "brake-imbalanced-front", "brake-wheel-lock",
     "brake-excessive-drag"],
)
def test_every_brake_vehicle_file_validates(name: str) -> None:
    vehicle = load_brake_vehicle(name)
    assert vehicle.axles and any(axle.parking for axle in vehicle.axles)


def test_a_parking_axle_without_parking_forces_is_refused() -> None:
    wheel = {"load_n": 3000, "drag_n": 40, "service_max_n": 1400}
    with pytest.raises(ValueError, match="parking_max_n on both wheels"):
        BrakeVehicle.model_validate({"axles": [{"parking": True, "left": wheel, "right": wheel}]})


def test_fast_config_shortens_the_scripted_timings() -> None:
    normal, fast = load_tester_config(), load_tester_config(fast=True)
    assert (normal.tester.start_s, normal.script.brake_delay_s) == (1.5, 3.0)
    assert fast.tester.start_s < 1.0 and fast.script.drive_on_delay_s <= 1.0
    assert fast.tester.sample_rate_hz == 100  # the sampling clock is never shortened


async def test_simulator_samples_at_the_real_clock_rate() -> None:
    async with BrakeTesterSimulator("gasoline-car", tcp=("127.0.0.1", 0), fast=True) as sim:
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = sim.model.produced
        await asyncio.sleep(0.5)
        sim.sync()
        elapsed = loop.time() - started
        made = sim.model.produced - first
    assert abs(made - elapsed * 100) <= 2  # 100 samples per real second, however busy the loop


async def test_control_socket_runs_actions_faults_and_queries(tmp_path: Path) -> None:
    control = tmp_path / "brake.ctl"
    async with BrakeTesterSimulator("gasoline-car", tcp=("127.0.0.1", 0), control=control, fast=True,
                                    script=False) as sim:
        state = await send_control(control, {"do": "drive_on", "axle": 2})
        assert state["axle"] == 2 and sim.model.inputs().in_position
        await send_control(control, {"fault": "fault_code", "code": 5})
        await asyncio.sleep(0.05)
        state = await send_control(control, {"get": "state"})
        assert (state["state"], state["fault_code"], state["faults"]) == ("FAULT", "LOAD_CELL", ["fault_code"])
        await send_control(control, {"clear": None})
        samples = await send_control(control, {"get": "samples", "since": sim.model.produced - 3})
        assert len(samples) >= 3 and {"index", "left_dan", "right_dan"} <= set(samples[0])
        with pytest.raises(RuntimeError, match="unknown fault"):
            await send_control(control, {"fault": "meltdown"})
        with pytest.raises(RuntimeError, match="axle 3"):
            await send_control(control, {"do": "drive_on", "axle": 3})



async def test_cli_contract_serves_until_cancelled(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    port = free_port()
    args = parser.parse_args(["--tcp", f"127.0.0.1:{port}", "--vehicle", "diesel-truck", "--fast",
                              "--control", str(tmp_path / "ctl"), "--no-script"])
    task = asyncio.create_task(cli.run(args))
    try:
        for _ in range(100):
            if (tmp_path / "ctl").exists():
                break
            await asyncio.sleep(0.02)
        await send_control(tmp_path / "ctl", {"do": "drive_on", "axle": 1})
        await asyncio.sleep(0.05)  # the loads show from the next sample on
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0, reconnect_delay=0)
        await client.connect()
        reply = await client.read_input_registers(0, count=16)
        client.close()
        snapshot = bt.decode_snapshot(reply.registers)
        assert abs(snapshot.left_load_n - 20600) <= 12  # diesel-truck front left wheel
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert not (tmp_path / "ctl").exists()
