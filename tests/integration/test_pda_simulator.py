"""The PDA simulator against a real broker and a minimal lane responder that feeds the capture
assembler and publishes its acks: the simulator must receive the lane's answers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from laned.capture import CaptureAssembler, CaptureInspection, CaptureRequirements, PhotoStore
from protocols.pda import ack_topic, capture_topic, parse_photo_topic
from simulators.pda import PdaSimulator
from simulators.vehicle import load_vehicle_file, vehicle_identity

pytestmark = pytest.mark.integration

BASE = "laned/v1/370100/T1/pda"
INSPECTION_NO = "370100202611010042"
CAR_PHOTOS = ["front_left_45", "rear_right_45", "vin", "cabin", "tyre_size", "odometer",
              "tailpipe", "obd_port", "emission_controls"]


@dataclass
class Lane:
    """The lane's side in miniature: MQTT in, assembler, acks out."""

    assembler: CaptureAssembler
    acks_sent: list[dict[str, Any]] = field(default_factory=list)


def inspection_for(vehicle: str) -> CaptureInspection:
    data = load_vehicle_file(vehicle)
    identity = vehicle_identity(data)
    return CaptureInspection(
        inspection_no=INSPECTION_NO, plate=identity.plate, plate_type=identity.plate_type,
        vin=identity.vin, vehicle_class=identity.vehicle_class, fuel=identity.fuel,
        has_obd="obd" in data["capture"],
    )


@contextlib.asynccontextmanager
async def lane_responder(broker: Any, tmp_path: Path, vehicle: str) -> AsyncIterator[Lane]:
    lane = Lane(CaptureAssembler(CaptureRequirements.load(), PhotoStore(tmp_path / "photos"),
                                 inspection=inspection_for(vehicle)))
    ready = asyncio.Event()

    async def serve() -> None:
        async with aiomqtt.Client(broker.host, broker.port,
                                  identifier=f"test-lane-{os.getpid()}-{id(lane)}") as client:
            await client.subscribe(capture_topic(BASE), qos=1)
            await client.subscribe(f"{BASE}/photo/+/+", qos=1)
            ready.set()
            async for message in client.messages:
                topic = str(message.topic)
                payload = message.payload
                assert isinstance(payload, bytes)
                now = datetime.now(UTC)
                if topic == capture_topic(BASE):
                    acks = lane.assembler.on_document(payload, now)
                else:
                    where = parse_photo_topic(BASE, topic)
                    assert where is not None, topic
                    acks = lane.assembler.on_photo(where[0], where[1], payload, now)
                for ack in acks:
                    body = ack.to_json_bytes()
                    lane.acks_sent.append(json.loads(body))
                    await client.publish(ack_topic(BASE, ack.capture_id), body, qos=1)

    task = asyncio.create_task(serve())
    try:
        await asyncio.wait_for(ready.wait(), timeout=10)
        yield lane
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def simulator(broker: Any, vehicle: str = "gasoline-car", ack_timeout_s: float = 10.0) -> PdaSimulator:
    return PdaSimulator(vehicle, host=broker.host, port=broker.port, base=BASE,
                        ack_timeout_s=ack_timeout_s)


async def test_document_first_capture_is_accepted_then_completed(broker: Any,
                                                                 tmp_path: Path) -> None:
    async with lane_responder(broker, tmp_path, "gasoline-car") as lane:
        acks = await simulator(broker).capture(INSPECTION_NO, order="document_first")
    assert acks[0].accepted and not acks[0].complete
    assert set(acks[0].missing_photos) <= set(CAR_PHOTOS) and acks[0].missing_photos
    assert acks[-1].accepted and acks[-1].complete and acks[-1].missing_photos == []
    assert [json.loads(a.to_json_bytes()) for a in acks] == lane.acks_sent
    done = lane.assembler.completed
    assert done is not None and done.capture_id == acks[0].capture_id
    assert [p.photo for p in done.photos] == CAR_PHOTOS
    for photo in done.photos:
        data = Path(photo.path).read_bytes()
        assert data[:2] == b"\xff\xd8" and len(data) == photo.size_bytes
    # the car's PDA runs 37 s ahead; the lane sees it (less the upload's fraction of a second)
    assert -38.5 < done.pda_clock_offset_s < -34.5


async def test_photos_first_capture_completes_on_the_document(broker: Any, tmp_path: Path) -> None:
    async with lane_responder(broker, tmp_path, "diesel-truck") as lane:
        acks = await simulator(broker, "diesel-truck").capture(INSPECTION_NO, order="photos_first")
    assert acks[-1].accepted and acks[-1].complete
    assert lane.assembler.completed is not None


async def test_duplicated_messages_get_an_ack_per_document_and_one_capture(
        broker: Any, tmp_path: Path) -> None:
    async with lane_responder(broker, tmp_path, "gasoline-car") as lane:
        acks = await simulator(broker).capture(INSPECTION_NO, duplicates=True)
    assert len(acks) == 3  # each document delivery at once, then complete
    assert all(a.accepted for a in acks)
    assert [a.complete for a in acks] == [False, False, True]
    assert lane.assembler.completed is not None


async def test_bad_vin_is_refused_with_the_check_digit_error(broker: Any, tmp_path: Path) -> None:
    async with lane_responder(broker, tmp_path, "gasoline-car") as lane:
        acks = await simulator(broker).capture(INSPECTION_NO, bad="bad_vin")
    [refused] = acks
    assert refused.accepted is False
    errors = {(e.field, e.error) for e in refused.errors}
    assert ("vehicle.vin", "check digit computed 2, found 0") in errors
    assert ("vehicle.vin", "'LSVAU2180N2183290' differs from the inspection's "
                           "'LSVAU2182N2183290'") in errors
    assert lane.assembler.completed is None


async def test_another_inspection_number_is_refused(broker: Any, tmp_path: Path) -> None:
    async with lane_responder(broker, tmp_path, "gasoline-car"):
        [refused] = await simulator(broker).capture(INSPECTION_NO, bad="other_inspection")
    assert [e.field for e in refused.errors] == ["inspection_no"]


async def test_wrong_photo_hash_never_completes_and_the_photo_stays_missing(
        broker: Any, tmp_path: Path) -> None:
    async with lane_responder(broker, tmp_path, "gasoline-car") as lane:
        acks = await simulator(broker, ack_timeout_s=1.0).capture(INSPECTION_NO, bad="wrong_hash")
    assert acks and all(a.accepted and not a.complete for a in acks)
    assert "front_left_45" in acks[-1].missing_photos
    current = lane.assembler.current_ack(acks[0].capture_id)
    assert current is not None and current.missing_photos == ["front_left_45"]
    assert lane.assembler.completed is None


async def test_a_refused_capture_then_a_corrected_one_completes(broker: Any,
                                                                tmp_path: Path) -> None:
    async with lane_responder(broker, tmp_path, "diesel-truck") as lane:
        sim = simulator(broker, "diesel-truck")
        [refused] = await sim.capture(INSPECTION_NO, bad="missing_item")
        assert refused.accepted is False
        assert [e.field for e in refused.errors] == ["checks"]
        acks = await sim.capture(INSPECTION_NO)
    assert acks[-1].complete
    assert lane.assembler.completed is not None
    assert lane.assembler.completed.capture_id == acks[-1].capture_id
