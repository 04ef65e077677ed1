"""Building blocks of end-to-end tests: a station that sends commands, vehicles as start commands,
a lane with a simulated driver."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt

from laned.daemon import Lane
from simulators.driver import SimulatedDriver
from simulators.vehicle import load_vehicle_file
from tests.helpers import Recorder, subscriber


def start_command(
    vehicle_name: str, inspection_no: str, *, request_id: str | None = None, **items: Any
) -> dict[str, Any]:
    """The `start` a station would send for a simulated vehicle file (axles from its [brake] table)."""
    data = load_vehicle_file(vehicle_name)
    v = data["vehicle"]
    brake_axles = data.get("brake", {}).get("axles", [])
    axles = [
        {"position": axle.get("position", "front" if i == 0 else "rear"), "parking_brake": bool(axle.get("parking"))}
        for i, axle in enumerate(brake_axles)
    ] or [{"position": "front"}, {"position": "rear", "parking_brake": True}]
    return {
        "schema": "lane-cmd-start/1",
        "request_id": request_id or uuid.uuid4().hex[:12],
        "inspection_no": inspection_no,
        "station_time": "2026-11-28T09:00:00+08:00",
        "vehicle": {
            "plate": v["plate"],
            "plate_type": v["plate_type"],
            "vin": v["vin"],
            "vehicle_class": v["vehicle_class"],
            "fuel": v["fuel"],
            "curb_mass_kg": v["curb_mass_kg"],
            "total_mass_kg": v["total_mass_kg"],
            "registration_date": str(v["registration_date"]),
            "new_registration": v["new_registration"],
            "rated_engine_speed_rpm": v["rated_engine_speed_rpm"],
            "has_obd": "obd" in data.get("capture", {}),
        },
        "axles": axles,
        "items": {"exterior": True, **items},
    }


async def send_command(host: str, port: int, lane_root: str, name: str, document: dict[str, Any] | bytes) -> None:
    payload = document if isinstance(document, bytes) else json.dumps(document, ensure_ascii=False).encode()
    async with aiomqtt.Client(host, port, identifier=f"test-station-cmd-{uuid.uuid4().hex[:6]}") as client:
        await client.publish(f"{lane_root}/cmd/{name}", payload, qos=1)


@contextlib.asynccontextmanager
async def lane_with_driver(
    lane: Lane, broker: Any, device: str, control: Path
) -> AsyncIterator[tuple[asyncio.Task[None], Recorder]]:
    """Run `lane` with a simulated driver who follows its prompts on `device` (through the
    simulator's control socket), and a station recording everything under the lane's root."""
    async with lane_with_person(lane, broker, {device: control}) as running:
        yield running


@contextlib.asynccontextmanager
async def lane_with_person(
    lane: Lane, broker: Any, controls: dict[str, Path]
) -> AsyncIterator[tuple[asyncio.Task[None], Recorder]]:
    """Run `lane` with a simulated driver who follows its prompts on the devices of `controls`
    (each through its simulator's control socket), once each of them is connected, and a station
    recording everything under the lane's root. One MQTT client after the other: amqtt 0.12 loses
    a client that connects while another subscribes ("dictionary changed size during iteration"
    in _handle_client_session)."""
    lane_task = asyncio.create_task(lane.run())
    person = SimulatedDriver(controls)
    person_task: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(lane.mqtt.wait_connected(), 10)  # connected and subscribed
        person_task = asyncio.create_task(person.run(broker.host, broker.port, lane.topics.root))
        await asyncio.sleep(0.3)  # the simulated driver connects and subscribes to …/event
        for device in controls:
            if device in lane.drivers:
                await lane.drivers[device].wait_connected(10)
        async with subscriber(broker.host, broker.port, f"{lane.topics.root}/#") as station:
            yield lane_task, station
    finally:
        if person_task is not None:
            person_task.cancel()
        lane.request_stop()
        await asyncio.wait_for(lane_task, 15)
        if person_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await person_task


class StationSide:
    """What a test does as the station beside a rig's lane: a command and its reply, an
    inspection's emissions result, the events so far. The rig has `lane`, `station`, `broker`."""

    lane: Lane
    station: Recorder
    broker: Any

    @property
    def root(self) -> str:
        return self.lane.topics.root

    async def command(self, name: str, document: dict[str, Any]) -> dict[str, Any]:
        """Send a command and return the lane's reply to it."""
        await send_command(self.broker.host, self.broker.port, self.root, name, document)
        reply = await self.station.wait_for(lambda m: m.topic == f"{self.root}/reply/{document['request_id']}", 20)
        return reply.json()  # type: ignore[no-any-return]

    async def result(self, inspection_no: str, timeout_s: float = 90) -> dict[str, Any]:
        message = await self.station.wait_for(
            lambda m: m.topic == f"{self.root}/result/emissions" and m.json()["inspection_no"] == inspection_no,
            timeout_s)
        return message.json()  # type: ignore[no-any-return]

    def events(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.station.on("/event")]
