"""The brake test through the whole lane: station `start` on MQTT → procedure → safety result.

Real pieces only: an embedded amqtt broker, one Lane per vehicle with its brake tester driver
talking real Modbus (TCP on a free port; RTU over a pty for gasoline-car) to a simulated RB-2,
and the simulated driver (simulators/driver.py) acting on the lane's prompts. The six lanes of the
fleet run side by side (a lane per test lane), so the whole file stays well under a minute even
though the tester samples in real time (100 Hz): the drag second and the weighing second cannot be
scaled.

Expected values are worked out by hand from the vehicle files (config/vehicles/*.toml) and the
formulas in standards.md; where the simulator's load noise (±12 N a reading, about ±3 N on a
one-second mean) can move a rounded percentage by 0.1, the comparison allows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from laned.broker import EmbeddedBroker, Mosquitto
from laned.config import parse_config
from laned.daemon import Lane
from laned.results import verify
from simulators.brake_tester import BrakeTesterSimulator
from tests.e2e_helpers import lane_with_driver, send_command, start_command
from tests.helpers import Recorder, lane_config_dict

pytestmark = pytest.mark.integration

KEY = "test-signing-key"
TIME_SCALE = 0.25
PCT = 0.15  # a rate rounded to 0.1 % may move by 0.1 with the load noise


@dataclass
class Rig:
    """One lane with its own simulated tester and simulated driver."""

    vehicle: str
    lane: Lane
    sim: BrakeTesterSimulator
    station: Recorder
    states: list[dict[str, Any]] = field(default_factory=list)  # the simulator's state, polled

    @property
    def root(self) -> str:
        return self.lane.topics.root


@contextlib.asynccontextmanager
async def lane_rig(tmp_path: Path, broker: EmbeddedBroker, vehicle: str, lane_id: str, *,
                   rtu: bool = False) -> AsyncIterator[Rig]:
    control = tmp_path / f"{lane_id}.ctl"
    where: dict[str, Any] = {"link": tmp_path / f"{lane_id}-rb2"} if rtu else {"tcp": ("127.0.0.1", 0)}
    async with BrakeTesterSimulator(vehicle, control=control, fast=True, script=False, **where) as sim:
        transport = ({"type": "rtu", "port": str(sim.link), "parity": "N"} if rtu  # a pty carries no parity
                     else {"type": "tcp", "host": "127.0.0.1", "port": sim.tcp_port})
        device = {"kind": "brake_tester", "transport": transport, "timeout_ms": 500, "retries": 1,
                  "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5}
        data = lane_config_dict(tmp_path / lane_id, broker, {"brake-tester": device})
        data["lane"] |= {"lane": lane_id, "signing_key": KEY}
        data["inspection"] = {"time_scale": TIME_SCALE}
        lane = Lane(parse_config(data, "test", environ={}), startup_grace_s=5, simulation=True)
        async with lane_with_driver(lane, broker, "brake-tester", control) as (_, station):
            yield Rig(vehicle, lane, sim, station)


async def inspect(rig: Rig, inspection_no: str, **items: Any) -> dict[str, Any]:
    """A `start` (no exterior capture) and the safety result it ends with."""
    start = start_command(rig.vehicle, inspection_no, request_id=f"req-{inspection_no}", exterior=False, **items)
    await send_command(rig.lane.config.mqtt.host, rig.lane.config.mqtt.port, rig.root, "start", start)
    message = await rig.station.wait_for(
        lambda m: m.topic == f"{rig.root}/result/safety" and m.json()["inspection_no"] == inspection_no, 90)
    result: dict[str, Any] = message.json()
    return result


def every_item(rig: Rig) -> dict[str, Any]:
    axles = len(rig.sim.model.vehicle.axles) if rig.sim.model.vehicle else 0
    return {"brake_axles": list(range(1, axles + 1)), "parking_brake": True}


@dataclass
class Inspected:
    result: dict[str, Any]
    produced: dict[int, tuple[int, int]]  # the tester's sample log: seq -> (left daN, right daN)
    events: list[dict[str, Any]]
    live: list[dict[str, Any]]
    transport: str  # how the lane reached the tester: "tcp" or "rtu"

    def item(self, code: str) -> dict[str, Any]:
        return next(i for i in self.result["items"] if i["code"] == code)


FLEET = {  # vehicle -> lane
    "gasoline-car": "T1",
    "brake-weak-rear": "T2",
    "brake-imbalanced-front": "T3",
    "diesel-truck": "T4",
    "brake-wheel-lock": "T5",
    "brake-excessive-drag": "T6",
}


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["tcp", "rtu"])
async def fleet(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Inspected]]:
    """Every simulated brake vehicle inspected at once, each on its own lane (real broker, real Modbus),
    once over Modbus TCP and once over RTU on ptys paced at 19200 baud: every test below runs on both."""
    transport: str = request.param
    tmp_path = tmp_path_factory.mktemp(f"fleet-{transport}")
    async with EmbeddedBroker() as broker, contextlib.AsyncExitStack() as stack:
        rigs = [await stack.enter_async_context(lane_rig(tmp_path, broker, vehicle, lane_id, rtu=transport == "rtu"))
                for vehicle, lane_id in FLEET.items()]
        results = await asyncio.gather(*(inspect(rig, f"F{n}", **every_item(rig)) for n, rig in enumerate(rigs)))
        done = {
            rig.vehicle: Inspected(
                result,
                {s.seq: (s.left_dan, s.right_dan) for s in rig.sim.produced_samples()},
                [m.json() for m in rig.station.on("/event")],
                [m.json() for m in rig.station.on("/live/brake-tester")],
                transport,
            )
            for rig, result in zip(rigs, results, strict=True)
        }
    yield done  # the lanes, simulators and broker are down again: the tests only read what came back


def verdicts(done: Inspected) -> dict[str, str]:
    return {i["code"]: i["verdict"] for i in done.result["items"]}


def check(item: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in item["checks"] if c["item"] == name)


# ----- each vehicle ----------------------------------------------------------------------------------


def test_gasoline_car_passes_every_brake_item(fleet: dict[str, Inspected]) -> None:
    done = fleet["gasoline-car"]
    assert verdicts(done) == {"B1": "pass", "B2": "pass", "BZ": "pass", "B0": "pass"}
    assert done.result["verdict"] == "pass" and verify(done.result, KEY.encode())
    # a simulation lane (time scale 0.25) says so in its signed result, with the timings it ran
    assert done.result["simulation"] is True
    timings = done.result["procedure_timings"]
    assert timings["inspection.time_scale"] == {"value": TIME_SCALE, "standard_min": 1.0, "unit": ""}
    assert timings["inspection.two_speed_idle.measure_s"] == {"value": 30.0, "standard_min": 30.0, "unit": "s"}
    b1, b2, bz, b0 = (done.item(c) for c in ("B1", "B2", "BZ", "B0"))
    # forces at full pedal are the vehicle file's (noise ±4 N never moves a whole daN): 2700 / 2600 N
    v1 = b1["values"]
    assert (v1["left_max_force_dan"], v1["right_max_force_dan"]) == (270.0, 260.0)
    assert v1["left_drag_force_dan"] == 6.0  # 60 N drag ± 4 N is always 6 daN in the ring
    # loads 4200 / 4100 N → 428.3 / 418.1 kg; rate (2700 + 2600) / 8300 = 63.86 → 63.9 %
    assert abs(v1["left_wheel_load_kg"] - 428) <= 1 and abs(v1["right_wheel_load_kg"] - 418) <= 1
    assert v1["axle_brake_rate_pct"] == pytest.approx(63.9, abs=PCT)
    assert v1["imbalance_basis"] == "ΔF / max(F_L,max, F_R,max)"  # front axle
    # rear: (1400 + 1650) / 5380 = 56.7 % < 60 %: imbalance is ΔF / axle load against the smaller limit
    v2 = b2["values"]
    assert (v2["left_max_force_dan"], v2["right_max_force_dan"]) == (140.0, 165.0)
    assert v2["axle_brake_rate_pct"] == pytest.approx(56.7, abs=PCT)
    assert v2["imbalance_basis"].startswith("ΔF / axle load")
    assert check(b2, "imbalance")["limit"] == 10.0  # in use, rear below 60 %
    # whole vehicle (5300 + 3050) / 13680 = 61.0 %; parking (1450 + 1400) / 13680 = 20.8 % ≥ 20 %
    # (total 1750 kg > 1.2 × 1320 kg = 1584 kg: the 20 % limit)
    assert bz["values"]["brake_rate_pct"] == pytest.approx(61.0, abs=PCT)
    assert b0["values"]["brake_rate_pct"] == pytest.approx(20.8, abs=PCT)
    assert check(b0, "parking_brake_rate")["limit"] == 20.0
    assert b0["values"]["axles"][0]["left_max_force_dan"] == 145.0
    device = done.result["devices"]["brake-tester"]
    assert device["transport"] == done.transport and device["settings"]["slip_threshold_pct"] == 25


def test_weak_rear_fails_the_rear_axle_and_the_whole_vehicle(fleet: dict[str, Inspected]) -> None:
    done = fleet["brake-weak-rear"]
    assert verdicts(done) == {"B1": "pass", "B2": "fail", "BZ": "fail", "B0": "pass"}
    b2 = done.item("B2")
    # (450 + 420) / 5380 = 16.2 % < 20 % (passenger car, rear axle)
    assert b2["values"]["axle_brake_rate_pct"] == pytest.approx(16.2, abs=PCT)
    rate = check(b2, "axle_brake_rate")
    assert (rate["limit"], rate["comparison"], rate["pass"]) == (20.0, ">=", False)
    assert "GB 38900-2020" in rate["clause"] and b2["limits"]["axle_brake_rate_pct"]["value"] == 20.0
    assert b2["reason"].startswith("axle brake rate 16.")
    # (5300 + 870) / 13680 = 45.1 % < 60 %
    assert done.item("BZ")["values"]["brake_rate_pct"] == pytest.approx(45.1, abs=PCT)
    assert done.result["verdict"] == "fail"


def test_imbalanced_front_fails_imbalance_on_the_front_axle(fleet: dict[str, Inspected]) -> None:
    done = fleet["brake-imbalanced-front"]
    b1 = done.item("B1")
    assert b1["verdict"] == "fail" and done.item("B2")["verdict"] == "pass"
    assert check(b1, "axle_brake_rate")["pass"] is True  # (2900 + 2450) / 8300 = 64.5 %
    imbalance = check(b1, "imbalance")
    # when the left wheel first reaches 2900 N the right is about 1300 N behind: ~45 % > 24 % (in use)
    assert imbalance["pass"] is False and imbalance["limit"] == 24.0 and imbalance["value"] > 40
    point = b1["values"]["max_difference_point"]
    assert point["left_force_dan"] - point["right_force_dan"] == pytest.approx(b1["values"]["max_difference_dan"])
    assert point["index"] <= b1["process_data"]["window_end_index"]
    # whole vehicle (2900 + 2450 + 1500 + 1450) / 13680 = 60.7 % ≥ 60 %: only the imbalance fails
    assert done.item("BZ")["verdict"] == "pass" and done.item("B0")["verdict"] == "pass"
    assert done.item("BZ")["values"]["brake_rate_pct"] == pytest.approx(60.7, abs=PCT)


def test_diesel_truck_three_axles_and_two_parking_axles_pass(fleet: dict[str, Inspected]) -> None:
    done = fleet["diesel-truck"]
    assert verdicts(done) == {"B1": "pass", "B2": "pass", "B3": "pass", "BZ": "pass", "B0": "pass"}
    rates = [done.item(f"B{n}")["values"]["axle_brake_rate_pct"] for n in (1, 2, 3)]
    # 26200 / 41000 = 63.9 %, 17400 / 27450 = 63.4 %, 17200 / 27350 = 62.9 %
    assert rates == pytest.approx([63.9, 63.4, 62.9], abs=PCT)
    assert done.item("B1")["limits_row"] == "other"  # a truck over 3500 kg: rear ≥ 50 %
    assert check(done.item("B2"), "axle_brake_rate")["limit"] == 50.0
    b0 = done.item("B0")
    # (5100 + 5000 + 5000 + 4900) / 95800 = 20.9 %, both parking axles over all three axle loads
    assert [a["axle_no"] for a in b0["values"]["axles"]] == [2, 3]
    assert b0["values"]["brake_rate_pct"] == pytest.approx(20.9, abs=PCT)
    assert done.item("BZ")["values"]["brake_rate_pct"] == pytest.approx(63.5, abs=PCT)  # 60800 / 95800


def test_wheel_lock_ends_the_window_at_lock(fleet: dict[str, Inspected]) -> None:
    done = fleet["brake-wheel-lock"]
    b1 = done.item("B1")
    assert b1["verdict"] == "pass"
    pd = b1["process_data"]
    assert pd["end_reason"] == "wheel lock" and b1["values"]["wheel_locked"]["left"] is True
    # the left wheel locks first, at 0.7 × 4200 = 2940 N: its force at lock-up is its maximum
    assert b1["values"]["left_max_force_dan"] == 294.0
    assert pd["window_end_index"] == pd["left_max_index"] <= pd["left_slip_index"]
    assert pd["left_force_dan"][pd["window_end_index"]] == 294
    assert b1["values"]["max_difference_point"]["index"] <= pd["window_end_index"]
    # (2940 + 2870) / 8300 = 70.0 %
    assert b1["values"]["axle_brake_rate_pct"] == pytest.approx(70.0, abs=PCT)


def test_excessive_drag_fails_the_left_drag_rate(fleet: dict[str, Inspected]) -> None:
    done = fleet["brake-excessive-drag"]
    b1 = done.item("B1")
    assert b1["verdict"] == "fail" and done.item("B2")["verdict"] == "pass"
    failed = [c["item"] for c in b1["checks"] if c["pass"] is False]
    assert failed == ["drag_rate_left"]
    # (2750 + 2600 + 1500 + 1450) / 13680 = 60.7 %: the whole vehicle and parking brake pass
    assert done.item("BZ")["verdict"] == "pass" and done.item("B0")["verdict"] == "pass"
    assert done.item("BZ")["values"]["brake_rate_pct"] == pytest.approx(60.7, abs=PCT)
    # 520 N on a 4200 N wheel: 12.4 % > 10 %; the drag is the mean of the second before the prompt
    assert b1["values"]["left_drag_force_dan"] == 52.0
    assert b1["values"]["left_drag_rate_pct"] == pytest.approx(12.4, abs=PCT)
    pd = b1["process_data"]
    start, end = pd["drag_window"]
    assert end == pd["prompt_index"] and end - start + 1 == pd["sample_rate_hz"]


# ----- the curves and the live topic --------------------------------------------------------------------


def curves(done: Inspected) -> list[dict[str, Any]]:
    out = [i["process_data"] for i in done.result["items"] if "sample_count" in i.get("process_data", {})]
    return out + [pd for i in done.result["items"] for pd in i.get("process_data", {}).get("axles", [])]


@pytest.mark.parametrize("vehicle", list(FLEET))
def test_result_curves_hold_every_sample_the_tester_produced(fleet: dict[str, Inspected], vehicle: str) -> None:
    done = fleet[vehicle]
    runs = curves(done)
    assert len(runs) == sum(1 for i in done.result["items"] if i["code"] not in ("BZ", "B0")) + len(
        done.item("B0")["values"]["axles"])
    for pd in runs:
        first, count = pd["first_sample_index"], pd["sample_count"]
        assert count == len(pd["left_force_dan"]) == len(pd["right_force_dan"])
        # the run is short and the tester young: its sample index is still the sample's seq
        produced = [done.produced[seq] for seq in range(first, first + count)]
        assert [p[0] for p in produced] == pd["left_force_dan"]
        assert [p[1] for p in produced] == pd["right_force_dan"]
        assert pd["lost_samples"] == 0
        # from the motor start (the rollers still spinning up: well below the drag) through the drag
        # second, the braking and the peak
        start, end = pd["drag_window"]
        for side in ("left", "right"):
            drag_dan = sum(pd[f"{side}_force_dan"][start : end + 1]) / (end - start + 1)
            assert pd[f"{side}_force_dan"][0] < drag_dan / 2
        assert pd["prompt_index"] >= pd["sample_rate_hz"] and count > pd["braking_start_index"]


def test_prompts_follow_the_procedure_for_each_axle(fleet: dict[str, Inspected]) -> None:
    prompts = [(e["action"], e["data"].get("axle")) for e in fleet["gasoline-car"].events if e["type"] == "prompt"]
    assert prompts == [
        ("drive_on_axle", 1), ("brake", 1), ("release_brake", 1), ("drive_off", 1),
        ("drive_on_axle", 2), ("brake", 2), ("release_brake", 2),
        ("apply_parking_brake", 2), ("release_brake", 2), ("drive_off", 2),
    ]
    steps = [e["step"] for e in fleet["gasoline-car"].events if e["type"] == "step_started"]
    assert steps[:3] == ["brake.axle1", "brake.axle2", "parking_brake.axle2"]


def test_live_topic_carries_the_curve_samples_while_the_rollers_run(fleet: dict[str, Inspected]) -> None:
    done = fleet["brake-weak-rear"]
    chunks = [m for m in done.live if m["reading"] == "BrakeCurveLive"]
    assert chunks and all(m["schema"] == "live-brake-tester/1" for m in chunks)
    seen = {(c["axle_no"], c["test"], c["first_sample_index"] + k): (left, right)
            for c in chunks for k, (left, right) in enumerate(zip(c["left_force_dan"], c["right_force_dan"],
                                                                   strict=True))}
    pd = done.item("B1")["process_data"]
    curve = {(1, "service", pd["first_sample_index"] + k): (left, right)
             for k, (left, right) in enumerate(zip(pd["left_force_dan"], pd["right_force_dan"], strict=True))}
    shown = {key: value for key, value in seen.items() if key[:2] == (1, "service")}
    assert shown == curve  # every sample of the run went out live, none changed
    assert len(chunks) >= 10  # several messages a second, not one at the end


# ----- faults ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rtu", [False, True], ids=["tcp-link-dropped", "rtu-pty-removed"])
async def test_a_lost_link_mid_test_aborts_that_axle_stops_the_rollers_and_the_lane_carries_on(
    tmp_path: Path, amqtt_broker: EmbeddedBroker, rtu: bool
) -> None:
    async with lane_rig(tmp_path, amqtt_broker, "gasoline-car", "L1", rtu=rtu) as rig:

        async def watch_the_tester() -> None:
            while True:
                rig.states.append(rig.sim.state())
                await asyncio.sleep(0.02)

        watcher = asyncio.create_task(watch_the_tester())
        first = asyncio.create_task(inspect(rig, "LOST1", brake_axles=[1, 2], parking_brake=True))
        await rig.station.wait_for(lambda m: m.topic.endswith("/event") and m.json().get("action") == "brake", 30)
        await asyncio.sleep(0.4)  # the driver is braking
        rig.sim.inject("lost_link", for_s=1.0)
        result = await first
        after = rig.sim.state()
        second = await inspect(rig, "LOST2", brake_axles=[1])
        watcher.cancel()

    items = {i["code"]: i for i in result["items"]}
    assert items["B1"]["verdict"] == "not_completed" and "link lost" in items["B1"]["reason"]
    assert items["B1"]["reason"].startswith("axle 1")
    for code in ("B2", "B0", "BZ"):
        assert items[code]["verdict"] == "not_completed", code
    assert "the brake test stopped" in items["B2"]["reason"]
    assert result["verdict"] == "incomplete"
    # the lane stopped the rollers itself once the link was back: STOPPED with the axle still on them
    assert any(s["state"] == "STOPPED" and s["axle"] == 1 for s in rig.states)
    assert after["state"] not in ("STARTING", "RUNNING")
    warnings = [e for e in (m.json() for m in rig.station.on("/event")) if e["type"] == "warning"]
    assert any(e["data"].get("motors_stopped") is True and "axle 1" in e["text"] for e in warnings)
    # and the next inspection on the same lane works
    assert [(i["code"], i["verdict"]) for i in second["items"]] == [("B1", "pass"), ("BZ", "not_tested")]
    assert second["items"][0]["values"]["axle_brake_rate_pct"] == pytest.approx(63.9, abs=PCT)


async def test_losing_the_broker_while_braking_stops_the_rollers_and_keeps_what_was_measured(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with lane_rig(tmp_path, mosquitto, "gasoline-car", "L3") as rig:
        start = start_command("gasoline-car", "NOBROKER", request_id="s-nb", exterior=False, brake_axles=[1, 2])
        await send_command(mosquitto.host, mosquitto.port, rig.root, "start", start)
        await rig.station.wait_for(lambda m: m.topic.endswith("/event") and m.json().get("action") == "brake"
                                   and m.json()["data"].get("axle") == 2, 60)
        await asyncio.sleep(0.4)  # the driver is braking on axle 2, the rollers turn
        await mosquitto.kill()  # the broker gone at once: a lane cannot reach it while it shuts down
        states = []
        for _ in range(100):  # the lane stops them by itself, with no broker to tell anyone
            states.append(rig.sim.state()["state"])
            if states[-1] == "STOPPED":
                break
            await asyncio.sleep(0.05)
        assert states[-1] == "STOPPED", states
        for _ in range(100):
            if rig.lane.runner.current is None:
                break
            await asyncio.sleep(0.05)
        assert rig.lane.runner.current is None  # the inspection ended; its results wait in the outbox
        assert rig.lane.mqtt.outbox.depth > 0
        await mosquitto.start()
        await asyncio.wait_for(rig.lane.mqtt.wait_connected(), 10)
        for _ in range(100):
            if rig.lane.mqtt.outbox.depth == 0:
                break
            await asyncio.sleep(0.05)
        assert rig.lane.mqtt.outbox.depth == 0  # and were published once it was back

    record = json.loads((tmp_path / "L3" / "state" / "inspections" / "NOBROKER.done.json").read_text())
    items = {i["code"]: i for i in record["outcomes"]["brake"]["items"]}
    assert items["B1"]["verdict"] == "pass"  # measured before the broker went: kept
    assert items["B2"]["verdict"] == "not_completed"
    assert items["B2"]["reason"].startswith("axle 2: the broker connection was lost")
    assert items["BZ"]["verdict"] == "not_completed"


async def test_a_station_abort_while_braking_stops_the_rollers(tmp_path: Path, amqtt_broker: EmbeddedBroker) -> None:
    async with lane_rig(tmp_path, amqtt_broker, "gasoline-car", "L2") as rig:
        host, port = amqtt_broker.host, amqtt_broker.port
        start = start_command("gasoline-car", "ABORT1", request_id="s-abort", exterior=False, brake_axles=[1, 2],
                              parking_brake=True)
        await send_command(host, port, rig.root, "start", start)
        await rig.station.wait_for(lambda m: m.topic.endswith("/event") and m.json().get("action") == "brake", 30)
        await asyncio.sleep(0.4)  # the driver is braking, the rollers run
        assert rig.sim.state()["state"] == "RUNNING"
        await send_command(host, port, rig.root, "abort", {"schema": "lane-cmd-abort/1", "request_id": "a-1",
                                                           "inspection_no": "ABORT1", "reason": "vehicle pulled off"})
        result = (await rig.station.wait_for(lambda m: m.topic.endswith("/result/safety"), 30)).json()
        state = rig.sim.state()
        prompts = [m.json()["action"] for m in rig.station.on("/event") if m.json()["type"] == "prompt"]
    assert result["aborted"] == "vehicle pulled off" and result["verdict"] == "incomplete"
    # stopped by the lane (MOTORS = 0), not by the vehicle leaving: the axle is still on the rollers
    assert (state["state"], state["axle"]) == ("STOPPED", 1)
    assert prompts == ["drive_on_axle", "brake"]
