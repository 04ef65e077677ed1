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
from simulators.driver import SimulatedDriver
from simulators.dynamometer import DynamometerSimulator
from simulators.gas_analyzer import GasAnalyzerSimulator, load_analyzer_config
from simulators.opacimeter import OpacimeterSimulator, load_meter_settings
from tests.e2e_helpers import send_command, start_command
from tests.helpers import Recorder, lane_config_dict, subscriber

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


def lug_start(inspection_no: str) -> dict[str, Any]:
    document = start_command("lug-truck", inspection_no, request_id=f"req-{inspection_no}", exterior=False,
                             emissions="lug_down")
    document["vehicle"]["rated_engine_power_kw"] = 140.0
    return {**document, "limit_overrides": {"emissions": {"lug_down": {"limit_set": "a"}}}}


def prompted(rig: Rig, action: str) -> Any:
    return lambda m: m.topic.endswith("/event") and m.json()["type"] == "prompt" and m.json()["action"] == action
