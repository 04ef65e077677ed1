"""Logs as data: every line an event with fields, JSON under systemd, colour on a terminal."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Literal

import structlog

LogFormat = Literal["auto", "json", "console"]


def _under_systemd() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))


def configure_logging(level: str = "info", fmt: LogFormat = "auto", stream: Any = None) -> None:
    """Set up structlog once for the process.

    `auto` picks JSON when stdout is not a terminal or the process runs under
    systemd (the journal keeps one JSON object a line), and a readable console
    renderer otherwise.
    """
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "json" if (_under_systemd() or not stream.isatty()) else "console"
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        # JSON for the journal and log shippers: UTC with its "Z", an instant anyone can compare; the
        # console: the lane PC's local time, as a technician at the lane reads the clock
        structlog.processors.TimeStamper(fmt="iso", utc=fmt == "json"),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # libraries that use stdlib logging (amqtt, pymodbus, paho) go through the same stream, quietly
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=stream, format="%(name)s %(levelname)s %(message)s")
    for noisy in ("amqtt", "transitions", "pymodbus", "passlib"):
        logging.getLogger(noisy).setLevel(logging.ERROR if numeric > logging.DEBUG else logging.INFO)
