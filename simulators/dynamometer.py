"""Simulated CD-1 chassis dynamometer: a real Modbus slave over TCP and over RTU on a pty.

    laned simulate dynamometer --tcp 127.0.0.1:5021 --vehicle asm-car --fast
    laned simulate dynamometer --link /tmp/lane1/dyno --control /tmp/lane1/dyno.ctl --model CD-1H \\
        --vehicle lug-truck --tailpipe /tmp/lane1/opa.ctl,/tmp/lane1/ga.ctl

On the wire it is pymodbus's own server (simulators/dyno/modbus.py over the
brake tester's datastore) following spec/devices/dynamometer.md; behind it the
machine and the vehicle on its rollers (simulators/dyno/physics.py),
integrated at 100 Hz and sampled into the ring at 10 Hz from power-up. Over
RTU the line is the brake tester's paced pty bridge (19200 8E1 timing).

Tailpipe coupling (`--tailpipe SOCKET[,SOCKET…]`): while a vehicle is on the
rollers, each socket (a gas analyzer's or opacimeter's control socket) gets
`{"do": "engine_state", "rpm": …, "load": …, "power_kw": …, "speed_kmh": …}` at
10 Hz; a socket that is not there is retried quietly every few seconds.

Control socket (`--control PATH`, JSON lines, see simulators/control.py):

    {"fault": "silence"}  {"fault": "crc_error"}  {"fault": "exception", "code": 4}
    {"fault": "frozen_index"}  {"fault": "fault_code", "code": 1}  {"fault": "lost_link", "for_s": 3}
    {"clear": "silence"} / {"clear": null}
    {"do": "drive_on"}  {"do": "drive_off"}  {"do": "hold_speed", "speed_kmh": 25}  {"do": "full_throttle"}
    {"do": "release"}  {"do": "excursion", "delta_kmh": 3, "for_s": 2}  {"do": "stall"}  {"do": "start_engine"}
    {"do": "brake", "for_s": 1}  {"do": "load_vehicle", "vehicle": "lug-truck"}
    {"get": "state"}  {"get": "engine"}  {"get": "samples", "since": SEQ}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import structlog
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from protocols.dynamometer import FaultCode
from simulators.brake.modbus import TesterDatastore
from simulators.brake.rtu_line import PacedRtuBridge
from simulators.brake_tester import parse_host_port
from simulators.control import ControlServer
from simulators.dyno.config import DynoConfig, load_dyno_config, load_dyno_vehicle
from simulators.dyno.modbus import DynoImage, build_device, map_check
from simulators.dyno.physics import DynoModel, ProducedSample
from simulators.line import LineTiming
from simulators.modbus_faults import ModbusFaults

log = structlog.get_logger("simulators.dynamometer")

TAILPIPE_PERIOD_S = 0.1
TAILPIPE_RETRY_S = 3.0


class DynamometerSimulator(ModbusFaults):
    """One simulated CD-1. Start it in the running event loop (`async with` or start()/close())."""

    device = "dynamometer"
    fault_log = log
    fault_codes = FaultCode

    def __init__(
        self,
        vehicle: str | Path | None = "asm-car",
        *,
        tcp: tuple[str, int] | None = None,
        link: str | Path | None = None,
        control: str | Path | None = None,
        fast: bool = False,
        unit_id: int | None = None,
        config: DynoConfig | str | Path | None = None,
        model: str | None = None,
        tailpipe: list[str] | None = None,
        seed: int | None = None,
        drive_on: bool | None = None,
    ) -> None:
        if tcp is None and link is None:
            raise ValueError("give the dynamometer a link: tcp=(host, port) and/or link=PATH")
        cfg = config if isinstance(config, DynoConfig) else load_dyno_config(config, fast=fast)
        if isinstance(config, DynoConfig) and fast:
            cfg = cfg.fast_applied()
        if model is not None:
            cfg = cfg.model_copy(update={"dyno": cfg.dyno.model_copy(update={"model": model})})
        self.config = cfg
        self.unit_id = unit_id if unit_id is not None else cfg.dyno.unit_id
        self.model = DynoModel(cfg.dyno, load_dyno_vehicle(vehicle) if vehicle else None,
                               rng=random.Random(seed if seed is not None else cfg.dyno.seed))
        if self.model.vehicle is not None and (drive_on if drive_on is not None else cfg.script.drive_on_at_start):
            self.model.drive_on()
        self.tcp_address = tcp
        self.link = Path(link) if link is not None else None
        self.control_path = Path(control) if control is not None else None
        self.tailpipe = [Path(p) for p in tailpipe or []]
        self.timing = LineTiming(cfg.line.baudrate, 11 if cfg.line.parity != "N" else 10)
        self.faults: dict[str, tuple[float, dict[str, Any]]] = {}
        self.tcp_port: int | None = None
        self.requests = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0 = 0.0
        self._frozen_since: float | None = None
        self._frozen_total = 0.0
        self._tcp_server: ModbusTcpServer | None = None
        self._rtu_server: ModbusSerialServer | None = None
        self._bridge: PacedRtuBridge | None = None
        self._control: ControlServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._link_down = False
        self._image = DynoImage(self)

    # ----- life --------------------------------------------------------------------------------

    def _started(self) -> None:
        self._spawn(self._tick(), "dyno-sim")
        if self.tailpipe:
            self._spawn(self._tailpipe_loop(), "dyno-tailpipe")
        log.info("sim_dyno_started", device="dynamometer", model=self.config.dyno.model, tcp_port=self.tcp_port,
                 link=str(self.link) if self.link else None, unit_id=self.unit_id,
                 vehicle=self.model.vehicle.name if self.model.vehicle else None)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._serve_down()

    def _server_parts(self, unit_id: int, own_unit_only: int | None) -> tuple[Any, Any]:
        device = build_device(self.model, unit_id, self._image.action)
        return device, TesterDatastore(build_device(self.model, unit_id, self._image.action), self,
                                       own_unit_only=own_unit_only, map_check=map_check)

    # ----- tailpipe coupling ----------------------------------------------------------------------------

    async def _tailpipe_loop(self) -> None:
        writers: dict[Path, asyncio.StreamWriter | None] = dict.fromkeys(self.tailpipe)
        retry_at: dict[Path, float] = dict.fromkeys(self.tailpipe, 0.0)
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        try:
            while True:
                self.sync()
                line = (json.dumps({"do": "engine_state", **self.model.engine_state()}) + "\n").encode()
                for path in self.tailpipe:
                    if not self.model.in_position:
                        break
                    writer = writers[path]
                    if writer is None:
                        if loop.time() < retry_at[path]:
                            continue
                        try:
                            reader, writer = await asyncio.open_unix_connection(str(path))
                        except OSError:
                            retry_at[path] = loop.time() + TAILPIPE_RETRY_S
                            continue
                        writers[path] = writer
                        self._spawn(self._drain(reader), f"dyno-tailpipe-{path.name}")
                    try:
                        writer.write(line)
                        await writer.drain()
                    except (OSError, RuntimeError):
                        writer.close()
                        writers[path] = None
                        retry_at[path] = loop.time() + TAILPIPE_RETRY_S
                # on a 10 Hz grid, as the engine state is sent on the manual's tick: the work of a
                # turn does not stretch the period (a turn that came far too late starts a new grid)
                next_at = max(next_at + TAILPIPE_PERIOD_S, loop.time() - TAILPIPE_PERIOD_S)
                await asyncio.sleep(max(0.0, next_at - loop.time()))
        finally:
            for writer in writers.values():
                if writer is not None:
                    writer.close()

    @staticmethod
    async def _drain(reader: asyncio.StreamReader) -> None:
        """Read (and drop) the answers, so the other simulator never blocks on a full socket."""
        with contextlib.suppress(OSError):
            while await reader.readline():
                pass

    # ----- the clock and the faults --------------------------------------------------------------------

    def forced_exception(self) -> int | None:
        """Called for every request to this unit (after sync): feeds the host watchdog when the
        device answers, and gives the injected exception code, if any."""
        self.requests += 1
        if not self.fault_active("silence"):
            self.model.note_request()
        return int(self.fault_params("exception").get("code", 4)) if self.fault_active("exception") else None

    # ----- what tests and the control socket use ---------------------------------------------------------

    def produced_samples(self, since_seq: int = 0) -> list[ProducedSample]:
        """Every ring sample produced from power-up sample `since_seq` on (as far as the log reaches)."""
        self.sync()
        return [s for s in self.model.log if s.seq >= since_seq]

    def state(self) -> dict[str, Any]:
        self.sync()
        return {**self.model.describe(), "faults": sorted(self.faults), "tcp_port": self.tcp_port,
                "link": str(self.link) if self.link else None, "unit_id": self.unit_id}

    def do(self, action: str, **params: Any) -> Any:
        """A driver's or the scenario's action (see the module docstring)."""
        self.sync()
        model, driver = self.model, self.model.driver
        t = model.t
        if action == "load_vehicle":
            model.load_vehicle(load_dyno_vehicle(params["vehicle"]))
        elif action == "drive_on":
            model.drive_on()
        elif action == "drive_off":
            model.drive_off()
        elif driver is None:
            raise ValueError(f"{action}: no vehicle loaded")
        elif action == "hold_speed":
            driver.mode, driver.target_kmh = "hold", float(params["speed_kmh"])
        elif action == "full_throttle":
            driver.mode = "full"
        elif action == "release":
            driver.mode = "release"
        elif action == "excursion":
            driver.excursion_kmh = float(params.get("delta_kmh", 3.0))
            driver.excursion_until = t + float(params.get("for_s", 2.0))
        elif action == "stall":
            driver.engine_on, driver.mode = False, "idle"
        elif action == "start_engine":
            driver.engine_on = True
        elif action == "brake":
            driver.brake_until = t + float(params.get("for_s", 1.0))
        else:
            raise ValueError(f"unknown action {action!r}: drive_on, drive_off, hold_speed, full_throttle, release, "
                             "excursion, stall, start_engine, brake, load_vehicle")
        log.info("sim_action", device="dynamometer", action=action, **params)
        return model.describe()

    def control(self, request: dict[str, Any]) -> Any:
        """The ControlServer handler (see the module docstring)."""
        if "fault" in request:
            params = {k: v for k, v in request.items() if k not in ("fault", "for_s")}
            self.inject(str(request["fault"]), request.get("for_s"), **params)
            return {"faults": sorted(self.faults)}
        if "clear" in request:
            self.clear(request["clear"])
            return {"faults": sorted(self.faults)}
        if "do" in request:
            return self.do(str(request["do"]), **{k: v for k, v in request.items() if k != "do"})
        if request.get("get") == "state":
            return self.state()
        if request.get("get") == "engine":
            self.sync()
            return self.model.engine_state()
        if request.get("get") == "samples":
            return [asdict(s) for s in self.produced_samples(int(request.get("since", 0)))]
        raise ValueError("a control request has one of: fault, clear, do, get (state|engine|samples)")


# ----- CLI contract ----------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tcp", metavar="HOST:PORT", help="serve Modbus TCP here (port 0: any free port)")
    parser.add_argument("--link", metavar="PATH", help="serve Modbus RTU on a pty linked at PATH, paced as 19200 8E1 "
                        "(open it with parity N: a pty cannot carry a parity bit)")
    parser.add_argument("--vehicle", default="asm-car", help="vehicle name in config/vehicles/ or a file path")
    parser.add_argument("--model", choices=("CD-1L", "CD-1H"), default=None, help="the build (default from config)")
    parser.add_argument("--control", metavar="PATH", help="control socket for faults and actions")
    parser.add_argument("--tailpipe", metavar="SOCKET[,SOCKET...]", default="",
                        help="control sockets of the gas analyzer / opacimeter simulators to send engine_state to")
    parser.add_argument("--fast", action="store_true", help="short lift/motor timings for tests and demos")
    parser.add_argument("--unit-id", type=int, default=None, help="RTU unit id (default from the config: 1)")
    parser.add_argument("--config", metavar="PATH", default=None,
                        help="settings (default: config/simulators/dynamometer.toml)")
    parser.add_argument("--seed", type=int, default=None, help="noise seed (repeatable runs)")


async def run(args: argparse.Namespace) -> None:
    """Serve until cancelled."""
    if not args.tcp and not args.link:
        raise SystemExit("dynamometer: give --tcp HOST:PORT and/or --link PATH")
    sim = DynamometerSimulator(
        args.vehicle, tcp=parse_host_port(args.tcp) if args.tcp else None, link=args.link, control=args.control,
        fast=args.fast, unit_id=args.unit_id, config=args.config, model=args.model,
        tailpipe=[p for p in args.tailpipe.split(",") if p], seed=args.seed,
    )
    async with sim:
        await asyncio.Event().wait()


if __name__ == "__main__":  # python -m simulators.dynamometer --tcp 127.0.0.1:5021
    cli = argparse.ArgumentParser(prog="dynamometer-sim", description=__doc__.split("\n")[0])
    add_arguments(cli)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(cli.parse_args()))
