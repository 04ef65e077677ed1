"""Serial devices behind an Ethernet serial device server (`socket://HOST:PORT`): the box that puts
a lane's RS-232 devices on the network. Here the device server is socat, listening on TCP and
forwarding to the simulator's pty as a real box forwards to its RS-232 port; the lane opens
`socket://127.0.0.1:PORT` through the same SerialLink a local port takes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import drivers.serial_link as serial_link
from drivers.errors import DeviceTimeout, DeviceUnavailable
from drivers.serial_link import SerialLink
from laned.broker import free_port
from laned.config import parse_config
from laned.daemon import Lane
from simulators.gas_analyzer import GasAnalyzerSimulator, load_analyzer_config
from simulators.opacimeter import MeterSettings, OpacimeterSimulator
from tests.helpers import lane_config_dict, subscriber

pytestmark = pytest.mark.integration
ROOT = "laned/v1/370100/T1"


class FirstBytes:
    """A decoder that yields the first `count` bytes received."""

    def __init__(self, count: int) -> None:
        self.count, self.buffer = count, bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer.extend(data)
        return [bytes(self.buffer[: self.count])] if len(self.buffer) >= self.count else []


class DeviceServer:
    """socat as a serial device server: one TCP client at a time, forwarded to `port_path` raw.
    `stop()` is the box switched off (its client sees the connection end), `start()` switched on."""

    def __init__(self, port_path: Path, tcp_port: int) -> None:
        self.port_path, self.tcp_port = port_path, tcp_port
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.tcp_port}"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            "socat", "-d", "-d", f"TCP-LISTEN:{self.tcp_port},bind=127.0.0.1,reuseaddr",
            f"FILE:{self.port_path},raw,echo=0", stderr=asyncio.subprocess.PIPE)
        assert self.process.stderr is not None
        async with asyncio.timeout(5):
            while b"listening on" not in await self.process.stderr.readline():
                pass

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()
        self.process = None


@contextlib.asynccontextmanager
async def device_server(port_path: Path) -> AsyncIterator[DeviceServer]:
    server = DeviceServer(port_path, free_port())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def network_lane(tmp_path: Path, broker: Any, gas_url: str, opacimeter_url: str) -> Lane:
    fast = {"reconnect_initial_s": 0.1, "reconnect_max_s": 0.3}
    devices = {
        "gas-analyzer": {"kind": "gas_analyzer", "transport": {"type": "serial", "port": gas_url}, **fast},
        "opacimeter": {"kind": "opacimeter", "transport": {"type": "serial", "port": opacimeter_url}, **fast},
    }
    return Lane(parse_config(lane_config_dict(tmp_path, broker, devices), "test", environ={}), startup_grace_s=5)


async def test_a_lane_reads_both_serial_devices_through_device_servers_and_survives_their_restart(
        tmp_path: Path, amqtt_broker: Any) -> None:
    both = {"gas-analyzer": "connected", "opacimeter": "connected"}
    async with GasAnalyzerSimulator(tmp_path / "ga", config=load_analyzer_config(fast=True)) as analyzer, \
            OpacimeterSimulator(tmp_path / "op1", settings=MeterSettings(warmup_s=0.1, zero_s=0.1)) as meter, \
            device_server(analyzer.pty.link) as gas_box, device_server(meter.pty.link) as opacimeter_box:
        lane = network_lane(tmp_path, amqtt_broker, gas_box.url, opacimeter_box.url)
        task = asyncio.create_task(lane.run())
        try:
            async with subscriber(amqtt_broker.host, amqtt_broker.port, f"{ROOT}/#") as station:
                status = await station.wait_status("online", **both)
                assert status["devices"]["gas-analyzer"]["identity"]["model"] == "GA-5"
                assert status["devices"]["opacimeter"]["port"] == opacimeter_box.url
                await asyncio.sleep(1.0)
                for device in ("gas-analyzer", "opacimeter"):
                    live = [m.json() for m in station.on(f"/live/{device}")]
                    assert len(live) >= 5, device  # 10 messages a second; loose, the machine may be loaded
                    seqs = [r["seq"] for m in live for r in m["readings"]]
                    assert seqs == sorted(seqs) and len(set(seqs)) > 5, device

                await gas_box.stop()  # both boxes switched off: the connections end
                await opacimeter_box.stop()
                down = await station.wait_status("online", **{"gas-analyzer": "disconnected",
                                                              "opacimeter": "disconnected"})
                assert "serial port lost" in down["devices"]["opacimeter"]["last_error"]
                await asyncio.sleep(0.5)  # the lane tries again meanwhile: refused, and tries on
                await gas_box.start()
                await opacimeter_box.start()
                await station.wait_status("online", **both)
                seen = {d: len(station.on(f"/live/{d}")) for d in ("gas-analyzer", "opacimeter")}
                await asyncio.sleep(1.0)
                for device, before in seen.items():
                    assert len(station.on(f"/live/{device}")) >= before + 5, device  # readings resumed
        finally:
            lane.request_stop()
            await asyncio.wait_for(task, 10)


async def test_a_late_reply_through_a_device_server_is_not_the_retrys_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    """A network port has no input queue to discard: what the port's reader has not taken yet when
    the retry goes out is let in and dropped first. Here the late reply reaches the lane's socket
    as the first request's timeout fires, and the retry at once after must get its own reply."""
    replies: asyncio.Queue[bytes] = asyncio.Queue()
    box: list[asyncio.StreamWriter] = []

    async def device(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        box.append(writer)
        while request := await reader.read(16):
            if request == b"B":
                writer.write(await replies.get())

    server = await asyncio.start_server(device, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link = SerialLink("opacimeter", f"socket://127.0.0.1:{port}", baudrate=9600)
    await link.open()
    try:
        set_done, late = serial_link._set_done, [b"AAA"]

        def timeout_as_the_late_reply_lands(waiter: asyncio.Future[None]) -> None:
            if late:
                box[0].write(late.pop())
                time.sleep(0.005)  # loopback hands it to the lane's socket
            set_done(waiter)

        monkeypatch.setattr(serial_link, "_set_done", timeout_as_the_late_reply_lands)
        with pytest.raises(DeviceTimeout):
            await link.request(b"A", FirstBytes(3), 0.1, expected="A")
        replies.put_nowait(b"BBB")
        assert await link.request(b"B", FirstBytes(3), 0.3, expected="B") == b"BBB"

        box[0].close()  # the device server drops the connection: a lost port, named as such
        await asyncio.sleep(0.05)
        with pytest.raises(DeviceUnavailable, match="serial port lost"):
            await link.request(b"B", FirstBytes(3), 0.3, expected="B")
    finally:
        await link.close()
        server.close()
        await server.wait_closed()
