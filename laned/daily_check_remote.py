"""`laned daily-check` while the daemon runs the lane: the checks run in the daemon, asked over MQTT.

The daemon owns the lane's serial ports (laned/lane_lock.py, drivers/port_lock.py), so the CLI
does not open them: it sends the station's command `…/cmd/daily-check` to the lane through the
broker of the lane's config, with a fresh `request_id` and a client id of its own (the lane's
would knock the daemon off the broker), prints the lane's reply, its prompts and progress
events, and returns the outcome the lane announces at the end (step `daily_check`).

The broker must let the lane's identity publish `…/cmd/daily-check` and read `…/reply/#` and
`…/event` of its own lane for this (docs/broker-acl.md); a broker that drops the command shows
as no reply.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import aiomqtt
import structlog

from laned.config import LaneConfig
from laned.lane_lock import LockOwner
from laned.mqtt import Topics, login_kwargs
from laned.procedures.emissions_items import settings_from
from laned.settings.daily_checks import DailyCheckSettings

log = structlog.get_logger("laned.daily_checks")

#: the lane answers a command within this (it only has to start the checks)
REPLY_TIMEOUT_S = 10.0
#: after the reply, the checks end within the analyzer's warm-up allowance and this (the checks
#: themselves take minutes); past it the CLI stops waiting (the events may not reach it)
CHECKS_TIME_S = 600.0
#: exit status when the checks could not be run (as the CLI's own "analyzer does not answer")
EXIT_NOT_RUN = 3


def _client_kwargs(config: LaneConfig, identifier: str, broker: tuple[str, int]) -> dict[str, Any]:
    """One of the lane's brokers, credentials and TLS as `laned run` uses them, under another client
    id, no will."""
    mqtt = config.mqtt
    kwargs: dict[str, Any] = {
        "hostname": broker[0],
        "port": broker[1],
        "identifier": identifier,
        "keepalive": mqtt.keepalive_s,
        "protocol": aiomqtt.ProtocolVersion.V5 if mqtt.protocol == "5" else aiomqtt.ProtocolVersion.V311,
        "timeout": 10,
    }
    kwargs.update(login_kwargs(mqtt))
    return kwargs


def _outcome(data: dict[str, Any]) -> int:
    results = data.get("results") or {}
    if not results:
        return EXIT_NOT_RUN
    return 0 if all(r.get("passed") for r in results.values()) else 1


async def run_through_daemon(
    config: LaneConfig,
    owner: LockOwner,
    checks: Iterable[str],
    *,
    reply_timeout_s: float = REPLY_TIMEOUT_S,
    say: Callable[[str], None] = lambda line: print(line, flush=True),
) -> int:
    """Run the daily checks in the daemon that holds the lane (`owner`); 0 every check passed,
    1 one failed, 3 they could not be run (refused, no reply, the lane went offline)."""
    topics = Topics.for_lane(config.mqtt.topic_prefix, config.lane.station, config.lane.lane)
    request_id = f"cli-{uuid.uuid4().hex[:12]}"
    command = {"schema": "lane-cmd-daily-check/1", "request_id": request_id, "checks": list(checks)}
    lane_name = f"{config.lane.station}/{config.lane.lane}"
    say(f"laned: lane {lane_name} is run by {owner.describe()}: the daily checks run there "
        f"({topics.cmd('daily-check')}, request {request_id})")
    identifier = f"{config.client_id}-daily-check-{os.getpid()}"
    failures: list[str] = []
    for host, port in config.mqtt.brokers:  # the lane's brokers in its order (mqtt.hosts): the first that answers
        broker = f"{host}:{port}"
        try:
            async with aiomqtt.Client(**_client_kwargs(config, identifier, (host, port))) as client:
                for topic in (topics.reply(request_id), topics.event, topics.status):
                    await client.subscribe(topic, qos=1)
                await client.publish(topics.cmd("daily-check"), json.dumps(command).encode(), qos=1, timeout=10)
                settings = settings_from(config.inspection, "daily_checks", DailyCheckSettings)
                return await _follow(client, topics, request_id, lane_name, say, reply_timeout_s=reply_timeout_s,
                                     finish_timeout_s=settings.ready_timeout_s + CHECKS_TIME_S)
        except aiomqtt.MqttError as exc:
            failures.append(f"{broker}: {exc}")
            log.error("daily_check_broker_unreachable", broker=broker, error=str(exc))
    say(f"laned: cannot reach the lane's broker ({'; '.join(failures)}) to ask the running lane")
    return EXIT_NOT_RUN


async def _follow(client: aiomqtt.Client, topics: Topics, request_id: str, lane_name: str,
                  say: Callable[[str], None], *, reply_timeout_s: float, finish_timeout_s: float) -> int:
    """The reply, then the events of the daily checks until their end (step `daily_check` finished).
    The lane sends the reply and the events of the run it starts in order, through its outbox:
    events before the reply belong to a run started by someone else, and are not ours to report."""
    replied = False
    deadline = time.monotonic() + reply_timeout_s
    messages = aiter(client.messages)
    while True:
        try:
            message = await asyncio.wait_for(anext(messages), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            if replied:
                say(f"laned: lane {lane_name} did not announce the end of the daily checks within "
                    f"{finish_timeout_s:.0f} s: may this lane's identity read {topics.event} (docs/broker-acl.md)? "
                    "Its …/status shows the outcome")
            else:
                say(f"laned: lane {lane_name} did not answer the daily-check command within {reply_timeout_s:.0f} s: "
                    "is its daemon connected to the broker, and may this lane's identity publish "
                    f"{topics.cmd('daily-check')} (docs/broker-acl.md)?")
            return EXIT_NOT_RUN
        topic = str(message.topic)
        try:
            document = json.loads(message.payload if isinstance(message.payload, bytes | str) else b"")
        except ValueError:
            continue
        if not isinstance(document, dict):
            continue
        if topic == topics.reply(request_id):
            replied = True
            deadline = time.monotonic() + finish_timeout_s
            if not document.get("accepted"):
                reasons = "; ".join(document.get("reasons") or []) or "no reason given"
                say(f"laned: lane {lane_name} refused the daily checks: {reasons}")
                return EXIT_NOT_RUN
        elif topic == topics.status and replied and document.get("state") == "offline":
            say(f"laned: lane {lane_name} went offline during the daily checks; see its journal")
            return EXIT_NOT_RUN
        elif topic == topics.event and replied and str(document.get("step") or "").startswith("daily_check"):
            data = document.get("data") or {}
            say(f"daily check: [{document.get('type')}] {document.get('text')}")
            if document.get("type") == "step_finished" and document.get("step") == "daily_check":
                for reason in data.get("missing") or []:
                    say(f"  {reason}")
                (log.info if _outcome(data) == 0 else log.error)(
                    "daily_check_done", text=document.get("text"), through_daemon=True, missing=data.get("missing"))
                return _outcome(data)
