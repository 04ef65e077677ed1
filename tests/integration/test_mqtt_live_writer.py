"""Live messages are written to the broker's socket in the driver's turn, beside aiomqtt's own
publishes (status, results). Found by the bench: a live message that wrote out a QoS-1 packet
whose socket writer aiomqtt had queued but not yet added left that writer behind on a socket
with nothing to write, and the loop ran it on every turn: the daemon at 100 % of a core, its
messages all still arriving, for the rest of the connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from laned.config import parse_config
from laned.mqtt import MqttLink
from laned.outbox import Outbox
from tests.helpers import subscriber

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("broker", ["amqtt", "mosquitto"], indirect=True)
async def test_live_messages_racing_a_qos1_publish_leave_the_socket_idle(tmp_path: Path, broker: Any) -> None:
    config = parse_config({"lane": {"station": "370100", "lane": "W1", "state_dir": str(tmp_path)},
                           "mqtt": {"host": broker.host, "port": broker.port}}, "test", environ={})
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    link = MqttLink(config, outbox, offline_status=lambda: {"schema": "lane-status/1", "state": "offline"})
    running = asyncio.create_task(link.run())
    root = link.topics.root
    try:
        async with subscriber(broker.host, broker.port, f"{root}/#") as station:
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
    finally:
        await link.stop()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await running
        outbox.close()
