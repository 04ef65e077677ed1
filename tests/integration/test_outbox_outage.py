"""The outbox loses nothing: not across a broker outage, not across a SIGKILL of the daemon.

Each test sends a numbered sequence of QoS-1 results, each with a unique id, and checks what the
station software receives: every id, first occurrences in the order sent, and after dropping repeats
(QoS 1 is at least once) exactly the set sent. Real brokers, real processes; nothing mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from laned.broker import Mosquitto, free_port
from laned.config import parse_config
from laned.daemon import Lane
from laned.outbox import Outbox
from tests.helpers import ROOT, lane_config_dict, laned_command, subscriber, write_lane_toml

pytestmark = pytest.mark.integration
ROOT_TOPIC = "laned/v1/370100/T1"


def result_document(n: int) -> dict[str, Any]:
    return {"schema": "test-result/1", "id": f"result-{n:04d}", "n": n}


def first_occurrences(ids: list[str]) -> list[str]:
    """The ids with repeats dropped, as a consumer that deduplicates by id sees them."""
    seen: set[str] = set()
    unique = []
    for result_id in ids:
        if result_id not in seen:
            seen.add(result_id)
            unique.append(result_id)
    return unique


@dataclass
class Station:
    """The station software: a persistent session (clean_session=False, fixed client id) that
    reconnects whenever the broker goes away, so the broker queues what it misses meanwhile."""

    host: str
    port: int
    ids: list[str] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    connects: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.host, self.port, identifier=f"station-outage-{os.getpid()}", clean_session=False
                ) as client:
                    await client.subscribe(f"{ROOT_TOPIC}/result/#", qos=1)
                    await client.subscribe(f"{ROOT_TOPIC}/status", qos=1)
                    self.connects += 1
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        document = aiomqtt_json(message.payload)
                        if str(message.topic).endswith("/status"):
                            self.statuses.append(document)
                        else:
                            self.ids.append(document["id"])
                        self.arrived.set()
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)

    async def wait_until(self, done: Any, timeout_s: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"station: {what} not within {timeout_s} s; ids received: {len(self.ids)}")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), min(remaining, 0.2))


def aiomqtt_json(payload: bytes) -> dict[str, Any]:
    import json

    document = json.loads(payload)
    assert isinstance(document, dict)
    return document


@contextlib.asynccontextmanager
async def station(host: str, port: int) -> AsyncIterator[Station]:
    recorder = Station(host, port)
    task = asyncio.create_task(recorder.run())
    try:
        await recorder.wait_until(lambda: recorder.connects >= 1, 10, "first connection")
        yield recorder
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def persistent_mosquitto(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    """mosquitto that keeps sessions and queued messages across its own restart, as a station's
    broker should (`user` keeps it as the test's user, so it can write its database here)."""
    from laned.broker import mosquitto_path

    if mosquitto_path() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    store = tmp_path / "mosquitto-db"
    store.mkdir()
    broker = Mosquitto(extra_config=f"user {getpass.getuser()}\npersistence true\npersistence_location {store}/\n")
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


@pytest.mark.mosquitto
async def test_a_broker_outage_loses_no_result_and_keeps_their_order(
    tmp_path: Path, persistent_mosquitto: Mosquitto
) -> None:
    broker = persistent_mosquitto
    total, stop_at, burst, restart_at = 150, 30, 25, 100
    lane = Lane(parse_config(lane_config_dict(tmp_path, broker), "test", environ={}),
                startup_grace_s=0.5, status_interval_s=0.2)
    task = asyncio.create_task(lane.run())
    try:
        async with station(broker.host, broker.port) as receiver:
            await receiver.wait_until(lambda: any(s["state"] == "online" for s in receiver.statuses), what="online")
            sent: list[str] = []

            def enqueue(n: int) -> None:
                document = result_document(n)
                lane.mqtt.enqueue(lane.topics.result("safety"), document, kind="result")
                sent.append(document["id"])

            n = 0
            while n < total:
                if n == stop_at:
                    # a burst, and the broker told to stop before the lane could send any of it: the
                    # burst goes out while the broker goes down, some of it never acknowledged
                    for _ in range(burst):
                        enqueue(n)
                        n += 1
                    await broker.stop()
                    continue
                if n == restart_at:
                    # the lane knows it is cut off, holds what it could not send, and says so
                    assert not lane.mqtt.connected
                    assert lane.outbox.depth > 0
                    assert lane.status_document()["outbox"]["depth"] == lane.outbox.depth
                    assert "broker down" in lane.status_line()
                    assert f"outbox {lane.outbox.depth}" in lane.status_line()
                    depth_during_outage = lane.outbox.depth
                    await broker.start()
                enqueue(n)
                n += 1
                await asyncio.sleep(0.02)  # 45 results after the burst while the broker is down: ~1 s

            await receiver.wait_until(lambda: set(receiver.ids) >= set(sent), what="every result")
            assert first_occurrences(receiver.ids) == sent
            assert set(receiver.ids) == set(sent)
            assert depth_during_outage >= restart_at - stop_at - burst  # all sent after the burst

            # the status the lane kept while cut off reaches the station once back, then drains to 0
            assert any(s["outbox"]["depth"] > 0 for s in receiver.statuses)
            await receiver.wait_until(
                lambda: bool(receiver.statuses) and receiver.statuses[-1]["outbox"]["depth"] == 0, what="depth 0"
            )
            assert lane.outbox.depth == 0
            assert lane.mqtt.connects >= 2
    finally:
        lane.request_stop()
        await asyncio.wait_for(task, 15)


# a lane process that queues results while its broker is unreachable, then waits to be killed
ENQUEUE_AND_WAIT = """
import asyncio, sys
from laned.config import load_config
from laned.daemon import Lane

async def main() -> None:
    lane = Lane(load_config(sys.argv[1]), startup_grace_s=0.5)
    task = asyncio.create_task(lane.run())
    for n in range(int(sys.argv[2])):
        lane.mqtt.enqueue(lane.topics.result("safety"), {"schema": "test-result/1", "id": f"result-{n:04d}", "n": n},
                          kind="result")
    print("enqueued", lane.outbox.depth, flush=True)
    await task

asyncio.run(main())
"""


async def test_results_pending_in_a_killed_daemon_are_published_after_restart(tmp_path: Path, broker: Any) -> None:
    total = 40
    state_dir = tmp_path / "state"
    # first life: the broker it is configured for is not there; results pile up in the outbox
    unreachable = write_lane_toml(tmp_path / "first.toml", state_dir=state_dir, host="127.0.0.1", port=free_port())
    first = subprocess.Popen([sys.executable, "-c", ENQUEUE_AND_WAIT, str(unreachable), str(total)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert first.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(first.stdout.readline), 20)
        assert line.strip() == f"enqueued {total}"
    finally:
        first.send_signal(signal.SIGKILL)  # no clean stop, no checkpoint: what is on disk is what is left
        first.wait()
    assert first.returncode == -signal.SIGKILL

    # second life: the real `laned run`, same state directory, a broker it can reach
    reachable = write_lane_toml(tmp_path / "second.toml", state_dir=state_dir, host="127.0.0.1", port=broker.port)
    async with subscriber(broker.host, broker.port, f"{ROOT_TOPIC}/result/#") as receiver:
        second = subprocess.Popen(laned_command("run", "--config", str(reachable), "--log-format", "json"),
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            expected = [f"result-{n:04d}" for n in range(total)]
            received: list[str] = []
            while set(received) != set(expected):
                message = await receiver.wait_for(lambda m: True, timeout_s=20)
                received.append(message.json()["id"])
            assert first_occurrences(received) == expected
            second.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.to_thread(second.communicate, None, 20)
        finally:
            if second.poll() is None:
                second.kill()
                second.wait()
    assert second.returncode == 0, stderr.decode(errors="replace")
    assert b'"event": "outbox_pending_at_start"' in stderr
    assert f'"depth": {total}'.encode() in stderr
    outbox = Outbox(state_dir / "outbox.sqlite3")
    try:
        assert outbox.depth == 0
    finally:
        outbox.close()
