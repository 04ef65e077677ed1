"""An inspection as the station software sees it: start, the PDA's capture, two results.

No devices here (exterior only): the split of one capture into two results, the replies, and the
refusals. The measured items come in the brake and emissions tests.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from laned.config import parse_config
from laned.daemon import Lane
from laned.results import verify
from simulators.pda import PdaSimulator
from tests.e2e_helpers import send_command, start_command
from tests.helpers import lane_config_dict, subscriber

pytestmark = pytest.mark.integration
ROOT = "laned/v1/370100/T1"
KEY = "test-signing-key"


async def run_lane(tmp_path: Path, broker: Any, **extra: Any) -> tuple[Lane, asyncio.Task[None]]:
    data = lane_config_dict(tmp_path, broker)
    data["lane"]["signing_key"] = KEY
    data.update(extra)
    lane = Lane(parse_config(data, "test", environ={}), startup_grace_s=0.5)
    task = asyncio.create_task(lane.run())
    await asyncio.wait_for(lane.mqtt.wait_connected(), 10)
    return lane, task


async def stop_lane(lane: Lane, task: asyncio.Task[None]) -> None:
    lane.request_stop()
    await asyncio.wait_for(task, 10)


async def test_one_capture_becomes_two_complete_signed_results(tmp_path: Path, broker: Any) -> None:
    lane, task = await run_lane(tmp_path, broker)
    try:
        async with subscriber(broker.host, broker.port, f"{ROOT}/#") as station:
            start = start_command("gasoline-car", "370100202611280001", request_id="req-1")
            await send_command(broker.host, broker.port, ROOT, "start", start)
            reply = (await station.wait_for(lambda m: m.topic == f"{ROOT}/reply/req-1")).json()
            assert reply["accepted"] is True and reply["reasons"] == []
            pda = PdaSimulator("gasoline-car", host=broker.host, port=broker.port, base=f"{ROOT}/pda")
            sent_at = time.monotonic()
            acks = await pda.capture("370100202611280001")
            upload_s = time.monotonic() - sent_at  # the capture's stamp and its arrival fall inside
            assert acks[-1].complete is True

            safety = (await station.wait_for(lambda m: m.topic == f"{ROOT}/result/safety")).json()
            emissions = (await station.wait_for(lambda m: m.topic == f"{ROOT}/result/emissions")).json()
    finally:
        await stop_lane(lane, task)

    assert safety["schema"] == "result-safety/2" and emissions["schema"] == "result-emissions/2"
    assert safety["result_id"] != emissions["result_id"]
    for result in (safety, emissions):
        assert result["inspection_no"] == "370100202611280001"
        assert result["vehicle"]["vin"] == "LSVAU2182N2183290"
        assert result["vehicle"]["odometer_km"] == 118342  # shared: odometer goes to both
        assert result["verdict"] == "pass"
        assert verify(result, KEY.encode())
        # a lane started without --simulation, at the standard's timings: an official result
        assert result["simulation"] is False
        assert result["procedure_timings"]["inspection.time_scale"] == {"value": 1.0, "standard_min": 1.0, "unit": ""}
        # the PDA clock runs 37 s ahead (vehicle file) and stamps whole seconds (the fraction cut):
        # the offset is -37 s plus that fraction (under 1 s) plus the upload's time
        assert -37.001 < result["clocks"]["pda_clock_offset_s"] < -36 + upload_s
    # exterior items: S and S+E items to safety, E and S+E to emissions (devices/pda.md)
    safety_checks = {c["item"] for c in safety["items"][0]["checks"]}
    emissions_checks = {c["item"] for c in emissions["items"][0]["checks"]}
    assert safety["items"][0]["code"] == "F1" and emissions["items"][0]["code"] == "WJ"
    assert {"tyres", "seat_belts", "plate_match", "vin_match", "odometer"} <= safety_checks
    assert not {"visible_smoke", "evap_system", "mechanical_condition"} & safety_checks
    assert {"visible_smoke", "evap_system", "plate_match", "odometer"} <= emissions_checks
    assert not {"tyres", "seat_belts", "engine_no_match"} & emissions_checks
    # photos: 45° and VIN to both; cabin and tyre size to safety only; tailpipe, OBD port to emissions
    assert {p["photo"]: p["code"] for p in safety["photos"]} == {
        "front_left_45": "0111", "rear_right_45": "0112", "vin": "0113", "cabin": "0115", "tyre_size": "0136",
    }
    assert {p["photo"] for p in emissions["photos"]} == {
        "front_left_45", "rear_right_45", "vin", "odometer", "tailpipe", "obd_port", "emission_controls",
    }
    assert [i["code"] for i in emissions["items"]] == ["WJ", "OBD"]
    assert emissions["obd"]["ecu_vin"] == "LSVAU2182N2183290"
    # the platform's own field names and time format
    record = safety["platform_record"]
    assert record["jylsh"] == "370100202611280001" and record["hphm"] == "鲁N12345"
    assert record["clsbdh"] == "LSVAU2182N2183290" and record["zpd"] == "1"
    assert len(record["zplb"][0]["pssj"]) == len("2026-11-28 09:00:00")
    assert emissions["platform_record"]["JCLSH"] == "370100202611280001"


async def test_a_tampered_result_fails_verification(tmp_path: Path, amqtt_broker: Any) -> None:
    lane, task = await run_lane(tmp_path, amqtt_broker)
    try:
        async with subscriber(amqtt_broker.host, amqtt_broker.port, f"{ROOT}/result/#") as station:
            await send_command(amqtt_broker.host, amqtt_broker.port, ROOT, "start",
                               start_command("gasoline-car", "N0001", request_id="r"))
            await asyncio.sleep(0.3)
            await PdaSimulator("gasoline-car", host=amqtt_broker.host, port=amqtt_broker.port,
                               base=f"{ROOT}/pda").capture("N0001")
            safety = (await station.wait_for(lambda m: m.topic.endswith("/safety"))).json()
    finally:
        await stop_lane(lane, task)
    assert verify(safety, KEY.encode())
    safety["verdict"] = "fail" if safety["verdict"] == "pass" else "pass"
    assert not verify(safety, KEY.encode())


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"schema": "lane-cmd-start/1", "request_id": "bad-1"}, "inspection_no: required field is missing"),
        ({**start_command("gasoline-car", "N1", request_id="bad-2"), "colour": "red"}, "colour: unknown field"),
        (
            {**start_command("gasoline-car", "N1", request_id="bad-3", emissions="free_acceleration")},
            "free_acceleration is for diesel vehicles, not gasoline",
        ),
        (
            {**start_command("gasoline-car", "N1", request_id="bad-4", brake_axles=[1, 5])},
            "axle 5 does not exist",
        ),
        (  # a clock without its UTC offset cannot be compared with the lane's
            {**start_command("gasoline-car", "N1", request_id="bad-5"), "station_time": "2026-11-28T09:00:00"},
            "station_time: Input should have timezone info",
        ),
    ],
)
async def test_a_bad_start_is_refused_with_its_reason(
    tmp_path: Path, amqtt_broker: Any, payload: dict[str, Any], expected: str
) -> None:
    lane, task = await run_lane(tmp_path, amqtt_broker)
    try:
        async with subscriber(amqtt_broker.host, amqtt_broker.port, f"{ROOT}/reply/#") as station:
            await send_command(amqtt_broker.host, amqtt_broker.port, ROOT, "start", payload)
            reply = (await station.wait_for(lambda m: True)).json()
        assert reply["accepted"] is False
        assert any(expected in reason for reason in reply["reasons"]), reply["reasons"]
        assert lane.runner.current is None
    finally:
        await stop_lane(lane, task)


async def test_bad_limit_overrides_are_refused_one_reason_per_key(tmp_path: Path, amqtt_broker: Any) -> None:
    lane, task = await run_lane(tmp_path, amqtt_broker)
    overrides = {"brakes": {"no_such_table": {}}, "emissions": {"two_speed_idle": {"limit_sets": "a"}}}
    payload = {**start_command("gasoline-car", "N1", request_id="lo-1"), "limit_overrides": overrides}
    try:
        async with subscriber(amqtt_broker.host, amqtt_broker.port, f"{ROOT}/reply/#") as station:
            await send_command(amqtt_broker.host, amqtt_broker.port, ROOT, "start", payload)
            reply = (await station.wait_for(lambda m: True)).json()
        assert reply["accepted"] is False
        mentions = [r for r in reply["reasons"] if r.startswith("limit_overrides: ")]
        assert len(mentions) == 2, reply["reasons"]
        assert "brakes.no_such_table: no such key" in mentions[0]
        assert "emissions.two_speed_idle.limit_sets: no such key" in mentions[1]
        assert "limit_set" in mentions[1]  # and what the key could have been
        assert lane.runner.current is None
    finally:
        await stop_lane(lane, task)


async def test_a_busy_lane_refuses_a_second_start_and_a_wrong_abort(tmp_path: Path, amqtt_broker: Any) -> None:
    lane, task = await run_lane(tmp_path, amqtt_broker)
    host, port = amqtt_broker.host, amqtt_broker.port
    try:
        async with subscriber(host, port, f"{ROOT}/#") as station:
            await send_command(host, port, ROOT, "start", start_command("gasoline-car", "A1", request_id="s1"))
            await station.wait_for(lambda m: m.topic.endswith("/reply/s1"))
            await send_command(host, port, ROOT, "start", start_command("diesel-truck", "A2", request_id="s2"))
            second = (await station.wait_for(lambda m: m.topic.endswith("/reply/s2"))).json()
            assert second["accepted"] is False
            assert second["reasons"] == ["lane busy with inspection A1"]
            await send_command(host, port, ROOT, "abort",
                               {"schema": "lane-cmd-abort/1", "request_id": "x1", "inspection_no": "A2"})
            wrong = (await station.wait_for(lambda m: m.topic.endswith("/reply/x1"))).json()
            assert wrong["accepted"] is False and "inspection A1 is running, not A2" in wrong["reasons"][0]
            # malformed JSON and an unknown command: refused, logged as a warning event, lane unharmed
            await send_command(host, port, ROOT, "start", b"{not json")
            await station.wait_for(lambda m: m.topic.endswith("/event") and "malformed JSON" in m.json()["text"])
            await send_command(host, port, ROOT, "launch", {"request_id": "u1"})
            unknown = (await station.wait_for(lambda m: m.topic.endswith("/reply/u1"))).json()
            assert unknown["accepted"] is False and "unknown command 'launch'" in unknown["reasons"][0]
            # the right abort ends the inspection: results published as incomplete, lane free again
            await send_command(host, port, ROOT, "abort", {"schema": "lane-cmd-abort/1", "request_id": "x2",
                                                           "inspection_no": "A1", "reason": "owner left"})
            safety = (await station.wait_for(lambda m: m.topic.endswith("/result/safety"))).json()
            assert safety["verdict"] == "incomplete" and safety["aborted"] == "owner left"
            await send_command(host, port, ROOT, "start", start_command("diesel-truck", "A3", request_id="s3"))
            third = (await station.wait_for(lambda m: m.topic.endswith("/reply/s3"))).json()
            assert third["accepted"] is True
    finally:
        await stop_lane(lane, task)


async def test_capture_refusals_follow_the_pda_contract(tmp_path: Path, amqtt_broker: Any) -> None:
    lane, task = await run_lane(tmp_path, amqtt_broker)
    host, port = amqtt_broker.host, amqtt_broker.port
    try:
        await send_command(host, port, ROOT, "start", start_command("gasoline-car", "P1", request_id="p"))
        await asyncio.sleep(0.3)
        pda = PdaSimulator("gasoline-car", host=host, port=port, base=f"{ROOT}/pda")
        async with subscriber(host, port, f"{ROOT}/pda/ack/#") as wire:
            other = await pda.capture("P1", bad="other_inspection")
            assert other[0].accepted is False
            assert any(e.field == "inspection_no" for e in other[0].errors)
            bad_vin = await pda.capture("P1", bad="bad_vin")
            assert bad_vin[0].accepted is False and bad_vin[0].errors[0].field == "vehicle.vin"
            assert "check digit computed" in bad_vin[0].errors[0].error
            # nothing changed: a good capture under a new id still completes the inspection
            good = await pda.capture("P1")
            assert good[-1].complete is True
            refused = (await wire.wait_for(lambda m: not m.json()["accepted"])).json()
            accepted = (await wire.wait_for(lambda m: m.json()["accepted"] and m.json()["complete"])).json()
        # on the wire, the manual's two shapes (devices/pda.md): a refusal carries errors only,
        # an acceptance carries complete and missing_photos only
        assert sorted(refused) == ["accepted", "capture_id", "errors", "schema"]
        assert sorted(accepted) == ["accepted", "capture_id", "complete", "missing_photos", "schema"]
        # and the inspection now has its capture: another one is refused
        again = await pda.capture("P1")
        assert again[0].accepted is False
    finally:
        await stop_lane(lane, task)
    assert json.loads((tmp_path / "state" / "inspections" / "P1.done.json").read_text())["published"] is True
