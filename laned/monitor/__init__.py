"""`laned monitor`: the technician's live view of a lane (Textual; in a browser with `--web`)."""

from __future__ import annotations

import argparse
import shlex
import sys

from laned.errors import ConfigError
from laned.station_client import UsageError, target_from_args


def run_monitor(args: argparse.Namespace) -> int:
    try:
        target = target_from_args(args)
    except (ConfigError, UsageError) as exc:
        print(f"laned monitor: {exc}", file=sys.stderr)
        return 2
    if args.web:
        from laned.monitor.app import serve

        port = args.web.rpartition(":")[2]
        if not port.isdigit():
            print(f"laned monitor: --web {args.web}: expected HOST:PORT, e.g. 0.0.0.0:8080", file=sys.stderr)
            return 2
        argv = [sys.executable, "-m", "laned.cli", "monitor"]
        for flag in ("config", "broker", "station", "lane"):
            value = getattr(args, flag)
            if value is not None:
                argv += [f"--{flag}", str(value)]
        argv += ["--topic-prefix", args.topic_prefix]
        serve(shlex.join(argv), args.web, f"laned monitor — station {target.station}")
        return 0
    from laned.monitor.app import MonitorApp

    MonitorApp(target).run()
    return 0
