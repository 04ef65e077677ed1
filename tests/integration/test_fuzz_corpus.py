"""A kept corpus of bad payloads against the daemon as it runs in production (issue 16).

`laned run` as its own process on mosquitto; a station and a PDA send, one after the other,
random bytes (fixed seed), truncations of a valid start, deep nesting, huge strings, wrong types,
unknown fields, and on the PDA's topics broken capture documents, photos that are not JPEGs and
photos whose hash does not match. Each payload must be answered: a reply on its reply topic, a
PDA ack, or a warning event (when there is no request_id or capture_id to answer on, or the
payload is over its topic's size limit). The daemon's resident memory (VmRSS of its process)
stays bounded, and the inspection run after the corpus ends with two passing results.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from laned.broker import Mosquitto
from simulators.pda import PdaSimulator, build_capture, make_jpeg
from simulators.vehicle import load_vehicle_file
from tests.e2e_helpers import start_command
from tests.helpers import ROOT as PROJECT
from tests.helpers import Received, Recorder, laned_command, subscriber

pytestmark = [pytest.mark.integration, pytest.mark.mosquitto]
ROOT = "laned/v1/370100/T1"
PDA = f"{ROOT}/pda"
INSPECTION_NO = "370100202612070099"
PHOTO_LIMIT = 65_536  # the lane's mqtt.max_pda_photo_bytes in this test (its smallest allowed value)


@dataclass(frozen=True)
class Case:
    """One payload of the corpus and the answer it must get: ("reply", request_id),
    ("ack", capture_id) or ("warning", text the warning starts with)."""

    name: str
    topic: str
    payload: bytes
    answer: tuple[str, str]


def _start(request_id: str, **change: Any) -> dict[str, Any]:
    return {**start_command("gasoline-car", "370100202612070098", request_id=request_id), **change}


def _vehicle(**change: Any) -> dict[str, Any]:
    return {**_start("x")["vehicle"], **change}


def _bytes(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def command_corpus() -> list[Case]:
    rng = random.Random(16)
    cmd = f"{ROOT}/cmd/start"
    cases = [Case(f"random-{n}", cmd, rng.randbytes(rng.randint(1, 3000)), ("warning", "command start refused"))
             for n in range(8)]
    cases.append(Case("empty", cmd, b"", ("warning", "command start refused: malformed JSON")))
    valid = _bytes(_start("trunc"))
    for cut in (1, 17, len(valid) // 2, len(valid) - 1):
        cases.append(Case(f"truncated-{cut}", cmd, valid[:cut], ("warning", "command start refused: malformed JSON")))
    cases += [
        Case("deep-array", cmd, b"[" * 60_000, ("warning", "command start refused: malformed JSON")),
        Case("deep-object", cmd, b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
             ("warning", "command start refused: malformed JSON: nested deeper than 16 levels")),
        Case("deep-under-request-id", cmd,
             b'{"request_id": "fz-deep", "limit_overrides": ' + b"[" * 500 + b"]" * 500 + b"}", ("reply", "fz-deep")),
        Case("plate-60k", cmd, _bytes(_start("fz-plate", vehicle=_vehicle(plate="鲁" * 20_000))),
             ("reply", "fz-plate")),
        Case("plate-1.5MB", cmd, _bytes(_start("fz-huge", vehicle=_vehicle(plate="A" * 1_500_000))),
             ("warning", f"message on {cmd} refused unread")),
        Case("request-id-60k", cmd, _bytes(_start("r" * 60_000)), ("reply", "r" * 64)),
        Case("field-name-50k", cmd, _bytes({**_start("fz-key"), "k" * 50_000: 1}), ("reply", "fz-key")),
        Case("bool-as-text", cmd, _bytes(_start("fz-bool", items={"exterior": "no"})), ("reply", "fz-bool")),
        Case("number-for-string", cmd, _bytes(_start("fz-num", inspection_no=370100)), ("reply", "fz-num")),
        Case("request-id-number", cmd, _bytes(_start(12345)), ("warning", "command start without a request_id")),
        Case("top-level-list", cmd, b'["request_id", "fz-list"]', ("warning", "command start refused: expected")),
        Case("top-level-null", cmd, b"null", ("warning", "command start refused: expected a JSON object")),
        Case("nan", cmd, b'{"request_id": "fz-nan", "schema": "lane-cmd-start/1", "axles": NaN}', ("reply", "fz-nan")),
        Case("bad-utf8", cmd, b'{"request_id": "fz-utf8", "x": "\xff\xfe"}', ("warning", "command start refused")),
        Case("unknown-field", cmd, _bytes(_start("fz-unknown", colour="red")), ("reply", "fz-unknown")),
        Case("unknown-command", f"{ROOT}/cmd/launch", _bytes(_start("fz-launch")), ("reply", "fz-launch")),
        Case("abort-wrong-types", f"{ROOT}/cmd/abort",
             _bytes({"schema": "lane-cmd-abort/1", "request_id": "fz-abort", "inspection_no": ["x"], "reason": 5}),
             ("reply", "fz-abort")),
        Case("daily-check-unknown-check", f"{ROOT}/cmd/daily-check",
             _bytes({"schema": "lane-cmd-daily-check/1", "request_id": "fz-dc", "checks": ["span"] * 50}),
             ("reply", "fz-dc")),
        Case("repeat", cmd, _bytes(_start("fz-unknown", colour="red")), ("reply", "fz-unknown")),
    ]
    return cases


def pda_corpus() -> list[Case]:
    """Sent while inspection INSPECTION_NO waits for its capture."""
    rng = random.Random(17)
    vehicle = load_vehicle_file("gasoline-car")
    capture = f"{PDA}/capture"

    def document(capture_id: str, **vehicle_change: Any) -> dict[str, Any]:
        built = build_capture(vehicle, INSPECTION_NO, capture_id=capture_id)
        return {**built.document, "vehicle": {**built.document["vehicle"], **vehicle_change}}

    good = build_capture(vehicle, INSPECTION_NO, capture_id="fz-photos")
    # the document lists a photo whose bytes are not a JPEG (and says so honestly: its hash matches)
    not_jpeg = b"GIF89a" + rng.randbytes(500)
    listed = dict(good.document)
    listed["photos"] = [dict(p) for p in good.document["photos"]]
    listed["photos"][0] |= {"sha256": hashlib.sha256(not_jpeg).hexdigest(), "bytes": len(not_jpeg)}
    first_photo = listed["photos"][0]["photo"]
    other_jpeg = make_jpeg("not the photo the document lists")
    valid = _bytes(document("fz-trunc"))
    return [
        Case("capture-random", capture, rng.randbytes(2000), ("warning", "PDA capture refused: no usable capture_id")),
        Case("capture-truncated", capture, valid[: len(valid) // 2], ("warning", "PDA capture refused")),
        Case("capture-deep", capture, _bytes(document("fz-deep"))[:-1] + b', "x": ' + b"[" * 500 + b"]" * 500 + b"}",
             ("ack", "fz-deep")),
        Case("capture-plate-100k", capture, _bytes(document("fz-plate", plate="鲁" * 33_000)), ("ack", "fz-plate")),
        Case("capture-over-limit", capture, _bytes(document("fz-big", plate="鲁" * 100_000)),
             ("warning", f"message on {capture} refused unread")),
        Case("capture-wrong-types", capture, _bytes(document("fz-types", odometer_km="118342")), ("ack", "fz-types")),
        Case("capture-unknown-field", capture, _bytes({**document("fz-field"), "colour": "red"}), ("ack", "fz-field")),
        Case("capture-listing-a-non-jpeg", capture, _bytes(listed), ("ack", "fz-photos")),
        # answered by a warning event (checked below) and the capture's ack, the photo still missing
        Case("photo-not-jpeg", f"{PDA}/photo/fz-photos/{first_photo}", not_jpeg, ("ack", "fz-photos")),
        Case("photo-hash-mismatch", f"{PDA}/photo/fz-photos/{first_photo}", other_jpeg, ("ack", "fz-photos")),
        Case("photo-over-limit", f"{PDA}/photo/fz-photos/{first_photo}", make_jpeg("x") + b"\0" * PHOTO_LIMIT,
             ("warning", f"message on {PDA}/photo/fz-photos/{first_photo} refused unread")),
    ]


def rss_kib(pid: int) -> int:
    """The process's resident set (VmRSS) from /proc, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


@contextlib.asynccontextmanager
async def laned_process(tmp_path: Path, broker: Mosquitto) -> AsyncIterator[subprocess.Popen[bytes]]:
    config = tmp_path / "lane.toml"
    config.write_text(f"""
[lane]
station = "370100"
lane = "T1"
state_dir = "{tmp_path / 'state'}"

[mqtt]
host = "{broker.host}"
port = {broker.port}
reconnect_initial_s = 0.1
reconnect_max_s = 0.3
max_pda_photo_bytes = {PHOTO_LIMIT}
""", encoding="utf-8")
    with (tmp_path / "laned.log").open("wb") as journal:
        process = subprocess.Popen(laned_command("run", "--config", str(config), "--log-format", "json"),
                                   cwd=PROJECT, stdout=journal, stderr=journal)
        try:
            yield process
        finally:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, 20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def matches(case: Case, message: Received) -> bool:
    kind, what = case.answer
    if kind == "reply":
        return message.topic == f"{ROOT}/reply/{what}"
    if kind == "ack":
        return message.topic == f"{PDA}/ack/{what}"
    return (message.topic == f"{ROOT}/event" and message.json()["type"] == "warning"
            and message.json()["text"].startswith(what))


async def send_corpus(client: aiomqtt.Client, station: Recorder, cases: list[Case]) -> list[Received]:
    """Each case in turn: published at QoS 1, then its answer awaited (10 s at most)."""
    answers = []
    for case in cases:
        await client.publish(case.topic, case.payload, qos=1)
        try:
            answers.append(await station.wait_for(lambda m, c=case: matches(c, m), 10))  # type: ignore[misc]
        except AssertionError as exc:
            raise AssertionError(f"case {case.name!r}: no answer {case.answer}") from exc
    return answers


async def test_every_payload_of_the_corpus_is_answered_memory_stays_bounded_and_the_next_inspection_passes(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    commands, pda = command_corpus(), pda_corpus()
    async with (laned_process(tmp_path, mosquitto) as process,
                subscriber(mosquitto.host, mosquitto.port, f"{ROOT}/#") as station):
        await station.wait_status("online", timeout_s=20)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="fuzz-station") as client:
            warm_up = [Case("warm-up", f"{ROOT}/cmd/abort", _bytes({"schema": "lane-cmd-abort/1",
                            "request_id": "warm", "inspection_no": "N0"}), ("reply", "warm"))]
            await send_corpus(client, station, warm_up)
            before_kib = rss_kib(process.pid)
            answers = await send_corpus(client, station, commands)
            start = start_command("gasoline-car", INSPECTION_NO, request_id="fz-real")
            await client.publish(f"{ROOT}/cmd/start", _bytes(start), qos=1)
            accepted = (await station.wait_for(lambda m: m.topic == f"{ROOT}/reply/fz-real", 10)).json()
            answers += await send_corpus(client, station, pda)
            after_kib = rss_kib(process.pid)
        acks = await PdaSimulator("gasoline-car", host=mosquitto.host, port=mosquitto.port, base=PDA).capture(
            INSPECTION_NO)
        safety = (await station.wait_for(lambda m: m.topic == f"{ROOT}/result/safety", 20)).json()
        emissions = (await station.wait_for(lambda m: m.topic == f"{ROOT}/result/emissions", 20)).json()
        assert process.poll() is None  # still running
        statuses = station.on("/status")
        statuses_and_events = list(station.messages)

    assert len(answers) == len(commands) + len(pda) == 32 + 11
    replies = {a.topic.rsplit("/", 1)[-1]: a.json() for a in answers if "/reply/" in a.topic}
    assert all(reply["accepted"] is False for reply in replies.values())
    assert replies["fz-plate"]["reasons"] == ["vehicle.plate: String should have at most 8 characters"]
    assert replies["fz-bool"]["reasons"] == ["items.exterior: Input should be a valid boolean"]
    assert replies["fz-num"]["reasons"] == ["inspection_no: Input should be a valid string"]
    assert replies["fz-deep"]["reasons"] == ["(message): nested 501 levels deep, at most 16"]
    assert replies["r" * 64]["reasons"] == ["request_id: String should have at most 64 characters"]
    assert replies["fz-key"]["reasons"] == [f"{'k' * 37}...: unknown field"]
    assert replies["fz-launch"]["reasons"] == ["unknown command 'launch' (known: start, abort, daily-check)"]
    assert all(len(a.payload) < 8192 for a in answers)  # no answer carries the junk it answers
    ack = {a.topic.rsplit("/", 1)[-1]: a.json() for a in answers if "/ack/" in a.topic}
    assert [e["field"] for e in ack["fz-plate"]["errors"]] == ["vehicle.plate"]
    assert [e["field"] for e in ack["fz-types"]["errors"]] == ["vehicle.odometer_km"]
    assert [e["field"] for e in ack["fz-field"]["errors"]] == ["colour"]
    assert ack["fz-photos"]["accepted"] is True and ack["fz-photos"]["complete"] is False
    assert ack["fz-photos"]["missing_photos"][0] == "front_left_45"  # neither wrong photo was taken
    assert ack["fz-deep"]["errors"][0]["field"] == "$"
    texts = [m.json()["text"] for m in statuses_and_events if m.topic.endswith("/event")]
    assert "PDA photo front_left_45 of capture fz-photos refused: not a JPEG" in texts
    # the memory a 1.5 MB command or a 100 KB capture passed through is not kept
    assert after_kib - before_kib < 16 * 1024, (before_kib, after_kib)  # measured: under 2 MiB
    assert max(len(m.payload) for m in statuses) < 4096
    # the inspection after the corpus: accepted, its capture complete, two passing results
    assert accepted["accepted"] is True and acks[-1].complete is True
    assert (safety["inspection_no"], safety["verdict"]) == (INSPECTION_NO, "pass")
    assert (emissions["inspection_no"], emissions["verdict"]) == (INSPECTION_NO, "pass")
