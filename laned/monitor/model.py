"""What the monitor knows of each lane, built from the messages of the station's broker alone.

Pure: `StationModel.apply(topic, payload)` takes one MQTT message (status, event, reply, live) and
updates the lane it belongs to; the Textual app only draws it. So what the screen shows can be
tested message by message, and the screen shows nothing the broker did not say.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

#: live fields that are bookkeeping, not values a technician watches
HIDDEN_LIVE_FIELDS = frozenset({
    "schema", "device", "lane_time", "reading", "seq", "sample_index", "sample_rate_hz", "ring_size",
    "first_sample_index", "left_force_dan", "right_force_dan", "axle_no", "test",
})

#: a field name's unit suffix -> (the unit shown, how many characters to cut from the name)
UNITS = (("_kmh", "km/h"), ("_dan", "daN"), ("_pct", "%"), ("_ppm", "ppm"), ("_m1", "m⁻¹"),
         ("_rpm", "r/min"), ("_n", "N"), ("_c", "°C"), ("_k", "K"), ("_s", "s"))


#: labels written as a technician writes them (gases, the absorption coefficient K)
LABELS = {"hc": "HC", "co": "CO", "co2": "CO₂", "o2": "O₂", "no": "NO", "k": "K", "lambda value": "λ"}


def label_and_unit(name: str) -> tuple[str, str]:
    """`left_force_n` -> ("left force", "N"); `co2_pct` -> ("CO₂", "%"); `rpm` -> ("rpm", "r/min")."""
    if name == "rpm":
        return "rpm", "r/min"
    for suffix, unit in UNITS:
        if name.endswith(suffix):
            label = name[: -len(suffix)].replace("_", " ")
            return LABELS.get(label, label), unit
    label = name.replace("_", " ")
    return LABELS.get(label, label), ""


def live_values(document: dict[str, Any]) -> list[tuple[str, str, str]]:
    """A live message's values as (label, value, unit), in the message's order; lists are skipped."""
    shown = []
    for name, value in document.items():
        if name in HIDDEN_LIVE_FIELDS or isinstance(value, (list, dict)):
            continue
        label, unit = label_and_unit(name)
        shown.append((label, "-" if value is None else str(value), unit))
    return shown


@dataclass
class BrakeCurve:
    """The running axle's brake forces as the lane's live messages bring them (daN), sample by sample."""

    axle_no: int | None = None
    test: str | None = None
    sample_rate_hz: float = 100.0
    left_dan: list[float] = field(default_factory=list)
    right_dan: list[float] = field(default_factory=list)

    def add(self, document: dict[str, Any]) -> None:
        """A `BrakeCurveLive` message: a new axle or test starts a new curve; its samples are appended."""
        axle_no, test = document.get("axle_no"), document.get("test")
        if (axle_no, test) != (self.axle_no, self.test):
            self.axle_no, self.test = axle_no, test
            self.left_dan, self.right_dan = [], []
        self.sample_rate_hz = float(document.get("sample_rate_hz") or self.sample_rate_hz)
        self.left_dan.extend(document.get("left_force_dan") or [])
        self.right_dan.extend(document.get("right_force_dan") or [])

    def times_s(self) -> list[float]:
        return [i / self.sample_rate_hz for i in range(len(self.left_dan))]


@dataclass
class LaneModel:
    """One lane as the monitor shows it."""

    lane: str
    status: dict[str, Any] | None = None
    live: dict[str, dict[str, Any]] = field(default_factory=dict)  # device -> its newest live message
    prompt: str | None = None  # the driver's prompt on display now
    curve: BrakeCurve = field(default_factory=BrakeCurve)
    log: deque[str] = field(default_factory=lambda: deque(maxlen=8))  # recent events and replies, newest last
    updated_at: float = 0.0

    @property
    def online(self) -> bool:
        return bool(self.status and self.status.get("state") == "online")

    @property
    def inspection_no(self) -> str | None:
        inspection = (self.status or {}).get("inspection") or {}
        return inspection.get("inspection_no")

    def apply(self, kind: str, rest: list[str], document: dict[str, Any]) -> None:
        self.updated_at = time.time()
        if kind == "status":
            self.status = document
        elif kind == "live" and rest:
            if document.get("reading") == "BrakeCurveLive":
                self.curve.add(document)
            else:
                self.live[rest[0]] = document
        elif kind == "event":
            self._event(document)
        elif kind == "reply":
            verdict = "accepted" if document.get("accepted") else "refused: " + "; ".join(document.get("reasons") or [])
            self.log.append(f"{document.get('command')} {verdict}")

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "prompt":
            self.prompt = event.get("text") or event.get("action")
        elif kind in ("step_finished", "inspection_finished", "inspection_aborted"):
            self.prompt = None
        if kind == "step_started" and str(event.get("step") or "").startswith(("brake", "parking_brake")):
            self.curve = BrakeCurve()
        text = event.get("text") or ""
        self.log.append(f"{kind} {event.get('step') or ''} {text}".strip())


@dataclass
class StationModel:
    """Every lane seen under `{prefix}/{station}/+/…`, by lane code."""

    prefix: str
    station: str
    lanes: dict[str, LaneModel] = field(default_factory=dict)

    def apply(self, topic: str, payload: bytes) -> str | None:
        """One message: the lane it changed, or None for a message that is not a lane's (or not JSON)."""
        head = f"{self.prefix}/{self.station}/"
        if not topic.startswith(head):
            return None
        parts = topic[len(head):].split("/")
        if len(parts) < 2 or parts[1] not in ("status", "live", "event", "reply"):
            return None
        try:
            document = json.loads(payload)
        except ValueError:
            return None
        if not isinstance(document, dict):
            return None
        lane = self.lanes.setdefault(parts[0], LaneModel(parts[0]))
        lane.apply(parts[1], parts[2:], document)
        return parts[0]
