"""`laned run` as systemd runs it: NOTIFY_SOCKET and WATCHDOG_USEC in its environment, a datagram
socket bound by the test standing in for systemd, a real broker that comes up only after the daemon.

What systemd must see (sd_notify(3), systemd.service(5)): while the broker is unreachable the
lane is alive but not ready (WATCHDOG=1, STATUS=… broker down, start timeout extended, no READY);
READY=1 once the lane is online; WATCHDOG=1 every half of WATCHDOG_USEC; STOPPING=1 after SIGTERM;
exit code 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from laned.broker import EmbeddedBroker, free_port
from tests.helpers import ROOT, laned_command, subscriber, write_lane_toml

pytestmark = pytest.mark.integration
ROOT_TOPIC = "laned/v1/370100/T1"


@dataclass
class FakeSystemd:
    """The notify socket's other end: every datagram the daemon sent, in order."""

    sock: socket.socket
    path: str
    datagrams: list[bytes] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def pump(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.datagrams.append(await loop.sock_recv(self.sock, 4096))
            self.arrived.set()

    async def wait_for(self, predicate: Callable[[list[bytes]], bool], timeout_s: float = 20.0) -> None:
        async def until() -> None:
            while not predicate(self.datagrams):
                self.arrived.clear()
                await self.arrived.wait()

        try:
            await asyncio.wait_for(until(), timeout_s)
        except TimeoutError:
            raise AssertionError(f"systemd did not get what it expected; it got {self.datagrams}") from None


@contextlib.asynccontextmanager
async def fake_systemd() -> AsyncIterator[FakeSystemd]:
    folder = tempfile.mkdtemp(prefix="sdn-")  # short: AF_UNIX paths are limited to 107 bytes
    path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    systemd = FakeSystemd(sock, path)
    task = asyncio.create_task(systemd.pump())
    try:
        yield systemd
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)


def count(datagrams: list[bytes], wanted: bytes) -> int:
    return sum(1 for d in datagrams if d == wanted)


def statuses(datagrams: list[bytes]) -> list[str]:
    """Every STATUS= value, whether alone or beside READY=1 / STOPPING=1."""
    found = []
    for datagram in datagrams:
        for line in datagram.decode().split("\n"):
            if line.startswith("STATUS="):
                found.append(line[len("STATUS=") :])
    return found


async def test_systemd_is_told_ready_only_once_online_fed_the_watchdog_and_told_stopping(tmp_path: Path) -> None:
    port = free_port()
    config = write_lane_toml(tmp_path / "lane.toml", state_dir=tmp_path / "state", host="127.0.0.1", port=port)
    async with fake_systemd() as systemd:
        env = {**os.environ, "NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "1000000"}
        env.pop("WATCHDOG_PID", None)
        process = subprocess.Popen(
            laned_command("run", "--config", str(config), "--log-format", "json"),
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        broker = EmbeddedBroker(port=port)
        try:
            # no broker yet: alive (watchdog fed, start timeout extended by 3 x 0.5 s), not ready
            await systemd.wait_for(lambda d: count(d, b"WATCHDOG=1") >= 2)
            assert not [d for d in systemd.datagrams if b"READY=1" in d]
            assert b"EXTEND_TIMEOUT_USEC=1500000" in systemd.datagrams
            assert any("broker down" in s for s in statuses(systemd.datagrams))

            await broker.start()
            async with subscriber(broker.host, port, f"{ROOT_TOPIC}/status") as station:
                await systemd.wait_for(lambda d: any(b"READY=1" in x for x in d))
                ready_at = next(i for i, d in enumerate(systemd.datagrams) if b"READY=1" in d)
                ready = systemd.datagrams[ready_at].decode().split("\n")
                assert ready[0] == "READY=1"
                assert ready[1] == "STATUS=idle; no devices; broker up; outbox 0"
                online = await station.wait_status("online")
                assert online["lane"] == "T1"

                # the watchdog keeps being fed once running, and the start is no longer extended
                await systemd.wait_for(lambda d: count(d[ready_at:], b"WATCHDOG=1") >= 3)
                assert not [d for d in systemd.datagrams[ready_at + 1 :] if d.startswith(b"EXTEND_TIMEOUT_USEC")]

                process.send_signal(signal.SIGTERM)
                await systemd.wait_for(lambda d: any(x.startswith(b"STOPPING=1") for x in d[ready_at:]))
                _, stderr = await asyncio.to_thread(process.communicate, None, 20)
                assert process.returncode == 0, stderr.decode(errors="replace")
                assert b'"event": "lane_stopped"' in stderr
                await station.wait_status("offline")
            assert statuses(systemd.datagrams)[-1] == "stopped"
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            await broker.stop()


async def test_without_notify_socket_the_daemon_runs_and_stops_as_before(tmp_path: Path) -> None:
    """No NOTIFY_SOCKET (a terminal, another supervisor): nothing about systemd is attempted or logged."""
    async with EmbeddedBroker() as broker:
        config = write_lane_toml(tmp_path / "lane.toml", state_dir=tmp_path / "state", host="127.0.0.1",
                                 port=broker.port)
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        async with subscriber(broker.host, broker.port, f"{ROOT_TOPIC}/status") as station:
            process = subprocess.Popen(
                laned_command("run", "--config", str(config), "--log-format", "json"),
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            try:
                await station.wait_status("online", timeout_s=20)
                process.send_signal(signal.SIGTERM)
                _, stderr = await asyncio.to_thread(process.communicate, None, 20)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            assert process.returncode == 0, stderr.decode(errors="replace")
            assert b"systemd" not in stderr
