"""The outbox keeps every QoS-1 message on disk, in order, until the broker acknowledges it."""

from __future__ import annotations

from pathlib import Path

import pytest

from laned.outbox import Outbox, OutboxFull


def test_messages_come_back_oldest_first_byte_for_byte(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.put("a/result/safety", b'{"result_id":"r1"}', kind="result")
    box.put("a/event", "事件".encode(), kind="event")
    pending = box.peek()
    assert [(p.topic, p.payload, p.kind) for p in pending] == [
        ("a/result/safety", b'{"result_id":"r1"}', "result"),
        ("a/event", "事件".encode(), "event"),
    ]
    assert box.depth == 2


def test_a_message_is_gone_only_after_remove(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    first = box.put("t", b"1", kind="result")
    box.put("t", b"2", kind="result")
    box.remove(first)
    assert [p.payload for p in box.peek()] == [b"2"]
    assert box.depth == 1


def test_pending_messages_survive_a_restart(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.put("t", b"kept", kind="result")
    box.close()  # as after a crash: nothing was removed
    again = Outbox(tmp_path / "o.db")
    assert again.depth == 1
    assert again.peek()[0].payload == b"kept"


def test_a_full_outbox_refuses_events_but_never_results(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_messages=2)
    box.put("t", b"1", kind="event")
    box.put("t", b"2", kind="event")
    with pytest.raises(OutboxFull):
        box.put("t", b"3", kind="event")
    box.put("t", b"result", kind="result")
    assert box.depth == 3
    assert box.stats()["over_limit"] is True


def test_stats_report_depth_and_oldest_age(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    assert box.stats()["depth"] == 0 and box.stats()["oldest_age_s"] is None
    box.put("t", b"1", kind="event")
    stats = box.stats()
    assert stats["depth"] == 1 and stats["oldest_age_s"] is not None and stats["oldest_age_s"] >= 0
