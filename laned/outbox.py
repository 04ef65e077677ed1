"""The durable outbox: every QoS-1 message is on disk before it is published.

A message is written to SQLite (WAL mode, `synchronous=FULL`, so a power cut
after `put()` returns cannot lose it) and deleted only after the broker's
PUBACK. After a broker outage, a SIGKILL or a power cut the daemon publishes
what is pending, oldest first, byte for byte as first written, so every
message keeps its id and consumers can drop repeats.

The outbox is bounded (`max_messages`): when full, `put()` still stores
results (they are never dropped) but the outbox reports itself `over_limit`,
which `…/status` shows as an alarm; low-value kinds (events) are refused with
`OutboxFull` instead.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from laned.private_files import open_private, private_dir, tighten

log = structlog.get_logger("laned.outbox")

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    topic      TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    qos        INTEGER NOT NULL,
    retain     INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    created_at REAL    NOT NULL
);
"""

#: kinds that are never refused, whatever the outbox holds
NEVER_DROP = frozenset({"result", "reply", "ack"})


class OutboxFull(Exception):
    """The outbox holds `max_messages` and this message's kind may be refused."""


@dataclass(frozen=True)
class Pending:
    seq: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    kind: str
    created_at: float


class Outbox:
    def __init__(self, path: str | Path, *, max_messages: int = 100_000) -> None:
        self.path = Path(path)
        private_dir(self.path.parent)
        self.max_messages = max_messages
        # made 0600 before SQLite opens it: SQLite gives its -wal and -shm files the database's mode
        os.close(open_private(self.path, os.O_RDWR | os.O_CREAT))
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        for name in (self.path.name, self.path.name + "-wal", self.path.name + "-shm"):
            tighten(self.path.with_name(name))  # files an older lane left readable by others
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._depth: int = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]  # sqlite3 rows are Any
        if self._depth:
            log.info("outbox_pending_at_start", depth=self._depth, path=str(self.path))

    def put(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, kind: str = "event") -> int:
        if self._depth >= self.max_messages and kind not in NEVER_DROP:
            raise OutboxFull(f"outbox holds {self._depth} messages (limit {self.max_messages}); {kind} refused")
        cursor = self._db.execute(
            "INSERT INTO outbox (topic, payload, qos, retain, kind, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (topic, payload, qos, int(retain), kind, time.time()),
        )
        self._depth += 1
        if self._depth == self.max_messages:
            log.error("outbox_over_limit", depth=self._depth, max_messages=self.max_messages, path=str(self.path),
                      hint="the broker has not acknowledged messages for a long time: is it reachable?")
        seq = cursor.lastrowid
        assert seq is not None
        return seq

    def peek(self, limit: int = 100, after_seq: int = 0) -> list[Pending]:
        rows = self._db.execute(
            "SELECT seq, topic, payload, qos, retain, kind, created_at FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
        return [Pending(r[0], r[1], bytes(r[2]), r[3], bool(r[4]), r[5], r[6]) for r in rows]

    def remove(self, seq: int) -> None:
        deleted = self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,)).rowcount
        self._depth -= deleted

    def remove_many(self, seqs: list[int]) -> None:
        """Remove several messages in one transaction: one disk sync for a whole window of PUBACKs
        instead of one each (docs/performance.md)."""
        if not seqs:
            return
        placeholders = ",".join("?" * len(seqs))
        deleted = self._db.execute(f"DELETE FROM outbox WHERE seq IN ({placeholders})", seqs).rowcount
        self._depth -= deleted

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def over_limit(self) -> bool:
        return self._depth >= self.max_messages

    def oldest_age_s(self) -> float | None:
        row = self._db.execute("SELECT MIN(created_at) FROM outbox").fetchone()
        return None if row[0] is None else max(0.0, time.time() - row[0])

    def stats(self) -> dict[str, object]:
        age = self.oldest_age_s()
        return {
            "depth": self._depth,
            "oldest_age_s": None if age is None else round(age, 1),
            "max_messages": self.max_messages,
            "over_limit": self.over_limit,
        }

    def close(self) -> None:
        self._db.close()
