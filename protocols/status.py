"""The lane's retained status document on `…/status` ("lane-status/2"), as a model.

The daemon builds the document as a plain dict (`laned.daemon.Lane.status_document()`);
this model describes exactly that dict, field for field, so that the JSON Schema
shipped to station integrators (`docs/schemas/lane-status.v2.json`) says what a
station really receives, and a test can hold the two together. Unknown fields are
refused: a field the daemon adds must be added here (and to the schema) first.

Times in the status are the lane's clock as Unix time (seconds since 1970-01-01
UTC, a JSON number), unlike the ISO 8601 strings of replies, events and results:
they come straight from the daemon's health bookkeeping. `inspection.started_at`
is the exception: it is the inspection record's ISO 8601 time.

The same document, with `state` "offline", is the lane's MQTT will: the broker
publishes it (retained) when the lane vanishes without a clean stop.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

STATUS_SCHEMA = "lane-status/2"

DeviceState = Literal["connecting", "connected", "degraded", "disconnected", "stopped"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DeviceHealthModel(_Strict):
    """One device's health (`drivers.base.DeviceHealth.as_dict()`)."""

    state: DeviceState = Field(
        description="connecting: opening the port / first exchange; connected: the last exchange was good; "
        "degraded: recent exchanges failed, fewer than errors_to_disconnect in a row, still in use; "
        "disconnected: port missing or device silent, retried with backoff; stopped: the daemon is stopping"
    )
    since: float = Field(description="lane clock, Unix time (s): when the device entered this state")
    last_error: str | None = Field(
        description="the last error on this device, in words a technician can act on (kept after recovery)"
    )
    last_good_read: float | None = Field(description="lane clock, Unix time (s): the last good exchange")
    errors_total: int = Field(ge=0, description="failed exchanges since the daemon started")
    reconnects: int = Field(ge=0, description="times the link was reopened since the daemon started")
    identity: dict[str, str] = Field(
        description="what the device said about itself (model, serial, firmware), or what the lane knows of it "
        "(model, address, port) where its protocol has no identity command"
    )


class DeviceStatus(DeviceHealthModel):
    """One device in `…/status`: its health, and which device on which line it is."""

    kind: Literal["gas_analyzer", "opacimeter", "brake_tester", "dynamometer"] = Field(description="what the device is")
    port: str = Field(description="where the lane reaches it: a serial port path, or host:port for Modbus TCP")


class LastCheck(_Strict):
    passed: bool | None = Field(description="whether the check passed")
    at: str | None = Field(description="lane clock, ISO 8601 with offset: when it ran")


class DynoCoastDownDetail(_Strict):
    acdt_s: float | None = Field(description="measured coast-down time v1 → v2 (s), null if not crossed")
    ccdt_s: float | None = Field(description="expected time M (v1² − v2²) / (2 P_cd) (s)")
    deviation_pct: float | None = Field(description="(ACDT − CCDT) / CCDT (%)")
    limit_pct: float | None = Field(description="the pass limit on |deviation| (%)")
    reason: str | None = Field(description="why it failed, empty when it passed")


class DailyChecksStatus(_Strict):
    """The daily checks of the gas analyzer and the dynamometer (`laned.daily_checks.DailyChecks.status()`)."""

    two_speed_idle_ready: bool = Field(
        description="true when a two-speed idle test may start: the leak check and zero passed today (lane PC's "
        "local date) and no daily check is running"
    )
    running: bool = Field(description="the daily checks are running now")
    due_today: list[str] = Field(description="required checks not passed today: leak_check, zero")
    last_leak_check: LastCheck | None = Field(description="the latest leak check, or null if never run")
    last_zero: LastCheck | None = Field(description="the latest zero, or null if never run")
    last_hc_residue: LastCheck | None = Field(description="the latest HC residue check, or null if never run")
    dynamometer_ready: bool = Field(
        False, description="true when an ASM or lug-down test may start: the dynamometer's loaded coast-down "
        "passed today (lane PC's local date) and no daily check is running")
    last_dyno_coast_down: LastCheck | None = Field(
        None, description="the latest loaded coast-down of the dynamometer, or null if never run")
    last_dyno_parasitic: LastCheck | None = Field(
        None, description="the latest parasitic-loss check of the dynamometer, or null if never run")
    dyno_coast_down: DynoCoastDownDetail | None = Field(
        None, description="the latest loaded coast-down's numbers, or null if never run")


class InspectionStatus(_Strict):
    """The inspection in progress (`laned.record.InspectionRecord.status()`)."""

    inspection_no: str = Field(description="the station's inspection number (jylsh) from the start command")
    plate: str = Field(description="the vehicle's plate number")
    step: str | None = Field(
        description="the step running now, e.g. brake.axle2, capture (waiting for the PDA); null before the first"
    )
    started_at: str = Field(description="lane clock, ISO 8601: when the start command was accepted")
    measured: list[str] = Field(description="procedures finished with a result, e.g. brake, two_speed_idle")
    not_completed: list[str] = Field(description="procedures (or exterior) that could not be completed")
    capture: Literal["complete", "waiting"] = Field(description="the PDA's exterior capture")


class OutboxStatus(_Strict):
    """The durable outbox (`laned.outbox.Outbox.stats()`)."""

    depth: int = Field(ge=0, description="QoS-1 messages written to disk and not yet acknowledged by the broker")
    oldest_age_s: float | None = Field(description="how long the oldest pending message has waited, s; null if none")
    max_messages: int = Field(gt=0, description="the outbox's size limit")
    over_limit: bool = Field(
        description="an alarm: depth reached max_messages; events are refused, results/replies/acks still stored"
    )


class LaneStatus(_Strict):
    """`…/status`, retained, QoS 1: the lane at a glance. Also the lane's will (state offline)."""

    schema_: Literal["lane-status/2"] = Field(alias="schema")
    station: str = Field(description="station code, as in the topic")
    lane: str = Field(description="lane code, as in the topic")
    state: Literal["online", "offline"] = Field(
        description="online: running and connected; offline: stopped cleanly, or vanished (the will)"
    )
    version: str = Field(description="the laned version running the lane")
    started_at: float = Field(description="lane clock, Unix time (s): when this daemon process started")
    lane_time: float = Field(description="lane clock, Unix time (s): when this document was made")
    devices: dict[str, DeviceStatus] = Field(
        description="every enabled device by its configured name (e.g. gas-analyzer); empty on a lane without"
    )
    inspection: InspectionStatus | None = Field(description="the inspection in progress, or null when idle")
    outbox: OutboxStatus
    daily_checks: DailyChecksStatus | None = Field(
        None, description="the gas analyzer's daily checks; null on a lane without a gas analyzer"
    )
    broker: str | None = Field(
        None, description="host:port of the broker the lane is connected to (mqtt.hosts: which one); null if none"
    )
