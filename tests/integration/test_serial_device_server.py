"""Serial devices behind an Ethernet serial device server (`socket://HOST:PORT`): the box that puts
a lane's RS-232 devices on the network. Here the device server is socat, listening on TCP and
forwarding to the simulator's pty as a real box forwards to its RS-232 port; the lane opens
`socket://127.0.0.1:PORT` through the same SerialLink a local port takes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import serial
import serial.rfc2217

import drivers.serial_link as serial_link
from drivers.base import Backoff, HealthState
from drivers.errors import DeviceTimeout, DeviceUnavailable
from drivers.opacimeter import OpacimeterDriver
from drivers.serial_link import SerialLink
from laned.broker import free_port
from laned.config import parse_config
from laned.daemon import Lane
from simulators.gas_analyzer import GasAnalyzerSimulator, load_analyzer_config
from simulators.opacimeter import MeterSettings, OpacimeterSimulator
from tests.helpers import lane_config_dict, subscriber
from tests.integration.test_serial_reply_on_tick import FirstBytes

pytestmark = pytest.mark.integration
ROOT = "laned/v1/370100/T1"


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


class Rfc2217Server:
    """A device server speaking RFC 2217 (telnet with COM-port control), made of pyserial's own
    `PortManager`: one client at a time, forwarded to `port_path`. `stop()` drops the client and
    stops listening, as a box switched off; `start()` listens again on the same TCP port."""

    def __init__(self, port_path: Path) -> None:
        self.port_path, self.tcp_port = port_path, free_port()
        self.alive = False
        self.threads: list[threading.Thread] = []
        self.listener: socket.socket | None = None
        self.client: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"rfc2217://127.0.0.1:{self.tcp_port}"

    def start(self) -> None:
        self.alive = True
        self.listener = socket.create_server(("127.0.0.1", self.tcp_port), reuse_port=True)
        self.listener.settimeout(0.1)
        self.threads = [threading.Thread(target=self._serve, daemon=True)]
        self.threads[0].start()

    def stop(self) -> None:
        self.alive = False
        for thread in self.threads:
            thread.join(5)
        if self.listener is not None:
            self.listener.close()

    def _serve(self) -> None:
        assert self.listener is not None
        while self.alive:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            with client, serial.serial_for_url(str(self.port_path), timeout=0.05) as port:
                client.settimeout(0.05)
                manager = serial.rfc2217.PortManager(_BoxPort(), _Sender(client))
                to_client = threading.Thread(target=self._device_to_client, args=(port, client, manager), daemon=True)
                to_client.start()
                while self.alive:
                    try:
                        data = client.recv(1024)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    if not data:
                        break
                    port.write(b"".join(manager.filter(data)))
                to_client.join(1)

    def _device_to_client(self, port: Any, client: socket.socket, manager: Any) -> None:
        while self.alive:
            try:
                data = port.read(port.in_waiting or 1)
                if data:
                    client.sendall(b"".join(manager.escape(data)))
            except (OSError, serial.SerialException):
                return


class _BoxPort:
    """The RS-232 side as PortManager sees it: the line settings the lane asks for, kept (a pty
    carries bytes at any speed), and modem lines always asserted (a pty has none)."""

    baudrate, bytesize, parity, stopbits = 9600, 8, "N", 1
    rts = dtr = cts = dsr = cd = True
    ri = rtscts = xonxoff = break_condition = False

    def reset_input_buffer(self) -> None:
        """Nothing held here: the bytes go straight through."""

    def reset_output_buffer(self) -> None:
        """Nothing held here."""


class _Sender:
    """The `connection` PortManager writes its telnet answers to."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client

    def write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self.client.sendall(data)


async def test_an_opacimeter_behind_an_rfc2217_device_server_is_read_and_read_again_after_its_restart(
        tmp_path: Path) -> None:
    async with OpacimeterSimulator(tmp_path / "op1", settings=MeterSettings(warmup_s=0.1, zero_s=0.1)) as meter:
        box = Rfc2217Server(meter.pty.link)
        box.start()
        driver = OpacimeterDriver("opacimeter", port=box.url, poll_hz=20, backoff=Backoff(initial_s=0.1, max_s=0.3))
        readings: list[Any] = []
        driver.readings.listen(readings.append)
        task = asyncio.create_task(driver.run())
        try:
            await driver.wait_connected(10)
            await asyncio.sleep(1.0)
            assert len(readings) >= 10  # 20 polls a second; loose, the machine may be loaded
            await asyncio.to_thread(box.stop)  # the box switched off
            for _ in range(100):
                if driver.health.state == HealthState.DISCONNECTED:
                    break
                await asyncio.sleep(0.05)
            assert driver.health.state == HealthState.DISCONNECTED
            assert "serial port lost" in (driver.health.last_error or "") or "cannot open" in (
                driver.health.last_error or "")
            box.start()
            await driver.wait_connected(10)
            count = len(readings)
            await asyncio.sleep(0.5)
            assert len(readings) >= count + 5  # readings resumed
        finally:
            await driver.stop()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await task
            await asyncio.to_thread(box.stop)
