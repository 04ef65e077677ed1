"""One inspection record: the station's order, the capture, every measurement, one clock.

The record is what both results are cut from. It lives on disk (JSON, written
atomically after every step) until both results are in the outbox, so a crash
between measuring and publishing loses nothing. Times are the lane's clock
(UTC, ISO 8601); the station's and the PDA's own times are kept beside them
with their offsets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from laned.procedures import ItemOutcome, utc_now
from laned.settings import StandardTiming
from protocols.messages import StartCommand

if TYPE_CHECKING:
    from laned.capture import CompletedCapture


def capture_to_json(capture: CompletedCapture) -> dict[str, Any]:
    return {
        "inspection": dataclasses.asdict(capture.inspection),
        "document": capture.document.model_dump(mode="json", by_alias=True),
        "document_received_at": capture.document_received_at.isoformat(),
        "completed_at": capture.completed_at.isoformat(),
        "photos": [
            {**dataclasses.asdict(p), "taken_at": p.taken_at.isoformat(), "received_at": p.received_at.isoformat()}
            for p in capture.photos
        ],
    }


def capture_from_json(data: dict[str, Any]) -> CompletedCapture:
    from laned.capture import CaptureInspection, CompletedCapture, StoredPhoto
    from protocols.pda import CaptureDocument

    return CompletedCapture(
        inspection=CaptureInspection(**data["inspection"]),
        document=CaptureDocument.model_validate(data["document"]),
        document_received_at=datetime.fromisoformat(data["document_received_at"]),
        completed_at=datetime.fromisoformat(data["completed_at"]),
        photos=tuple(
            StoredPhoto(
                **{
                    **p,
                    "taken_at": datetime.fromisoformat(p["taken_at"]),
                    "received_at": datetime.fromisoformat(p["received_at"]),
                }
            )
            for p in data["photos"]
        ),
    )


@dataclass
class InspectionRecord:
    command: StartCommand
    received_at: datetime
    outcomes: dict[str, ItemOutcome] = field(default_factory=dict)
    not_completed: dict[str, str] = field(default_factory=dict)
    capture: CompletedCapture | None = None
    step: str | None = None
    #: the item whose procedure is running (saved when it starts, cleared when it ends): after a
    #: crash it names the item that was interrupted and runs again from its start
    running: str | None = None
    abort_reason: str | None = None
    published: bool = False
    simulation: bool = False
    procedure_timings: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def new(cls, command: StartCommand) -> InspectionRecord:
        return cls(command=command, received_at=utc_now())

    def mark_run(self, *, simulation: bool, timings: Iterable[StandardTiming]) -> None:
        """Note how the lane that runs (or resumes) this inspection was started. A record once
        measured by a simulation stays one; after a resume under other timings, each timing is
        the shortest either run used, so the result never claims more than was done."""
        self.simulation = self.simulation or simulation
        for t in timings:
            known = self.procedure_timings.get(t.key)
            if known is None or t.value < known["value"]:
                self.procedure_timings[t.key] = t.as_dict()

    @property
    def inspection_no(self) -> str:
        return self.command.inspection_no

    @property
    def station_clock_offset_s(self) -> float | None:
        """Lane receive time − the station's time in the command (positive: station clock behind)."""
        if self.command.station_time is None or self.command.station_time.tzinfo is None:
            return None
        return round((self.received_at - self.command.station_time).total_seconds(), 3)

    def status(self) -> dict[str, Any]:
        """The inspection as `…/status` shows it."""
        return {
            "inspection_no": self.inspection_no,
            "plate": self.command.vehicle.plate,
            "step": self.step,
            "started_at": self.received_at.isoformat(),
            "measured": sorted(self.outcomes),
            "not_completed": sorted(self.not_completed),
            "capture": "complete" if self.capture is not None else "waiting",
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command.model_dump(mode="json", by_alias=True),
            "received_at": self.received_at.isoformat(),
            "outcomes": {name: dataclasses.asdict(outcome) for name, outcome in self.outcomes.items()},
            "not_completed": self.not_completed,
            "capture": capture_to_json(self.capture) if self.capture is not None else None,
            "step": self.step,
            "running": self.running,
            "abort_reason": self.abort_reason,
            "published": self.published,
            "simulation": self.simulation,
            "procedure_timings": self.procedure_timings,
            "saved_at": utc_now().isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InspectionRecord:
        return cls(
            command=StartCommand.model_validate(data["command"]),
            received_at=datetime.fromisoformat(data["received_at"]),
            outcomes={name: ItemOutcome(**outcome) for name, outcome in data["outcomes"].items()},
            not_completed=dict(data["not_completed"]),
            capture=capture_from_json(data["capture"]) if data.get("capture") else None,
            step=data.get("step"),
            running=data.get("running"),
            abort_reason=data.get("abort_reason"),
            published=bool(data.get("published")),
            simulation=bool(data.get("simulation")),
            procedure_timings={k: dict(v) for k, v in (data.get("procedure_timings") or {}).items()},
        )
