"""Figure 1 — serial efficiency: GA-5 READ_MAIN round trips per second over a pty paced at 9600 baud,
as a fraction of what the line itself allows.

The line's own limit for one READ_MAIN is its 25 bytes on the wire (1 request + 24 reply,
10 bits each at 9600 8N1) plus the analyzer's configured reply delay; nothing can go
faster. The driver (drivers/gas_analyzer.py, the daemon's own) asks back to back in this
process; the simulator answers from a child process. What is lost is the driver's and the
simulator's scheduling between one reply's last byte and the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.errors import DeviceError
from drivers.gas_analyzer import GasAnalyzerDriver
from laned.bench.common import Child, median, python_module, rounded, wait_ready

READ_MAIN_WIRE_BYTES = 25  # 1-byte request + 24-byte main data frame
BITS_PER_CHAR = 10  # 8N1
#: the simulator delivers each reply at its exact due time, not up to 1.5 ms after it (asyncio's
#: millisecond timers): the figure is about the driver, not about the simulator's timer
SPIN_BEFORE_DUE_S = 0.002


def line_limit_per_s(baud: int, reply_delay_s: float) -> float:
    """READ_MAIN round trips per second the line allows: wire time of 25 bytes plus the reply delay."""
    return 1.0 / (READ_MAIN_WIRE_BYTES * BITS_PER_CHAR / baud + reply_delay_s)


@dataclass(frozen=True)
class SerialParams:
    window_s: float
    repeats: int


async def measure_serial(workdir: Path, params: SerialParams) -> dict[str, Any]:
    link = workdir / "gas-analyzer"
    ready = workdir / "sims.ready"
    argv = python_module("laned.bench.hosts", "sims", "--ready", str(ready), "--gas", str(link),
                         "--spin-before-due-s", str(SPIN_BEFORE_DUE_S))
    host = Child("gas analyzer simulator", argv, workdir / "sims.log")
    await host.start()
    driver: GasAnalyzerDriver | None = None
    task: asyncio.Task[None] | None = None
    try:
        info = (await wait_ready(ready, host))["gas_analyzer"]
        limit = line_limit_per_s(int(info["baud"]), float(info["reply_delay_s"]))
        # no background poll to speak of: the bench's own reads are the only traffic on the line
        driver = GasAnalyzerDriver("gas-analyzer", port=str(link), poll_hz=0.01)
        task = asyncio.create_task(driver.run(), name="bench-gas-driver")
        await driver.wait_connected(10)
        await asyncio.sleep(0.2)  # the first (and only) background poll is done
        rates: list[float] = []
        errors = 0
        for _ in range(params.repeats):
            count, window_errors, elapsed = await _round_trips(driver, params.window_s)
            rates.append(count / elapsed)
            errors += window_errors
        rate = median(rates)
        assert rate is not None
        return {
            "serial_efficiency": rounded(rate / limit),
            "serial_round_trips_per_s": rounded(rate, 2),
            "serial_line_limit_per_s": rounded(limit, 2),
            "serial_reply_delay_ms": rounded(float(info["reply_delay_s"]) * 1000, 1),
            "serial_errors": errors,
            "serial_windows": [rounded(r / limit) for r in rates],
        }
    finally:
        if driver is not None:
            await driver.stop()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await host.stop()


async def _round_trips(driver: GasAnalyzerDriver, window_s: float) -> tuple[int, int, float]:
    """READ_MAINs completed back to back within the window: (good, failed, elapsed seconds)."""
    good = failed = 0
    started = time.monotonic()
    deadline = started + window_s
    while time.monotonic() < deadline:
        try:
            await driver.read_main()
            good += 1
        except DeviceError:
            failed += 1
    return good, failed, time.monotonic() - started
