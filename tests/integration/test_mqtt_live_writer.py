"""Live messages go out through aiomqtt's own publish, beside the status and the outbox's QoS-1
messages: every one arrives whole, once, in order, in either protocol; the connection stays idle
when there is nothing to send (the bench once found a lane at 100 % of a core after a burst of
live and QoS-1 messages); a broker that stops reading for a while costs live messages (QoS 0,
the oldest go), never the connection or a result."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from laned.broker import Mosquitto
from laned.config import parse_config
from laned.mqtt import MqttLink
from laned.outbox import Outbox
from tests.helpers import subscriber

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def mqtt_link(tmp_path: Path, broker: Any, **mqtt: Any) -> AsyncIterator[MqttLink]:
    """A lane's MQTT link running against `broker`, stopped afterwards."""
    config = parse_config({"lane": {"station": "370100", "lane": "W1", "state_dir": str(tmp_path)},
                           "mqtt": {"host": broker.host, "port": broker.port, **mqtt}}, "test", environ={})
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    link = MqttLink(config, outbox, offline_status=lambda: {"schema": "lane-status/2", "state": "offline"})
    running = asyncio.create_task(link.run())
    try:
        yield link
    finally:
        await link.stop()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await running
        outbox.close()


@pytest.mark.parametrize("broker", ["amqtt", "mosquitto"], indirect=True)
async def test_live_messages_beside_qos1_publishes_all_arrive_and_leave_the_lane_idle(
        tmp_path: Path, broker: Any) -> None:
    async with mqtt_link(tmp_path, broker) as link, \
            subscriber(broker.host, broker.port, f"{link.topics.root}/#") as station:
        root = link.topics.root
        await link.wait_connected(10)
        loop = asyncio.get_running_loop()
        for n in range(20):
            sent = asyncio.create_task(link.publish_now(f"{root}/event", json.dumps({"n": n}).encode(), qos=1))
            loop.call_soon(link.publish_live, "brake-tester", {"n": n})
            await sent
        for _ in range(100):  # every message arrived, once, in order
            if len(station.on("/event")) >= 20 and len(station.on("/live/brake-tester")) >= 20:
                break
            await asyncio.sleep(0.1)
        assert [m.json()["n"] for m in station.on("/event")] == list(range(20))
        assert [m.json()["n"] for m in station.on("/live/brake-tester")] == list(range(20))
        await asyncio.sleep(0.3)
        cpu = time.process_time()
        await asyncio.sleep(0.5)
        assert time.process_time() - cpu < 0.2  # nothing to send: idle (a writer left spinning: 0.5 s)


@pytest.mark.mosquitto
async def test_a_broker_that_stops_reading_costs_live_messages_not_the_connection_or_a_result(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    """The broker stops reading (SIGSTOP) while the lane goes on publishing live messages: the
    socket fills, the live queue keeps its newest messages, and once the broker reads again the
    result queued meanwhile arrives, the live messages that went out arrive whole and in order,
    and the lane never reconnected."""
    assert mosquitto.process is not None
    pid = mosquitto.process.pid
    async with mqtt_link(tmp_path, mosquitto) as link, \
            subscriber(mosquitto.host, mosquitto.port, f"{link.topics.root}/#") as station:
        await link.wait_connected(10)
        pad = "x" * 400
        sent = 0
        os.kill(pid, signal.SIGSTOP)
        try:
            while link.live_dropped == 0 and sent < 100_000:  # until the sockets and the live queue are full
                link.publish_live("brake-tester", {"n": sent, "pad": pad})
                sent += 1
                if sent % 200 == 0:
                    await asyncio.sleep(0.01)  # the live pump hands what it can to the socket
            link.enqueue(f"{link.topics.root}/result/safety", {"after": sent - 1}, kind="result")
            await asyncio.sleep(0.2)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert link.live_dropped > 0, f"the broker took all {sent} messages while stopped"
        await asyncio.wait_for(_until(lambda: bool(station.on("/result/safety"))), 30)
        assert [m.json() for m in station.on("/result/safety")] == [{"after": sent - 1}]
        newest = sent - 1
        await asyncio.wait_for(_until(lambda: any(m.json()["n"] == newest for m in station.on("/live/brake-tester"))),
                               30)  # the newest went out: the oldest made room
        assert link.connects == 1
        numbers = [m.json()["n"] for m in station.on("/live/brake-tester")]
        assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
        assert len(numbers) + link.live_dropped == sent  # each message arrived whole, or was counted dropped


@pytest.mark.mosquitto
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_live_messages_arrive_whole_in_either_protocol(
        tmp_path: Path, mosquitto: Mosquitto, protocol: str) -> None:
    """Every message arrives, once, in order, payloads across the 127/128-byte step of the
    remaining length and with non-ASCII text."""
    async with mqtt_link(tmp_path, mosquitto, protocol=protocol) as link, \
            subscriber(mosquitto.host, mosquitto.port, f"{link.topics.root}/live/#") as station:
        await link.wait_connected(10)
        for n in range(200):
            link.publish_live("opacimeter", {"n": n, "pad": "é" * (n % 90)})
        await asyncio.wait_for(_until(lambda: len(station.on("/live/opacimeter")) >= 200), 10)
        assert [m.json() for m in station.on("/live/opacimeter")] == [
            {"n": n, "pad": "é" * (n % 90)} for n in range(200)]
        assert link.connects == 1 and link.live_dropped == 0


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.05)


@pytest.mark.mosquitto
async def test_live_messages_while_the_link_stops_do_not_raise(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Readings keep coming while the daemon's shutdown stops the link (aiomqtt sends DISCONNECT,
    the socket closes): they may be dropped, as QoS 0 may be, but `publish_live` never raises into
    the driver's turn."""
    async with mqtt_link(tmp_path, mosquitto) as link:
        await link.wait_connected(10)
        errors: list[BaseException] = []
        loop = asyncio.get_running_loop()

        def reading(n: int) -> None:
            try:
                link.publish_live("opacimeter", {"n": n})
            except Exception as exc:
                errors.append(exc)
            if n < 2000:
                loop.call_soon(reading, n + 1)

        loop.call_soon(reading, 0)
        await link.stop()
        await asyncio.sleep(0.05)
        assert errors == []
