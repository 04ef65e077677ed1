"""Simulated RB-2 roller brake tester: a real Modbus slave over TCP and over RTU on a pty.

    laned simulate brake-tester --tcp 127.0.0.1:5020 --vehicle gasoline-car --fast
    laned simulate brake-tester --link /tmp/lane1/brake --control /tmp/lane1/brake.ctl

Both links may be given at once: one tester, two ports. On the wire it is
pymodbus's own server (simulators/brake/modbus.py) over the map of
spec/devices/brake-tester.md; behind it the tester and the vehicle on its
rollers (simulators/brake/physics.py), sampled into the curve ring at
SAMPLE_RATE samples per real second from power-up. A scripted driver drives
the axles on and off and brakes a few seconds after RUNNING (service brake on
the first run of an axle, the parking brake on the second run of a parking
axle); control actions do the same on demand.

Control socket (`--control PATH`, JSON lines, see simulators/control.py):

    {"fault": "silence"}                  no replies          {"fault": "crc_error"}   bad CRC (RTU)
    {"fault": "exception", "code": 6}     every request answered with that exception code
    {"fault": "frozen_index"}             the firmware hangs: SAMPLE_INDEX and values stop
    {"fault": "fault_code", "code": 1}    FAULT = 1, FAULT_CODE 1, motors stopped
    {"fault": "lost_link", "for_s": 3}    TCP: connections dropped and refused; RTU: pty removed
    {"clear": "silence"} / {"clear": null}
    {"do": "drive_on", "axle": 2}  {"do": "drive_off"}  {"do": "brake"}  {"do": "park_brake"}
    {"do": "release"}  {"do": "script", "brake": "auto|service|parking|none", "auto": true}
    {"do": "load_vehicle", "vehicle": "diesel-truck"}
    {"get": "state"}   {"get": "samples", "since": SEQ}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import structlog
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from protocols.brake_tester import FaultCode
from simulators.brake.config import TesterConfig, load_brake_vehicle, load_tester_config
from simulators.brake.modbus import TesterDatastore, TesterImage, build_device
from simulators.brake.physics import ProducedSample, TesterModel
from simulators.brake.rtu_line import PacedRtuBridge
from simulators.control import ControlServer
from simulators.line import LineTiming
from simulators.modbus_faults import ModbusFaults

log = structlog.get_logger("simulators.brake")



def parse_host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--tcp {text!r}: give HOST:PORT, e.g. 127.0.0.1:5020")
    return host or "127.0.0.1", int(port)


class BrakeTesterSimulator(ModbusFaults):
    """One simulated tester. Start it in the running event loop (`async with` or start()/close())."""

    device = "brake_tester"
    fault_log = log
    fault_codes = FaultCode

    def __init__(
        self,
        vehicle: str | Path | None = "gasoline-car",
        *,
        tcp: tuple[str, int] | None = None,
        link: str | Path | None = None,
        control: str | Path | None = None,
        fast: bool = False,
        unit_id: int | None = None,
        config: TesterConfig | str | Path | None = None,
        seed: int | None = None,
        script: bool | None = None,
    ) -> None:
        if tcp is None and link is None:
            raise ValueError("give the tester a link: tcp=(host, port) and/or link=PATH")
        cfg = config if isinstance(config, TesterConfig) else load_tester_config(config, fast=fast)
        if isinstance(config, TesterConfig) and fast:
            cfg = cfg.fast_applied()
        self.config = cfg
        self.unit_id = unit_id if unit_id is not None else cfg.tester.unit_id
        if script is not None:
            cfg.script.auto = script
        self.model = TesterModel(
            cfg.tester, cfg.script, load_brake_vehicle(vehicle) if vehicle else None,
            rng=random.Random(seed if seed is not None else cfg.tester.seed),
        )
        self.tcp_address = tcp
        self.link = Path(link) if link is not None else None
        self.control_path = Path(control) if control is not None else None
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
        self._ticker: asyncio.Task[None] | None = None
        self._link_down = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._image = TesterImage(self)

    # ----- life --------------------------------------------------------------------------

    def _started(self) -> None:
        self._ticker = asyncio.create_task(self._tick(), name="brake-tester-sim")
        log.info(
            "sim_brake_started", device="brake_tester", tcp_port=self.tcp_port,
            link=str(self.link) if self.link else None, unit_id=self.unit_id,
            vehicle=self.model.vehicle.name if self.model.vehicle else None,
        )

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task
        await self._serve_down()

    def _server_parts(self, unit_id: int, own_unit_only: int | None) -> tuple[Any, Any]:
        device = build_device(self.model, unit_id, self._image.action)
        return device, TesterDatastore(build_device(self.model, unit_id, self._image.action), self,
                                       own_unit_only=own_unit_only)

    # ----- the clock and the faults ------------------------------------------------------

    def forced_exception(self) -> int | None:
        self.requests += 1
        return int(self.fault_params("exception").get("code", 4)) if self.fault_active("exception") else None

    # ----- what tests and the control socket use ------------------------------------------

    def produced_samples(self, since_seq: int = 0) -> list[ProducedSample]:
        """Every sample produced from power-up sample `since_seq` on (as far as the log reaches)."""
        self.sync()
        return [s for s in self.model.log if s.seq >= since_seq]

    def state(self) -> dict[str, Any]:
        self.sync()
        return {
            **self.model.describe(),
            "faults": sorted(self.faults),
            "tcp_port": self.tcp_port,
            "link": str(self.link) if self.link else None,
            "unit_id": self.unit_id,
        }

    def do(self, action: str, **params: Any) -> Any:
        """A device action: drive_on, drive_off, brake, park_brake, release, script, load_vehicle."""
        self.sync()
        model = self.model
        if action == "drive_on":
            model.drive_on(int(params.get("axle", model.next_axle + 1)))
        elif action == "drive_off":
            model.drive_off()
        elif action in ("brake", "park_brake", "release"):
            model.press({"brake": "service", "park_brake": "parking", "release": None}[action])
        elif action == "script":
            if "brake" in params:
                if params["brake"] not in ("auto", "service", "parking", "none"):
                    raise ValueError("script brake: auto, service, parking or none")
                model.brake_mode = params["brake"]
            if "auto" in params:
                model.script.auto = bool(params["auto"])
        elif action == "load_vehicle":
            model.load_vehicle(load_brake_vehicle(params["vehicle"]))
        else:
            raise ValueError(
                f"unknown action {action!r}: drive_on, drive_off, brake, park_brake, release, script, load_vehicle"
            )
        log.info("sim_action", device="brake_tester", action=action, **params)
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
        if request.get("get") == "samples":
            return [asdict(s) for s in self.produced_samples(int(request.get("since", 0)))]
        raise ValueError("a control request has one of: fault, clear, do, get (state|samples)")


# ----- CLI contract --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tcp", metavar="HOST:PORT", help="serve Modbus TCP here (port 0: any free port)")
    parser.add_argument("--link", metavar="PATH", help="serve Modbus RTU on a pty linked at PATH, paced as 19200 8E1 "
                        "(open it with parity N: a pty cannot carry a parity bit)")
    parser.add_argument("--vehicle", default="gasoline-car", help="vehicle name in config/vehicles/ or a file path")
    parser.add_argument("--control", metavar="PATH", help="control socket for faults and actions")
    parser.add_argument("--fast", action="store_true", help="short scripted timings for tests and demos")
    parser.add_argument("--unit-id", type=int, default=None, help="RTU unit id (default from the config: 1)")
    parser.add_argument("--config", metavar="PATH", default=None, help="tester settings (default: "
                        "config/simulators/brake-tester.toml)")
    parser.add_argument("--seed", type=int, default=None, help="noise seed (repeatable runs)")
    parser.add_argument("--no-script", action="store_true",
                        help="no scripted driver: axles and pedal only by control actions")


async def run(args: argparse.Namespace) -> None:
    """Serve until cancelled."""
    if not args.tcp and not args.link:
        raise SystemExit("brake-tester: give --tcp HOST:PORT and/or --link PATH")
    sim = BrakeTesterSimulator(
        args.vehicle,
        tcp=parse_host_port(args.tcp) if args.tcp else None,
        link=args.link,
        control=args.control,
        fast=args.fast,
        unit_id=args.unit_id,
        config=args.config,
        seed=args.seed,
        script=False if args.no_script else None,
    )
    async with sim:
        await asyncio.Event().wait()


if __name__ == "__main__":  # python -m simulators.brake_tester --tcp 127.0.0.1:5020
    cli = argparse.ArgumentParser(prog="brake-tester-sim", description=__doc__.split("\n")[0])
    add_arguments(cli)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(cli.parse_args()))
