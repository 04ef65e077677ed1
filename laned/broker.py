"""An embedded MQTT broker (amqtt, MQTT 3.1.1) for the demo, the benchmarks and the tests,
and a mosquitto runner for tests and benchmarks where the binary is installed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

#: where free_port looks when the kernel's ephemeral range cannot be read (Linux's default is
#: 32768-60999; this is below it)
_FALLBACK_RANGE = (20000, 32000)
#: free_port's picks come from the OS's entropy, never from the `random` module's shared state: a
#: test runner that reseeds `random` alike in every worker (pytest-randomly does) would otherwise
#: hand the same ports to tests running side by side
_PICKS = random.SystemRandom()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def _candidate_ports() -> range:
    """Ports the kernel never hands out by itself: below its ephemeral range (or above it)."""
    low, high = _ephemeral_range()
    if low - 1024 >= 2000:
        return range(max(1024, low - 12000), low)
    if 65535 - high >= 2000:
        return range(high + 1, 65536)
    return range(*_FALLBACK_RANGE)


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port for a server of ours (a broker, a simulator), taken outside the kernel's
    ephemeral range.

    A port from `bind(0)` is an ephemeral one: once its server stops (a broker restarted by a test,
    a simulator brought back), the kernel may hand the same port to any other process's `bind(0)`
    or outgoing connection meanwhile, and the server comes back to find it taken; a client that
    connects to a stopped server's ephemeral port can even be connected to itself. Outside that
    range only another explicit choice like this one can collide, and each is checked free.
    """

    candidates = _candidate_ports()
    for _ in range(100):
        port = _PICKS.choice(candidates)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _listening_inodes(port: int) -> set[str]:
    """The inodes of the sockets listening on `port` (Linux /proc/net/tcp; state 0A is LISTEN)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    return inodes


def _holds_listener(pid: int, port: int) -> bool | None:
    """Whether process `pid` holds the socket listening on `port`; None where /proc cannot say."""
    if not Path("/proc/net/tcp").exists():
        return None
    inodes = _listening_inodes(port)
    if not inodes:
        return False
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return None
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return True
    return False


class EmbeddedBroker:
    """amqtt on 127.0.0.1:`port` (a free one by default), anonymous, no $SYS chatter."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self._broker: Any = None

    async def start(self) -> None:
        from amqtt.broker import Broker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}", "max_connections": 200}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self._broker = Broker(config)
        await self._broker.start()

    async def stop(self, timeout_s: float | None = None) -> bool:
        """Shut the broker down; False if that took longer than `timeout_s` (it is then left to
        finish on its own: the caller's process is ending)."""
        broker, self._broker = self._broker, None
        if broker is None:
            return True
        shutdown = asyncio.ensure_future(broker.shutdown())
        done, _ = await asyncio.wait({shutdown}, timeout=timeout_s)
        if shutdown in done:
            with contextlib.suppress(Exception):
                shutdown.result()
            return True
        return False

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


class Mosquitto:
    """A private mosquitto on a free loopback port, with its own config; stop and start it at will."""

    def __init__(self, port: int | None = None, extra_config: str = "", workdir: Path | None = None) -> None:
        binary = mosquitto_path()
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="laned-mosquitto-"))
        self.extra_config = extra_config
        self.process: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> Path:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\n"
            f"log_dest file {self.workdir / 'mosquitto.log'}\n{self.extra_config}\n"
        )
        return conf

    async def start(self, timeout_s: float = 10.0) -> None:
        conf = self._write_config()
        self.process = subprocess.Popen(
            [self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (
                    (self.workdir / "mosquitto.log").read_text(errors="replace")
                    if (self.workdir / "mosquitto.log").exists()
                    else ""
                )
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}: {log[-2000:]}")
            # ready when *this* mosquitto holds the listener: something else answering on the port
            # (another server that took it while ours was stopped) must not pass for it
            owner = _holds_listener(self.process.pid, self.port)
            if owner:
                return
            if owner is None:
                with contextlib.suppress(OSError):
                    _reader, writer = await asyncio.open_connection(self.host, self.port)
                    writer.close()
                    return
            await asyncio.sleep(0.05)
        self.process.kill()
        self.process.wait()
        raise TimeoutError(f"mosquitto did not listen on {self.port} within {timeout_s} s")

    async def kill(self) -> None:
        """The broker dies at once (SIGKILL), as a crashed or unplugged one: no shutdown during which
        it might still accept a client, no goodbye to those connected."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)
        self.process = None

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)
        self.process = None


@contextlib.asynccontextmanager
async def any_broker(prefer_mosquitto: bool = True) -> AsyncIterator[Any]:
    """mosquitto where installed, else the embedded broker."""
    broker: Any = Mosquitto() if prefer_mosquitto and mosquitto_path() else EmbeddedBroker()
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()
