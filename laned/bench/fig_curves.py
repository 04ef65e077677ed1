"""Figure 2 — lossless curves: the brake tester's 100 Hz curve ring read over Modbus RTU (19200 baud,
8E1 paced on a pty) and over Modbus TCP, compared sample by sample with what the tester produced.

The capture is the daemon's own (drivers/brake_tester.py `CurveCapture`: block reads from
where it left off, each checked by a SAMPLE_INDEX read after it), run in this process for
the whole window in real time; the simulator runs in a child process and keeps a log of
every sample it produced. `lossless_ratio` is the number of captured samples that match
the produced one at the same index (both forces), over the samples produced in the window:
exactly 1.0 or the capture lost or garbled something. The bus time left over for other
reads is the share of the window in which the driver did not hold the line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from drivers.brake_tester import BrakeTesterDriver, CurveCapture, ModbusLink
from laned.bench.common import Child, median, proc_runtime_s, python_module, rounded, wait_ready
from laned.broker import free_port
from protocols.brake_tester import INDEX_MODULUS, CurveSample

R = TypeVar("R")


@dataclass(frozen=True)
class CurveParams:
    window_s: float  # one repeat
    repeats: int  # consecutive windows of one continuous capture
    interval_s: float = 0.05  # the capture's pause between rounds (the driver's default)


class _TimedBrakeDriver(BrakeTesterDriver):
    """The daemon's driver, timing how long it holds the line."""

    line_busy_s = 0.0

    async def exchange(self, work: Callable[[], Awaitable[R]]) -> R:
        started = time.perf_counter()
        try:
            return await super().exchange(work)
        finally:
            self.line_busy_s += time.perf_counter() - started


def _cpu_s() -> float:
    return proc_runtime_s(os.getpid())


async def measure_curves(workdir: Path, params: CurveParams) -> dict[str, Any]:
    ready, control = workdir / "sims.ready", workdir / "brake.ctl"
    rtu_link, tcp_port = workdir / "brake-rtu", free_port()
    host = Child("brake tester simulator", python_module(
        "laned.bench.hosts", "sims", "--ready", str(ready), "--brake-tcp", f"127.0.0.1:{tcp_port}",
        "--brake-link", str(rtu_link), "--brake-control", str(control)), workdir / "sims.log")
    await host.start()
    try:
        await wait_ready(ready, host)
        results: dict[str, Any] = {}
        # a pty cannot carry a parity bit: the driver opens it as 8N1, the simulator paces it as 8E1
        rtu = ModbusLink(transport="rtu", serial_port=str(rtu_link), parity="N", timeout_s=0.5)
        tcp = ModbusLink(transport="tcp", host="127.0.0.1", tcp_port=tcp_port, timeout_s=0.5)
        for name, link in (("rtu", rtu), ("tcp", tcp)):
            results.update(await _one_transport(name, link, control, params))
        ratios = [results["lossless_ratio_rtu"], results["lossless_ratio_tcp"]]
        results["lossless_ratio"] = min(r for r in ratios if r is not None) if any(ratios) else None
        return results
    finally:
        await host.stop()


async def _one_transport(name: str, link: ModbusLink, control: Path, params: CurveParams) -> dict[str, Any]:
    driver = _TimedBrakeDriver(f"brake-{name}", link, poll_hz=0.01)  # no background polls in the way
    task = asyncio.create_task(driver.run(), name=f"bench-brake-{name}")
    try:
        await driver.wait_connected(10)
        await driver.set_lift(False, wait_s=5)  # raised on connect (its safe state): a run needs it down
        await asyncio.sleep(0.2)
        await _control_request(control, {"do": "drive_on", "axle": 1})  # the front axle on the rollers
        capture = driver.curve(interval_s=params.interval_s)
        await capture.start()
        samples: list[CurveSample] = []
        windows: list[dict[str, float]] = []
        for _ in range(params.repeats):
            windows.append(await _window(driver, control, capture, samples, params))
        samples.extend(await capture.read_available())  # the last round: up to this moment
        check = await _compare(control, capture, samples)
    finally:
        await driver.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    busy = median(w["busy"] for w in windows)
    cpu = median(w["cpu"] for w in windows)
    return {
        f"lossless_ratio_{name}": check["ratio"],
        f"curve_{name}_samples_produced": check["produced"],
        f"curve_{name}_samples_captured": len(samples),
        f"curve_{name}_samples_mismatched": check["mismatched"],
        f"curve_{name}_samples_lost_reported": capture.lost,
        f"curve_{name}_peak_force_n": max((max(s.left_force_n, s.right_force_n) for s in samples), default=None),
        f"curve_{name}_seconds": rounded(sum(w["wall"] for w in windows), 1),
        f"curve_{name}_bus_left_fraction": rounded(None if busy is None else 1.0 - busy),
        f"curve_{name}_reads_per_s": rounded(median(w["reads"] for w in windows), 1),
        f"curve_{name}_cpu_pct_core": rounded(None if cpu is None else cpu * 100, 2),
    }


async def _window(driver: _TimedBrakeDriver, control: Path, capture: CurveCapture, samples: list[CurveSample],
                  params: CurveParams) -> dict[str, float]:
    """One repeat, one brake test's worth of curve: the rollers start, turn with the wheels' drag, the
    driver brakes at 40 % of the window, the rollers stop at its end; the capture runs throughout.
    Returns the share of the window the line was busy, the CPU share, ring reads per second."""
    busy0, cpu0, reads0, wall0 = driver.line_busy_s, _cpu_s(), capture.reads, time.monotonic()
    await _control_request(control, {"do": "release"})
    await driver.set_motors(True)
    deadline, brake_at = wall0 + params.window_s, wall0 + 0.4 * params.window_s
    while time.monotonic() < deadline:
        samples.extend(await capture.read_available())
        if brake_at and time.monotonic() >= brake_at:
            await _control_request(control, {"do": "brake"})
            brake_at = 0.0
        await asyncio.sleep(params.interval_s)
    await driver.set_motors(False)
    wall = time.monotonic() - wall0
    return {"busy": (driver.line_busy_s - busy0) / wall, "cpu": (_cpu_s() - cpu0) / wall,
            "reads": (capture.reads - reads0) / wall, "wall": wall}


async def _compare(control: Path, capture: CurveCapture, samples: list[CurveSample]) -> dict[str, Any]:
    """Captured samples against the tester's own log, over the samples it produced from the capture's
    first index to the newest one the capture's last round saw."""
    assert capture.start_index is not None and capture.cursor is not None
    first_index, last_index = capture.start_index, (capture.cursor.next_index - 1) % INDEX_MODULUS
    # seq >= index always (seq counts from power-up without wrapping): nothing older is needed
    log = await _control_request(control, {"get": "samples", "since": first_index})
    by_seq = {int(entry["seq"]): entry for entry in log}
    # the tester's own count (`seq`, from power-up, never wrapping) of the last and first sample
    last_seq = max((seq for seq, e in by_seq.items() if e["index"] == last_index), default=None)
    first_seqs = [seq for seq, e in by_seq.items() if e["index"] == first_index and last_seq is not None
                  and seq <= last_seq]
    if last_seq is None or not first_seqs:
        raise RuntimeError(f"the tester's sample log does not reach back to index {first_index}..{last_index}")
    first_seq = max(first_seqs)
    produced = last_seq - first_seq + 1
    matched = mismatched = 0
    for sample in samples:
        entry = by_seq.get(first_seq + sample.seq)
        if (entry is not None and entry["index"] == sample.index and entry["left_dan"] * 10 == sample.left_force_n
                and entry["right_dan"] * 10 == sample.right_force_n):
            matched += 1
        else:
            mismatched += 1
    return {"ratio": round(matched / produced, 6) if produced else None, "produced": produced,
            "mismatched": mismatched}


async def _control_request(path: Path, request: dict[str, Any]) -> Any:
    """`simulators.control.send_control`, for an answer of several megabytes (the sample log)."""
    reader, writer = await asyncio.open_unix_connection(str(path), limit=256 * 1024 * 1024)
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        answer = json.loads(await reader.readline())
    finally:
        writer.close()
    if not answer.get("ok"):
        raise RuntimeError(f"brake tester simulator refused {request}: {answer.get('error')}")
    return answer.get("result")
