"""`laned demo`: the whole lane on one laptop.

It starts an embedded MQTT broker (or uses `--broker HOST:PORT`), the device
simulators as separate processes on ptys and a Modbus TCP port, and the lane
daemon in this process; a subscriber shows on the terminal what the station
software would see. Then it stops everything cleanly and exits 0 if every step
it expected happened, non-zero otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

from laned.broker import EmbeddedBroker, free_port
from laned.config import LaneConfig, parse_config
from laned.daemon import Lane
from laned.logging import configure_logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", metavar="HOST:PORT", help="use this broker instead of the embedded one")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds of live readings to show (default 6)")
    parser.add_argument("--no-ui", action="store_true", help="plain log lines instead of the terminal view")
    parser.add_argument("--keep", action="store_true", help="keep the demo's temporary folder")


class SimProcess:
    """One simulator as a child process: `laned simulate DEVICE ...`."""

    def __init__(self, device: str, args: list[str], log_path: Path) -> None:
        self.device = device
        self.args = args
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        log = self.log_path.open("wb")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "laned.cli",
            "simulate",
            self.device,
            "--log-format",
            "json",
            *self.args,
            stdout=log,
            stderr=log,
            stdin=asyncio.subprocess.DEVNULL,
        )
        log.close()

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


def demo_config(workdir: Path, host: str, port: int) -> LaneConfig:
    return parse_config(
        {
            "lane": {"station": "370100", "lane": "L1", "state_dir": str(workdir / "state")},
            "mqtt": {"host": host, "port": port},
            "devices": {
                "gas-analyzer": {
                    "kind": "gas_analyzer",
                    "transport": {"type": "serial", "port": str(workdir / "gas-analyzer")},
                    "reconnect_initial_s": 0.2,
                    "reconnect_max_s": 2.0,
                },
            },
        },
        "demo",
        environ={},
    )


class Screen:
    """What the station would see, printed as it arrives."""

    def __init__(self, plain: bool) -> None:
        self.plain = plain
        self.last_live: dict[str, float] = {}
        self.statuses: list[dict[str, Any]] = []
        self.live_count: dict[str, int] = {}

    def show(self, topic: str, payload: bytes) -> None:
        try:
            doc = json.loads(payload)
        except ValueError:
            print(f"  {topic}: {len(payload)} bytes")
            return
        kind = topic.split("/", 4)[-1]
        if kind == "status":
            self.statuses.append(doc)
            devices = ", ".join(f"{n}={d['state']}" for n, d in doc.get("devices", {}).items())
            print(f"[status] lane {doc.get('state')}; {devices}; outbox {doc.get('outbox', {}).get('depth')}")
        elif kind.startswith("live/"):
            device = kind.split("/", 1)[1]
            self.live_count[device] = self.live_count.get(device, 0) + 1
            now = time.monotonic()
            if now - self.last_live.get(device, 0) >= 1.0:
                self.last_live[device] = now
                shown = {k: v for k, v in doc.items() if k not in ("schema", "device", "lane_time", "reading")}
                print(f"[live {device}] " + " ".join(f"{k}={v}" for k, v in shown.items()))
        else:
            print(f"[{kind}] {json.dumps(doc, ensure_ascii=False)[:300]}")


async def _demo(args: argparse.Namespace, workdir: Path) -> int:
    broker: EmbeddedBroker | None = None
    if args.broker:
        host, _, port_text = args.broker.rpartition(":")
        host, port = host or "127.0.0.1", int(port_text)
    else:
        broker = EmbeddedBroker(free_port())
        await broker.start()
        host, port = broker.host, broker.port
    print(f"laned demo: broker {host}:{port}, files in {workdir}")
    sims = [
        SimProcess(
            "gas-analyzer",
            [
                "--link",
                str(workdir / "gas-analyzer"),
                "--fast",
                "--vehicle",
                "gasoline-car",
                "--control",
                str(workdir / "gas-analyzer.ctl"),
            ],
            workdir / "sim-gas-analyzer.log",
        ),
    ]
    screen = Screen(args.no_ui)
    config = demo_config(workdir, host, port)
    lane = Lane(config, startup_grace_s=15.0, status_interval_s=2.0)
    ok = False
    try:
        for sim in sims:
            await sim.start()
        for sim in sims:
            await wait_for_path(workdir / sim.device, 15, f"the {sim.device} simulator's port")
        async with aiomqtt.Client(host, port, identifier=f"demo-station-{os.getpid()}") as station:
            await station.subscribe(f"{lane.topics.root}/#", qos=1)
            lane_task = asyncio.create_task(lane.run())

            async def watch() -> None:
                async for message in station.messages:
                    screen.show(str(message.topic), bytes(message.payload))  # type: ignore[arg-type]

            watcher = asyncio.create_task(watch())
            await asyncio.sleep(args.duration)
            lane.request_stop()
            await lane_task
            await asyncio.sleep(0.5)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        online = any(s.get("state") == "online" for s in screen.statuses)
        offline_last = bool(screen.statuses) and screen.statuses[-1].get("state") == "offline"
        readings = screen.live_count.get("gas-analyzer", 0)
        ok = online and offline_last and readings > 0
        print(
            f"laned demo: lane went online: {online}; live readings: {readings}; "
            f"offline status at the end: {offline_last}; {'OK' if ok else 'FAILED'}"
        )
    finally:
        for sim in sims:
            await sim.stop()
        if broker is not None:
            await broker.stop()
    return 0 if ok else 1


def run_demo(args: argparse.Namespace) -> int:
    configure_logging("warning" if not args.no_ui else "info", "console")
    workdir = Path(tempfile.mkdtemp(prefix="laned-demo-"))
    try:
        return asyncio.run(_demo(args, workdir))
    except KeyboardInterrupt:
        return 130
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
