"""An embedded MQTT broker (amqtt, MQTT 3.1.1) for the demo, the benchmarks and the tests,
and a mosquitto runner for tests and benchmarks where the binary is installed."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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

    async def stop(self) -> None:
        if self._broker is not None:
            with contextlib.suppress(Exception):
                await self._broker.shutdown()
            self._broker = None

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
            with contextlib.suppress(OSError):
                _reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.close()
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"mosquitto did not listen on {self.port} within {timeout_s} s")

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
