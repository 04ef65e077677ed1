"""`laned demo`: the whole lane on one laptop, as the station software would see it.

It starts an embedded MQTT broker (or uses `--broker HOST:PORT`), the device
simulators as separate processes (gas analyzer and opacimeter on ptys, the
brake tester on Modbus TCP), a simulated driver who follows the lane's
prompts, and the lane daemon. Then it plays the station: the analyzer's daily
checks, a gasoline car (brakes + two-speed idle) and a diesel truck (brakes +
free acceleration), each with the PDA's one exterior capture, and shows the
progress and then the two results of each inspection side by side. It exits 0
when every inspection ended with both results, non-zero if any step failed.

`--vehicles all` (or naming asm-pass / lug-pass) adds the loaded tests: the
dynamometer simulator on Modbus TCP (a CD-1L for ASM, restarted as a CD-1H for
lug-down), coupled (`--tailpipe`) to the
analyzer and the opacimeter, and a GA-5N as the lane's analyzer (it reads NOx
for lug-down and does all a GA-5 does); the dynamometer's loaded coast-down
runs before them, with the rollers empty, then an ASM car and a lug-down truck
(emissions only: they have no brake table), with shortened ASM phases.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiomqtt

from laned.broker import EmbeddedBroker, free_port
from laned.config import LaneConfig, parse_config
from laned.daemon import Lane
from laned.demo_view import Screen
from laned.logging import configure_logging
from simulators.control import send_control
from simulators.driver import SimulatedDriver
from simulators.pda import PdaSimulator
from simulators.vehicle import load_vehicle_file

INSPECTIONS = [
    ("gasoline-car", {"emissions": "two_speed_idle"}),
    ("diesel-truck", {"emissions": "free_acceleration"}),
]
#: the loaded tests `--vehicles` may add: the vehicle file and its method on the dynamometer
LOADED_INSPECTIONS = [
    ("asm-pass", {"emissions": "asm"}),
    ("lug-pass", {"emissions": "lug_down"}),
]
DEFAULT_VEHICLES = "gasoline-car,diesel-truck"
LOADED_METHODS = ("asm", "lug_down")
#: the build each loaded test runs on: ASM on the light CD-1L (910 kg: the force stays in its 5 %
#: tolerance while the driver holds the speed), lug-down on the CD-1H (lug-pass gives 155 kW at the
#: wheels, over the CD-1L's 150 kW). The demo restarts its one simulated dynamometer as the other
#: build when the next loaded test needs it; the lane's driver reconnects.
DYNO_MODEL = {"asm": "CD-1L", "lug_down": "CD-1H"}
#: the verdict vehicles' header comments work their verdicts against limit set a (GB 18285 / GB 3847)
LOADED_LIMIT_SET = "a"
#: the demo's ASM phases (a simulation): 3 s to stabilise, 8 s phases; the standard's are 5 and 90
DEMO_ASM = {"stabilise_s": 3, "response_s": 2, "fast_window_s": 3, "phase_s": 8, "result_window_s": 3,
            "moving_average_s": 3, "max_phase_s": 40}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", metavar="HOST:PORT", help="use this broker instead of the embedded one")
    parser.add_argument("--no-ui", action="store_true", help="plain log lines instead of the terminal view")
    parser.add_argument("--keep", action="store_true", help="keep the demo's temporary folder (logs, state)")
    parser.add_argument("--time-scale", type=float, default=0.1,
                        help="procedure durations × this (default 0.1: a demo takes about a minute)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="give up after this many seconds (default 300; 600 with the loaded tests)")
    parser.add_argument("--vehicles", default=DEFAULT_VEHICLES,
                        help="which inspections, in order: gasoline-car, diesel-truck, asm-pass (ASM), lug-pass "
                        f"(lug-down), or all (default {DEFAULT_VEHICLES}: about a minute; all: about three)")


def chosen_inspections(vehicles: str) -> list[tuple[str, dict[str, str]]]:
    """The inspections `--vehicles` names (ValueError naming an unknown one)."""
    known = dict(INSPECTIONS + LOADED_INSPECTIONS)
    names = list(known) if vehicles.strip() == "all" else [n.strip() for n in vehicles.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"--vehicles {vehicles!r}: unknown {', '.join(unknown) or '(none given)'}; "
                         f"use {', '.join(known)} or all")
    return [(n, known[n]) for n in names]


def uses_dynamometer(inspections: list[tuple[str, dict[str, str]]]) -> bool:
    return any(items["emissions"] in LOADED_METHODS for _, items in inspections)


class SimProcess:
    """One simulator as a child process: `laned simulate DEVICE ...`."""

    def __init__(self, device: str, args: list[str], log_path: Path) -> None:
        self.device = device
        self.args = args
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "laned.cli", "simulate", self.device, "--log-format", "json", *self.args,
                stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL,
            )

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def wait_for_path(path: Path, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not appear at {path} within {timeout_s:g} s")
        await asyncio.sleep(0.05)


def demo_config(workdir: Path, host: str, port: int, brake_port: int, time_scale: float,
                dyno_port: int | None = None) -> LaneConfig:
    """The demo lane; with `dyno_port`, its dynamometer on Modbus TCP and the demo's short ASM phases."""
    reconnect = {"reconnect_initial_s": 0.2, "reconnect_max_s": 2.0}
    devices: dict[str, Any] = {
        "gas-analyzer": {"kind": "gas_analyzer",
                         "transport": {"type": "serial", "port": str(workdir / "gas-analyzer")}, **reconnect},
        "opacimeter": {"kind": "opacimeter",
                       "transport": {"type": "serial", "port": str(workdir / "opacimeter")}, **reconnect},
        "brake-tester": {"kind": "brake_tester",
                         "transport": {"type": "tcp", "host": "127.0.0.1", "port": brake_port}, **reconnect},
    }
    inspection: dict[str, Any] = {"time_scale": time_scale, "capture_timeout_s": 120}
    if dyno_port is not None:
        devices["dynamometer"] = {"kind": "dynamometer",
                                  "transport": {"type": "tcp", "host": "127.0.0.1", "port": dyno_port}, **reconnect}
        inspection["asm"] = DEMO_ASM
    return parse_config(
        {
            "lane": {"station": "370100", "lane": "L1", "state_dir": str(workdir / "state"),
                     "signing_key": "demo-lane-key"},
            "mqtt": {"host": host, "port": port},
            "inspection": inspection,
            "devices": devices,
        },
        "demo",
        environ={},
    )


def start_document(vehicle_name: str, inspection_no: str, emissions: str) -> dict[str, Any]:
    """The station's `start` for a simulated vehicle: every brake axle, the parking brake, the method."""
    data = load_vehicle_file(vehicle_name)
    v = data["vehicle"]
    axles = data.get("brake", {}).get("axles", [])  # a loaded-test vehicle may come for emissions only
    return {
        "schema": "lane-cmd-start/1",
        "request_id": uuid.uuid4().hex[:12],
        "inspection_no": inspection_no,
        "station_time": time.strftime("%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(time.time() + 8 * 3600)),
        "vehicle": {
            **{k: v[k] for k in ("plate", "plate_type", "vin", "vehicle_class", "fuel", "curb_mass_kg",
                                 "total_mass_kg", "new_registration", "rated_engine_speed_rpm")},
            **({"rated_engine_power_kw": v["rated_engine_power_kw"]} if "rated_engine_power_kw" in v else {}),
            "registration_date": str(v["registration_date"]),
            "has_obd": "obd" in data.get("capture", {}),
        },
        "axles": [{"position": a.get("position", "front" if i == 0 else "rear"),
                   "parking_brake": bool(a.get("parking"))} for i, a in enumerate(axles)]
        or [{"position": "front", "parking_brake": False}, {"position": "rear", "parking_brake": True}],
        "items": {
            "brake_axles": list(range(1, len(axles) + 1)),
            "parking_brake": any(a.get("parking") for a in axles),
            "emissions": emissions,
            "exterior": True,
        },
        **({"limit_overrides": {"emissions": {emissions: {"limit_set": LOADED_LIMIT_SET}}}}
           if emissions in LOADED_METHODS else {}),
    }


class Station:
    """The demo's station software: sends commands and waits for what comes back."""

    def __init__(self, client: aiomqtt.Client, root: str, screen: Screen) -> None:
        self.client = client
        self.root = root
        self.screen = screen
        self.inbox: list[tuple[str, dict[str, Any]]] = []
        self.arrived = asyncio.Event()

    async def listen(self) -> None:
        async for message in self.client.messages:
            topic = str(message.topic)
            try:
                document = json.loads(bytes(message.payload))
            except ValueError:
                continue
            self.screen.show(topic, document)
            self.inbox.append((topic, document))
            self.arrived.set()

    async def wait(self, predicate: Any, timeout_s: float, what: str, *, since: int = 0) -> dict[str, Any]:
        """The first message from the `since`-th one on that `predicate(topic, document)` accepts."""
        deadline = time.monotonic() + timeout_s
        seen = since
        while True:
            for topic, document in self.inbox[seen:]:
                if predicate(topic, document):
                    return document
            seen = len(self.inbox)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {timeout_s:g} s")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), 1.0)

    async def command(self, name: str, document: dict[str, Any], timeout_s: float = 30) -> dict[str, Any]:
        request_id = document["request_id"]
        await self.client.publish(f"{self.root}/cmd/{name}", json.dumps(document, ensure_ascii=False), qos=1)
        reply = await self.wait(lambda t, _d: t == f"{self.root}/reply/{request_id}", timeout_s, f"reply to {name}")
        if not reply["accepted"]:
            raise RuntimeError(f"{name} refused: {'; '.join(reply['reasons'])}")
        return reply


async def _daily_checks(station: Station, checks: list[str] | None, timeout_s: float) -> dict[str, Any]:
    """One daily-check command (the analyzer's three when `checks` is None); its closing event."""
    document: dict[str, Any] = {"schema": "lane-cmd-daily-check/1", "request_id": uuid.uuid4().hex[:12]}
    if checks is not None:
        document["checks"] = checks
    start = len(station.inbox)
    await station.command("daily-check", document)
    return await station.wait(lambda t, d: t.endswith("/event") and d.get("type") == "step_finished"
                              and d.get("step") == "daily_check", timeout_s, "end of the daily checks", since=start)


async def _dyno_stopped(workdir: Path, timeout_s: float = 30.0) -> None:
    """Until the simulated rollers stand (a vehicle may drive off or on only then)."""
    deadline = time.monotonic() + timeout_s
    while (await send_control(workdir / "dynamometer.ctl", {"get": "state"})).get("speed_kmh", 0.0) >= 0.5:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the dynamometer's rollers still turn after {timeout_s:g} s")
        await asyncio.sleep(0.3)


class Dynamometer:
    """The demo's simulated dynamometer: one process, restarted as the build the next test needs."""

    def __init__(self, workdir: Path, port: int, model: str) -> None:
        self.workdir, self.port, self.model = workdir, port, model
        self.process = self._process(model)

    def _process(self, model: str) -> SimProcess:
        w = self.workdir
        return SimProcess("dynamometer", [
            "--tcp", f"127.0.0.1:{self.port}", "--fast", "--model", model, "--vehicle", "asm-pass",
            "--control", str(w / "dynamometer.ctl"),
            "--tailpipe", f"{w / 'gas-analyzer.ctl'},{w / 'opacimeter.ctl'}"], w / f"sim-dynamometer-{model}.log")

    async def become(self, model: str, station: Station, timeout_s: float) -> None:
        """Restart as `model` (if it is another build) and wait until the lane has it connected again."""
        if model == self.model:
            return
        station.screen.banner(f"the dynamometer is now a {model}")
        await self.process.stop()
        (self.workdir / "dynamometer.ctl").unlink(missing_ok=True)
        self.process, self.model = self._process(model), model
        await self.process.start()
        await wait_for_path(self.workdir / "dynamometer.ctl", 20, "the dynamometer simulator")
        since = len(station.inbox)
        await station.wait(lambda t, d: t.endswith("/status") and (d.get("devices", {}).get("dynamometer") or {})
                           .get("state") == "connected", timeout_s, "the dynamometer connected again", since=since)


async def _onto_the_dynamometer(workdir: Path, vehicle: str, items: dict[str, str]) -> None:
    """The next loaded-test vehicle: its exhaust in the analyzer (and smoke in the opacimeter), and
    the vehicle itself on the rollers."""
    await send_control(workdir / "gas-analyzer.ctl", {"do": "vehicle", "name": vehicle})
    if items["emissions"] == "lug_down":
        await send_control(workdir / "opacimeter.ctl", {"do": "vehicle", "name": vehicle})
    await _dyno_stopped(workdir)
    dyno = workdir / "dynamometer.ctl"
    await send_control(dyno, {"do": "drive_off"})
    await send_control(dyno, {"do": "load_vehicle", "vehicle": vehicle})
    await send_control(dyno, {"do": "drive_on"})


async def _play_station(station: Station, host: str, port: int, workdir: Path, timeout_s: float,
                        inspections: list[tuple[str, dict[str, str]]] | None = None,
                        dynamometer: Dynamometer | None = None) -> list[str]:
    """The station's side of the demo; returns the problems seen (empty: all went well)."""
    problems: list[str] = []
    root = station.root
    inspections = INSPECTIONS if inspections is None else inspections
    station.screen.banner("daily checks of the gas analyzer: leak check, zero, HC residue")
    await _daily_checks(station, None, timeout_s)
    dyno_checked = False
    for number, (vehicle, items) in enumerate(inspections, start=1):
        inspection_no = f"3701002026{time.strftime('%m%d')}{number:04d}"
        if items["emissions"] in LOADED_METHODS:
            if not dyno_checked:  # the rollers empty: the dynamometer's loaded coast-down gates ASM and lug-down
                station.screen.banner("daily check of the dynamometer: loaded coast-down (rollers empty)")
                await _dyno_stopped(workdir)
                await send_control(workdir / "dynamometer.ctl", {"do": "drive_off"})
                end = await _daily_checks(station, ["dyno_coast_down"], timeout_s)
                result = (end.get("data", {}).get("results") or {}).get("dyno_coast_down") or {}
                if not result.get("passed"):
                    problems.append(f"the dynamometer's loaded coast-down did not pass: {end.get('text')}")
                    break
                dyno_checked = True
            if dynamometer is not None:
                await _dyno_stopped(workdir)
                await dynamometer.become(DYNO_MODEL[items["emissions"]], station, timeout_s)
                await send_control(workdir / "dynamometer.ctl", {"do": "drive_off"})
            await _onto_the_dynamometer(workdir, vehicle, items)
        else:
            await send_control(workdir / "brake-tester.ctl", {"do": "load_vehicle", "vehicle": vehicle})
        station.screen.banner(f"inspection {inspection_no}: {vehicle}")
        await station.command("start", start_document(vehicle, inspection_no, items["emissions"]))
        pda = PdaSimulator(vehicle, host=host, port=port, base=f"{root}/pda")
        acks = await pda.capture(inspection_no)
        if not acks or not acks[-1].complete:
            problems.append(f"{inspection_no}: the PDA capture was not completed: {acks}")
        results = {}
        for kind in ("safety", "emissions"):
            results[kind] = await station.wait(
                lambda t, d, k=kind, n=inspection_no: t == f"{root}/result/{k}" and d.get("inspection_no") == n,
                timeout_s, f"{kind} result of {inspection_no}")
        station.screen.results(results["safety"], results["emissions"])
        for kind, result in results.items():
            if result["verdict"] != "pass":
                problems.append(f"{inspection_no} {kind}: verdict {result['verdict']} "
                                f"({result.get('aborted') or result.get('not_completed')})")
    return problems


async def _demo(args: argparse.Namespace, workdir: Path) -> int:
    broker: EmbeddedBroker | None = None
    if args.broker:
        host, _, port_text = args.broker.rpartition(":")
        host, port = host or "127.0.0.1", int(port_text)
    else:
        broker = EmbeddedBroker(free_port())
        await broker.start()
        host, port = broker.host, broker.port
    brake_port = free_port()
    inspections = chosen_inspections(getattr(args, "vehicles", DEFAULT_VEHICLES))
    loaded = uses_dynamometer(inspections)
    dyno_port = free_port() if loaded else None
    if args.timeout is None:
        args.timeout = 600.0 if loaded else 300.0
    screen = Screen(plain=args.no_ui)
    screen.banner(f"laned demo — broker {host}:{port}, files in {workdir}")
    analyzer_model = ["--model", "GA-5N"] if loaded else []  # lug-down reads NOx: a GA-5N does all a GA-5 does
    sims = [
        SimProcess("gas-analyzer", ["--link", str(workdir / "gas-analyzer"), "--fast", "--vehicle", "gasoline-car",
                                    *analyzer_model, "--control", str(workdir / "gas-analyzer.ctl")],
                   workdir / "sim-gas-analyzer.log"),
        SimProcess("opacimeter", ["--link", str(workdir / "opacimeter"), "--fast", "--vehicle", "diesel-truck",
                                  "--control", str(workdir / "opacimeter.ctl")], workdir / "sim-opacimeter.log"),
        SimProcess("brake-tester", ["--tcp", f"127.0.0.1:{brake_port}", "--fast", "--no-script",
                                    "--vehicle", "gasoline-car", "--control", str(workdir / "brake-tester.ctl")],
                   workdir / "sim-brake-tester.log"),
    ]
    dynamometer: Dynamometer | None = None
    if dyno_port is not None:  # built as the first loaded test needs it
        first = next(items["emissions"] for _, items in inspections if items["emissions"] in LOADED_METHODS)
        dynamometer = Dynamometer(workdir, dyno_port, DYNO_MODEL[first])
    lane = Lane(demo_config(workdir, host, port, brake_port, args.time_scale, dyno_port), startup_grace_s=20.0,
                status_interval_s=5.0, simulation=True)  # simulated devices: its results say so
    controls = {s.device: workdir / f"{s.device}.ctl" for s in sims}
    if dynamometer is not None:
        controls["dynamometer"] = workdir / "dynamometer.ctl"
    driver = SimulatedDriver(controls)
    tasks: list[asyncio.Task[Any]] = []
    problems: list[str] = []
    try:
        for sim in sims:
            await sim.start()
        if dynamometer is not None:
            await dynamometer.process.start()
        for sim in sims + ([dynamometer.process] if dynamometer is not None else []):
            await wait_for_path(workdir / f"{sim.device}.ctl", 20, f"the {sim.device} simulator")
        if dyno_port is not None:  # the rollers stay empty (no tailpipe coupling) until a loaded test
            await send_control(workdir / "dynamometer.ctl", {"do": "drive_off"})
        async with aiomqtt.Client(host, port, identifier=f"demo-station-{os.getpid()}") as client:
            await client.subscribe(f"{lane.topics.root}/#", qos=1)
            station = Station(client, lane.topics.root, screen)
            tasks.append(asyncio.create_task(station.listen()))
            tasks.append(asyncio.create_task(lane.run()))
            tasks.append(asyncio.create_task(driver.run(host, port, lane.topics.root)))
            await station.wait(lambda t, d: t.endswith("/status") and d.get("state") == "online", 30, "lane online")
            try:
                problems = await asyncio.wait_for(
                    _play_station(station, host, port, workdir, args.timeout, inspections, dynamometer), args.timeout)
            except (TimeoutError, RuntimeError) as exc:
                problems.append(str(exc) or "timed out")
            lane.request_stop()
            await asyncio.wait_for(tasks[1], 20)
            await asyncio.sleep(0.3)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for sim in sims:
            await sim.stop()
        if dynamometer is not None:
            await dynamometer.process.stop()
        if broker is not None:
            await broker.stop()
    screen.summary(problems)
    return 0 if not problems else 1


def run_demo(args: argparse.Namespace) -> int:
    configure_logging("info" if args.no_ui else "error", "console")
    try:
        chosen_inspections(getattr(args, "vehicles", DEFAULT_VEHICLES))
    except ValueError as exc:
        print(f"laned demo: {exc}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="laned-demo-"))
    try:
        return asyncio.run(_demo(args, workdir))
    except KeyboardInterrupt:
        return 130
    finally:
        if args.keep:
            print(f"demo files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
