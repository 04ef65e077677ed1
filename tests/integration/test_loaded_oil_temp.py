"""The loaded methods' oil-temperature precondition through the whole lane (standards.md: oil at
least 80 °C where a probe is fitted, a setting with a skip switch): the gas analyzer simulator's
oil probe set over its control socket, the ASM held, run, or ended as the record says. The rig:
tests/loaded_rig.py; the precondition's every branch in tests/unit/test_oil_temp_precondition.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from simulators.control import send_control
from tests.loaded_rig import (
    SHORT_ASM,
    asm_start,
    item,
    loaded_rig,
    prompted,
)

pytestmark = pytest.mark.integration


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


async def test_without_an_oil_probe_a_cold_engine_is_not_held_back_and_the_record_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The analyzer reports no oil temperature (no probe fitted): nothing to check, the ASM runs.
    (The skip switch, `oil_temp_check = false`, is pinned in tests/unit/test_oil_temp_precondition.py:
    another full ASM here would only repeat the same path through the procedure.)"""
    async with loaded_rig(tmp_path, monkeypatch) as rig:
        await send_control(rig.controls["gas-analyzer"], {"do": "set", "oil_temp_c": None})
        await asyncio.sleep(0.3)  # the analyzer's next 10 Hz update carries it
        reply = await rig.command("start", asm_start("A8"))
        assert reply["accepted"], reply["reasons"]
        no_probe = await rig.result("A8")
        events = rig.events()
    bare = item(no_probe, "WT")
    assert bare["verdict"] == "pass", bare["reason"]
    assert bare["pre_checks"]["oil_temp"] == {"device": "gas-analyzer", "min_c": 80.0, "run": False,
                                              "skipped": "no_probe", "oil_temp_c": None}
    assert "warm_engine" not in [e["action"] for e in events if e["type"] == "prompt"]
