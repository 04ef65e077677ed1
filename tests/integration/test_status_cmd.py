"""`laned status` as a monitoring system runs it: a process, its output and its exit code, against a
real mosquitto and a real lane (a brake tester simulator over Modbus TCP).

Exit codes (docs/operations.md): 0 online with every device connected, 1 degraded (a device not
connected), 2 offline, no lane, or no broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from laned.config import parse_config
from laned.daemon import Lane
from simulators.brake_tester import BrakeTesterSimulator
from tests.helpers import ROOT, lane_config_dict, laned_command, subscriber

pytestmark = [pytest.mark.integration, pytest.mark.mosquitto]


async def laned_status(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *laned_command("status", *args), cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def running_lane(tmp_path: Path, broker: Any, devices: dict[str, Any]) -> AsyncIterator[Lane]:
    lane = Lane(parse_config(lane_config_dict(tmp_path, broker, devices), "test", environ={}), startup_grace_s=0.5)
    task = asyncio.create_task(lane.run())
    try:
        yield lane
    finally:
        lane.request_stop()
        await asyncio.wait_for(task, 15)


def tcp_tester(port: int) -> dict[str, Any]:
    return {"kind": "brake_tester", "transport": {"type": "tcp", "host": "127.0.0.1", "port": port},
            "timeout_ms": 500, "retries": 1, "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5}


async def test_an_online_lane_with_every_device_connected_exits_0(tmp_path: Path, mosquitto: Any) -> None:
    async with BrakeTesterSimulator("gasoline-car", tcp=("127.0.0.1", 0), fast=True, script=False) as sim, \
            running_lane(tmp_path, mosquitto, {"brake-tester": tcp_tester(sim.tcp_port)}):
        async with subscriber(mosquitto.host, mosquitto.port, "laned/v1/370100/T1/status") as station:
            await station.wait_status("online", **{"brake-tester": "connected"})
        code, out, err = await laned_status("--broker", f"{mosquitto.host}:{mosquitto.port}", "--station", "370100",
                                            "--lane", "T1")
        assert code == 0, out + err
        assert "lane 370100/T1: ONLINE" in out
        assert "brake-tester" in out and "connected" in out and f"127.0.0.1:{sim.tcp_port}" in out

        code, out, _ = await laned_status("--broker", f"{mosquitto.host}:{mosquitto.port}", "--station", "370100",
                                          "--json")
        document = json.loads(out)
        assert code == 0 and document["exit_code"] == 0
        assert document["lanes"]["T1"]["status"]["devices"]["brake-tester"]["state"] == "connected"


async def test_a_lane_with_a_device_unplugged_exits_1_and_names_it(tmp_path: Path, mosquitto: Any) -> None:
    unplugged = {"kind": "gas_analyzer", "transport": {"port": str(tmp_path / "ttyUSB-unplugged")},
                 "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5}
    async with running_lane(tmp_path, mosquitto, {"gas-analyzer": unplugged}):
        async with subscriber(mosquitto.host, mosquitto.port, "laned/v1/370100/T1/status") as station:
            await station.wait_status("online", **{"gas-analyzer": "disconnected"})
        config = tmp_path / "lane.toml"
        config.write_text(f'[lane]\nstation = "370100"\nlane = "T1"\nstate_dir = "{tmp_path / "state"}"\n'
                          f'[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\n', encoding="utf-8")
        code, out, err = await laned_status("--config", str(config))
        assert code == 1, out + err
        assert "DEGRADED: gas-analyzer disconnected" in out
        assert "ttyUSB-unplugged" in out  # its port, and the last error naming it
        assert "local outbox" in out and "0 pending" in out  # --config reads the lane's own outbox too


async def test_no_lane_and_no_broker_exit_2(tmp_path: Path, mosquitto: Any) -> None:
    code, out, err = await laned_status("--broker", f"{mosquitto.host}:{mosquitto.port}", "--station", "370100",
                                        "--lane", "T9", "--wait", "1")
    assert code == 2, out + err
    assert "lane T9: no status on the broker" in out

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        free_port = sock.getsockname()[1]
    code, out, err = await laned_status("--broker", f"127.0.0.1:{free_port}", "--station", "370100")
    assert code == 2
    assert f"cannot reach the broker 127.0.0.1:{free_port}" in err


async def test_a_lane_stopped_cleanly_is_offline_exit_2(tmp_path: Path, mosquitto: Any) -> None:
    async with running_lane(tmp_path, mosquitto, {}), \
            subscriber(mosquitto.host, mosquitto.port, "laned/v1/370100/T1/status") as station:
        await station.wait_status("online")
    code, out, _ = await laned_status("--broker", f"{mosquitto.host}:{mosquitto.port}", "--station", "370100")
    assert code == 2 and "lane 370100/T1: OFFLINE" in out
