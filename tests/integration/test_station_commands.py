"""The station's commands under real networks and bad clients, against mosquitto (issue 16).

- a command sent again with the same request_id (a QoS-1 client after a reconnect) gets its
  first reply again, byte for byte, and does nothing else, also after the lane restarted;
- every field of a command is bounded and strictly typed, and a refusal names the field;
- a payload over its topic's limit is not read: a warning event names topic, size and limit;
- deeply nested JSON gets an answer (a reply, or a warning event) instead of a RecursionError.

The expected reasons are written out from the contract (docs/mqtt-api.md, the PDA manual's VIN
and plate rules) in pydantic's words, which the station sees.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from laned.broker import Mosquitto
from laned.config import parse_config
from laned.daemon import Lane
from tests.e2e_helpers import send_command, start_command
from tests.helpers import Received, Recorder, lane_config_dict, subscriber

pytestmark = [pytest.mark.integration, pytest.mark.mosquitto]
ROOT = "laned/v1/370100/T1"


async def run_lane(tmp_path: Path, broker: Any) -> tuple[Lane, asyncio.Task[None]]:
    data = lane_config_dict(tmp_path, broker)
    data["lane"]["signing_key"] = "test-signing-key"
    lane = Lane(parse_config(data, "test", environ={}), startup_grace_s=0.2)
    task = asyncio.create_task(lane.run())
    await asyncio.wait_for(lane.mqtt.wait_connected(), 10)
    return lane, task


async def stop_lane(lane: Lane, task: asyncio.Task[None]) -> None:
    lane.request_stop()
    await asyncio.wait_for(task, 10)


async def publish_twice(broker: Any, topic: str, payload: bytes) -> None:
    """What a QoS-1 station does when its PUBACK was lost: the same message, once more."""
    async with aiomqtt.Client(broker.host, broker.port, identifier="test-station-twice") as client:
        await client.publish(topic, payload, qos=1)
        await client.publish(topic, payload, qos=1)


async def settle(station: Recorder, quiet_s: float = 0.6) -> None:
    """Wait until nothing more arrives for `quiet_s` (what did not come by then does not come)."""
    while True:
        count = len(station.messages)
        await asyncio.sleep(quiet_s)
        if len(station.messages) == count:
            return


def warnings(station: Recorder) -> list[dict[str, Any]]:
    return [e for e in (m.json() for m in station.on("/event")) if e["type"] == "warning"]


# ----- 1. the same request_id twice ----------------------------------------------------------------


async def test_a_repeated_start_gets_its_first_reply_again_and_starts_nothing_even_after_a_restart(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    start = start_command("gasoline-car", "370100202612070001", request_id="dup-start-1", exterior=False)
    payload = json.dumps(start, ensure_ascii=False).encode()
    lane, task = await run_lane(tmp_path, mosquitto)
    try:
        async with subscriber(mosquitto.host, mosquitto.port, f"{ROOT}/#") as station:
            await publish_twice(mosquitto, f"{ROOT}/cmd/start", payload)  # the repeat comes at once
            await station.wait_for(lambda m: m.topic == f"{ROOT}/result/emissions")
            await settle(station)
            await send_command(mosquitto.host, mosquitto.port, ROOT, "start", start)  # and later
            await settle(station)
    finally:
        await stop_lane(lane, task)
    replies = station.on("/reply/dup-start-1")
    assert len(replies) == 3
    first = replies[0].json()
    assert (first["accepted"], first["command"], first["inspection_no"]) == (True, "start", "370100202612070001")
    assert replies[1].payload == replies[0].payload and replies[2].payload == replies[0].payload  # same bytes
    assert len(station.on("/result/safety")) == 1 and len(station.on("/result/emissions")) == 1
    started = [m for m in station.on("/event") if m.json()["type"] == "inspection_started"]
    assert len(started) == 1

    # the lane restarts on the same state directory: the request_id is still known
    lane, task = await run_lane(tmp_path, mosquitto)
    try:
        async with subscriber(mosquitto.host, mosquitto.port, f"{ROOT}/#") as station:
            await send_command(mosquitto.host, mosquitto.port, ROOT, "start", start)
            again = await station.wait_for(lambda m: m.topic == f"{ROOT}/reply/dup-start-1")
            await settle(station)
    finally:
        await stop_lane(lane, task)
    assert again.payload == replies[0].payload
    assert station.on("/result/safety") == [] and station.on("/result/emissions") == []
    assert [m for m in station.on("/event") if m.json()["type"] == "inspection_started"] == []


async def test_a_repeated_abort_gets_its_first_reply_not_a_refusal(tmp_path: Path, mosquitto: Mosquitto) -> None:
    lane, task = await run_lane(tmp_path, mosquitto)
    abort = {"schema": "lane-cmd-abort/1", "request_id": "dup-abort-1", "inspection_no": "370100202612070002",
             "reason": "owner left"}
    try:
        async with subscriber(mosquitto.host, mosquitto.port, f"{ROOT}/#") as station:
            # waits for the PDA's capture, so the abort has something to stop
            start = start_command("gasoline-car", "370100202612070002", request_id="s-2")
            await send_command(mosquitto.host, mosquitto.port, ROOT, "start", start)
            await station.wait_for(lambda m: m.topic == f"{ROOT}/reply/s-2" and m.json()["accepted"])
            await send_command(mosquitto.host, mosquitto.port, ROOT, "abort", abort)
            await station.wait_for(lambda m: m.topic == f"{ROOT}/result/emissions")
            await settle(station)
            await send_command(mosquitto.host, mosquitto.port, ROOT, "abort", abort)  # the inspection is over
            await settle(station)
    finally:
        await stop_lane(lane, task)
    replies = station.on("/reply/dup-abort-1")
    assert len(replies) == 2 and replies[1].payload == replies[0].payload
    assert replies[1].json()["accepted"] is True and replies[1].json()["reasons"] == []  # not "no inspection…"
    assert [m.json()["aborted"] for m in station.on("/result/safety")] == ["owner left"]


async def test_a_repeated_refusal_is_the_first_refusal(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A refused command repeated is refused with the first reply too: a corrected command is a new
    command, with a new request_id (docs/mqtt-api.md)."""
    lane, task = await run_lane(tmp_path, mosquitto)
    bad = start_command("gasoline-car", "370100202612070003", request_id="dup-bad-1", brake_axles=[5])
    try:
        async with subscriber(mosquitto.host, mosquitto.port, f"{ROOT}/reply/#") as station:
            await publish_twice(mosquitto, f"{ROOT}/cmd/start", json.dumps(bad).encode())
            await station.wait_for(lambda m: True)
            await settle(station)
    finally:
        await stop_lane(lane, task)
    first, second = station.messages
    assert first.payload == second.payload
    assert first.json()["reasons"] == ["items.brake_axles: axle 5 does not exist (vehicle has 2)"]


# ----- 2. bounded, strictly typed fields --------------------------------------------------------------


def vehicle(**change: Any) -> dict[str, Any]:
    start = start_command("gasoline-car", "370100202612070004", request_id="bounds")
    return {**start, "vehicle": {**start["vehicle"], **change}}


def with_items(**items: Any) -> dict[str, Any]:
    start = start_command("gasoline-car", "370100202612070004", request_id="bounds")
    return {**start, "items": {**start["items"], **items}}


BOUNDS = [
    pytest.param(vehicle(plate="鲁N12345678"), ["vehicle.plate: String should have at most 8 characters"],
                 id="plate-long"),
    pytest.param(vehicle(plate="XN12345"), ["vehicle.plate: String should match pattern "
                                            "'^[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼]"
                                            "[A-HJ-NP-Z][A-HJ-NP-Z0-9]{4,5}[A-HJ-NP-Z0-9挂学警港澳]$'"],
                 id="plate-pattern"),
    pytest.param(vehicle(plate=12345), ["vehicle.plate: Input should be a valid string"], id="plate-number"),
    pytest.param(vehicle(vin="LSVAU2182N218329"), ["vehicle.vin: String should have at least 17 characters"],
                 id="vin-16"),
    pytest.param(vehicle(vin="LSVAU2182N21832900"), ["vehicle.vin: String should have at most 17 characters"],
                 id="vin-18"),
    pytest.param(vehicle(vin="LSVAU2182N218329O"), ["vehicle.vin: String should match pattern '^[A-HJ-NPR-Z0-9]{17}$'"],
                 id="vin-letter-O"),
    # GB 16735: the check digit of LSVAU?182N2183290 is 2 (the PDA manual's example)
    pytest.param(vehicle(vin="LSVAU2180N2183290"), ["vehicle.vin: check digit computed 2, found 0"], id="vin-check"),
    pytest.param(vehicle(plate_type="2"), ["vehicle.plate_type: String should match pattern '^[0-9]{2}$'"],
                 id="plate-type"),
    pytest.param(vehicle(new_registration="no"), ["vehicle.new_registration: Input should be a valid boolean"],
                 id="bool-as-text"),
    pytest.param(vehicle(curb_mass_kg="1320"), ["vehicle.curb_mass_kg: Input should be a valid integer"],
                 id="int-as-text"),
    pytest.param(vehicle(total_mass_kg=1_000_000), ["vehicle.total_mass_kg: Input should be less than or equal to "
                                                    "100000"], id="mass-range"),
    pytest.param(with_items(brake_axles=[1, 2, 3, 4, 5, 6, 7]),
                 ["items.brake_axles: List should have at most 6 items after validation, not 7"], id="axles-list"),
    pytest.param(with_items(exterior="true"), ["items.exterior: Input should be a valid boolean"], id="exterior-text"),
    pytest.param({**vehicle(), "inspection_no": "../../etc/passwd"},
                 ["inspection_no: String should match pattern '^[A-Za-z0-9]+$'"], id="inspection-no-path"),
    pytest.param({**vehicle(), "inspection_no": "1" * 33},
                 ["inspection_no: String should have at most 32 characters"], id="inspection-no-long"),
    pytest.param({**vehicle(), "colour": "red"}, ["colour: unknown field"], id="unknown-field"),
]


@pytest.mark.parametrize(("document", "reasons"), BOUNDS)
async def test_every_start_field_is_bounded_and_strict_and_the_refusal_names_it(
    tmp_path: Path, mosquitto: Mosquitto, document: dict[str, Any], reasons: list[str]
) -> None:
    lane, task = await run_lane(tmp_path, mosquitto)
    try:
        async with subscriber(mosquitto.host, mosquitto.port, f"{ROOT}/reply/#") as station:
            await send_command(mosquitto.host, mosquitto.port, ROOT, "start", document)
            reply = (await station.wait_for(lambda m: True)).json()
        assert (reply["request_id"], reply["accepted"], reply["reasons"]) == ("bounds", False, reasons)
        assert lane.runner.current is None
    finally:
        await stop_lane(lane, task)


async def test_an_abort_reason_and_inspection_number_are_bounded(tmp_path: Path, mosquitto: Mosquitto) -> None:
    lane, task = await run_lane(tmp_path, mosquitto)
    abort = {"schema": "lane-cmd-abort/1", "request_id": "ab-long", "inspection_no": "N 1", "reason": "x" * 201}
    try:
        async with subscriber(mosquitto.host, mosquitto.port, f"{ROOT}/reply/#") as station:
            await send_command(mosquitto.host, mosquitto.port, ROOT, "abort", abort)
            reply = (await station.wait_for(lambda m: True)).json()
    finally:
        await stop_lane(lane, task)
    assert reply["reasons"] == ["inspection_no: String should match pattern '^[A-Za-z0-9]+$'",
                                "reason: String should have at most 200 characters"]


async def test_a_command_over_its_size_limit_is_refused_unread_with_a_warning_naming_the_limit(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """The 1.5 MB plate of the issue: refused before parsing; the status stays small."""
    huge = json.dumps(vehicle(plate="鲁" * 500_000), ensure_ascii=False).encode()
    assert len(huge) > 1_500_000
    lane, task = await run_lane(tmp_path, mosquitto)
    try:
        async with subscriber(mosquitto.host, mosquitto.port, f"{ROOT}/#") as station:
            await send_command(mosquitto.host, mosquitto.port, ROOT, "start", huge)
            warning = (await station.wait_for(lambda m: m.topic == f"{ROOT}/event")).json()
            await settle(station)
    finally:
        await stop_lane(lane, task)
    assert warning["type"] == "warning"
    assert warning["text"] == (f"message on {ROOT}/cmd/start refused unread: {len(huge)} bytes, over the limit of "
                               "65536 bytes (mqtt.max_command_bytes)")
    assert warning["data"] == {"topic": f"{ROOT}/cmd/start", "bytes": len(huge), "limit_bytes": 65536,
                               "setting": "mqtt.max_command_bytes"}
    assert station.on("/reply/bounds") == [] and lane.runner.current is None
    assert max(len(m.payload) for m in station.on("/status")) < 4096


# ----- 3. deep nesting ---------------------------------------------------------------------------------


def answer_to(station: Recorder, request_id: str | None) -> list[Received]:
    if request_id is None:
        return [m for m in station.on("/event") if m.json()["type"] == "warning"]
    return station.on(f"/reply/{request_id}")


async def test_deeply_nested_json_gets_a_reply_or_a_warning(tmp_path: Path, mosquitto: Mosquitto) -> None:
    deep_overrides = vehicle()
    deep_overrides["request_id"] = "deep-1"
    inner: Any = 1
    for _ in range(40):
        inner = {"a": inner}
    deep_overrides["limit_overrides"] = {"brakes": inner}
    lane, task = await run_lane(tmp_path, mosquitto)
    try:
        async with subscriber(mosquitto.host, mosquitto.port, f"{ROOT}/#") as station:
            # past Python's recursion limit, no request_id reachable: a warning event
            await send_command(mosquitto.host, mosquitto.port, ROOT, "start", b"[" * 30_000 + b"]" * 30_000)
            first = (await station.wait_for(lambda m: m.topic == f"{ROOT}/event")).json()
            # 42 levels: the start (1), limit_overrides (2), then the 40 objects inside "brakes"
            await send_command(mosquitto.host, mosquitto.port, ROOT, "start", deep_overrides)
            reply = (await station.wait_for(lambda m: m.topic == f"{ROOT}/reply/deep-1")).json()
            # and the lane still works
            ok = start_command("gasoline-car", "370100202612070005", request_id="after-deep", exterior=False)
            await send_command(mosquitto.host, mosquitto.port, ROOT, "start", ok)
            after = (await station.wait_for(lambda m: m.topic == f"{ROOT}/reply/after-deep")).json()
    finally:
        await stop_lane(lane, task)
    assert (first["type"], first["text"]) == ("warning",
                                              "command start refused: malformed JSON: nested deeper than 16 levels")
    assert (reply["accepted"], reply["reasons"]) == (False, ["(message): nested 42 levels deep, at most 16"])
    assert after["accepted"] is True
