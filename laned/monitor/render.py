"""The monitor's texts, as pure functions of a lane's model (tested without a screen)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from laned.monitor.model import LaneModel, live_values


def headline(lane: LaneModel, station: str) -> str:
    status = lane.status or {}
    if not status:
        return f"lane {station}/{lane.lane}: no status yet"
    state = str(status.get("state", "?")).upper()
    age = max(0, int(time.time() - float(status.get("lane_time") or time.time())))
    return f"lane {station}/{lane.lane}: {state}   laned {status.get('version')}   status {age} s old"


def devices(lane: LaneModel) -> str:
    """One block per device: its state, last error, and its newest live values with their units."""
    lines: list[str] = []
    for name, device in sorted(((lane.status or {}).get("devices") or {}).items()):
        lines.append(f"{name} ({device.get('kind')}, {device.get('port')}): {device.get('state')}")
        if device.get("last_error"):
            lines.append(f"  last error: {device['last_error']}")
        live = lane.live.get(name)
        if live:
            values = [f"{label} {value}{' ' + unit if unit else ''}" for label, value, unit in live_values(live)]
            lines.append("  " + " · ".join(values))
    return "\n".join(lines) or "no devices"


def inspection(lane: LaneModel) -> str:
    current: dict[str, Any] = (lane.status or {}).get("inspection") or {}
    if not current:
        text = "no inspection in progress"
    else:
        text = (f"inspection {current.get('inspection_no')} ({current.get('plate')}): step {current.get('step') or '-'}"
                f"; measured {', '.join(current.get('measured') or []) or '-'}")
    return text


def outbox_and_checks(lane: LaneModel, today: dt.date | None = None) -> str:
    status = lane.status or {}
    outbox = status.get("outbox") or {}
    text = f"outbox {outbox.get('depth', '-')} pending"
    if outbox.get("over_limit"):
        text += "  ALARM: outbox over its limit"
    checks = status.get("daily_checks")
    if checks:
        today = today or dt.date.today()
        done = []
        for key, label in (("last_leak_check", "leak check"), ("last_zero", "zero"), ("last_hc_residue", "HC residue"),
                           ("last_dyno_coast_down", "dyno coast-down"), ("last_dyno_parasitic", "dyno parasitic")):
            last = checks.get(key) or {}
            at = _local(last.get("at"))
            if at is not None and at.date() == today:
                done.append(f"{label} {'passed' if last.get('passed') else 'FAILED'} {at:%H:%M}")
        due = ", ".join(checks.get("due_today") or []) or "none"
        running = " (running)" if checks.get("running") else ""
        text += f"\ndaily checks today: {'; '.join(done) or 'none yet'}; due: {due}{running}"
    return text


def _local(iso: str | None) -> dt.datetime | None:
    if not iso:
        return None
    try:
        return dt.datetime.fromisoformat(iso).astimezone()
    except ValueError:
        return None
