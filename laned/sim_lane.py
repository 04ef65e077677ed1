"""`laned simulate lane --config FILE`: a whole simulated lane for a developer, from the lane's config.

Every enabled device the config names gets its simulator, where the config says the lane will find
it (a pty link at a serial port's path, Modbus TCP at host:port), each as a child process logging to
`{control_dir}/{device}.log`, with its control socket at `{control_dir}/{device}.ctl`. Beside them
runs the simulated driver, who follows the lane's prompts on `…/event`; and, when nothing listens at
the config's broker address on this machine, an embedded broker there. Then, in a second terminal,
`laned run --config FILE` runs the lane against them. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from laned.config import BrakeTesterConfig, DeviceConfig, LaneConfig, load_config, shortened_problems
from laned.errors import ConfigError

if TYPE_CHECKING:
    from laned.demo import SimProcess

#: device kind -> `laned simulate NAME`
SIMULATOR_OF = {"gas_analyzer": "gas-analyzer", "opacimeter": "opacimeter", "brake_tester": "brake-tester",
                "dynamometer": "dynamometer"}
DEFAULT_VEHICLE = {"gas-analyzer": "gasoline-car", "opacimeter": "diesel-truck", "brake-tester": "gasoline-car",
                   "dynamometer": "asm-pass"}
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}

#: the longest one step of stopping may take (the driver, the broker; each simulator has its own 5 s)
STOP_STEP_S = 5.0


def default_control_dir(config: LaneConfig) -> Path:
    """Where `simulate lane` puts control sockets and logs (and `simulate driver` finds them)."""
    return Path(tempfile.gettempdir()) / f"laned-sim-{config.lane.station}-{config.lane.lane}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", type=Path, required=True, help="the lane's TOML config")
    parser.add_argument("--control-dir", type=Path, help="control sockets and logs (default: a folder in /tmp)")
    parser.add_argument("--vehicle", help="the vehicle every simulator starts with (default: gasoline-car; "
                        "diesel-truck for the opacimeter)")
    parser.add_argument("--real-timings", action="store_true", help="the devices' real warm-up and zero times")
    parser.add_argument("--no-broker", action="store_true", help="never start an embedded broker")
    parser.add_argument("--no-driver", action="store_true", help="no simulated driver (follow prompts by hand)")


def simulator_args(device: DeviceConfig, control: Path, vehicle: str, fast: bool,
                   tailpipe: list[Path] | None = None) -> tuple[str, list[str]]:
    """`laned simulate KIND ARGS` for one configured device, at the port the lane will open; a
    dynamometer (CD-1H: lug-down trucks too) sends its engine state to the `tailpipe` sockets."""
    kind = SIMULATOR_OF[device.kind]
    transport = device.transport
    where = (["--tcp", f"{transport.host}:{transport.port}"] if transport.type == "tcp"
             else ["--link", transport.port])
    extra = ["--no-script"] if isinstance(device, BrakeTesterConfig) else []
    if device.kind == "dynamometer":
        extra = ["--model", "CD-1H", *(["--tailpipe", ",".join(map(str, tailpipe))] if tailpipe else [])]
    return kind, [*where, "--vehicle", vehicle, "--control", str(control), *extra, *(["--fast"] if fast else [])]


def _on_rollers(vehicle: str) -> bool:
    """Whether the vehicle file has a [dynamometer] table (the dynamometer simulator needs one)."""
    from simulators.vehicle import load_vehicle_file

    with contextlib.suppress(Exception):
        return "dynamometer" in load_vehicle_file(vehicle)
    return False


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
        return True
    return False


async def run(args: argparse.Namespace) -> None:
    from laned.broker import EmbeddedBroker
    from laned.demo import SimProcess
    from simulators.driver import SimulatedDriver

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise SystemExit(f"laned simulate lane: {exc}") from None
    control_dir = args.control_dir or default_control_dir(config)
    control_dir.mkdir(parents=True, exist_ok=True)
    processes: list[tuple[str, SimProcess]] = []
    controls: dict[str, Path] = {}
    broker: EmbeddedBroker | None = None
    driver_task: asyncio.Task[None] | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        mqtt = config.mqtt
        broker_host, broker_port = mqtt.brokers[0]  # the lane's primary broker
        if not args.no_broker and broker_host in LOCAL_HOSTS and not _listening(broker_host, broker_port):
            broker = EmbeddedBroker(broker_port, "127.0.0.1")
            await broker.start()
            print(f"broker: embedded, on 127.0.0.1:{broker_port}", flush=True)
        for name, device in config.devices.items():
            if not device.enabled:
                continue
            control = control_dir / f"{name}.ctl"
            control.unlink(missing_ok=True)
            vehicle = args.vehicle or DEFAULT_VEHICLE[SIMULATOR_OF[device.kind]]
            if device.kind == "dynamometer" and args.vehicle and not _on_rollers(args.vehicle):
                vehicle = DEFAULT_VEHICLE["dynamometer"]  # that vehicle has no [dynamometer] table
            tailpipe = [control_dir / f"{n}.ctl" for n, d in config.devices.items()
                        if d.enabled and d.kind in ("gas_analyzer", "opacimeter")]
            kind, sim_args = simulator_args(device, control, vehicle, not args.real_timings, tailpipe)
            process = SimProcess(kind, sim_args, control_dir / f"{name}.log")
            await process.start()
            processes.append((name, process))
            controls[kind] = control
            print(f"{name}: laned simulate {kind} {' '.join(sim_args)}  (log {control_dir / f'{name}.log'})",
                  flush=True)
        await _wait_ready(processes, config, control_dir)
        if "dynamometer" in controls:  # the rollers empty (no tailpipe coupling) until a loaded test drives on
            from simulators.control import send_control

            await send_control(controls["dynamometer"], {"do": "drive_off"})
        if not args.no_driver:
            person = SimulatedDriver(controls)
            root = f"{mqtt.topic_prefix}/{config.lane.station}/{config.lane.lane}"
            driver_task = asyncio.create_task(person.run(broker_host, broker_port, root))
            print(f"driver: follows the prompts on {root}/event", flush=True)
        flag = " --simulation" if shortened_problems(config) else ""  # simulated timings: a simulation
        print(f"ready: now run `laned run{flag} --config {args.config}` (Ctrl-C here stops the simulated lane)",
              flush=True)
        while not stop.is_set():
            for name, process in processes:
                if process.process is not None and process.process.returncode is not None:
                    why = _last_line(control_dir, name)
                    raise SystemExit(f"laned simulate lane: the {name} simulator stopped: {why}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        # each step bounded: Ctrl-C ends the simulated lane in seconds whatever one part does
        if driver_task is not None:
            driver_task.cancel()
            if not (await asyncio.wait({driver_task}, timeout=STOP_STEP_S))[0]:
                print(f"laned simulate lane: the simulated driver did not stop within {STOP_STEP_S:g} s; "
                      "going on", flush=True)
        for _, process in processes:
            await process.stop()
        if broker is not None and not await broker.stop(timeout_s=STOP_STEP_S):
            print(f"laned simulate lane: the embedded broker did not shut down within {STOP_STEP_S:g} s; "
                  "going on", flush=True)


def _served(device: DeviceConfig, control: Path) -> bool:
    """The simulator answers where the lane will look: its pty link or TCP port, and its control socket."""
    transport = device.transport
    where = _listening(transport.host, transport.port) if transport.type == "tcp" else Path(transport.port).exists()
    return where and control.exists()


async def _wait_ready(processes: list[tuple[str, SimProcess]], config: LaneConfig, control_dir: Path) -> None:
    """Every simulator serves where the config says, or a clear exit with its log's last line."""
    deadline = time.monotonic() + 15
    for name, process in processes:
        control = control_dir / f"{name}.ctl"
        while not _served(config.devices[name], control):
            child = process.process
            if child is not None and child.returncode is not None:
                raise SystemExit(f"laned simulate lane: the {name} simulator did not start: "
                                 f"{_last_line(control_dir, name)}")
            if time.monotonic() > deadline:
                raise SystemExit(f"laned simulate lane: the {name} simulator did not start within 15 s "
                                 f"(see {control_dir / f'{name}.log'})")
            await asyncio.sleep(0.05)


def _last_line(control_dir: Path, name: str) -> str:
    lines = (control_dir / f"{name}.log").read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return lines[-1] if lines else "(no output)"


if __name__ == "__main__":
    sys.exit("use: laned simulate lane --config FILE")
