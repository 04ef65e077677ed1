"""Lanes for the bench: each one a `laned run --config FILE` daemon in its own process, with its
simulated devices in a simulator host process (laned.bench.hosts), on the bench's broker.

A lane's config is written as any technician would write it (TOML, one table per device);
the daemon is started exactly as systemd starts it, so the process measured is the
daemon and nothing else.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from laned.bench.common import Broker, Child, Subscriber, python_module, wait_ready
from laned.broker import free_port

STATION = "BENCH"
TOPIC_PREFIX = "laned/v1"
SIGNING_KEY = "bench-signing-key"
ALL_DEVICES = ("gas-analyzer", "opacimeter", "brake-tester", "dynamometer")


@dataclass
class LaneRates:
    """Poll rates of a bench lane (Hz): the devices' nominal rates by default."""

    gas_analyzer_hz: float = 10.0
    opacimeter_hz: float = 20.0
    #: polls a second; with live on, each poll reads the 100 Hz curve ring from where the last one
    #: left off (one block read and one snapshot) and publishes the new samples in one message
    brake_tester_hz: float = 10.0
    #: polls a second of the dynamometer: each one reads the 10 Hz ring from where the last left off
    #: (one block read, one snapshot) and publishes the new samples in one message
    dynamometer_hz: float = 10.0
    live: bool = True  # publish every reading on …/live/{device}
    #: False: the brake tester's live messages carry the state registers only (`follow_curve = false`)
    brake_follow_curve: bool = True


def brake_follows_curve(rates: LaneRates) -> bool:
    """What a bench lane's brake tester really does with these rates: follow the curve ring."""
    return rates.live and rates.brake_follow_curve


@dataclass
class BenchLane:
    """One lane: its name, its config, its simulator host and its daemon."""

    name: str
    workdir: Path
    devices: tuple[str, ...]
    rates: LaneRates
    sims: Child | None = None
    daemon: Child | None = None
    origins: dict[str, dict[str, Any]] = field(default_factory=dict)
    brake_port: int = 0
    dyno_port: int = 0

    @property
    def root(self) -> str:
        return f"{TOPIC_PREFIX}/{STATION}/{self.name}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "lane.toml"

    async def start_sims(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ready = self.workdir / "sims.ready"
        ready.unlink(missing_ok=True)
        argv = ["sims", "--ready", str(ready)]
        if "gas-analyzer" in self.devices:
            argv += ["--gas", str(self.workdir / "gas-analyzer")]
        if "opacimeter" in self.devices:
            argv += ["--opac", str(self.workdir / "opacimeter")]
        if "brake-tester" in self.devices:
            self.brake_port = free_port()
            argv += ["--brake-tcp", f"127.0.0.1:{self.brake_port}", "--brake-control", str(self.workdir / "brake.ctl")]
        if "dynamometer" in self.devices:
            self.dyno_port = free_port()
            argv += ["--dyno-tcp", f"127.0.0.1:{self.dyno_port}"]
        self.sims = Child(f"{self.name} simulators", python_module("laned.bench.hosts", *argv),
                          self.workdir / "sims.log")
        await self.sims.start()

    async def sims_ready(self) -> None:
        assert self.sims is not None
        info = await wait_ready(self.workdir / "sims.ready", self.sims, timeout_s=60)
        names = {"gas_analyzer": "gas-analyzer", "opacimeter": "opacimeter", "brake_tester": "brake-tester",
                 "dynamometer": "dynamometer"}
        self.origins = {names[key]: value for key, value in info.items() if key in names}

    async def start_daemon(self, broker: Broker) -> None:
        self.config_path.write_text(self.config_text(broker))
        self.daemon = Child(f"{self.name} daemon", python_module("laned.cli", "run", "--config", str(self.config_path)),
                            self.workdir / "daemon.log")
        await self.daemon.start()

    def config_text(self, broker: Broker) -> str:
        lines = [
            'log_level = "info"', 'log_format = "json"', "",
            "[lane]", f'station = "{STATION}"', f'lane = "{self.name}"', f'state_dir = "{self.workdir / "state"}"',
            f'signing_key = "{SIGNING_KEY}"', "",
            "[mqtt]", f'host = "{broker.host}"', f"port = {broker.port}", "reconnect_initial_s = 0.2",
            "reconnect_max_s = 2.0", "",
        ]
        serial = {"gas-analyzer": ("gas_analyzer", self.rates.gas_analyzer_hz),
                  "opacimeter": ("opacimeter", self.rates.opacimeter_hz)}
        for device in self.devices:
            if device in serial:
                kind, hz = serial[device]
                lines += [f"[devices.{device}]", f'kind = "{kind}"', f"poll_hz = {hz}", "reconnect_initial_s = 0.2",
                          f"live = {str(self.rates.live).lower()}",
                          f"[devices.{device}.transport]", 'type = "serial"',
                          f'port = "{self.workdir / device}"', ""]
            elif device == "dynamometer":
                lines += ["[devices.dynamometer]", 'kind = "dynamometer"', f"poll_hz = {self.rates.dynamometer_hz}",
                          "reconnect_initial_s = 0.2", f"live = {str(self.rates.live).lower()}",
                          "[devices.dynamometer.transport]", 'type = "tcp"',
                          'host = "127.0.0.1"', f"port = {self.dyno_port}", ""]
            else:
                lines += ["[devices.brake-tester]", 'kind = "brake_tester"', f"poll_hz = {self.rates.brake_tester_hz}",
                          "reconnect_initial_s = 0.2", f"live = {str(self.rates.live).lower()}",
                          *(["follow_curve = false"] if not self.rates.brake_follow_curve else []),
                          "[devices.brake-tester.transport]", 'type = "tcp"',
                          'host = "127.0.0.1"', f"port = {self.brake_port}", ""]
        return "\n".join(lines) + "\n"

    async def stop(self) -> None:
        for child in (self.daemon, self.sims):  # the daemon first: it puts its devices in their safe state
            if child is not None:
                await child.stop(timeout_s=10)


class LaneSet:
    """N bench lanes on one broker: started together, online together, stopped together."""

    def __init__(self, workdir: Path, broker: Broker, count: int, *, devices: tuple[str, ...] = ALL_DEVICES,
                 rates: LaneRates | None = None, prefix: str = "L") -> None:
        self.broker = broker
        self.lanes = [BenchLane(f"{prefix}{i}", workdir / f"{prefix}{i}", devices, rates or LaneRates())
                      for i in range(1, count + 1)]

    async def start(self, online_timeout_s: float = 90.0) -> None:
        """Simulators first, then the daemons; returns once every lane says online with every device
        connected (its retained status)."""
        online: dict[str, dict[str, Any]] = {}

        def on_status(_arrived: float, topic: str, payload: bytes) -> None:
            try:
                online[topic.split("/")[-2]] = json.loads(payload)
            except ValueError:
                pass

        for lane in self.lanes:
            await lane.start_sims()
        for lane in self.lanes:
            await lane.sims_ready()
        async with Subscriber(self.broker.host, self.broker.port, [f"{TOPIC_PREFIX}/{STATION}/+/status"], on_status):
            for lane in self.lanes:
                await lane.start_daemon(self.broker)
            deadline = time.monotonic() + online_timeout_s
            while not all(self._ready(online.get(lane.name), lane) for lane in self.lanes):
                for lane in self.lanes:
                    if lane.daemon is not None and not lane.daemon.running:
                        raise RuntimeError(f"{lane.daemon.name} exited:\n{lane.daemon.log_tail()}")
                if time.monotonic() > deadline:
                    late = [lane.name for lane in self.lanes if not self._ready(online.get(lane.name), lane)]
                    raise TimeoutError(f"lanes {', '.join(late)} not online with all devices connected "
                                       f"within {online_timeout_s:g} s")
                await asyncio.sleep(0.1)

    @staticmethod
    def _ready(status: dict[str, Any] | None, lane: BenchLane) -> bool:
        if not status or status.get("state") != "online":
            return False
        devices = status.get("devices", {})
        return all(devices.get(name, {}).get("state") == "connected" for name in lane.devices)

    @property
    def daemon_pids(self) -> list[int]:
        return [lane.daemon.pid for lane in self.lanes if lane.daemon is not None]

    async def stop(self) -> None:
        await asyncio.gather(*(lane.stop() for lane in self.lanes), return_exceptions=True)
