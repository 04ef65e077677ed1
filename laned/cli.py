"""The `laned` command: run the daemon, check a config, run simulators, the demo, the benchmarks."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

from laned.errors import ConfigError, LaneBusy, LaneCrashed
from laned.logging import configure_logging

#: `laned run`'s exit status when a task of the daemon crashed (EX_SOFTWARE, sysexits.h); 2: a bad config
EXIT_CRASHED = 70
#: `laned run` / `laned daily-check`: another process already runs this lane (docs/operations.md)
EXIT_LANE_BUSY = 3

#: `laned simulate NAME` -> the simulator module (each offers add_arguments(parser) and run(args))
SIMULATORS = {
    "gas-analyzer": "simulators.gas_analyzer",
    "opacimeter": "simulators.opacimeter",
    "brake-tester": "simulators.brake_tester",
    "dynamometer": "simulators.dynamometer",
    "pda": "simulators.pda",
    "driver": "laned.sim_driver",  # the person in the vehicle, following the lane's prompts
    "lane": "laned.sim_lane",  # every simulator a lane config names, and the driver
}

#: the modules pyproject's extras bring (the daemon never imports them), and the extra each
#: command installs them with: a command whose import fails says which extra to install
EXTRA_MODULES = frozenset({"amqtt", "textual", "textual_plotext", "textual_serve", "rich"})
COMMAND_EXTRA = {"demo": "demo", "simulate": "demo", "bench": "bench", "monitor": "monitor"}


def _cmd_run(args: argparse.Namespace) -> int:
    from laned.config import load_config, require_standard_timings
    from laned.daemon import Lane
    from laned.lane_lock import LaneLock
    from laned.systemd import run_lane

    try:
        config = load_config(args.config)
        require_standard_timings(config, simulation=args.simulation, source=str(args.config))
    except ConfigError as exc:
        print(f"laned: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_level or config.log_level, args.log_format or config.log_format)
    os.umask(0o077)  # whatever the shell's umask, what the daemon writes is its own (records hold VINs)
    try:  # before the outbox, the ports and the broker: a second daemon on this lane must touch none of them
        lock = LaneLock.for_config(config, role="run").acquire()
    except LaneBusy as exc:
        print(f"laned: {exc}", file=sys.stderr)
        return EXIT_LANE_BUSY
    except ConfigError as exc:
        print(f"laned: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        lane = Lane(config, simulation=args.simulation)
        await run_lane(lane)  # SIGTERM/SIGINT stop it; systemd gets READY, STATUS, WATCHDOG, STOPPING

    try:
        asyncio.run(main())
    except LaneCrashed as exc:  # logged as task_crashed with its traceback; the lane stopped in order
        print(f"laned: {exc}", file=sys.stderr)
        return EXIT_CRASHED
    finally:
        lock.release()
    return 0


def _cmd_check_config(args: argparse.Namespace) -> int:
    from laned.check_config import port_problems
    from laned.config import load_config, require_standard_timings, shortened_problems

    path = args.config_option or args.config
    if path is None:
        print("laned check-config: which file? laned check-config --config FILE", file=sys.stderr)
        return 2
    try:
        config = load_config(path)
        require_standard_timings(config, simulation=args.simulation, source=str(path))
    except ConfigError as exc:
        print(f"laned: {exc}", file=sys.stderr)
        return 2
    errors, warnings = port_problems(config)
    if errors:
        print(f"laned: {path}: {len(errors)} problem(s)", file=sys.stderr)
        for line in errors + warnings:
            print(f"  - {line}", file=sys.stderr)
        return 2
    devices = ", ".join(f"{name} ({dev.kind})" for name, dev in config.devices.items()) or "none"
    verdict = "OK" if not warnings else "valid, with warnings"
    print(
        f"{path}: {verdict} — station {config.lane.station}, lane {config.lane.lane}, "
        f"broker {', '.join(f'{h}:{p}' for h, p in config.mqtt.brokers)} (MQTT {config.mqtt.protocol}), "
        f"devices: {devices}"
    )
    for line in warnings:
        print(f"  warning: {line}")
    shortened = shortened_problems(config)
    if shortened:  # accepted because of --simulation: say what a production start would refuse
        print(f"{path}: simulation only — {len(shortened)} shortened setting(s):")
        for line in shortened:
            print(f"  - {line}")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from laned.config import json_schema

    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_format)
    module = importlib.import_module(SIMULATORS[args.device])
    try:
        asyncio.run(module.run(args))
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # a busy TCP port, a link path that cannot be made: one line, not a traceback
        print(f"laned simulate {args.device}: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from laned.demo import run_demo

    return run_demo(args)


def _cmd_daily_check(args: argparse.Namespace) -> int:
    from laned import daily_checks

    configure_logging(args.log_level, args.log_format)
    try:
        return asyncio.run(daily_checks.run(args))
    except KeyboardInterrupt:
        return 130


def _cmd_status(args: argparse.Namespace) -> int:
    from laned.status_cmd import status

    return asyncio.run(status(args))


def _cmd_monitor(args: argparse.Namespace) -> int:
    from laned.monitor import run_monitor

    return run_monitor(args)


def _cmd_bench(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("amqtt") is None:  # its broker runs in a child process: say it here, in one line
        raise ModuleNotFoundError("No module named 'amqtt'", name="amqtt")
    from laned.bench import run_bench

    return run_bench(args)


EXIT_CODES = """exit codes (every command):
  0    done, or (status) online with every device connected
  1    a command's own failure: status degraded, a daily check failed, a simulator could not start
  2    bad command line or config (a restart cannot fix it), or (status) offline / unreachable
  3    the lane is another process's (run), or the daily checks could not run (daily-check)
  70   a task of the daemon crashed (run)
  130  stopped with Ctrl-C
`laned COMMAND --help` says what each code means for that command."""


def build_parser() -> argparse.ArgumentParser:
    from laned import __version__
    from laned.status_cmd import EPILOG as STATUS_EXIT_CODES

    parser = argparse.ArgumentParser(prog="laned", description=__doc__, epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"laned {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def logging_options(p: argparse.ArgumentParser, default_level: str | None) -> None:
        shown = default_level or "the config's lane.log_level"
        p.add_argument("--log-level", default=default_level, choices=["debug", "info", "warning", "error"],
                       help=f"the least important log events shown (default: {shown})")
        p.add_argument(
            "--log-format", default=None if default_level is None else "auto", choices=["auto", "json", "console"],
            help="json (one object a line, UTC times: the journal), console (colours, local time), auto: json "
            "when not on a terminal or under systemd",
        )

    simulation_help = (
        "a simulation (simulated devices: tests, demos, training): allows a time scale below 1 and procedure "
        "timings below the standard's; every result then says `simulation: true`"
    )
    p = sub.add_parser("run", help="run the lane daemon", epilog="exit codes: 0 stopped cleanly (SIGTERM, Ctrl-C), "
                       "2 configuration error (systemd does not restart it: fix the file, check-config), "
                       f"{EXIT_LANE_BUSY} another process already runs this lane, {EXIT_CRASHED} a task of the "
                       "daemon crashed (systemd restarts it)")
    p.add_argument("--config", "-c", required=True, type=Path, help="the lane's TOML config")
    p.add_argument("--simulation", action="store_true", help=simulation_help)
    logging_options(p, None)
    p.set_defaults(func=_cmd_run)

    from laned.check_config import EXIT_CODES as CHECK_CONFIG_EXIT_CODES

    p = sub.add_parser("check-config", help="validate a config file; every problem with its key path",
                       epilog=CHECK_CONFIG_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "-c", dest="config_option", type=Path, help="the lane's TOML config")
    p.add_argument("config", type=Path, nargs="?", help=argparse.SUPPRESS)  # the older positional form
    p.add_argument("--simulation", action="store_true",
                   help="check it as `laned run --simulation` would (shortened timings listed, not refused)")
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser("config-schema", help="print the config's JSON Schema")
    p.set_defaults(func=_cmd_schema)

    p = sub.add_parser(
        "daily-check", help="the gas analyzer's daily checks (leak check, zero, HC residue) without the daemon"
    )
    from laned.daily_checks import add_arguments as daily_check_arguments

    daily_check_arguments(p)
    logging_options(p, "warning")
    p.set_defaults(func=_cmd_daily_check)

    # parsed by protocols.schemas itself (see main()); listed here for `laned --help`
    sub.add_parser("schemas", help="the MQTT messages' JSON Schemas: --write DIR, --check DIR or --print NAME")

    p = sub.add_parser("simulate", help="run a simulated device")
    sims = p.add_subparsers(dest="device", required=True, metavar="DEVICE")
    for name, module_name in SIMULATORS.items():
        sp = sims.add_parser(name, help=f"simulated {name}")
        logging_options(sp, "info")
        try:
            module: Any = importlib.import_module(module_name)
        except ImportError:
            continue
        module.add_arguments(sp)
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("demo", help="the whole lane on simulators with an embedded broker")
    from laned.demo import add_arguments as demo_arguments

    demo_arguments(p)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "status", help="the lane's status once, as a table or JSON; exit 0 online, 1 degraded, 2 offline",
        epilog=STATUS_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from laned.status_cmd import add_arguments as status_arguments

    status_arguments(p)
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("monitor", help="watch a lane (or every lane of a station) live, in a terminal or a browser")
    from laned.monitor.options import add_arguments as monitor_arguments

    monitor_arguments(p)
    p.set_defaults(func=_cmd_monitor)

    p = sub.add_parser("bench", help="measure the lane: serial efficiency, latency, CPU, memory")
    try:
        from laned.bench import add_arguments as bench_arguments

        bench_arguments(p)
    except ImportError:
        pass
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["schemas"]:
        from protocols.schemas import main as schemas_main

        return schemas_main(argv[1:], prog="laned schemas")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ModuleNotFoundError as exc:
        extra = COMMAND_EXTRA.get(args.command)
        if extra is None or (exc.name or "").partition(".")[0] not in EXTRA_MODULES:
            raise
        command = " ".join(["laned", args.command, *([args.device] if args.command == "simulate" else [])])
        print(f"{command} needs the {extra} extra: pip install 'laned[{extra}]' ({exc.name} is missing)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
