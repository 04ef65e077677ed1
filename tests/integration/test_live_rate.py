"""A device's live messages go out at its `live_hz` (10 a second by default), not at its poll rate,
each with every reading since the last: the opacimeter polled 20 times a second sends 10 messages
of two readings, and no reading is lost or sent twice. Real OP-1 simulator on a pty, real broker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from laned.config import parse_config
from laned.daemon import Lane
from simulators.opacimeter import MeterSettings, OpacimeterSimulator
from tests.helpers import lane_config_dict, subscriber

pytestmark = pytest.mark.integration
ROOT = "laned/v1/370100/T1"


@pytest.mark.parametrize(("live_hz", "per_second"), [(None, 10), (5, 5)])
async def test_a_20_hz_device_sends_live_hz_messages_carrying_every_reading_once(
        tmp_path: Path, amqtt_broker: Any, live_hz: float | None, per_second: int) -> None:
    async with OpacimeterSimulator(tmp_path / "op1", settings=MeterSettings(warmup_s=0.1, zero_s=0.1)) as meter:
        device: dict[str, Any] = {"kind": "opacimeter", "transport": {"type": "serial", "port": str(meter.pty.link)},
                                  "poll_hz": 20}
        if live_hz is not None:
            device["live_hz"] = live_hz
        config = parse_config(lane_config_dict(tmp_path, amqtt_broker, {"opacimeter": device}), "test", environ={})
        lane = Lane(config, startup_grace_s=5)
        task = asyncio.create_task(lane.run())
        try:
            async with subscriber(amqtt_broker.host, amqtt_broker.port, f"{ROOT}/#") as station:
                await station.wait_status("online", opacimeter="connected")
                await asyncio.sleep(0.5)
                before = len(station.on("/live/opacimeter"))
                await asyncio.sleep(2.0)
                live = [m.json() for m in station.on("/live/opacimeter")][before:]
        finally:
            lane.request_stop()
            await asyncio.wait_for(task, 10)
    # 2 s: 2 × per_second messages (20 or 10), 40 readings; loose, the machine may be loaded
    assert 2 * per_second - 4 <= len(live) <= 2 * per_second + 1
    readings = [r for m in live for r in m["readings"]]
    # 40 polls in 2 s; on a loaded machine some come late (CI saw 29): the behaviour is that the
    # messages are fewer than the readings, each carrying those since the last
    assert len(readings) >= 20
    assert sum(len(m["readings"]) for m in live) / len(live) >= 0.5 * 20 / per_second
    for message in live:  # the newest reading is the top level's
        assert message["readings"][-1]["seq"] == message["seq"]
        assert message["readings"][-1]["lane_time"] == message["lane_time"]
    times = [r["lane_time"] for r in readings]
    assert times == sorted(times) and len(set(times)) == len(times)  # each reading once, in order
