"""The request log: every command's first reply, kept on disk so a repeat gets it again.

A station that publishes at QoS 1 sends a command again when it reconnects
before the broker's PUBACK arrived, and the broker may deliver it twice. A
`request_id` seen in the last `request_ids_keep_days` days is therefore not run
again: the lane re-sends the reply it first sent, byte for byte, and does
nothing else (no second inspection, no second abort, no second daily check).

The log is SQLite in the state directory (WAL, `synchronous=FULL`, like the
outbox), written before the reply enters the outbox: once a reply can reach the
station, a repeat of its command is recognised, across restarts and power cuts.
Entries older than the keep time are removed when the log opens and as new
ones are written; `max_entries` bounds it whatever the station sends.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from laned.private_files import open_private, private_dir, tighten

log = structlog.get_logger("laned.requests")

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT    PRIMARY KEY,
    command    TEXT    NOT NULL,
    topic      TEXT    NOT NULL,
    reply      BLOB    NOT NULL,
    payload_sha256 TEXT NOT NULL,
    seen_at    REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_seen_at ON requests (seen_at);
"""

DAY_S = 86_400.0


@dataclass(frozen=True)
class FirstReply:
    """What the lane answered the first time a request_id came."""

    request_id: str
    command: str
    topic: str
    reply: bytes
    payload_sha256: str
    seen_at: float


class RequestLog:
    """request_id → the first reply's topic and bytes, kept `keep_days` days."""

    def __init__(self, path: str | Path, *, keep_days: float = 7.0, max_entries: int = 50_000) -> None:
        self.path = Path(path)
        private_dir(self.path.parent)
        self.keep_s = keep_days * DAY_S
        self.max_entries = max_entries
        # 0600 before SQLite opens it (its -wal and -shm files take the database's mode), as the outbox
        os.close(open_private(self.path, os.O_RDWR | os.O_CREAT))
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        for name in (self.path.name, self.path.name + "-wal", self.path.name + "-shm"):
            tighten(self.path.with_name(name))
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._writes = 0
        self.prune()

    def get(self, request_id: str) -> FirstReply | None:
        """The first reply to `request_id` if it came within the keep time, else None."""
        row = self._db.execute(
            "SELECT request_id, command, topic, reply, payload_sha256, seen_at FROM requests "
            "WHERE request_id = ? AND seen_at >= ?",
            (request_id, time.time() - self.keep_s),
        ).fetchone()
        if row is None:
            return None
        return FirstReply(row[0], row[1], row[2], bytes(row[3]), row[4], row[5])

    def put(self, request_id: str, command: str, topic: str, reply: bytes, payload_sha256: str) -> None:
        """Remember the first reply (an existing entry is kept: the first reply stays the first)."""
        self._db.execute(
            "INSERT OR IGNORE INTO requests (request_id, command, topic, reply, payload_sha256, seen_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (request_id, command, topic, reply, payload_sha256, time.time()),
        )
        self._writes += 1
        if self._writes % 100 == 0:
            self.prune()

    def prune(self) -> int:
        """Forget entries past the keep time, and the oldest beyond `max_entries`."""
        removed = self._db.execute("DELETE FROM requests WHERE seen_at < ?", (time.time() - self.keep_s,)).rowcount
        removed += self._db.execute(
            "DELETE FROM requests WHERE request_id IN "
            "(SELECT request_id FROM requests ORDER BY seen_at DESC LIMIT -1 OFFSET ?)",
            (self.max_entries,),
        ).rowcount
        if removed:
            log.info("request_log_pruned", removed=removed, keep_days=self.keep_s / DAY_S)
        return removed

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM requests").fetchone()[0])

    def close(self) -> None:
        self._db.close()
