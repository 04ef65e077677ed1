"""The captures an inspection has received so far, on disk, so a restart does not lose them.

One file per inspection, `{state_dir}/captures/{inspection_no}.json`, rewritten atomically
(0600) whenever a capture document is accepted or one of its photos is stored: each accepted
document exactly as the PDA sent it, its lane receive time, and the photos already verified and
in the photo store. After a restart the assembler reloads it and acks what is still missing,
so the PDA sends only that. The file goes when the inspection ends.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog

from laned.private_files import private_dir, write_private

log = structlog.get_logger("laned.capture")

SCHEMA = "laned-partial-captures/1"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class StoredPhoto:
    """A capture's photo verified and in the photo store: what the lane keeps of it and what the
    journal writes down (laned/capture.py uses the same record for both)."""

    photo: str
    sha256: str
    path: str
    size_bytes: int
    taken_at: datetime  # the PDA's clock
    received_at: datetime  # the lane's clock


@dataclass(frozen=True)
class JournalCapture:
    payload: bytes  # the document as received (its bytes again after the restart)
    received_at: datetime
    photos: tuple[StoredPhoto, ...]


class CaptureJournal:
    """Partial captures per inspection, in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, inspection_no: str) -> Path:
        return self.directory / f"{_SAFE_NAME.sub('_', inspection_no)}.json"

    def save(self, inspection_no: str, captures: list[JournalCapture]) -> None:
        document = {
            "schema": SCHEMA,
            "inspection_no": inspection_no,
            "captures": [
                {
                    "document": c.payload.decode("utf-8"),  # valid UTF-8: it was accepted
                    "received_at": c.received_at.isoformat(),
                    "photos": [
                        {"photo": p.photo, "sha256": p.sha256, "path": p.path, "size_bytes": p.size_bytes,
                         "taken_at": p.taken_at.isoformat(), "received_at": p.received_at.isoformat()}
                        for p in c.photos
                    ],
                }
                for c in captures
            ],
        }
        try:
            private_dir(self.directory)
            write_private(self.path_for(inspection_no), json.dumps(document, ensure_ascii=False).encode("utf-8"))
        except OSError as exc:  # the capture goes on in memory; only a restart would lose it
            log.error("capture_journal_write_failed", inspection_no=inspection_no, error=str(exc))

    def load(self, inspection_no: str) -> list[JournalCapture]:
        path = self.path_for(inspection_no)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("schema") != SCHEMA or data.get("inspection_no") != inspection_no:
                raise ValueError(f"not a {SCHEMA} file of inspection {inspection_no}")
            return [
                JournalCapture(
                    payload=c["document"].encode("utf-8"),
                    received_at=datetime.fromisoformat(c["received_at"]),
                    photos=tuple(
                        StoredPhoto(photo=p["photo"], sha256=p["sha256"], path=p["path"],
                                    size_bytes=int(p["size_bytes"]),
                                    taken_at=datetime.fromisoformat(p["taken_at"]),
                                    received_at=datetime.fromisoformat(p["received_at"]))
                        for p in c["photos"]
                    ),
                )
                for c in data["captures"]
            ]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("capture_journal_unreadable", path=str(path), error=str(exc),
                      hint="the PDA's capture for this inspection must be sent again")
            return []

    def forget(self, keep: str | None = None) -> None:
        """Remove every inspection's file but `keep`'s."""
        kept = self.path_for(keep).name if keep is not None else None
        with contextlib.suppress(FileNotFoundError):
            for path in self.directory.glob("*.json"):
                if path.name != kept:
                    path.unlink(missing_ok=True)
