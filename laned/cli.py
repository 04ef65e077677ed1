"""The `laned` command: run the daemon, check a config, run simulators, the demo, the benchmarks."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from laned.errors import ConfigError
from laned.logging import configure_logging

#: `laned simulate NAME` -> the simulator module (each offers add_arguments(parser) and run(args))
SIMULATORS = {
    "gas-analyzer": "simulators.gas_analyzer",
    "opacimeter": "simulators.opacimeter",
    "brake-tester": "simulators.brake_tester",
    "dynamometer": "simulators.dynamometer",
    "pda": "simulators.pda",
}


def _cmd_run(args: argparse.Namespace) -> int:
    from laned.config import load_config, require_standard_timings
    from laned.daemon import Lane
    from laned.systemd import run_lane

    try:
        config = load_config(args.config)
        require_standard_timings(config, simulation=args.simulation, source=str(args.config))
    except ConfigError as exc:
        print(f"laned: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_level or config.log_level, args.log_format or config.log_format)
    os.umask(0o077)  # whatever the shell's umask, what the daemon writes is its own (records hold VINs)

    async def main() -> None:
        lane = Lane(config, simulation=args.simulation)
        await run_lane(lane)  # SIGTERM/SIGINT stop it; systemd gets READY, STATUS, WATCHDOG, STOPPING

    asyncio.run(main())
    return 0


def _cmd_check_config(args: argparse.Namespace) -> int:
    from laned.config import load_config, require_standard_timings, shortened_problems

    try:
        config = load_config(args.config)
        require_standard_timings(config, simulation=args.simulation, source=str(args.config))
    except ConfigError as exc:
        print(f"laned: {exc}", file=sys.stderr)
        return 2
    devices = ", ".join(f"{name} ({dev.kind})" for name, dev in config.devices.items()) or "none"
    print(
        f"{args.config}: OK — station {config.lane.station}, lane {config.lane.lane}, "
        f"broker {config.mqtt.host}:{config.mqtt.port} (MQTT {config.mqtt.protocol}), devices: {devices}"
    )
    shortened = shortened_problems(config)
    if shortened:  # accepted because of --simulation: say what a production start would refuse
        print(f"{args.config}: simulation only — {len(shortened)} shortened setting(s):")
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


def _cmd_bench(args: argparse.Namespace) -> int:
    from laned.bench import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="laned", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def logging_options(p: argparse.ArgumentParser, default_level: str | None) -> None:
        p.add_argument("--log-level", default=default_level, choices=["debug", "info", "warning", "error"])
        p.add_argument(
            "--log-format", default=None if default_level is None else "auto", choices=["auto", "json", "console"]
        )

    simulation_help = (
        "a simulation (simulated devices: tests, demos, training): allows a time scale below 1 and procedure "
        "timings below the standard's; every result then says `simulation: true`"
    )
    p = sub.add_parser("run", help="run the lane daemon")
    p.add_argument("--config", "-c", required=True, type=Path, help="the lane's TOML config")
    p.add_argument("--simulation", action="store_true", help=simulation_help)
    logging_options(p, None)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("check-config", help="validate a config file; every problem with its key path")
    p.add_argument("config", type=Path)
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

        return schemas_main(argv[1:])
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
