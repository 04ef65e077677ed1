"""Live messages are written to the broker's socket in the driver's turn, beside aiomqtt's own
publishes (status, results). Found by the bench: a live message that wrote out a QoS-1 packet
whose socket writer aiomqtt had queued but not yet added left that writer behind on a socket
with nothing to write, and the loop ran it on every turn: the daemon at 100 % of a core, its
messages all still arriving, for the rest of the connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
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
    link = MqttLink(config, outbox, offline_status=lambda: {"schema": "lane-status/1", "state": "offline"})
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
async def test_live_messages_racing_a_qos1_publish_leave_the_socket_idle(tmp_path: Path, broker: Any) -> None:
    async with mqtt_link(tmp_path, broker) as link, \
            subscriber(broker.host, broker.port, f"{link.topics.root}/#") as station:
        root = link.topics.root
        await link.wait_connected(10)
        paho = link._paho  # the socket's writer calls paho's loop_write: count the calls
        assert paho is not None, "aiomqtt's paho client not reachable: live messages would take the queue"
        calls = [0]
        write = paho.loop_write

        def counted() -> Any:
            calls[0] += 1
            return write()

        paho.loop_write = counted
        loop = asyncio.get_running_loop()
        for n in range(20):
            # aiomqtt's publish queues its writer (call_soon_threadsafe); a live message already
            # due in the same turn writes the QoS-1 packet out before that writer is added
            sent = asyncio.create_task(link.publish_now(f"{root}/event", json.dumps({"n": n}).encode(), qos=1))
            loop.call_soon(link.publish_live, "brake-tester", {"n": n})
            await sent
        await asyncio.sleep(0.3)  # every writer queued above has run by now
        before = calls[0]
        await asyncio.sleep(0.3)
        assert calls[0] - before == 0  # nothing to write: nobody writes (a left writer: thousands)
        for _ in range(100):  # and every message arrived, once, in order
            if len(station.on("/event")) >= 20 and len(station.on("/live/brake-tester")) >= 20:
                break
            await asyncio.sleep(0.1)
        assert [m.json()["n"] for m in station.on("/event")] == list(range(20))
        assert [m.json()["n"] for m in station.on("/live/brake-tester")] == list(range(20))


@pytest.mark.mosquitto
async def test_a_live_message_the_socket_took_only_part_of_is_finished_before_anything_else(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Live messages are written to the socket directly. When the broker stops reading, the socket
    fills; the message it takes only part of must still reach the broker whole, and before the
    next packet (here a result), or the broker sees garbage and drops the lane."""
    assert mosquitto.process is not None
    pid = mosquitto.process.pid
    async with mqtt_link(tmp_path, mosquitto) as link, \
            subscriber(mosquitto.host, mosquitto.port, f"{link.topics.root}/#") as station:
        await link.wait_connected(10)
        paho = link._paho
        assert paho is not None and link._live_socket is not None  # plain TCP: written directly
        pad = "x" * 400
        sent, cut = 0, None
        for _ in range(5):  # a fill that ends exactly on a packet boundary cuts none: drain a little, again
            os.kill(pid, signal.SIGSTOP)
            try:
                while sent < 300_000 and link.live_dropped == 0 and not paho.want_write():
                    link.publish_live("brake-tester", {"n": sent, "pad": pad})
                    sent += 1
                if paho.want_write():  # the socket took part of the last one: paho holds the rest
                    cut = sent - 1
                    link.enqueue(f"{link.topics.root}/result/safety", {"after": cut}, kind="result")
                    break
            finally:
                os.kill(pid, signal.SIGCONT)
            await asyncio.sleep(0.2)
            link.live_dropped = 0
        # without the rest handed to paho this fails here: paho holds nothing, and mosquitto, fed a
        # cut packet, resets the connection
        assert cut is not None, f"no cut packet's rest waiting in paho after {sent} live messages"
        await asyncio.wait_for(_until(lambda: bool(station.on("/result/safety"))), 30)
        assert [m.json() for m in station.on("/result/safety")] == [{"after": cut}]
        assert link.connects == 1  # a broken stream: mosquitto would have dropped the lane
        numbers = [m.json()["n"] for m in station.on("/live/brake-tester")]
        assert cut in numbers  # the cut message arrived, whole (it parsed)
        assert numbers == sorted(numbers)


@pytest.mark.mosquitto
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_live_messages_written_directly_arrive_whole_in_either_protocol(
        tmp_path: Path, mosquitto: Mosquitto, protocol: str) -> None:
    """The packets `_send_live` builds itself (MQTT 5 adds a property length): a broker that
    found one malformed would drop the lane; here every message arrives, once, in order."""
    async with mqtt_link(tmp_path, mosquitto, protocol=protocol) as link, \
            subscriber(mosquitto.host, mosquitto.port, f"{link.topics.root}/live/#") as station:
        await link.wait_connected(10)
        assert link._live_socket is not None  # plain TCP: the packets are ours
        for n in range(200):  # sizes across the 127/128-byte step of the remaining length
            link.publish_live("opacimeter", {"n": n, "pad": "é" * (n % 90)})
        await asyncio.wait_for(_until(lambda: len(station.on("/live/opacimeter")) >= 200), 10)
        assert [m.json() for m in station.on("/live/opacimeter")] == [
            {"n": n, "pad": "é" * (n % 90)} for n in range(200)]
        assert link.connects == 1 and link.live_dropped == 0


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.05)


@pytest.mark.mosquitto
async def test_a_live_message_while_the_link_disconnects_does_not_raise(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """aiomqtt's `__aexit__` (the daemon's shutdown cancelling run(), or `_serve` ending on an error)
    queues paho's DISCONNECT; the link still counts as connected until run()'s `finally`. A live
    reading in that window goes through paho (it has bytes waiting), whose own write sends the
    DISCONNECT and closes the socket: the message may be dropped, as QoS 0 may be, but
    `publish_live` must not raise into the driver's turn."""
    config = parse_config({"lane": {"station": "370100", "lane": "W1", "state_dir": str(tmp_path)},
                           "mqtt": {"host": mosquitto.host, "port": mosquitto.port}}, "test", environ={})
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    link = MqttLink(config, outbox, offline_status=lambda: {"schema": "lane-status/1", "state": "offline"})
    running = asyncio.create_task(link.run())
    try:
        await link.wait_connected(10)
        paho = link._paho
        assert paho is not None
        loop = asyncio.get_running_loop()
        errors: list[BaseException] = []
        disconnect = paho.disconnect

        def disconnect_then_a_reading(*args: Any, **kwargs: Any) -> Any:
            rc = disconnect(*args, **kwargs)

            def reading() -> None:
                try:
                    link.publish_live("opacimeter", {"n": 1})
                except Exception as exc:
                    errors.append(exc)

            loop.call_soon(reading)  # a driver's reading due before paho's writer runs
            return rc

        paho.disconnect = disconnect_then_a_reading
        await link.stop()
        running.cancel()  # as the daemon's shutdown does: aiomqtt's __aexit__ sends DISCONNECT
        with contextlib.suppress(asyncio.CancelledError):
            await running
        assert errors == []
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await running
        outbox.close()
