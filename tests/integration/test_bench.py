"""`laned bench --quick` end to end: real simulators, a real broker, real daemons, one JSON file.

The figures' values depend on the machine; this pins that the command finishes, exits 0 and
writes every figure under the key the issue names, and prints issue 17's goals. The comparison
with modbus4mqtt and modbus2mqtt needs their own venvs (PyPI installs), so the test skips it;
its keys are still there, as null.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from laned.broker import Mosquitto
from simulators.brake_tester import BrakeTesterSimulator
from tests.helpers import subscriber

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parents[2]

#: the figures of the issue, by hand: 1 serial, 2 curves, 3 latency, 4 cost, 5 outbox, 6 gateway
FIGURE_KEYS = [
    "serial_efficiency", "serial_round_trips_per_s", "serial_line_limit_per_s",
    "lossless_ratio", "lossless_ratio_rtu", "lossless_ratio_tcp",
    "curve_rtu_bus_left_fraction", "curve_tcp_bus_left_fraction",
    "latency_live_p50_ms", "latency_live_p99_ms", "latency_result_p50_ms", "latency_result_p99_ms",
    "cpu_lane_s_per_min", "cpu_lane_pct_core", "rss_lane_peak_mb", "cpu_floor_pct_core", "cpu_lane_over_floor",
    "latency_live_dynamometer_p50_ms", "latency_live_dynamometer_p99_ms", "dyno_lossless_ratio", "dyno_cpu_share",
    "outbox_results_per_s", "outbox_drain_10k_s", "outbox_latency_p50_ms", "outbox_latency_p99_ms",
    "gateway_cpu_ms_per_reading", "gateway_laned_cpu_ms_per_reading", "gateway_cpu_ratio",
    "gateway_latency_p50_ms", "gateway_latency_p99_ms", "gateway_laned_latency_p50_ms",
    "gateway_laned_latency_p99_ms", "gateway_curve_laned_captured_ratio", "gateway_curve_captured_ratio",
    "gateway_curve_laned_cpu_ms_per_sample", "gateway_curve_cpu_ms_per_sample", "gateway_curve_cpu_ratio",
    "gateway_floor_cpu_ms_per_reading", "gateway_floor_cpu_ratio",
    "gateway_libfloor_cpu_ms_per_reading", "gateway_libfloor_cpu_ratio", "gateway_laned_over_libfloor",
    # issue 17: the ratios and shares of its goals, measured in the same run
    "live_coverage", "live_duplicates", "latency_live_brake_tester_p99_ms",
    "latency_live_brake_tester_after_read_p99_ms", "gateway2_cpu_ms_per_reading", "gateway2_cpu_ratio",
]
MEASURED_HERE = [key for key in FIGURE_KEYS if not key.startswith("gateway")]


def test_quick_bench_exits_0_and_writes_every_figure_key(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "-m", "laned.cli", "bench", "--quick", "--no-gateway", "--repeats", "1", "--lanes", "1",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=360, check=False,
    )
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    figures = json.loads(out.read_text())
    missing = [key for key in FIGURE_KEYS if key not in figures]
    assert missing == []
    assert figures["failures"] == []
    assert [key for key in MEASURED_HERE if figures[key] is None] == []  # everything but the gateway measured
    assert "serial efficiency" in run.stdout and "drain 10,000" in run.stdout  # and the table is printed
    # the goals of issue 17, each printed under its JSON key
    goals = run.stdout.split("goals (issue 17)", 1)[1]
    for key in ("cpu_lane_over_floor", "gateway_cpu_ratio", "gateway2_cpu_ratio", "live_coverage",
                "latency_live_brake_tester_after_read_p99_ms", "lossless_ratio"):
        assert key in goals
    # the brake tester's ring samples reach the subscriber through the daemon each exactly once
    assert figures["live_coverage_brake_tester"] == 1.0
    assert figures["live_duplicates_brake_tester"] == 0
    assert "dynamometer ring samples seen once" in run.stdout and "dynamometer's share" in run.stdout


async def test_the_library_floor_reads_and_publishes_the_snapshot_at_10_hz(mosquitto: Mosquitto) -> None:
    """Figure 6's library floor does the gateway job (input registers 0..15, one message a poll,
    10 a second) through pymodbus and aiomqtt: the registers decoded as the manual maps them."""
    async with (
        BrakeTesterSimulator("gasoline-car", tcp=("127.0.0.1", 0), fast=True, script=False) as sim,
        subscriber(mosquitto.host, mosquitto.port, "bench-libfloor/live/brake-tester") as station,
    ):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "laned.bench.library_floor", "--brake-port", str(sim.tcp_port),
            "--broker", f"{mosquitto.host}:{mosquitto.port}", "--root", "bench-libfloor", cwd=ROOT)
        try:
            await station.wait_for(lambda m: True, timeout_s=20)
            first = len(station.messages)
            await asyncio.sleep(2.0)
            count = len(station.messages) - first
        finally:
            process.terminate()
            assert await asyncio.wait_for(process.wait(), 10) == 0  # SIGTERM: a clean stop
    assert 8 <= count <= 30  # ~20 in 2 s: polled on its 10 Hz grid (loose: the machine is shared), not flat out
    document = json.loads(station.messages[-1].payload)
    # the manual's map: rollers stopped (0.00 km/h), STATE 0 IDLE, FAULT_CODE 0, 100 Hz into a 512-sample ring
    assert document["left_speed_kmh"] == 0 and document["right_speed_kmh"] == 0
    assert document["state"] == 0 and document["fault_code"] == 0
    assert document["sample_rate_hz"] == 100 and document["ring_size"] == 512
    assert 0 <= document["sample_index"] < 65536
