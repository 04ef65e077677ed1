"""Child processes of `laned bench`: the simulators of one lane, and the embedded broker.

    python -m laned.bench.hosts sims --ready FILE [--gas LINK [--spin-before-due-s S]] [--opac LINK]
                                     [--brake-tcp HOST:PORT] [--brake-link PATH] [--brake-control PATH]
                                     [--dyno-tcp HOST:PORT]
    python -m laned.bench.hosts broker --port PORT --ready FILE

`sims` runs the project's simulators through their own class API (the same ones
`laned simulate` runs, with `--fast` timings) in one event loop, so that a lane's
devices cost one process, not three. Once every device serves it writes FILE:
for each device the monotonic time of its origin and its tick, so the bench can
tell when the measurement behind a SEQ or a SAMPLE_INDEX was made (CLOCK_MONOTONIC
is shared by every process of the machine); plus the brake tester's TCP port and
the analyzer's reply delay. It serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

from laned.logging import configure_logging

#: the manuals' internal update periods: what one count of SEQ / SAMPLE_INDEX stands for
GAS_TICK_S = 0.1
OPACIMETER_TICK_S = 0.05
DYNO_TICK_S = 0.1  # the CD-1's ring: 10 Hz from power-up
INDEX_MODULUS = 65536


def _origin(sim: Any, attribute: str) -> float:
    """A simulator's time origin (its power-up on the monotonic clock). The simulators keep it as a
    private attribute; the bench reads it rather than widen their public API for a benchmark."""
    value = getattr(sim, attribute, None)
    if not isinstance(value, float):
        raise RuntimeError(f"{type(sim).__name__} has no {attribute}: the bench cannot time its measurements")
    return value


def _write_ready(path: Path, info: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(path)


async def _serve_sims(args: argparse.Namespace) -> None:
    from simulators.brake_tester import BrakeTesterSimulator, parse_host_port
    from simulators.gas_analyzer import GasAnalyzerSimulator, load_analyzer_config
    from simulators.opacimeter import OpacimeterSimulator, load_meter_settings

    info: dict[str, Any] = {"pid": os.getpid()}
    async with contextlib.AsyncExitStack() as stack:
        if args.gas:
            config = load_analyzer_config(fast=True)
            gas = GasAnalyzerSimulator(args.gas, config=config, vehicle=args.gas_vehicle)
            gas.spin_before_due_s = args.spin_before_due_s
            await stack.enter_async_context(gas)
            info["gas_analyzer"] = {"t0": _origin(gas, "_t0"), "tick_s": GAS_TICK_S, "modulus": INDEX_MODULUS,
                                    "link": args.gas, "reply_delay_s": config.reply_delay_s, "baud": 9600}
        if args.opac:
            settings = load_meter_settings(fast=True)
            opac = await stack.enter_async_context(OpacimeterSimulator(args.opac, settings=settings,
                                                                       vehicle=args.opac_vehicle))
            info["opacimeter"] = {"t0": _origin(opac, "_model_t0"), "tick_s": OPACIMETER_TICK_S,
                                  "modulus": INDEX_MODULUS, "link": args.opac}
        if args.brake_tcp or args.brake_link:
            brake = BrakeTesterSimulator(
                args.brake_vehicle, tcp=parse_host_port(args.brake_tcp) if args.brake_tcp else None,
                link=args.brake_link, control=args.brake_control, fast=True, script=False,
            )
            await stack.enter_async_context(brake)
            rate_hz = brake.model.settings.sample_rate_set_hz
            info["brake_tester"] = {"t0": _origin(brake, "_t0"), "tick_s": 1.0 / rate_hz, "modulus": INDEX_MODULUS,
                                    "tcp_port": brake.tcp_port, "link": args.brake_link,
                                    "control": args.brake_control, "sample_rate_hz": rate_hz}
        if args.dyno_tcp:
            from simulators.dynamometer import DynamometerSimulator

            # the rollers empty and still: the ring runs at 10 Hz all the same
            dyno = await stack.enter_async_context(DynamometerSimulator(
                "asm-car", tcp=parse_host_port(args.dyno_tcp), fast=True, drive_on=False))
            info["dynamometer"] = {"t0": _origin(dyno, "_t0"), "tick_s": DYNO_TICK_S, "modulus": INDEX_MODULUS,
                                   "tcp_port": dyno.tcp_port}
        _write_ready(Path(args.ready), info)
        await _until_terminated()


async def _serve_broker(args: argparse.Namespace) -> None:
    from laned.broker import EmbeddedBroker

    async with EmbeddedBroker(args.port):
        _write_ready(Path(args.ready), {"pid": os.getpid(), "port": args.port})
        await _until_terminated()


async def _until_terminated() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m laned.bench.hosts", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sims = sub.add_parser("sims", help="the simulators of one lane")
    sims.add_argument("--ready", required=True)
    sims.add_argument("--gas", help="gas analyzer pty link")
    sims.add_argument("--gas-vehicle", default="gasoline-car")
    sims.add_argument("--spin-before-due-s", type=float, default=0.0,
                      help="precise reply pacing of the gas analyzer (see PacedSerialServer.spin_before_due_s)")
    sims.add_argument("--opac", help="opacimeter pty link")
    sims.add_argument("--opac-vehicle", default="diesel-truck")
    sims.add_argument("--brake-tcp", help="brake tester Modbus TCP HOST:PORT")
    sims.add_argument("--brake-link", help="brake tester Modbus RTU pty link (paced as 19200 8E1)")
    sims.add_argument("--brake-control", help="brake tester control socket")
    sims.add_argument("--brake-vehicle", default="gasoline-car")
    sims.add_argument("--dyno-tcp", help="chassis dynamometer Modbus TCP HOST:PORT")
    broker = sub.add_parser("broker", help="the embedded MQTT broker")
    broker.add_argument("--port", type=int, required=True)
    broker.add_argument("--ready", required=True)
    args = parser.parse_args(argv)
    configure_logging("warning", "json")
    asyncio.run(_serve_sims(args) if args.what == "sims" else _serve_broker(args))


if __name__ == "__main__":
    main()
