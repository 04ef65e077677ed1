"""The dynamometer simulator as a process and as a neighbour: the CLI, the control socket, the tailpipe coupling."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from laned.broker import free_port
from simulators.control import ControlServer, send_control
from simulators.dynamometer import DynamometerSimulator

pytestmark = pytest.mark.integration

ENGINE_FIELDS = {"rpm", "load", "power_kw", "speed_kmh"}



async def test_the_tailpipe_simulators_get_the_engine_state_at_10_hz(tmp_path: Path) -> None:
    received: dict[str, list[dict[str, Any]]] = {"ga": [], "opa": []}

    def collector(name: str) -> Any:
        def handle(request: dict[str, Any]) -> Any:
            received[name].append(request)
            return {"ok": True}
        return handle

    analyzer = ControlServer(tmp_path / "ga.ctl", collector("ga"))
    await analyzer.start()
    opacimeter = ControlServer(tmp_path / "opa.ctl", collector("opa"))  # not there yet: retried quietly
    try:
        async with DynamometerSimulator("asm-car", tcp=("127.0.0.1", 0), fast=True, control=tmp_path / "cd1.ctl",
                                        tailpipe=[str(tmp_path / "ga.ctl"), str(tmp_path / "opa.ctl")]) as sim:
            await send_control(tmp_path / "cd1.ctl", {"do": "hold_speed", "speed_kmh": 25})
            await asyncio.sleep(0.5)
            await opacimeter.start()
            await asyncio.sleep(4.0)  # the retry comes within 3 s
            engine = await send_control(tmp_path / "cd1.ctl", {"get": "engine"})
            n_ga = len(received["ga"])
            await send_control(tmp_path / "cd1.ctl", {"do": "drive_off"}) if sim.model.speed_kmh < 0.5 else None
    finally:
        await analyzer.close()
        await opacimeter.close()
    assert set(engine) == ENGINE_FIELDS
    assert 25 <= n_ga <= 50  # 10 Hz over about 4.5 s: never faster; on a loaded machine a few late
    assert received["opa"], "the socket that came later was found"
    last = received["ga"][-1]
    assert last["do"] == "engine_state" and set(last) == {"do", *ENGINE_FIELDS}
    assert 20 < last["speed_kmh"] < 30 and 1400 < last["rpm"] < 2200  # 2nd gear, about 72 r/min per km/h
    assert 0 < last["load"] <= 1 and last["power_kw"] > 0


async def test_laned_simulate_dynamometer_serves_the_map(tmp_path: Path) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from laned.cli import main; sys.exit(main())",
        "simulate", "dynamometer", "--tcp", f"127.0.0.1:{port}", "--model", "CD-1H",
        "--vehicle", "lug-truck", "--fast", "--control", str(tmp_path / "cd1.ctl"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1)
        for _ in range(100):
            if await client.connect():
                break
            await asyncio.sleep(0.1)
        reply = await client.read_input_registers(17, count=3, device_id=1)
        client.close()
        state = await send_control(tmp_path / "cd1.ctl", {"get": "state"})
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), 10)
    assert list(reply.registers) == [3000, 24000, 13000]  # CD-1H: 300.0 kW, 24 000 N, 130.00 km/h
    assert state["vehicle"] == "lug-truck" and state["in_position"] is True
    assert json.dumps(state)
