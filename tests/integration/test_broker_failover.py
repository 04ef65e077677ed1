"""A station with two brokers (`mqtt.hosts`): the first stops in the middle of an inspection, the
lane moves to the second and the inspection ends there, and the lane comes back to the first once
it answers again. Two real mosquittos, not bridged: the station's consumer listens on both, as
one on a cluster listens on every node through a shared subscription.

"Nothing lost or repeated by id": every result and every queued message reaches the station
through one broker or the other, and no broker delivers an id twice. A message the first broker
took but whose PUBACK the lane never saw is sent again to the second (QoS 1, at least once), so
across brokers an id may arrive twice; a consumer drops it by its id. The inspection's results are
made after the switch: each arrives exactly once, and only through the second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from laned.broker import Mosquitto
from laned.config import parse_config
from laned.daemon import Lane
from simulators.pda import PdaSimulator
from tests.e2e_helpers import send_command, start_command
from tests.helpers import Recorder, lane_config_dict, subscriber

pytestmark = [pytest.mark.integration, pytest.mark.mosquitto]
ROOT = "laned/v1/370100/T1"
INSPECTION_NO = "370100202612070001"


@pytest.fixture
async def two_mosquittos() -> AsyncIterator[tuple[Mosquitto, Mosquitto]]:
    first, second = Mosquitto(), Mosquitto()
    await first.start()
    await second.start()
    try:
        yield first, second
    finally:
        await first.stop()
        await second.stop()


async def until(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        await asyncio.sleep(0.02)


def ids(recorder: Recorder, topic_part: str, key: str) -> list[str]:
    return [m.json()[key] for m in recorder.messages if topic_part in m.topic]


@contextlib.asynccontextmanager
async def running(lane: Lane) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(lane.run())
    try:
        yield task
    finally:
        lane.request_stop()
        await asyncio.wait_for(task, 15)


async def test_the_first_broker_stops_mid_inspection_and_the_results_arrive_through_the_second(
    tmp_path: Path, two_mosquittos: tuple[Mosquitto, Mosquitto]
) -> None:
    first, second = two_mosquittos
    data = lane_config_dict(tmp_path, first)
    del data["mqtt"]["host"], data["mqtt"]["port"]
    data["mqtt"] |= {"hosts": [f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"], "primary_retry_s": 0.3}
    data["lane"]["signing_key"] = "test-signing-key"
    lane = Lane(parse_config(data, "test", environ={}), startup_grace_s=0.2, status_interval_s=0.2)
    async with (
        subscriber(first.host, first.port, f"{ROOT}/#") as on_first,
        subscriber(second.host, second.port, f"{ROOT}/#") as on_second,
        running(lane),
    ):
        await on_first.wait_for(lambda m: m.topic.endswith("/status") and m.json()["state"] == "online"
                                and m.json()["broker"] == f"127.0.0.1:{first.port}")  # the primary first

        start = start_command("gasoline-car", INSPECTION_NO, request_id="req-1")
        await send_command(first.host, first.port, ROOT, "start", start)
        reply = await on_first.wait_for(lambda m: m.topic == f"{ROOT}/reply/req-1")
        assert reply.json()["accepted"] is True

        # the inspection waits for the PDA's capture; messages are queued, some reach the first
        # broker, more are queued, and the first broker stops
        queued = [f"queued-{n:03d}" for n in range(60)]
        for message_id in queued[:30]:
            lane.mqtt.enqueue(f"{ROOT}/event", {"schema": "test-queued/1", "event_id": message_id}, kind="result")
        await until(lambda: len(ids(on_first, "/event", "event_id")) >= 10, 5, "the first messages sent")
        for message_id in queued[30:]:
            lane.mqtt.enqueue(f"{ROOT}/event", {"schema": "test-queued/1", "event_id": message_id}, kind="result")
        await first.stop()

        status = await on_second.wait_status("online")
        assert status["broker"] == f"127.0.0.1:{second.port}"
        assert status["inspection"]["inspection_no"] == INSPECTION_NO  # the same inspection, still running

        pda = PdaSimulator("gasoline-car", host=second.host, port=second.port, base=f"{ROOT}/pda")
        acks = await pda.capture(INSPECTION_NO)
        assert acks[-1].complete is True
        safety = (await on_second.wait_for(lambda m: m.topic == f"{ROOT}/result/safety", 20)).json()
        emissions = (await on_second.wait_for(lambda m: m.topic == f"{ROOT}/result/emissions", 20)).json()
        assert safety["inspection_no"] == emissions["inspection_no"] == INSPECTION_NO
        await until(lambda: lane.outbox.depth == 0, 10, "the outbox drained")

        # the results: once each, through the second broker only
        results = ids(on_second, "/result/", "result_id")
        assert sorted(results) == sorted([safety["result_id"], emissions["result_id"]])
        assert ids(on_first, "/result/", "result_id") == []
        # the queued messages: every one through one broker or the other, none twice through one
        through_first = ids(on_first, "/event", "event_id")
        through_second = ids(on_second, "/event", "event_id")
        through_first = [i for i in through_first if i.startswith("queued-")]
        through_second = [i for i in through_second if i.startswith("queued-")]
        assert set(through_first) | set(through_second) == set(queued)
        assert max(Counter(through_first).values(), default=1) == 1
        assert max(Counter(through_second).values(), default=1) == 1
        # what the second broker got, it got in the order queued, from where the first left off
        assert through_second == sorted(through_second)
        assert len(through_first) >= 10 and queued[-1] in through_second  # the outbox carried the rest across

        # the first broker answers again: the lane goes back to it and says so there
        await first.start()
        async with subscriber(first.host, first.port, f"{ROOT}/status") as back_on_first:
            status = await back_on_first.wait_status("online", timeout_s=10)
            assert status["broker"] == f"127.0.0.1:{first.port}"
        assert lane.mqtt.connected and lane.mqtt.on_primary


async def test_a_primary_down_at_start_is_passed_over_and_taken_back_once_it_accepts(
    tmp_path: Path, two_mosquittos: tuple[Mosquitto, Mosquitto]
) -> None:
    first, second = two_mosquittos
    await first.stop()  # the primary is down when the lane starts
    data = lane_config_dict(tmp_path, first)
    del data["mqtt"]["host"], data["mqtt"]["port"]
    data["mqtt"] |= {"hosts": [f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"], "primary_retry_s": 0.3}
    lane = Lane(parse_config(data, "test", environ={}), startup_grace_s=0.2, status_interval_s=0.2)
    async with subscriber(second.host, second.port, f"{ROOT}/status") as on_second, running(lane):
        status = await on_second.wait_status("online")
        assert status["broker"] == f"127.0.0.1:{second.port}"
        assert not lane.mqtt.on_primary
        await asyncio.sleep(1.0)  # the primary is tried every 0.3 s meanwhile: the lane stays put
        assert lane.mqtt.connected and lane.mqtt.connects == 1

        await first.start()
        async with subscriber(first.host, first.port, f"{ROOT}/status") as on_first:
            status = await on_first.wait_status("online")
            assert status["broker"] == f"127.0.0.1:{first.port}"
        assert lane.mqtt.on_primary and lane.mqtt.connects == 2


async def test_laned_daily_check_asks_the_running_lane_through_the_first_of_its_brokers_that_answers(
    tmp_path: Path, two_mosquittos: tuple[Mosquitto, Mosquitto]
) -> None:
    """With `mqtt.hosts`, `laned daily-check` beside a running daemon does not try `mqtt.host`
    (localhost:1883 by default): it tries the lane's brokers in order, passing over a dead one."""
    from laned.daily_check_remote import run_through_daemon
    from laned.lane_lock import LockOwner

    first, second = two_mosquittos
    await first.stop()  # the primary is down: daemon and CLI both end up on the second
    data = lane_config_dict(tmp_path, second)
    del data["mqtt"]["host"], data["mqtt"]["port"]
    data["mqtt"]["hosts"] = [f"{first.host}:{first.port}", f"{second.host}:{second.port}"]
    config = parse_config(data, "test", environ={})
    lane = Lane(config, startup_grace_s=0.5)
    async with running(lane):
        await lane.mqtt.wait_connected(15)
        said: list[str] = []
        owner = LockOwner(4321, "run", "laned run --config lane1.toml", time.time())
        outcome = await run_through_daemon(config, owner, ["zero"], say=said.append)
    # the command reached the daemon through the second broker: its events came back (no analyzer)
    assert outcome == 3, said
    assert "daily check: [warning] this lane has no gas analyzer configured" in said
