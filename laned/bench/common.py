"""What every figure of `laned bench` shares: statistics, a process's CPU and memory from /proc,
child processes (simulator hosts, daemons, brokers), the broker, and a loopback subscriber.

Every figure is taken on loopback only, from processes this module starts and ends
itself; the daemon's cost is read from /proc: CPU time from /proc/<pid>/task/*/schedstat
(the scheduler's own count of nanoseconds on a CPU, every thread; /proc/<pid>/stat gives
the same total but only in 10 ms ticks, too coarse for short windows) and the peak
resident set from /proc/<pid>/status (VmHWM), so the simulators, the broker and the
bench itself never count against the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import structlog

from laned.broker import Mosquitto, free_port, mosquitto_path

log = structlog.get_logger("laned.bench")

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


# ----- statistics ------------------------------------------------------------------------------


def median(values: Iterable[float]) -> float | None:
    return percentile(values, 50.0)


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile with linear interpolation between closest ranks (None for no values)."""
    data = sorted(values)
    if not data:
        return None
    if len(data) == 1:
        return data[0]
    rank = (len(data) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return data[low] + (data[high] - data[low]) * (rank - low)


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


# ----- a process's cost ---------------------------------------------------------------------------


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a whole process (all threads) so far, from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces; skip past it
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15 of proc(5))


def proc_status_kb(pid: int, key: str) -> int:
    """A `kB` line of /proc/<pid>/status: VmHWM (peak RSS), VmRSS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(f"no {key} in /proc/{pid}/status")


def proc_runtime_s(pid: int) -> float:
    """CPU seconds of a whole process so far with nanosecond resolution: the sum of its threads'
    run time in /proc/<pid>/task/*/schedstat; /proc/<pid>/stat where schedstat is missing."""
    total, found = 0.0, False
    for path in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        with contextlib.suppress(OSError, ValueError, IndexError):  # a thread may end meanwhile
            total += int(path.read_text().split()[0]) / 1e9
            found = True
    return total if found else proc_cpu_s(pid)


@dataclass
class CpuMeter:
    """CPU seconds of one process over a window of wall time."""

    pid: int
    cpu0: float = 0.0
    wall0: float = 0.0

    def start(self) -> None:
        self.cpu0, self.wall0 = proc_runtime_s(self.pid), time.monotonic()

    def read(self) -> tuple[float, float]:
        """(CPU seconds, wall seconds) since `start()`."""
        return proc_runtime_s(self.pid) - self.cpu0, time.monotonic() - self.wall0


# ----- the machine ------------------------------------------------------------------------------


def machine_description() -> dict[str, Any]:
    """What the figures were measured on: cores, CPU model, Python, kernel, broker."""
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    mosquitto = None
    if binary := mosquitto_path():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=5, check=False).stdout
            mosquitto = out.splitlines()[0].strip() if out else None
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "mosquitto": mosquitto,
    }


# ----- child processes ----------------------------------------------------------------------------


class Child:
    """One child process (a simulator host, a daemon, a gateway), its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, stdout=out, stderr=out, stdin=asyncio.subprocess.DEVNULL,
                env=self.env, cwd=str(PROJECT_ROOT),
            )

    def log_tail(self, chars: int = 1500) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    async def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `timeout_s`; only this child, by its own pid."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def python_module(module: str, *args: str) -> list[str]:
    """argv for `python -m module args…` with the bench's own interpreter."""
    return [sys.executable, "-m", module, *args]


async def wait_ready(path: Path, child: Child, timeout_s: float = 30.0) -> dict[str, Any]:
    """The JSON a host writes once it serves; fails early (with its log) if the child died."""
    deadline = time.monotonic() + timeout_s
    while True:
        if path.exists():
            with contextlib.suppress(ValueError):
                return dict(json.loads(path.read_text()))
        if not child.running:
            raise RuntimeError(f"{child.name} exited before it was ready:\n{child.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{child.name} not ready within {timeout_s:g} s:\n{child.log_tail()}")
        await asyncio.sleep(0.05)


# ----- the broker ---------------------------------------------------------------------------------


#: the bench's mosquitto: no per-client queue limit in the way of a 10,000-message drain, and
#: TCP_NODELAY on its sockets (see docs/performance.md: with Nagle on, its PUBACKs wait for the
#: client's delayed ACK and the outbox drains five times slower)
MOSQUITTO_CONFIG = "max_queued_messages 100000\nset_tcp_nodelay true\n"


class Broker:
    """The bench's broker on a free loopback port: mosquitto where installed, else the embedded one
    (amqtt) in a child process, so that its CPU never counts against the process measured.
    `stop()` and `start()` again keep the port: that is a broker outage."""

    def __init__(self, workdir: Path, prefer: str = "auto") -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.workdir = workdir
        use_mosquitto = prefer == "mosquitto" or (prefer == "auto" and mosquitto_path() is not None)
        if prefer == "mosquitto" and mosquitto_path() is None:
            raise RuntimeError("--broker mosquitto: mosquitto is not installed (apt-get install mosquitto)")
        self.kind = "mosquitto" if use_mosquitto else "amqtt"
        self._mosquitto: Mosquitto | None = None
        if use_mosquitto:
            self._mosquitto = Mosquitto(self.port, extra_config=MOSQUITTO_CONFIG, workdir=workdir / "mosquitto")
        self._child: Child | None = None

    async def start(self) -> None:
        if self._mosquitto is not None:
            self._mosquitto.workdir.mkdir(parents=True, exist_ok=True)
            await self._mosquitto.start()
            return
        ready = self.workdir / f"broker-{self.port}.ready"
        ready.unlink(missing_ok=True)
        self._child = Child("embedded broker", python_module("laned.bench.hosts", "broker", "--port",
                                                             str(self.port), "--ready", str(ready)),
                            self.workdir / "broker.log")
        await self._child.start()
        await wait_ready(ready, self._child)

    async def stop(self) -> None:
        if self._mosquitto is not None:
            await self._mosquitto.stop()
        elif self._child is not None:
            await self._child.stop()
            self._child = None

    @property
    def pid(self) -> int | None:
        if self._mosquitto is not None and self._mosquitto.process is not None:
            return self._mosquitto.process.pid
        return self._child.pid if self._child is not None else None


# ----- a loopback subscriber -------------------------------------------------------------------------


@dataclass
class Subscriber:
    """An aiomqtt subscriber that hands (arrival time, topic, payload) to `on_message` as they come."""

    host: str
    port: int
    topics: list[str]
    on_message: Callable[[float, str, bytes], None]
    qos: int = 0
    _task: asyncio.Task[None] | None = field(default=None, repr=False)
    _ready: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    async def _pump(self) -> None:
        identifier = f"laned-bench-{os.getpid()}-{id(self):x}"
        async with aiomqtt.Client(self.host, self.port, identifier=identifier,
                                  max_queued_incoming_messages=0) as client:
            for topic in self.topics:
                await client.subscribe(topic, qos=self.qos)
            self._ready.set()
            async for message in client.messages:
                arrived = time.monotonic()
                payload = message.payload
                raw = payload if isinstance(payload, bytes) else str(payload).encode()
                self.on_message(arrived, str(message.topic), raw)

    async def __aenter__(self) -> Subscriber:
        self._task = asyncio.create_task(self._pump(), name="bench-subscriber")
        ready = asyncio.create_task(self._ready.wait())
        done, _ = await asyncio.wait({ready, self._task}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            ready.cancel()
            self._task.result()  # raises what stopped it
        if ready not in done:
            ready.cancel()
            raise TimeoutError(f"subscriber could not connect to {self.host}:{self.port}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


# ----- when a simulated measurement was made -----------------------------------------------------------


def measured_at(origin: dict[str, Any], counter: int, received: float) -> float:
    """Monotonic time at which a simulator made the measurement numbered `counter` (SEQ, SAMPLE_INDEX:
    counts of the simulator's ticks since its origin, modulo `modulus`), unwrapped to the count that
    lies closest before `received`."""
    t0, tick_s, modulus = float(origin["t0"]), float(origin["tick_s"]), int(origin["modulus"])
    ticks_now = (received - t0) / tick_s
    wraps = round((ticks_now - counter) / modulus)
    return t0 + (counter + wraps * modulus) * tick_s


def clean_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
