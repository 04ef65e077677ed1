"""The request log keeps each request_id's first reply for the keep time, on disk, and no longer."""

from __future__ import annotations

import time
from pathlib import Path

from laned.requests import RequestLog


def test_the_first_reply_is_kept_across_a_reopen_and_a_second_put_does_not_replace_it(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "requests.sqlite3")
    log.put("req-1", "start", "laned/v1/S/L/reply/req-1", b'{"accepted":true}', "aa" * 32)
    log.put("req-1", "start", "laned/v1/S/L/reply/req-1", b'{"accepted":false}', "bb" * 32)
    log.close()
    reopened = RequestLog(tmp_path / "requests.sqlite3")
    first = reopened.get("req-1")
    assert first is not None
    assert (first.command, first.topic, first.reply, first.payload_sha256) == (
        "start", "laned/v1/S/L/reply/req-1", b'{"accepted":true}', "aa" * 32)
    assert reopened.get("req-2") is None


def test_entries_past_the_keep_time_are_forgotten(tmp_path: Path) -> None:
    keep_days = 0.2 / 86_400  # 0.2 s
    log = RequestLog(tmp_path / "requests.sqlite3", keep_days=keep_days)
    log.put("old", "abort", "t", b"{}", "")
    assert log.get("old") is not None
    time.sleep(0.3)
    assert log.get("old") is None  # past the keep time: a new command, whatever is still on disk
    assert log.prune() == 1 and len(log) == 0


def test_the_log_holds_at_most_max_entries_the_newest_kept(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "requests.sqlite3", max_entries=3)
    for n in range(5):
        log.put(f"r{n}", "start", "t", b"{}", "")
        time.sleep(0.01)
    log.prune()
    assert len(log) == 3
    assert [log.get(f"r{n}") is not None for n in range(5)] == [False, False, True, True, True]
