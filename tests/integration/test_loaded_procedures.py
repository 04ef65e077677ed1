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

import hashlib
import itertools
from pathlib import Path
from typing import Any

import pytest

from simulators.control import send_control
from tests.e2e_helpers import start_command
from tests.loaded_rig import (
    asm_start,
    item,
    loaded_rig,
)

pytestmark = pytest.mark.integration


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
