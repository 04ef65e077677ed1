"""Every message of a real lane run matches the JSON Schema shipped for it in docs/schemas/.

One lane (embedded amqtt broker, no devices: exterior-only inspections, as in
test_inspection_flow.py) is driven the way a station and a PDA drive it: a start, a refused
start (busy), a refused daily check (busy), a start the lane cannot parse, a refused and then a
good PDA capture, both results; then a second inspection, an abort for the wrong inspection, the
right abort and its incomplete results; then a clean stop (offline status). Everything on
`laned/v1/370100/T1/#` is recorded as the station sees it and checked with `jsonschema` against
the checked-in files, not against the models: the files are what integrators get.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from jsonschema import Draft202012Validator, FormatChecker

from laned.broker import EmbeddedBroker
from laned.config import parse_config
from laned.daemon import Lane
from laned.results import verify
from simulators.pda import PdaSimulator
from tests.e2e_helpers import send_command, start_command
from tests.helpers import Received, lane_config_dict, subscriber

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS_DIR = ROOT / "docs" / "schemas"
API_DOC = ROOT / "docs" / "mqtt-api.md"
LANE_ROOT = "laned/v1/370100/T1"
KEY = "station-370100-lane-T1-key"
FIRST, SECOND = "370100202611280101", "370100202611280102"

# RFC 3339 date-time (what JSON Schema's "date-time" means): the offset is not optional.
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
FORMATS = FormatChecker()
FORMATS.checks("date-time")(lambda value: not isinstance(value, str) or RFC3339.match(value) is not None)

# which shipped file describes a `schema` value, and on which topic (under the lane's root) it may come
FILES = {
    "lane-status/2": ("lane-status.v2.json", r"status"),
    "lane-cmd-start/1": ("lane-cmd-start.v1.json", r"cmd/start"),
    "lane-cmd-abort/1": ("lane-cmd-abort.v1.json", r"cmd/abort"),
    "lane-cmd-daily-check/1": ("lane-cmd-daily-check.v1.json", r"cmd/daily-check"),
    "lane-reply/1": ("lane-reply.v1.json", r"reply/[A-Za-z0-9_.:-]+"),
    "lane-event/1": ("lane-event.v1.json", r"event"),
    "result-safety/2": ("result-safety.v2.json", r"result/safety"),
    "result-emissions/2": ("result-emissions.v2.json", r"result/emissions"),
    "pda-capture/1": ("pda-capture.v1.json", r"pda/capture"),
    "pda-ack/1": ("pda-ack.v1.json", r"pda/ack/[A-Za-z0-9._:-]+"),
}
FROM_LANE = {"lane-status/2", "lane-reply/1", "lane-event/1", "result-safety/2", "result-emissions/2", "pda-ack/1"}


def validator(filename: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS_DIR / filename).read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=FORMATS)


def schema_errors(document: Any) -> list[str]:
    """Every way `document` fails its shipped schema (chosen by its own `schema` field)."""
    if not isinstance(document, dict) or document.get("schema") not in FILES:
        return [f"no shipped schema for {str(document)[:80]}"]
    found = validator(FILES[document["schema"]][0]).iter_errors(document)
    return [f"{document['schema']} at {e.json_path}: {e.message[:300]}" for e in found]


@dataclass
class Run:
    """What the station saw, and what it sent."""

    messages: list[Received]
    sent: list[dict[str, Any]]
    refused_start: dict[str, Any]
    will: dict[str, Any]

    def documents(self, predicate: Callable[[str, dict[str, Any]], bool] = lambda t, d: True) -> list[dict[str, Any]]:
        found = []
        for message in self.messages:
            if "/pda/photo/" in message.topic:
                continue  # raw JPEG bytes
            document = message.json()
            if predicate(message.topic, document):
                found.append(document)
        return found

    def of(self, schema: str) -> list[dict[str, Any]]:
        return self.documents(lambda topic, doc: doc.get("schema") == schema)


async def station_command(broker: EmbeddedBroker, sent: list[dict[str, Any]], name: str,
                          document: dict[str, Any]) -> None:
    sent.append(document)
    await send_command(broker.host, broker.port, LANE_ROOT, name, document)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def run(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Run]:
    tmp_path = tmp_path_factory.mktemp("contract")
    sent: list[dict[str, Any]] = []
    async with EmbeddedBroker() as broker:
        data = lane_config_dict(tmp_path, broker)
        data["lane"]["signing_key"] = KEY
        lane = Lane(parse_config(data, "test", environ={}), startup_grace_s=0.5)
        lane_task = asyncio.create_task(lane.run())
        await asyncio.wait_for(lane.mqtt.wait_connected(), 10)
        will = lane.status_document(online=False)  # what MqttLink hands the broker as its will
        async with subscriber(broker.host, broker.port, f"{LANE_ROOT}/#") as station:
            await station.wait_status("online")
            reply_to = lambda request_id: lambda m: m.topic == f"{LANE_ROOT}/reply/{request_id}"  # noqa: E731

            # the first inspection: accepted; while it runs, a second start and a daily check are refused
            await station_command(broker, sent, "start", start_command("gasoline-car", FIRST, request_id="s-1"))
            await station.wait_for(reply_to("s-1"))
            await station_command(broker, sent, "start", start_command("diesel-truck", SECOND, request_id="s-2"))
            await station.wait_for(reply_to("s-2"))
            await station_command(broker, sent, "daily-check",
                                  {"schema": "lane-cmd-daily-check/1", "request_id": "d-1"})
            await station.wait_for(reply_to("d-1"))
            refused_start = {**start_command("gasoline-car", FIRST, request_id="bad-1"), "colour": "red"}
            await send_command(broker.host, broker.port, LANE_ROOT, "start", refused_start)
            await station.wait_for(reply_to("bad-1"))

            # the PDA: a capture refused (VIN check digit), then a good one; both results follow
            pda = PdaSimulator("gasoline-car", host=broker.host, port=broker.port, base=f"{LANE_ROOT}/pda")
            await pda.capture(FIRST, bad="bad_vin")
            await pda.capture(FIRST)
            await station.wait_for(lambda m: m.topic.endswith("/result/emissions"))

            # the second inspection: an abort naming another inspection is refused, the right one ends it
            await station_command(broker, sent, "start", start_command("diesel-truck", SECOND, request_id="s-3"))
            await station.wait_for(reply_to("s-3"))
            await station_command(broker, sent, "abort", {"schema": "lane-cmd-abort/1", "request_id": "a-1",
                                                          "inspection_no": FIRST})
            await station.wait_for(reply_to("a-1"))
            await station_command(broker, sent, "abort", {"schema": "lane-cmd-abort/1", "request_id": "a-2",
                                                          "inspection_no": SECOND, "reason": "owner left"})
            await station.wait_for(lambda m: m.topic.endswith("/result/emissions"))
            await station.wait_for(lambda m: m.topic.endswith("/event") and m.json()["type"] == "inspection_aborted")

            lane.request_stop()
            await asyncio.wait_for(lane_task, 15)
            await station.wait_status("offline")
            yield Run(list(station.messages), sent, refused_start, will)


async def test_every_message_from_the_lane_matches_its_shipped_schema(run: Run) -> None:
    from_lane = run.documents(lambda topic, doc: "/cmd/" not in topic and not topic.endswith("/pda/capture"))
    assert len(from_lane) > 20
    problems = [problem for document in from_lane for problem in schema_errors(document)]
    assert not problems, "\n".join(problems)


async def test_each_topic_carries_the_kind_of_message_its_contract_names(run: Run) -> None:
    wrong = []
    for message in run.messages:
        if "/pda/photo/" in message.topic:
            continue
        kind = message.json().get("schema")
        topic = message.topic.removeprefix(LANE_ROOT + "/")
        if kind not in FILES or not re.fullmatch(FILES[kind][1], topic):
            wrong.append(f"{message.topic}: {kind}")
    assert not wrong, wrong


async def test_the_run_shows_every_kind_of_message_in_each_of_its_forms(run: Run) -> None:
    assert {doc["state"] for doc in run.of("lane-status/2")} == {"online", "offline"}
    assert any(doc["inspection"] is not None for doc in run.of("lane-status/2"))
    replies = {doc["request_id"]: doc for doc in run.of("lane-reply/1")}
    assert {rid: r["accepted"] for rid, r in replies.items()} == {
        "s-1": True, "s-2": False, "d-1": False, "bad-1": False, "s-3": True, "a-1": False, "a-2": True,
    }
    assert replies["s-2"]["reasons"] == [f"lane busy with inspection {FIRST}"]
    assert {"inspection_started", "step_started", "capture", "inspection_finished", "inspection_aborted"} <= {
        doc["type"] for doc in run.of("lane-event/1")
    }
    acks = run.of("pda-ack/1")
    assert [(a["accepted"], a.get("complete", False)) for a in acks] == [(False, False), (True, False), (True, True)]
    safety, emissions = run.of("result-safety/2"), run.of("result-emissions/2")
    assert [r["verdict"] for r in safety] == ["pass", "incomplete"]
    assert [r["verdict"] for r in emissions] == ["pass", "incomplete"]
    assert emissions[1]["aborted"] == "owner left"


async def test_what_the_station_and_the_pda_send_matches_the_shipped_schemas(run: Run) -> None:
    captures = run.of("pda-capture/1")
    assert len(captures) == 2 and len(run.sent) == 6
    problems = [problem for document in [*run.sent, *captures] for problem in schema_errors(document)]
    assert not problems, "\n".join(problems)


async def test_a_start_the_lane_refuses_as_malformed_fails_the_schema_on_the_same_field(run: Run) -> None:
    reply = next(doc for doc in run.of("lane-reply/1") if doc["request_id"] == "bad-1")
    assert reply["reasons"] == ["colour: unknown field"]
    assert schema_errors(run.refused_start) == [
        "lane-cmd-start/1 at $: Additional properties are not allowed ('colour' was unexpected)"
    ]


async def test_the_offline_will_matches_the_status_schema(run: Run) -> None:
    assert run.will["state"] == "offline"
    assert schema_errors(run.will) == []


def documented_verifier() -> Callable[[bytes, bytes], bool]:
    """`verify_result(payload, key)` from the Python block after `<!-- verify-snippet -->` in the API doc."""
    text = API_DOC.read_text(encoding="utf-8")
    match = re.search(r"<!-- verify-snippet -->\s*```python\n(.*?)```", text, re.DOTALL)
    assert match, "docs/mqtt-api.md lost its verification snippet (marker <!-- verify-snippet -->)"
    namespace: dict[str, Any] = {}
    exec(compile(match.group(1), str(API_DOC), "exec"), namespace)
    verifier: Callable[[bytes, bytes], bool] = namespace["verify_result"]
    return verifier


async def test_the_documented_verification_accepts_real_results_and_refuses_a_changed_one(run: Run) -> None:
    verify_result = documented_verifier()
    results = [m for m in run.messages if "/result/" in m.topic]
    assert len(results) == 4
    for message in results:
        assert verify_result(message.payload, KEY.encode())
        assert verify(message.json(), KEY.encode())  # the lane's own check agrees
        assert not verify_result(message.payload, b"another lane's key")
    changed = results[0].json()
    changed["verdict"] = "fail"
    assert not verify_result(json.dumps(changed, ensure_ascii=False).encode(), KEY.encode())
