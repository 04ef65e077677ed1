"""The split: one inspection record becomes a safety result and an emissions result.

Shared content (identity, odometer, the 45° and VIN photos, the S+E check
items) goes to both; everything else to the platform it belongs to, as the
platform mapping files say. Each result is complete on its own, carries an id
that is the same on every delivery (derived from the inspection, so a result
rebuilt after a restart keeps its id), and is signed with the lane's key
(HMAC-SHA256, or Ed25519 so the platform can verify without being able to sign) over the
document's RFC 8785 canonical JSON, so the station can tell it came from this lane unaltered.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from laned.platforms import PlatformMapping, load_mappings
from laned.procedures import utc_now
from laned.procedures.emissions_items import FA_CODE, TSI_CODE
from laned.procedures.loaded_items import ASM_CODE, LUG_CODE
from laned.signing import load_signer
from laned.signing import verify as verify  # the station's check, next to what it checks
from protocols.results import RESULT_SCHEMAS, EmissionsResult, SafetyResult

if TYPE_CHECKING:
    from laned.config import LaneIdentity
    from laned.record import InspectionRecord

RESULT_NAMESPACE = uuid.UUID("6f1c2a4e-7d55-4d0b-9a55-2f6f3b8e9c10")
EXTERIOR_OK = {"pass", "na"}


def _exterior_item(record: InspectionRecord, mapping: PlatformMapping) -> dict[str, Any] | None:
    capture = record.capture
    if capture is None or mapping.exterior_item_code is None:
        return None
    checks = [c for c in capture.document.checks if c.item in mapping.exterior_items]
    failed = [c.item for c in checks if c.result not in EXTERIOR_OK]
    return {
        "code": mapping.exterior_item_code,
        "item": "exterior",
        "verdict": "fail" if failed else "pass",
        "reason": f"failed: {', '.join(failed)}" if failed else None,
        "checks": [{"item": c.item, "result": c.result, "note": c.note} for c in checks],
        "capture_id": capture.capture_id,
        "pda_id": capture.document.pda_id,
    }


def _obd_item(record: InspectionRecord) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    capture = record.capture
    if capture is None or capture.document.obd is None:
        return None, None
    obd = capture.document.obd
    vin = record.command.vehicle.vin
    problems = []
    if not obd.link_ok:
        problems.append("no communication with the engine ECU")
    if obd.mil_on:
        problems.append("malfunction indicator lamp on")
    if obd.ecu_vin is not None and obd.ecu_vin != vin:
        problems.append(f"VIN from the ECU {obd.ecu_vin} differs from the vehicle's {vin}")
    data = obd.model_dump(mode="json")
    item = {
        "code": "OBD",
        "item": "obd",
        "verdict": "fail" if problems else "pass",
        "reason": "; ".join(problems) or None,
        "values": data,
        "warnings": [f"readiness incomplete: {', '.join(obd.readiness_incomplete)}"]
        if obd.readiness_incomplete
        else [],
    }
    return item, data


def _photos(record: InspectionRecord, mapping: PlatformMapping) -> list[dict[str, Any]]:
    capture = record.capture
    if capture is None:
        return []
    offset = capture.pda_clock_offset_s
    from datetime import timedelta

    return [
        {
            "photo": p.photo,
            "code": mapping.photos[p.photo],
            "sha256": p.sha256,
            "bytes": p.size_bytes,
            "taken_at_pda": p.taken_at.isoformat(),
            "taken_at_lane": (p.taken_at + timedelta(seconds=offset)).isoformat(),
            "received_at_lane": p.received_at.isoformat(),
            "ref": f"photos/{p.sha256[:2]}/{p.sha256}.jpg",
        }
        for p in capture.photos
        if p.photo in mapping.photos
    ]


EMISSIONS_CODES = {"two_speed_idle": TSI_CODE, "free_acceleration": FA_CODE, "asm": ASM_CODE, "lug_down": LUG_CODE}


def _not_completed_items(record: InspectionRecord, platform: str) -> list[dict[str, Any]]:
    items = []
    command = record.command
    for name, reason in record.not_completed.items():
        if name in record.outcomes:  # stopped partway: its own items say what was and was not measured
            continue
        if name == "brake" and platform == "safety":
            wanted = command.items
            axles = [*wanted.brake_axles, *sorted(a for a in wanted.road_test_axles if a not in wanted.brake_axles)]
            codes = [(f"B{n}", f"service_brake_axle_{n}") for n in axles]
            if axles:  # the whole-vehicle rate, as the brake procedure reports it when it completes
                codes.append(("BZ", "service_brake_vehicle"))
            if command.items.parking_brake:
                codes.append(("B0", "parking_brake"))
            items += [{"code": c, "item": i, "verdict": "not_completed", "reason": reason} for c, i in codes]
        elif name in ("two_speed_idle", "free_acceleration", "asm", "lug_down") and platform == "emissions":
            code = EMISSIONS_CODES[name]
            items.append({"code": code, "item": name, "verdict": "not_completed", "reason": reason})
    return items


def _verdict(record: InspectionRecord, items: list[dict[str, Any]], platform: str) -> str:
    if record.abort_reason or any(i["verdict"] in ("not_completed", "void") for i in items):
        return "incomplete"
    if "exterior" in record.not_completed and record.command.items.exterior:
        return "incomplete"
    return "fail" if any(i["verdict"] == "fail" for i in items) else "pass"


def _platform_record(document: dict[str, Any], mapping: PlatformMapping, record: InspectionRecord) -> dict[str, Any]:
    n = mapping.name_of
    vehicle = record.command.vehicle
    inspector = record.capture.document.inspector if record.capture else None
    odometer = record.capture.document.vehicle.odometer_km if record.capture else None
    from datetime import datetime

    return {
        n("inspection_no"): record.inspection_no,
        n("station"): document["station"],
        n("lane"): document["lane"],
        n("plate"): vehicle.plate,
        n("plate_type"): vehicle.plate_type,
        n("vin"): vehicle.vin,
        n("vehicle_class"): vehicle.vehicle_class,
        n("fuel"): vehicle.fuel,
        n("result_id"): document["result_id"],
        n("verdict"): mapping.verdicts[document["verdict"]],
        n("finished_at"): mapping.time(datetime.fromisoformat(document["clocks"]["lane_finished_at"])),
        n("inspector_name"): inspector.name if inspector else None,
        n("inspector_id"): inspector.id if inspector else None,
        n("odometer_km"): odometer,
        n("items"): [
            {
                n("item_code"): i["code"],
                n("item_verdict"): mapping.verdicts[i["verdict"]],
                n("item_reason"): i.get("reason"),
            }
            for i in document["items"]
        ],
        n("photos"): [
            {
                n("photo_code"): p["code"],
                n("photo_time"): mapping.time(datetime.fromisoformat(p["taken_at_lane"])),
                n("photo_sha256"): p["sha256"],
            }
            for p in document["photos"]
        ],
    }


def build_results(record: InspectionRecord, identity: LaneIdentity) -> dict[str, dict[str, Any]]:
    """Both results of the record, signed, as the JSON documents to publish: `identity` is the
    lane's `[lane]` table (station, lane, platform mappings, signing key)."""
    mappings = load_mappings(Path(identity.platforms_dir))
    signer = load_signer(identity)
    command = record.command
    capture = record.capture
    finished = utc_now()
    clocks = {
        "lane_received_at": record.received_at.isoformat(),
        "lane_finished_at": finished.isoformat(),
        "station_time": command.station_time.isoformat() if command.station_time else None,
        "station_clock_offset_s": record.station_clock_offset_s,
        "pda_captured_at": capture.document.captured_at.isoformat() if capture else None,
        "pda_clock_offset_s": round(capture.pda_clock_offset_s, 3) if capture else None,
    }
    vehicle = {
        **command.vehicle.model_dump(
            mode="json",
            include={
                "plate",
                "plate_type",
                "vin",
                "vehicle_class",
                "fuel",
                "curb_mass_kg",
                "total_mass_kg",
                "registration_date",
                "new_registration",
            },
        ),
        "odometer_km": capture.document.vehicle.odometer_km if capture else None,
    }
    inspector = capture.document.inspector.model_dump(mode="json") if capture else None
    results: dict[str, dict[str, Any]] = {}
    for platform, model in (("safety", SafetyResult), ("emissions", EmissionsResult)):
        mapping = mappings[platform]
        items: list[dict[str, Any]] = []
        exterior = _exterior_item(record, mapping)
        if exterior is not None:
            items.append(exterior)
        devices: dict[str, dict[str, Any]] = {}
        extra: dict[str, Any] = {}
        if platform == "emissions":
            obd_item, obd = _obd_item(record)
            if obd_item is not None:
                items.append(obd_item)
            extra = {"method": command.items.emissions, "obd": obd}
        for outcome in record.outcomes.values():
            if outcome.platform == platform:
                items.extend(outcome.items)
                devices.update(outcome.devices)
        items.extend(_not_completed_items(record, platform))
        document: dict[str, Any] = {
            "schema": RESULT_SCHEMAS[platform],
            "result_id": str(
                uuid.uuid5(
                    RESULT_NAMESPACE,
                    f"{identity.station}/{identity.lane}/"
                    f"{record.inspection_no}/{record.received_at.isoformat()}/{platform}",
                )
            ),
            "inspection_no": record.inspection_no,
            "station": identity.station,
            "lane": identity.lane,
            "clocks": clocks,
            "vehicle": vehicle,
            "verdict": _verdict(record, items, platform),
            "items": items,
            "photos": _photos(record, mapping),
            "devices": devices,
            "not_completed": {k: v for k, v in record.not_completed.items() if _belongs(k, platform)},
            "aborted": record.abort_reason,
            "inspector": inspector,
            "simulation": record.simulation,
            "procedure_timings": record.procedure_timings,
            **extra,
        }
        document["platform_record"] = _platform_record(document, mapping, record)
        document["signature"] = signer.sign(document)
        model.model_validate(document)  # the message we publish is the one the schema describes
        results[platform] = document
    return results


def _belongs(item: str, platform: str) -> bool:
    if item == "exterior":
        return True
    return (item == "brake") == (platform == "safety")
