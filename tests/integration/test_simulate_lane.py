"""A whole simulated lane by hand, as a developer runs it: `laned simulate lane --config FILE` and
`laned run --simulation --config FILE` (or with `--no-driver`, plus `laned simulate driver --config FILE`), all
real processes, on mosquitto. The lane comes online with every device connected and a brake test
runs to its result: the simulated driver followed the prompts. And a simulator on a busy TCP port
says so in one line."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from laned.broker import free_port
from tests.e2e_helpers import send_command, start_command
from tests.helpers import ROOT, laned_command, subscriber, write_lane_toml

pytestmark = [pytest.mark.integration, pytest.mark.mosquitto]
LANE_ROOT = "laned/v1/370100/T1"


@contextlib.asynccontextmanager
async def process(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    child = await asyncio.create_subprocess_exec(*laned_command(*args), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.STDOUT)
    try:
        yield child
    finally:
        if child.returncode is None:
            child.terminate()
            try:
                await asyncio.wait_for(child.wait(), 15)
            except TimeoutError:  # Ctrl-C must end it: fail, saying what it printed last
                child.kill()
                rest = (await child.stdout.read()).decode(errors="replace") if child.stdout else ""
                await child.wait()
                raise AssertionError(f"laned {args[0]} {args[1]} still running 15 s after SIGTERM; it printed:\n"
                                     f"{rest[-3000:]}") from None


async def read_until(child: asyncio.subprocess.Process, text: str, timeout_s: float = 30) -> str:
    assert child.stdout is not None
    seen = ""
    async with asyncio.timeout(timeout_s):
        while text not in seen:
            line = await child.stdout.readline()
            if not line:
                raise AssertionError(f"exited before {text!r}: {seen}")
            seen += line.decode()
    return seen


def lane_toml(tmp_path: Path, broker: Any) -> Path:
    devices = f"""
[inspection]
time_scale = 0.25

[devices.gas-analyzer]
kind = "gas_analyzer"
transport = {{ type = "serial", port = "{tmp_path / 'ga'}" }}
reconnect_initial_s = 0.1
reconnect_max_s = 0.5

[devices.brake-tester]
kind = "brake_tester"
transport = {{ type = "tcp", host = "127.0.0.1", port = {free_port()} }}
reconnect_initial_s = 0.1
reconnect_max_s = 0.5
"""
    return write_lane_toml(tmp_path / "lane.toml", state_dir=tmp_path / "state", host=broker.host, port=broker.port,
                           devices=devices)


async def inspect_axle_1(broker: Any, config: Path) -> dict[str, Any]:
    async with subscriber(broker.host, broker.port, f"{LANE_ROOT}/#") as station, \
            process("run", "--simulation", "--config", str(config)):
        await station.wait_status("online", 30, **{"gas-analyzer": "connected", "brake-tester": "connected"})
        start = start_command("gasoline-car", "370100202612070003", exterior=False, brake_axles=[1])
        await send_command(broker.host, broker.port, LANE_ROOT, "start", start)
        message = await station.wait_for(lambda m: m.topic.endswith("/result/safety"), 60)
        return message.json()  # type: ignore[no-any-return]


async def test_simulate_lane_and_run_make_a_whole_lane(tmp_path: Path, mosquitto: Any) -> None:
    config = lane_toml(tmp_path, mosquitto)
    async with process("simulate", "lane", "--config", str(config), "--control-dir", str(tmp_path / "sim")) as sims:
        shown = await read_until(sims, "ready:")
        assert "broker: embedded" not in shown  # mosquitto already listens there
        assert f"gas-analyzer: laned simulate gas-analyzer --link {tmp_path / 'ga'}" in shown
        result = await inspect_axle_1(mosquitto, config)
        assert next(i for i in result["items"] if i["code"] == "B1")["verdict"] == "pass"
        sims.terminate()
        assert await asyncio.wait_for(sims.wait(), 15) == 0


async def test_simulate_driver_follows_the_prompts_of_the_lane_its_config_names(tmp_path: Path,
                                                                                mosquitto: Any) -> None:
    config = lane_toml(tmp_path, mosquitto)
    async with process("simulate", "lane", "--config", str(config), "--no-driver") as sims:
        await read_until(sims, "ready:")
        async with process("simulate", "driver", "--config", str(config)) as person:
            await read_until(person, "driver: follows the prompts on laned/v1/370100/T1/event")
            result = await inspect_axle_1(mosquitto, config)
        assert next(i for i in result["items"] if i["code"] == "B1")["verdict"] == "pass"


@pytest.mark.parametrize(("command", "named"), [("brake-tester", "brake tester"), ("dynamometer", "dynamometer")])
async def test_a_modbus_simulator_on_a_busy_port_fails_in_one_line(tmp_path: Path, command: str, named: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", free_port()))
        busy.listen()
        port = busy.getsockname()[1]
        async with process("simulate", command, "--tcp", f"127.0.0.1:{port}") as sim:
            assert sim.stdout is not None
            output = (await asyncio.wait_for(sim.stdout.read(), 30)).decode()
            assert await sim.wait() == 1
    assert output.strip().splitlines() == [
        f"laned simulate {command}: {named}: cannot listen on 127.0.0.1:{port} "
        "(the port is in use, or the address is not this machine's)"]


async def test_simulate_lane_starts_a_broker_where_the_config_expects_one_and_none_listens(tmp_path: Path) -> None:
    port = free_port()
    config = write_lane_toml(tmp_path / "lane.toml", state_dir=tmp_path / "state", host="127.0.0.1", port=port,
                             devices=f'[devices.opacimeter]\nkind = "opacimeter"\n'
                             f'transport = {{ type = "serial", port = "{tmp_path / "opa"}" }}\n')
    async with process("simulate", "lane", "--config", str(config), "--control-dir", str(tmp_path / "sim")) as sims:
        shown = await read_until(sims, "ready:")
        assert f"broker: embedded, on 127.0.0.1:{port}" in shown
        assert (tmp_path / "opa").exists()  # the opacimeter's pty, where the lane will open it
        async with subscriber("127.0.0.1", port, "#"):  # a real broker answers there
            pass
