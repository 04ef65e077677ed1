"""Test helpers: a subscriber that records what the station software would receive."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Recorder:
    """Everything received on the subscribed topics, in order."""

    messages: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    cursor: int = 0  # wait_for looks at messages after the last one it matched

    def on(self, topic_suffix: str) -> list[Received]:
        return [m for m in self.messages if m.topic.endswith(topic_suffix)]

    async def wait_for(self, predicate: Callable[[Received], bool], timeout_s: float = 10.0) -> Received:
        """The first message after the previous match that satisfies `predicate` (waits for it)."""
        deadline = time.monotonic() + timeout_s
        seen = self.cursor
        while True:
            for index in range(seen, len(self.messages)):
                if predicate(self.messages[index]):
                    self.cursor = index + 1
                    return self.messages[index]
            seen = len(self.messages)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                shown = [f"{m.topic}: {m.payload[:120]!r}" for m in self.messages[-10:]]
                raise AssertionError(f"no matching message within {timeout_s} s; last received:\n" + "\n".join(shown))
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)

    async def wait_status(self, state: str, timeout_s: float = 10.0, **device_states: str) -> dict[str, Any]:
        def match(m: Received) -> bool:
            if not m.topic.endswith("/status"):
                return False
            doc = m.json()
            if doc.get("state") != state:
                return False
            return all(doc["devices"].get(n, {}).get("state") == s for n, s in device_states.items())

        return (await self.wait_for(match, timeout_s)).json()  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def subscriber(host: str, port: int, topic: str) -> AsyncIterator[Recorder]:
    recorder = Recorder()
    async with aiomqtt.Client(host, port, identifier=f"test-station-{os.getpid()}-{id(recorder)}") as client:
        await client.subscribe(topic, qos=1)

        async def pump() -> None:
            with contextlib.suppress(aiomqtt.MqttError):  # a test that stops the broker ends the recording
                async for message in client.messages:
                    payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                    recorder.messages.append(Received(str(message.topic), payload, bool(message.retain)))
                    recorder.arrived.set()

        task = asyncio.create_task(pump())
        try:
            yield recorder
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def lane_config_dict(
    tmp_path: Path, broker: Any, devices: dict[str, Any] | None = None, **mqtt: Any
) -> dict[str, Any]:
    return {
        "lane": {"station": "370100", "lane": "T1", "state_dir": str(tmp_path / "state")},
        "mqtt": {"host": broker.host, "port": broker.port, "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5, **mqtt},
        "devices": devices or {},
    }


def laned_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "laned.cli", *args]


def write_lane_toml(path: Path, *, state_dir: Path, host: str, port: int, devices: str = "") -> Path:
    """A lane config file as a technician writes one, for a daemon run as `laned run --config`:
    short keepalive and reconnect pauses so tests see a lost broker quickly; `devices` is TOML."""
    path.write_text(
        f"""
[lane]
station = "370100"
lane = "T1"
state_dir = "{state_dir}"

[mqtt]
host = "{host}"
port = {port}
keepalive_s = 5
reconnect_initial_s = 0.1
reconnect_max_s = 0.3
{devices}""",
        encoding="utf-8",
    )
    return path
