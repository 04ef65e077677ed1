"""ASM on the chassis dynamometer through the whole lane: station `start` on MQTT → procedure → result.

Real pieces only: an embedded amqtt broker, a Lane with its dynamometer driver on Modbus TCP to
the simulated CD-1 and its gas-analyzer driver on a real pty to the simulated GA-5, the
dynamometer simulator's tailpipe coupling sending its engine state to the analyzer's control
socket, and the simulated driver (simulators/driver.py) acting on the lane's prompts.

The ASM phases are shortened for the simulation ([inspection.asm]: 3 s to stabilise, an 8 s
phase judged over its last 3 s, t = 4 … 6); the dynamometer's seconds are real seconds. Expected values
by hand: asm-car's curb mass 1320 kg gives RM 1420 kg, P5025 = 1420 / 148 = 9.59 kW and
F5025 = 9.5946 × 3600 / 25 = 1382 N, P2540 = 1420 / 185 = 7.68 kW and F2540 = 7.6757 × 3600 / 40
= 691 N. The analyzer's exhaust (asm-pass's loaded map) is HC 60 ppm, CO 0.30 %, NO 450 ppm at
25 km/h and HC 50, CO 0.25, NO 420 at 40 km/h: under limit set a (HC 90 / CO 0.50 / NO 700 and
HC 80 / CO 0.40 / NO 650) after DF (≈ 1.04) and kH (≈ 0.90 at 20 °C, 50 %, 101 kPa) both pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from laned.broker import EmbeddedBroker
from laned.config import InspectionSettings, parse_config
from laned.daemon import Lane
from laned.daily_checks import DailyChecks
from laned.settings.asm import AsmSettings
from laned.settings.lug_down import LugDownSettings
from simulators.control import ControlServer, send_control
from simulators.driver import SimulatedDriver
from simulators.dynamometer import DynamometerSimulator
from simulators.gas_analyzer import GasAnalyzerSimulator, load_analyzer_config
from simulators.opacimeter import OpacimeterSimulator, load_meter_settings
from tests.e2e_helpers import send_command, start_command
from tests.helpers import Recorder, lane_config_dict, subscriber

pytestmark = pytest.mark.integration

TIME_SCALE = 0.05
SET_A = {"emissions": {"asm": {"limit_set": "a"}}}
SHORT_ASM = AsmSettings(stabilise_s=3, response_s=2, fast_window_s=2, phase_s=6, result_window_s=3,
                        moving_average_s=3, max_phase_s=40, fast_pass_5025_ends_test=False)


def dynamometer_coast_down_passed(checks: DailyChecks) -> None:
    """Today's loaded coast-down of the dynamometer recorded as passed (what `daily-check` keeps)."""
    checks.record("dyno_coast_down", True, {"device": "dynamometer", "by": "test"})


@dataclass
class Rig:
    lane: Lane
    station: Recorder
    dyno: DynamometerSimulator
    dyno_control: Path
    ga: GasAnalyzerSimulator
    broker: EmbeddedBroker
    lane_task: asyncio.Task[None]
    controls: dict[str, Path] = field(default_factory=dict)

    @property
    def root(self) -> str:
        return self.lane.topics.root

    async def command(self, name: str, document: dict[str, Any]) -> dict[str, Any]:
        await send_command(self.broker.host, self.broker.port, self.root, name, document)
        reply = await self.station.wait_for(lambda m: m.topic == f"{self.root}/reply/{document['request_id']}", 20)
        return reply.json()  # type: ignore[no-any-return]

    async def result(self, inspection_no: str, timeout_s: float = 90) -> dict[str, Any]:
        message = await self.station.wait_for(
            lambda m: m.topic == f"{self.root}/result/emissions" and m.json()["inspection_no"] == inspection_no,
            timeout_s)
        return message.json()  # type: ignore[no-any-return]

    def events(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.station.on("/event")]

    async def dyno_registers(self) -> tuple[int, bool, int]:
        """(CONTROL_MODE, PAU_ENABLE, SAMPLE_INDEX) read with the test's own Modbus client."""
        client = AsyncModbusTcpClient("127.0.0.1", port=self.dyno.tcp_port)
        await client.connect()
        try:
            mode = (await client.read_holding_registers(0, count=1)).registers[0]
            pau = (await client.read_coils(2, count=1)).bits[0]
            index = (await client.read_input_registers(13, count=1)).registers[0]
        finally:
            client.close()
        return mode, bool(pau), index


def asm_start(inspection_no: str, **extra: Any) -> dict[str, Any]:
    return {**start_command("asm-car", inspection_no, request_id=f"req-{inspection_no}", exterior=False,
                            emissions="asm"), "limit_overrides": SET_A, **extra}


@contextlib.asynccontextmanager
async def loaded_rig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, lug_down: bool = False, analyzer_model: str = "GA-5",
    asm: AsmSettings = SHORT_ASM, lug: LugDownSettings | None = None,
) -> AsyncIterator[Rig]:
    """A lane with the dynamometer and the gas analyzer (and for lug-down the opacimeter), each
    simulator coupled to the dynamometer's vehicle, and the simulated driver."""
    ga_control, dyno_control, opa_control = tmp_path / "ga.ctl", tmp_path / "dyno.ctl", tmp_path / "opa.ctl"
    exhaust = "lug-pass" if lug_down else "asm-pass"
    async with contextlib.AsyncExitStack() as stack:
        broker = await stack.enter_async_context(EmbeddedBroker())
        ga = await stack.enter_async_context(GasAnalyzerSimulator(
            tmp_path / "ga", config=load_analyzer_config(fast=True, seed=7, model=analyzer_model), vehicle=exhaust))
        server = ControlServer(ga_control, ga.control)
        await server.start()
        stack.push_async_callback(server.close)
        serial = {"reconnect_initial_s": 0.1, "reconnect_max_s": 0.3}
        devices: dict[str, Any] = {
            "gas-analyzer": {"kind": "gas_analyzer", "transport": {"type": "serial", "port": str(tmp_path / "ga")},
                             **serial},
        }
        controls = {"gas-analyzer": ga_control, "dynamometer": dyno_control}
        tailpipe = [str(ga_control)]
        if lug_down:
            await stack.enter_async_context(OpacimeterSimulator(
                tmp_path / "opa", vehicle=exhaust, settings=load_meter_settings(fast=True), control_path=opa_control,
                seed=7))
            devices["opacimeter"] = {"kind": "opacimeter", "transport": {"type": "serial",
                                                                         "port": str(tmp_path / "opa")}, **serial}
            controls["opacimeter"] = opa_control
            tailpipe.append(str(opa_control))
        dyno = await stack.enter_async_context(DynamometerSimulator(
            "lug-truck" if lug_down else "asm-car", tcp=("127.0.0.1", 0), control=dyno_control, fast=True,
            tailpipe=tailpipe, model="CD-1H" if lug_down else None))
        devices["dynamometer"] = {"kind": "dynamometer", "transport": {"type": "tcp", "host": "127.0.0.1",
                                                                       "port": dyno.tcp_port}, **serial}
        data = lane_config_dict(tmp_path / "lane", broker, devices)
        data["lane"] |= {"lane": "D1", "signing_key": "test-signing-key"}
        config = parse_config(data, "test", environ={})
        inspection = InspectionSettings(time_scale=TIME_SCALE, asm=asm, **({} if lug is None else {"lug_down": lug}))
        config = config.model_copy(update={"inspection": inspection})
        checks = DailyChecks(config.lane.state_dir / "daily-checks.json")
        checks.record("leak_check", True, {"device": "gas-analyzer", "by": "test"})
        checks.record("zero", True, {"device": "gas-analyzer", "by": "test"})
        dynamometer_coast_down_passed(checks)
        lane = Lane(config, startup_grace_s=5, simulation=True)
        lane_task = asyncio.create_task(lane.run())
        person = SimulatedDriver(controls)
        person_task: asyncio.Task[None] | None = None
        try:
            await asyncio.wait_for(lane.mqtt.wait_connected(), 10)
            person_task = asyncio.create_task(person.run(broker.host, broker.port, lane.topics.root))
            await asyncio.sleep(0.3)
            for name in devices:
                await lane.drivers[name].wait_connected(10)
            async with subscriber(broker.host, broker.port, f"{lane.topics.root}/#") as station:
                yield Rig(lane, station, dyno, dyno_control, ga, broker, lane_task, controls)
        finally:
            if person_task is not None:
                person_task.cancel()
            lane.request_stop()
            await asyncio.wait_for(lane_task, 15)
            if person_task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await person_task


def item(result: dict[str, Any], code: str) -> dict[str, Any]:
    return next(i for i in result["items"] if i["code"] == code)


async def test_asm_passes_both_phases_and_every_ring_sample_is_in_the_per_second_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with loaded_rig(tmp_path, monkeypatch) as rig:
        _, _, index_before = await rig.dyno_registers()
        reply = await rig.command("start", asm_start("A1"))
        assert reply["accepted"], reply["reasons"]
        result = await rig.result("A1")
        mode, pau, index_after = await rig.dyno_registers()
        events = rig.events()
        produced = {sample.index: sample for sample in rig.dyno.produced_samples(0)}  # the simulator's own
    wt = item(result, "WT")
    assert wt["verdict"] == "pass", wt["reason"]
    values = wt["values"]
    assert values["asm5025"]["decision"] == "pass"
    assert values["asm2540"]["decision"] == "pass"
    assert values["asm5025"]["force_target_n"] == 1382
    assert values["asm5025"]["power_target_kw"] == 9.59
    assert values["asm2540"]["force_target_n"] == 691
    assert values["asm2540"]["power_target_kw"] == 7.68
    assert 55 <= values["asm5025"]["hc_ppm"] <= 70
    assert 0.28 <= values["asm5025"]["co_pct"] <= 0.34
    assert values["ambient"]["ambient_temp_c"] == 20.0
    assert 0.85 <= values["asm5025"]["kh"] <= 0.95
    # asm-pass's oil probe reads 89.0 °C: warm, checked before the test, no warm-up prompt
    assert wt["pre_checks"]["oil_temp"] == {"device": "gas-analyzer", "min_c": 80.0, "run": True, "passed": True,
                                            "oil_temp_c": 89.0, "waited_s": 0.0}
    assert wt["limits"]["asm5025_hc"]["value"] == 90.0
    # every ring sample from the first second on is in exactly one row, in order, none lost
    data = wt["process_data"]
    rows = data["rows"]
    assert [r["k"] for r in rows] == list(range(len(rows)))
    assert all(r["samples"] == 10 for r in rows)
    assert (data["end_index"] - data["first_index"]) % 65536 == 10 * len(rows) == data["samples"]
    assert (data["first_index"] - index_before) % 65536 < 100  # the rows start at the test, not long before
    assert (index_after - data["end_index"]) % 65536 < 600  # and reach its end (the stop is not rows)
    for row, next_row in itertools.pairwise(rows):
        assert (next_row["first_index"] - row["first_index"]) % 65536 == 10
    # each row's parasitic and PAU power (devices/dynamometer.md "Force and power"): asm-car on the
    # CD-1L's default PL_A…PL_C (50 N, 1.2 N per km/h, 0.012 N per (km/h)²), F_pl(25) = 50 + 30 + 7.5
    # = 87.5 N, 87.5 × 25 / 3.6 = 0.61 kW; in CONSTANT_FORCE the PAU holds FORCE_TARGET − F_pl(v), so
    # at speed v a loaded ASM5025 second's PAU power is (1382 − F_pl(v)) · v / 3.6 — at 25 km/h
    # (1382 − 87.5) × 25 / 3.6 = 8.99 kW, the load target's 9.59 kW less the 0.61 kW parasitic
    assert all("parasitic_power_kw" in r and "pau_power_kw" in r for r in rows)
    loaded = [r for r in rows if r["phase"] == "ASM5025" and r["t"] is not None and r["t"] >= 1]
    assert len(loaded) >= 3
    for row in loaded:
        v = row["speed_kmh"]
        f_pl = 50 + 1.2 * v + 0.012 * v * v
        assert row["parasitic_power_kw"] == pytest.approx(f_pl * v / 3600, abs=0.011)
        assert row["pau_power_kw"] == pytest.approx((1382 - f_pl) * v / 3600, rel=0.04)
    mean_speed = sum(r["speed_kmh"] for r in loaded) / len(loaded)
    assert abs(mean_speed - 25) <= 2
    assert sum(r["pau_power_kw"] for r in loaded) / len(loaded) == pytest.approx(9.59 - 0.61, rel=0.1)
    # each row is the mean of the simulator's own ten samples of that second
    for row in rows:
        ten = [produced[(row["first_index"] + n) % 65536] for n in range(10)]
        assert row["speed_kmh"] == pytest.approx(sum(x.speed_raw for x in ten) / 1000, abs=0.0051)
        assert row["force_n"] == pytest.approx(sum(x.force_n for x in ten) / 10, abs=0.51)
    # the dynamometer is unloaded and the prompts went out in the order of the method
    assert (mode, pau) == (0, False)
    prompts = [e["action"] for e in events if e["type"] == "prompt"]
    assert prompts.index("insert_probe") < prompts.index("asm_hold_25") < prompts.index("asm_hold_40") \
        < prompts.index("asm_stop") < prompts.index("remove_probe")
    assert result["verdict"] == "pass"
    # each phase's trace is written beside the record, as the result says (path and SHA-256)
    assert [(f["kind"], f["phase"]) for f in wt["figures"]] == [("asm_trace", "ASM5025"), ("asm_trace", "ASM2540")]
    for figure in wt["figures"]:
        assert figure["path"].endswith(f"/WT-{figure['phase'].lower()}.svg")
        path = rig.lane.config.lane.state_dir / figure["path"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == figure["sha256"]


async def test_a_dynamometer_unplugged_mid_asm_ends_the_item_not_completed_with_the_pau_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with loaded_rig(tmp_path, monkeypatch) as rig:
        reply = await rig.command("start", asm_start("A2"))
        assert reply["accepted"], reply["reasons"]
        await rig.station.wait_for(lambda m: m.topic.endswith("/event") and m.json()["type"] == "step_finished"
                                   and m.json()["step"] == "asm.asm5025.load", 60)
        await send_control(rig.dyno_control, {"fault": "lost_link", "for_s": 3})
        result = await rig.result("A2")
        status = await rig.station.wait_status("online", 20, dynamometer="connected")
        mode, pau, _ = await rig.dyno_registers()
        again = await rig.command("start", asm_start("A3"))
        running = not rig.lane_task.done()
    wt = item(result, "WT")
    assert wt["verdict"] == "not_completed"
    assert wt["reason"].startswith("dynamometer stopped answering during the ASM5025"), wt["reason"]
    assert (mode, pau) == (0, False)
    assert status["state"] == "online" and running
    assert again["accepted"], again["reasons"]


async def test_starts_the_loaded_methods_cannot_run_are_refused_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with loaded_rig(tmp_path, monkeypatch) as rig:
        lug = start_command("lug-truck", "L1", request_id="req-L1", exterior=False, emissions="lug_down")
        no_power = await rig.command("start", lug)
        lug["request_id"] = "req-L2"
        lug["vehicle"]["rated_engine_power_kw"] = 140.0
        ga5 = await rig.command("start", lug)
        diesel_asm = start_command("lug-truck", "L3", request_id="req-L3", exterior=False, emissions="asm")
        wrong_fuel = await rig.command("start", diesel_asm)
    assert not no_power["accepted"]
    assert any("vehicle.rated_engine_power_kw: required for a lug_down test" in r for r in no_power["reasons"])
    assert not ga5["accepted"]
    assert any("a GA-5 without NOx" in r for r in ga5["reasons"]), ga5["reasons"]
    assert any("opacimeter" in r for r in ga5["reasons"])  # this lane has none
    assert not wrong_fuel["accepted"]
    assert any("asm is for gasoline vehicles, not diesel" in r for r in wrong_fuel["reasons"])


def lug_start(inspection_no: str) -> dict[str, Any]:
    document = start_command("lug-truck", inspection_no, request_id=f"req-{inspection_no}", exterior=False,
                             emissions="lug_down")
    document["vehicle"]["rated_engine_power_kw"] = 140.0
    return {**document, "limit_overrides": {"emissions": {"lug_down": {"limit_set": "a"}}}}


async def test_lug_down_scans_the_power_and_measures_both_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with loaded_rig(tmp_path, monkeypatch, lug_down=True, analyzer_model="GA-5N") as rig:
        reply = await rig.command("start", lug_start("L9"))
        assert reply["accepted"], reply["reasons"]
        result = await rig.result("L9")
        mode, pau, _ = await rig.dyno_registers()
        events = rig.events()
    jz = item(result, "JZJS")
    assert "values" in jz, jz
    values = jz["values"]
    # limit set a: K ≤ 1.2 m⁻¹ at both points, NOx ≤ 1500 ppm at 80 %; power ≥ 40 % of 140 kW
    assert jz["verdict"] == "pass", (jz["reason"], jz["void_reasons"])
    assert values["power_pct"] >= 40.0
    assert 650 <= values["idle_rpm"] <= 750  # lug-truck idles at 700 r/min
    # lug-truck: 140 kW × 0.85 = 119 kW at the wheels at rated speed, 2500 / 35.3 = 70.8 km/h
    assert 100 <= values["pmax_kw"] <= 125
    assert 64 <= values["vel_max_hp_kmh"] <= 78
    assert values["point_100"]["completed"] and values["point_80"]["completed"]
    assert values["point_80"]["target_kmh"] == pytest.approx(0.8 * values["point_100"]["target_kmh"], abs=0.01)
    assert values["point_80"]["nox_ppm"] > 0
    # lug-pass's opacimeter reads the oil at 356 K = 82.85 °C: warm enough, recorded
    assert values["oil_temp_c"] == 82.85
    assert jz["pre_checks"]["oil_temp"]["passed"] and jz["pre_checks"]["oil_temp"]["device"] == "opacimeter"
    data = jz["process_data"]
    rows = data["rows"]
    assert [r["second"] for r in rows] == list(range(len(rows)))
    assert sum(r["samples"] for r in rows) == data["samples"] == 10 * len(rows)
    # the parasitic power is F_pl(v) · v / 3.6 on the default coefficients (50 + 1.2 v + 0.012 v² N)
    # where the speed changes little within a second; in a point's measuring window the speed is
    # held, so there is next to no inertia power and parasitic + PAU is the wheel power; in the scan
    # the rollers slow by 2 km/h per s, so the PAU also takes the rollers' own energy:
    # 1800 kg · (2 / 3.6) m/s² · v / 3.6 (17 kW at 61 km/h)
    measured = [r for r in rows if r["stage"] in (2, 3) and r.get("event") in ("measuring", "done")]
    assert len(measured) == 6
    scanning = [r for r in rows if r.get("part") == "scan" and r["speed_kmh"] < 0.97 * values["vel_max_hp_kmh"]]
    assert scanning
    for row in measured + scanning:
        v = row["speed_kmh"]
        assert row["parasitic_power_kw"] == pytest.approx((50 + 1.2 * v + 0.012 * v * v) * v / 3600, abs=0.011)
    for row in measured:
        assert row["parasitic_power_kw"] + row["pau_power_kw"] == pytest.approx(row["power_kw"], rel=0.05)
    for row in scanning:
        inertia_kw = 1800 * (2 / 3.6) * row["speed_kmh"] / 3600
        assert row["pau_power_kw"] == pytest.approx(row["power_kw"] - row["parasitic_power_kw"] + inertia_kw,
                                                    rel=0.05)
    assert (mode, pau) == (0, False)
    prompts = [e["action"] for e in events if e["type"] == "prompt"]
    assert prompts.index("lug_full_throttle") < prompts.index("lug_release") < prompts.index("remove_probe")
    # the trace is written beside the record, as the result says
    [figure] = jz["figures"]
    assert (figure["kind"], figure["path"]) == ("lug_down_trace", "inspections/" + result["inspection_no"]
                                                + "/JZJS-lug-down.svg")
    path = rig.lane.config.lane.state_dir / figure["path"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == figure["sha256"]


async def test_an_excursion_restarts_the_clock_and_a_dynamometer_fault_voids_the_phase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with loaded_rig(tmp_path, monkeypatch) as rig:
        reply = await rig.command("start", asm_start("A4"))
        assert reply["accepted"], reply["reasons"]

        def finished(step: str) -> Any:
            return lambda m: m.topic.endswith("/event") and m.json()["type"] == "step_finished" \
                and m.json()["step"] == step

        await rig.station.wait_for(finished("asm.asm5025.clock"), 60)
        await send_control(rig.dyno_control, {"do": "excursion", "delta_kmh": 4, "for_s": 3})
        await rig.station.wait_for(finished("asm.asm2540.load"), 60)
        await send_control(rig.dyno_control, {"fault": "fault_code", "code": 1})
        result = await rig.result("A4")
        mode, pau, _ = await rig.dyno_registers()
        events = rig.events()
    wt = item(result, "WT")
    asm5025, asm2540 = wt["values"]["asm5025"], wt["values"]["asm2540"]
    assert asm5025["restarts"] >= 1 and asm5025["decision"] == "pass"
    assert any(e["type"] == "warning" and "ASM5025: clock restarted" in e["text"] for e in events)
    assert asm2540["decision"] == "void"
    assert "PAU_OVER_TEMPERATURE" in asm2540["void_reason"]
    assert wt["verdict"] == "void" and wt["reason"].startswith("void: dynamometer faulted")
    assert result["verdict"] == "incomplete"
    assert (mode, pau) == (0, False)


def prompted(rig: Rig, action: str) -> Any:
    return lambda m: m.topic.endswith("/event") and m.json()["type"] == "prompt" and m.json()["action"] == action


async def test_a_cold_engine_is_told_to_warm_up_and_the_asm_runs_once_the_oil_reaches_80_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with loaded_rig(tmp_path, monkeypatch) as rig:
        await send_control(rig.controls["gas-analyzer"], {"do": "set", "oil_temp_c": 61.0})
        await asyncio.sleep(0.3)  # the analyzer's next 10 Hz update carries it
        reply = await rig.command("start", asm_start("A5"))
        assert reply["accepted"], reply["reasons"]
        prompt = (await rig.station.wait_for(prompted(rig, "warm_engine"), 20)).json()
        await asyncio.sleep(0.5)  # the lane waits: nothing else is prompted while the oil is cold
        early = [e["action"] for e in rig.events() if e["type"] == "prompt"]
        await send_control(rig.controls["gas-analyzer"], {"do": "set", "oil_temp_c": 84.5})
        result = await rig.result("A5")
        events = rig.events()
    assert prompt["data"] == {"oil_temp_c": 61.0, "min_c": 80.0}
    assert early == ["warm_engine"]
    prompts = [e["action"] for e in events if e["type"] == "prompt"]
    assert prompts.index("warm_engine") < prompts.index("insert_probe") < prompts.index("asm_hold_25")
    wt = item(result, "WT")
    assert wt["verdict"] == "pass", wt["reason"]
    oil = wt["pre_checks"]["oil_temp"]
    assert (oil["run"], oil["passed"], oil["oil_temp_c"], oil["min_c"]) == (True, True, 84.5, 80.0)
    assert oil["waited_s"] >= 0.5


async def test_an_engine_that_stays_cold_ends_the_asm_not_completed_naming_the_oil_temperature_and_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # oil_temp_timeout_s 20 at time scale 0.05: 1 s of real waiting
    async with loaded_rig(tmp_path, monkeypatch, asm=SHORT_ASM.model_copy(update={"oil_temp_timeout_s": 20.0})) as rig:
        await send_control(rig.controls["gas-analyzer"], {"do": "set", "oil_temp_c": 62.5})
        await asyncio.sleep(0.3)  # the analyzer's next 10 Hz update carries it
        reply = await rig.command("start", asm_start("A6"))
        assert reply["accepted"], reply["reasons"]
        result = await rig.result("A6", timeout_s=30)
        mode, pau, _ = await rig.dyno_registers()
        events = rig.events()
    wt = item(result, "WT")
    assert wt["verdict"] == "not_completed"
    assert "oil temperature 62.5 °C is below the 80 °C needed (inspection.asm.oil_temp_min_c) after 20 s" \
        in wt["reason"], wt["reason"]
    prompts = [e["action"] for e in events if e["type"] == "prompt"]
    assert "warm_engine" in prompts and "asm_hold_25" not in prompts
    assert (mode, pau) == (0, False)


async def test_without_an_oil_probe_or_with_the_check_switched_off_a_cold_engine_runs_and_the_record_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with loaded_rig(tmp_path, monkeypatch, asm=SHORT_ASM.model_copy(update={"oil_temp_check": False})) as rig:
        await send_control(rig.controls["gas-analyzer"], {"do": "set", "oil_temp_c": 45.0})
        await asyncio.sleep(0.3)  # the analyzer's next 10 Hz update carries it
        reply = await rig.command("start", asm_start("A7"))
        assert reply["accepted"], reply["reasons"]
        switched_off = await rig.result("A7")
    async with loaded_rig(tmp_path / "2", monkeypatch) as rig:
        await send_control(rig.controls["gas-analyzer"], {"do": "set", "oil_temp_c": None})
        await asyncio.sleep(0.3)  # the analyzer's next 10 Hz update carries it
        reply = await rig.command("start", asm_start("A8"))
        assert reply["accepted"], reply["reasons"]
        no_probe = await rig.result("A8")
        events = rig.events()
    off = item(switched_off, "WT")
    assert off["verdict"] == "pass", off["reason"]
    assert off["pre_checks"]["oil_temp"] == {"device": "gas-analyzer", "min_c": 80.0, "run": False,
                                             "skipped": "setting", "oil_temp_c": 45.0}
    bare = item(no_probe, "WT")
    assert bare["verdict"] == "pass", bare["reason"]
    assert bare["pre_checks"]["oil_temp"] == {"device": "gas-analyzer", "min_c": 80.0, "run": False,
                                              "skipped": "no_probe", "oil_temp_c": None}
    assert "warm_engine" not in [e["action"] for e in events if e["type"] == "prompt"]
