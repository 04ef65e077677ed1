"""Building blocks of end-to-end tests: a station that sends commands, vehicles as start commands."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiomqtt

from simulators.vehicle import load_vehicle_file


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
