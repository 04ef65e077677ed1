"""Figure 5 — the outbox: results per second through it to the broker's PUBACK, the time to drain
10,000 messages left pending by a broker outage, and enqueue-to-subscriber latency.

The daemon's own pieces (laned/outbox.py on disk with synchronous=FULL, laned/mqtt.py's
publisher with its PUBACK window) run in this process against the bench's broker; the
subscriber is a separate client. A "result-sized" message is a JSON document of
`result_bytes` (default the size of the safety result of the bench's exterior-only
inspection, about 5 KB).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from laned.bench.common import Broker, Subscriber, median, percentile, rounded
from laned.config import parse_config
from laned.mqtt import MqttLink
from laned.outbox import Outbox

DRAIN_MESSAGES = 10_000


@dataclass(frozen=True)
class OutboxParams:
    burst: int  # messages per throughput repeat
    repeats: int
    latency_messages: int
    drain_repeats: int
    result_bytes: int = 5200


def result_payload(seq: int, size: int) -> dict[str, Any]:
    """A result-shaped document padded to about `size` bytes of JSON."""
    document: dict[str, Any] = {
        "schema": "result-safety/2", "result_id": f"bench-{seq:08d}", "inspection_no": f"BENCH{seq:010d}",
        "verdict": "pass", "items": [{"code": "B1", "item": "brake_axle_1", "verdict": "pass",
                                      "values": {"brake_rate_pct": 68.4, "imbalance_pct": 4.1}}],
        "sent_at": time.time(), "process_data": "",
    }
    document["process_data"] = "x" * max(0, size - len(json.dumps(document)))
    return document


class _Link:
    """The daemon's MQTT link and outbox, alone, in this process."""

    def __init__(self, workdir: Path, broker: Broker) -> None:
        config = parse_config({"lane": {"station": "BENCH", "lane": "OUTBOX", "state_dir": str(workdir)},
                               "mqtt": {"host": broker.host, "port": broker.port, "reconnect_initial_s": 0.05,
                                        "reconnect_max_s": 0.2}}, "bench", environ={})
        self.outbox = Outbox(workdir / "outbox.sqlite3", max_messages=10 * DRAIN_MESSAGES)
        self.link = MqttLink(config, self.outbox, offline_status=lambda: {"schema": "lane-status/2",
                                                                          "state": "offline"})
        self.topic = self.link.topics.result("safety")
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _Link:
        self._task = asyncio.create_task(self.link.run(), name="bench-outbox-link")
        await self.link.wait_connected(10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.link.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.outbox.close()

    async def drained(self, timeout_s: float) -> float:
        """Wait until the outbox is empty (every message PUBACKed); returns when that was."""
        deadline = time.monotonic() + timeout_s
        while self.outbox.depth:
            if time.monotonic() > deadline:
                raise TimeoutError(f"outbox still holds {self.outbox.depth} messages after {timeout_s:g} s")
            await asyncio.sleep(0.002)
        return time.monotonic()


async def measure_outbox(workdir: Path, broker: Broker, params: OutboxParams) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    async with _Link(workdir, broker) as link:
        rates = []
        for repeat in range(params.repeats):
            rates.append(await _throughput(link, params, repeat))
        out["outbox_results_per_s"] = rounded(median(rates), 1)
        out.update(await _latency(link, broker, params))
        drains, totals = [], []
        for _ in range(params.drain_repeats):
            drain_s, total_s = await _outage(link, broker, params)
            drains.append(drain_s)
            totals.append(total_s)
        out["outbox_drain_10k_s"] = rounded(median(drains), 2)
        out["outbox_drain_10k_after_broker_start_s"] = rounded(median(totals), 2)
        out["outbox_drain_10k_per_s"] = rounded(DRAIN_MESSAGES / (median(drains) or 1.0), 1)
    out["outbox_message_bytes"] = params.result_bytes
    return out


async def _throughput(link: _Link, params: OutboxParams, repeat: int) -> float:
    """Enqueue `burst` results as fast as the disk takes them while the publisher sends; results/s
    from the first enqueue to the last PUBACK."""
    started = time.monotonic()
    for i in range(params.burst):
        link.link.enqueue(link.topic, result_payload(repeat * params.burst + i, params.result_bytes), kind="result")
        await asyncio.sleep(0)  # let the publisher run alongside, as in the daemon
    finished = await link.drained(120)
    return params.burst / (finished - started)


async def _latency(link: _Link, broker: Broker, params: OutboxParams) -> dict[str, Any]:
    """One result at a time: from `enqueue()` (disk write included) to its arrival in a subscriber."""
    sent: dict[str, float] = {}
    latencies: list[float] = []

    def on_message(arrived: float, _topic: str, payload: bytes) -> None:
        result_id = json.loads(payload).get("result_id")
        if result_id in sent:
            latencies.append(arrived - sent.pop(result_id))

    async with Subscriber(broker.host, broker.port, [link.topic], on_message, qos=1):
        for i in range(params.latency_messages):
            document = result_payload(10_000_000 + i, params.result_bytes)
            sent[document["result_id"]] = time.monotonic()
            link.link.enqueue(link.topic, document, kind="result")
            deadline = time.monotonic() + 10
            while len(latencies) <= i and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.01)
    return {
        "outbox_latency_p50_ms": rounded((percentile(latencies, 50) or 0.0) * 1000, 2),
        "outbox_latency_p99_ms": rounded((percentile(latencies, 99) or 0.0) * 1000, 2),
    }


async def _outage(link: _Link, broker: Broker, params: OutboxParams) -> tuple[float, float]:
    """The broker goes away, 10,000 results pile up on disk, the broker comes back: seconds from the
    publisher's reconnection (and from the broker's start) to the last PUBACK."""
    await broker.stop()
    deadline = time.monotonic() + 10
    while link.link.connected:
        if time.monotonic() > deadline:
            raise TimeoutError("the MQTT link did not notice the broker outage within 10 s")
        await asyncio.sleep(0.01)
    base = 20_000_000 + link.outbox.depth
    for i in range(DRAIN_MESSAGES):
        link.link.enqueue(link.topic, result_payload(base + i, params.result_bytes), kind="result")
    broker_started = time.monotonic()
    await broker.start()
    await link.link.wait_connected(30)
    reconnected = time.monotonic()
    finished = await link.drained(300)
    return finished - reconnected, finished - broker_started
