"""The loaded methods' oil-temperature precondition (laned/procedures/oil_temp.py) on a scripted
feed: standards.md wants oil at least 80 °C where a probe is fitted, with a skip switch."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from laned.procedures import InspectionContext, ProcedureError
from laned.procedures.oil_temp import oil_c_of_analyzer, oil_c_of_opacimeter, oil_temp_precondition
from laned.settings.asm import AsmSettings
from laned.settings.lug_down import LugDownSettings


class ScriptedFeed:
    """A feed whose latest reading follows a script of (seconds from the first look, oil °C)."""

    def __init__(self, script: list[tuple[float, float | None]]) -> None:
        self.driver = SimpleNamespace(name="gas-analyzer")
        self.script = script
        self.t0: float | None = None

    @property
    def latest(self) -> Any:
        now = asyncio.get_running_loop().time()
        if self.t0 is None:
            self.t0 = now
        value = [oil for at, oil in self.script if at <= now - self.t0][-1]
        return SimpleNamespace(oil_temp_c=value)

    def check_alive(self) -> None:
        pass


def context(events: list[dict[str, Any]]) -> InspectionContext:
    return InspectionContext(inspection_no="X1", command=None, drivers={}, limits=None,  # type: ignore[arg-type]
                             settings=SimpleNamespace(time_scale=1.0),
                             publish_event=lambda **e: events.append(e), set_step=lambda step: None,
                             abort=asyncio.Event())


async def check(script: list[tuple[float, float | None]], **settings: Any) -> tuple[dict[str, Any], list[Any]]:
    events: list[dict[str, Any]] = []
    record = await oil_temp_precondition(context(events), ScriptedFeed(script), oil_c_of_analyzer, step="asm",
                                         setting="inspection.asm", settings=AsmSettings(**settings))
    return record, events


def prompts(events: list[dict[str, Any]]) -> list[str]:
    return [e["action"] for e in events if e["type"] == "prompt"]


async def test_a_warm_engine_is_recorded_without_a_prompt() -> None:
    record, events = await check([(0, 88.5)])
    assert record == {"device": "gas-analyzer", "min_c": 80.0, "run": True, "passed": True, "oil_temp_c": 88.5,
                      "waited_s": 0.0}
    assert prompts(events) == []


async def test_a_cold_engine_gets_the_warm_up_prompt_and_the_check_passes_once_the_oil_is_warm() -> None:
    record, events = await check([(0, 65.0), (0.3, 79.9), (0.5, 80.0)], oil_temp_timeout_s=5)
    assert prompts(events) == ["warm_engine"]
    prompt = next(e for e in events if e["type"] == "prompt")
    assert prompt["data"] == {"oil_temp_c": 65.0, "min_c": 80.0}
    assert record["passed"] and record["oil_temp_c"] == 80.0
    assert 0.4 <= record["waited_s"] <= 1.5


async def test_an_engine_that_stays_cold_ends_with_the_temperature_and_the_limit() -> None:
    with pytest.raises(ProcedureError) as caught:
        await check([(0, 62.0), (0.2, 71.4)], oil_temp_timeout_s=0.6)
    assert str(caught.value).startswith(
        "oil temperature 71.4 °C is below the 80 °C needed (inspection.asm.oil_temp_min_c) after 0.6 s of warming")


async def test_without_an_oil_probe_the_check_is_skipped_and_the_record_says_so() -> None:
    record, events = await check([(0, None)])
    assert record == {"device": "gas-analyzer", "min_c": 80.0, "run": False, "skipped": "no_probe",
                      "oil_temp_c": None}
    assert prompts(events) == []


async def test_the_skip_switch_skips_a_cold_engine_and_the_record_says_so() -> None:
    record, events = await check([(0, 40.0)], oil_temp_check=False)
    assert record == {"device": "gas-analyzer", "min_c": 80.0, "run": False, "skipped": "setting",
                      "oil_temp_c": 40.0}
    assert prompts(events) == []
    assert any(e["type"] == "warning" and "inspection.asm.oil_temp_check = false" in e["text"] for e in events)


def test_the_opacimeter_reports_kelvin_and_none_without_a_probe() -> None:
    assert oil_c_of_opacimeter(SimpleNamespace(oil_temp_k=356)) == 82.85  # 356 − 273.15
    assert oil_c_of_opacimeter(SimpleNamespace(oil_temp_k=None)) is None
    assert LugDownSettings().oil_temp_min_c == 80.0 and LugDownSettings().oil_temp_timeout_s == 600.0
