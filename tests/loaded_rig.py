"""The loaded-method rig of the integration tests: a Lane with the dynamometer, the gas analyzer
(and for lug-down the opacimeter) on their simulators, coupled to the dynamometer's vehicle, an
embedded broker, the simulated driver; and the starts and lookups the tests share.

Used by tests/integration/test_loaded_procedures.py, test_lug_down_procedure.py and
test_loaded_oil_temp.py (three files, so that the suite's workers run their real-time ASMs and
lug-downs side by side). asm-car's loads are worked out in test_loaded_procedures.py's docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from simulators.control import ControlServer
from simulators.dynamometer import DynamometerSimulator
from simulators.gas_analyzer import GasAnalyzerSimulator, load_analyzer_config
from simulators.opacimeter import OpacimeterSimulator, load_meter_settings
from tests.e2e_helpers import StationSide, lane_with_person, start_command
from tests.helpers import Recorder, lane_config_dict

TIME_SCALE = 0.05
SET_A = {"emissions": {"asm": {"limit_set": "a"}}}
SHORT_ASM = AsmSettings(stabilise_s=3, response_s=2, fast_window_s=2, phase_s=6, result_window_s=3,
                        moving_average_s=3, max_phase_s=40, fast_pass_5025_ends_test=False)


def dynamometer_coast_down_passed(checks: DailyChecks) -> None:
    """Today's loaded coast-down of the dynamometer recorded as passed (what `daily-check` keeps)."""
    checks.record("dyno_coast_down", True, {"device": "dynamometer", "by": "test"})


@dataclass
class Rig(StationSide):
    lane: Lane
    station: Recorder
    dyno: DynamometerSimulator
    dyno_control: Path
    ga: GasAnalyzerSimulator
    broker: EmbeddedBroker
    lane_task: asyncio.Task[None]
    controls: dict[str, Path] = field(default_factory=dict)

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
        async with lane_with_person(lane, broker, controls) as (lane_task, station):
            yield Rig(lane, station, dyno, dyno_control, ga, broker, lane_task, controls)


def item(result: dict[str, Any], code: str) -> dict[str, Any]:
    return next(i for i in result["items"] if i["code"] == code)


def lug_start(inspection_no: str) -> dict[str, Any]:
    document = start_command("lug-truck", inspection_no, request_id=f"req-{inspection_no}", exterior=False,
                             emissions="lug_down")
    document["vehicle"]["rated_engine_power_kw"] = 140.0
    return {**document, "limit_overrides": {"emissions": {"lug_down": {"limit_set": "a"}}}}


def prompted(rig: Rig, action: str) -> Any:
    return lambda m: m.topic.endswith("/event") and m.json()["type"] == "prompt" and m.json()["action"] == action
