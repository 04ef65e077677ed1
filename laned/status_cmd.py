"""`laned status`: the lane at a glance, once, from its retained `…/status`, for a person or a script.

Exit codes (for scripts and monitoring systems such as Nagios/Zabbix checks):

  0  every lane shown is online and every device is connected
  1  degraded: online, but a device is not connected, or the outbox is over its limit
  2  offline, no status on the broker, the broker unreachable, or a bad command line / config

With `--config`, the lane's local state is read too: how many messages wait in its outbox on this
PC (what a lane cut off from its broker still has to send).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiomqtt

from laned.errors import ConfigError
from laned.station_client import Target, UsageError, add_target_arguments, target_from_args

EXIT_OK, EXIT_DEGRADED, EXIT_OFFLINE = 0, 1, 2

EPILOG = """exit codes:
  0  online, every device connected
  1  degraded: online, but a device is not connected or the outbox is over its limit
  2  offline, no status on the broker, broker unreachable, or a bad command line/config"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON (the status documents and the verdict)")
    parser.add_argument("--wait", type=float, default=3.0, metavar="S",
                        help="how long to wait for the retained status (default 3 s)")


@dataclass(frozen=True)
class Assessment:
    """What a lane's status document means for its exit code, in words."""

    code: int
    summary: str


def assess(status: dict[str, Any] | None) -> Assessment:
    """0/1/2 and why, from one lane's status document (None: no status at all)."""
    if status is None:
        return Assessment(EXIT_OFFLINE, "no status on the broker (the lane never ran with this broker?)")
    if status.get("state") != "online":
        return Assessment(EXIT_OFFLINE, "offline")
    problems = [f"{name} {device.get('state')}" for name, device in sorted(status.get("devices", {}).items())
                if device.get("state") != "connected"]
    if (status.get("outbox") or {}).get("over_limit"):
        problems.append("outbox over its limit")
    if problems:
        return Assessment(EXIT_DEGRADED, "degraded: " + ", ".join(problems))
    return Assessment(EXIT_OK, "online")


async def read_statuses(target: Target, wait_s: float) -> dict[str, dict[str, Any]]:
    """The retained status of the target's lane (or of every lane of its station), by lane code.

    One lane: returns as soon as its status arrives. Every lane: collects what the broker holds,
    until no new one has come for a short while (retained messages follow the SUBACK at once)."""
    statuses: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + wait_s
    async with aiomqtt.Client(**target.client_kwargs("status")) as client:
        await client.subscribe(f"{target.root()}/status", qos=1)
        settle_s = 0.5
        messages = aiter(client.messages)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            timeout = remaining if target.lane or not statuses else min(remaining, settle_s)
            try:
                message = await asyncio.wait_for(anext(messages), timeout)
            except TimeoutError:
                break
            with contextlib.suppress(ValueError, TypeError):
                document = json.loads(bytes(message.payload))  # type: ignore[arg-type,unused-ignore]
                if isinstance(document, dict):
                    statuses[str(document.get("lane") or str(message.topic).split("/")[-2])] = document
            if target.lane and statuses:
                break
    return statuses


def local_outbox_depth(state_dir: Path | None) -> int | None:
    """Messages waiting in the lane's outbox on this PC; None without one (read only, never created)."""
    if state_dir is None or not (state_dir / "outbox.sqlite3").exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{state_dir / 'outbox.sqlite3'}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    except sqlite3.Error:
        return None


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def render(lane: str, status: dict[str, Any] | None, assessment: Assessment, out: TextIO) -> None:
    """One lane as a technician reads it: the verdict line, then a table of devices."""
    if status is None:
        print(f"lane {lane}: {assessment.summary}", file=out)
        return
    now = time.time()
    verdict, colon, detail = assessment.summary.partition(":")
    head = f"lane {status.get('station')}/{status.get('lane')}: {verdict.upper()}{colon}{detail}"
    if status.get("state") == "online":
        head += f" — laned {status.get('version')}, up {_age(now - float(status.get('started_at', now)))}"
    head += f", status {_age(now - float(status.get('lane_time', now)))} old"
    print(head, file=out)
    rows = [("DEVICE", "KIND", "STATE", "PORT", "LAST ERROR")]
    for name, device in sorted((status.get("devices") or {}).items()):
        rows.append((name, str(device.get("kind")), str(device.get("state")), str(device.get("port")),
                     str(device.get("last_error") or "-")))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4], file=out)
    inspection = status.get("inspection")
    if inspection:
        print(f"  inspection {inspection.get('inspection_no')} ({inspection.get('plate')}): "
              f"step {inspection.get('step') or '-'}, measured {', '.join(inspection.get('measured') or []) or '-'}",
              file=out)
    else:
        print("  no inspection in progress", file=out)
    outbox = status.get("outbox") or {}
    alarm = "  ALARM: over its limit" if outbox.get("over_limit") else ""
    print(f"  outbox: {outbox.get('depth')} pending{alarm}", file=out)
    checks = status.get("daily_checks")
    if checks:
        due = ", ".join(checks.get("due_today") or []) or "none"
        print(f"  daily checks due today: {due}{' (running)' if checks.get('running') else ''}", file=out)
        coast = checks.get("last_dyno_coast_down")
        if coast is not None or checks.get("dynamometer_ready"):
            ready = "ready" if checks.get("dynamometer_ready") else "NOT ready (loaded coast-down not passed today)"
            print(f"  dynamometer: {ready}", file=out)


async def status(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    try:
        target = target_from_args(args)
    except (ConfigError, UsageError) as exc:
        print(f"laned status: {exc}", file=err)
        return EXIT_OFFLINE
    local_depth = local_outbox_depth(target.state_dir)
    try:
        statuses = await read_statuses(target, args.wait)
    except aiomqtt.MqttError as exc:
        message = f"cannot reach the broker {target.host}:{target.port}: {exc}"
        if args.json:
            print(json.dumps({"exit_code": EXIT_OFFLINE, "error": message, "local_outbox_depth": local_depth}),
                  file=out)
        else:
            print(f"laned status: {message}", file=err)
            if local_depth is not None:
                print(f"local outbox: {local_depth} messages waiting in {target.state_dir}", file=err)
        return EXIT_OFFLINE
    if target.lane and target.lane not in statuses:
        statuses_shown: dict[str, dict[str, Any] | None] = {target.lane: None}
    elif not statuses:
        statuses_shown = {f"{target.station}/+": None}
    else:
        statuses_shown = dict(sorted(statuses.items()))
    assessments = {lane: assess(doc) for lane, doc in statuses_shown.items()}
    code = max(a.code for a in assessments.values())
    if args.json:
        lanes = {lane: {"exit_code": a.code, "summary": a.summary, "status": statuses_shown[lane]}
                 for lane, a in assessments.items()}
        print(json.dumps({"exit_code": code, "lanes": lanes, "local_outbox_depth": local_depth},
                         ensure_ascii=False, indent=2), file=out)
    else:
        for lane, assessment in assessments.items():
            render(lane, statuses_shown[lane], assessment, out)
        if local_depth is not None:
            print(f"local outbox ({target.state_dir}): {local_depth} pending", file=out)
    return code
