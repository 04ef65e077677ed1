"""The `laned bench` command: runs the figures in order, prints each as it comes and a table at the
end, and writes every figure to `--json FILE` under its own key (null when not measured)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from laned.bench.common import Broker, clean_dir, machine_description
from laned.bench.fig_curves import CurveParams, measure_curves
from laned.bench.fig_gateway import GatewayParams, default_venv, measure_gateway
from laned.bench.fig_lanes import LaneParams, measure_lanes
from laned.bench.fig_outbox import OutboxParams, measure_outbox
from laned.bench.fig_serial import SerialParams, measure_serial
from laned.logging import configure_logging

FIGURES = ("serial", "curves", "lanes", "outbox", "gateway")

#: every key the JSON always has, per figure (null when the figure was not run)
FIGURE_KEYS: dict[str, tuple[str, ...]] = {
    "serial": ("serial_efficiency", "serial_round_trips_per_s", "serial_line_limit_per_s"),
    "curves": ("lossless_ratio", "lossless_ratio_rtu", "lossless_ratio_tcp", "curve_rtu_bus_left_fraction",
               "curve_tcp_bus_left_fraction"),
    "lanes": ("latency_live_p50_ms", "latency_live_p99_ms", "latency_result_p50_ms", "latency_result_p99_ms",
              "cpu_lane_s_per_min", "cpu_lane_pct_core", "rss_lane_peak_mb", "cpu_floor_pct_core",
              "cpu_lane_over_floor", "live_coverage", "live_duplicates", "latency_live_brake_tester_p99_ms",
              "latency_live_brake_tester_after_read_p99_ms",
              "latency_live_dynamometer_p50_ms", "latency_live_dynamometer_p99_ms", "dyno_lossless_ratio",
              "dyno_cpu_share"),
    "outbox": ("outbox_results_per_s", "outbox_drain_10k_s", "outbox_latency_p50_ms", "outbox_latency_p99_ms"),
    "gateway": ("gateway_cpu_ms_per_reading", "gateway_laned_cpu_ms_per_reading", "gateway_cpu_ratio",
                "gateway_latency_p50_ms", "gateway_latency_p99_ms", "gateway_laned_latency_p50_ms",
                "gateway_laned_latency_p99_ms", "gateway_curve_laned_captured_ratio", "gateway_curve_captured_ratio",
                "gateway_curve_laned_cpu_ms_per_sample", "gateway_curve_cpu_ms_per_sample", "gateway_curve_cpu_ratio",
                "gateway_floor_cpu_ms_per_reading", "gateway_floor_cpu_ratio", "gateway_libfloor_cpu_ms_per_reading",
                "gateway_libfloor_cpu_ratio", "gateway_laned_over_libfloor", "gateway2_cpu_ms_per_reading",
                "gateway2_cpu_ratio"),
}

#: issue 17's goals, each a ratio or a share measured in one run: (key, label, target, check)
GOALS: list[tuple[str, str, str, Callable[[Any], bool]]] = [
    ("cpu_lane_over_floor", "one lane / the floor lane (CPU)", "≤ 2.5", lambda v: v <= 2.5),
    ("gateway_cpu_ratio", "laned / modbus4mqtt, CPU per snapshot reading", "≤ 0.7", lambda v: v <= 0.7),
    ("gateway2_cpu_ratio", "laned / modbus2mqtt, CPU per snapshot reading", "≤ 0.5", lambda v: v <= 0.5),
    ("live_coverage", "device updates read once at the subscriber (daemon)", "= 1.0", lambda v: v == 1.0),
    ("live_duplicates", "  updates seen twice", "= 0", lambda v: v == 0),
    ("latency_live_brake_tester_after_read_p99_ms", "brake tester live p99, reply read -> subscriber (ms)", "≤ 10",
     lambda v: v <= 10),
    ("latency_live_brake_tester_p99_ms", "  … from the sample's making (ring wait + line)", "", lambda v: True),
    ("lossless_ratio", "lossless curves", "= 1.0", lambda v: v == 1.0),
]


@dataclass(frozen=True)
class Plan:
    serial: SerialParams
    curves: CurveParams
    lanes: LaneParams
    outbox: OutboxParams
    gateway_window_s: float
    repeats: int


def plan_for(quick: bool, repeats: int, lane_counts: tuple[int, ...]) -> Plan:
    if quick:
        return Plan(SerialParams(2.0, repeats), CurveParams(2.0, repeats),
                    LaneParams(lane_counts, 3.0, 2.0, repeats, 3),
                    OutboxParams(300, repeats, 30, 1), 2.5, repeats)
    return Plan(SerialParams(10.0, repeats), CurveParams(60.0 / repeats, repeats),
                LaneParams(lane_counts, 20.0, 10.0, repeats, 20),
                OutboxParams(2000, repeats, 200, repeats), 20.0, repeats)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="short windows: every figure in under 2 minutes")
    parser.add_argument("--json", metavar="FILE", type=Path, help="write the figures to FILE as JSON")
    parser.add_argument("--repeats", type=int, default=3, help="windows per figure; each figure is their median")
    parser.add_argument("--lanes", default="1,4,8", help="lane counts for the cost of N lanes (default 1,4,8)")
    parser.add_argument("--only", action="append", choices=FIGURES, help="run only this figure (repeatable)")
    parser.add_argument("--no-gateway", action="store_true",
                        help="skip the comparison with modbus4mqtt (no install in its own venv)")
    parser.add_argument("--gateway-venv", type=Path, default=None,
                        help=f"where modbus4mqtt is installed (default {default_venv()})")
    parser.add_argument("--broker", choices=["auto", "mosquitto", "embedded"], default="auto",
                        help="mosquitto when installed (auto), or the embedded amqtt broker")
    parser.add_argument("--keep", action="store_true", help="keep the working folder (logs of every process)")
    parser.add_argument("--log-level", default="error", choices=["debug", "info", "warning", "error"])


def run_bench(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, "console")
    for noisy in ("mqtt", "pymodbus"):  # aiomqtt's "pending publish calls" while the outbox drains
        logging.getLogger(noisy).setLevel(logging.ERROR)
    workdir = Path(tempfile.mkdtemp(prefix="laned-bench-"))
    try:
        return asyncio.run(_bench(args, workdir))
    except KeyboardInterrupt:
        return 130
    finally:
        if args.keep:
            print(f"bench files kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


async def _bench(args: argparse.Namespace, workdir: Path) -> int:
    started = time.monotonic()
    counts = tuple(int(n) for n in str(args.lanes).split(",") if n.strip())
    plan = plan_for(args.quick, max(1, args.repeats), counts)
    wanted = [f for f in FIGURES if not args.only or f in args.only]
    if args.no_gateway and "gateway" in wanted:
        wanted.remove("gateway")
    broker = Broker(workdir, {"embedded": "amqtt"}.get(args.broker, args.broker))
    figures: dict[str, Any] = {}
    failures: list[str] = []
    print(f"laned bench ({'quick' if args.quick else 'full'}): broker {broker.kind} on {broker.host}:{broker.port}, "
          f"work in {workdir}", flush=True)
    await broker.start()
    try:
        steps: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
            "serial": lambda: measure_serial(clean_dir(workdir / "serial"), plan.serial),
            "curves": lambda: measure_curves(clean_dir(workdir / "curves"), plan.curves),
            "lanes": lambda: measure_lanes(clean_dir(workdir / "lanes"), broker, plan.lanes),
            "outbox": lambda: measure_outbox(clean_dir(workdir / "outbox"), broker, plan.outbox),
            "gateway": lambda: measure_gateway(clean_dir(workdir / "gateway"), broker, GatewayParams(
                plan.gateway_window_s, plan.repeats, args.gateway_venv or default_venv())),
        }
        for name in wanted:
            t0 = time.monotonic()
            print(f"… {name}", flush=True)
            try:
                result = await steps[name]()
            except Exception as exc:  # one figure failing must not hide the others
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
                print(f"  {name} FAILED: {type(exc).__name__}: {exc}", flush=True)
                continue
            figures.update(result)
            print(f"  {name} done in {time.monotonic() - t0:.0f} s", flush=True)
    finally:
        await broker.stop()
    if "lanes" in wanted:
        _headline_lane_figures(figures, counts)
    for keys in FIGURE_KEYS.values():
        for key in keys:
            figures.setdefault(key, None)
    document = {
        "mode": "quick" if args.quick else "full",
        "repeats": plan.repeats,
        "broker": broker.kind,
        "machine": machine_description(),
        "duration_s": round(time.monotonic() - started, 1),
        "figures_run": wanted,
        "failures": failures,
        **figures,
    }
    print(render_table(document))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return 1 if failures else 0


def _headline_lane_figures(figures: dict[str, Any], counts: tuple[int, ...]) -> None:
    """The cost of one lane is the N = 1 figure (or the smallest N measured)."""
    if not counts:
        return
    smallest = min(counts)
    for key in ("cpu_lane_s_per_min", "cpu_lane_pct_core", "rss_lane_peak_mb"):
        figures.setdefault(key, figures.get(f"{key}_n{smallest}"))


# ----- the table -------------------------------------------------------------------------------------

#: (label, key, unit, target as text, check)
ROWS: list[tuple[str, str, str, str, Callable[[Any], bool] | None]] = [
    ("1 serial efficiency (READ_MAIN, 9600 baud)", "serial_efficiency", "", "≥ 0.95", lambda v: v >= 0.95),
    ("  round trips / line limit", "serial_round_trips_per_s", "/s", "", None),
    ("2 lossless curves RTU 19200 8E1", "lossless_ratio_rtu", "", "= 1.0", lambda v: v == 1.0),
    ("  bus time left, RTU", "curve_rtu_bus_left_fraction", "", "", None),
    ("2 lossless curves TCP", "lossless_ratio_tcp", "", "= 1.0", lambda v: v == 1.0),
    ("  bus time left, TCP", "curve_tcp_bus_left_fraction", "", "", None),
    ("3 live latency p50", "latency_live_p50_ms", "ms", "", None),
    ("3 live latency p99", "latency_live_p99_ms", "ms", "", None),
    ("  brake tester p50 / p99", "latency_live_brake_tester_p50_ms", "ms", "", None),
    ("  gas analyzer p50 / p99", "latency_live_gas_analyzer_p50_ms", "ms", "", None),
    ("  opacimeter p50 / p99", "latency_live_opacimeter_p50_ms", "ms", "", None),
    ("  dynamometer p50 / p99", "latency_live_dynamometer_p50_ms", "ms", "", None),
    ("  dynamometer ring samples seen once", "dyno_lossless_ratio", "", "= 1.0", lambda v: v == 1.0),
    ("3 last measurement -> results p50", "latency_result_p50_ms", "ms", "", None),
    ("3 last measurement -> results p99", "latency_result_p99_ms", "ms", "", None),
    ("4 CPU of one lane", "cpu_lane_pct_core", "% core", "≤ 2", lambda v: v <= 2.0),
    ("  CPU of one lane", "cpu_lane_s_per_min", "s/min", "≤ 1.2", lambda v: v <= 1.2),
    ("  the same I/O, least Python (floor)", "cpu_floor_pct_core", "% core", "", None),
    ("  lane / floor", "cpu_lane_over_floor", "", "", None),
    ("  the dynamometer's share of the lane", "dyno_cpu_share", "", "", None),
    ("4 peak RSS of one lane", "rss_lane_peak_mb", "MB", "≤ 80", lambda v: v <= 80),
    ("5 outbox results to PUBACK", "outbox_results_per_s", "/s", "", None),
    ("5 drain 10,000 after an outage", "outbox_drain_10k_s", "s", "", None),
    ("5 outbox enqueue -> subscriber p50", "outbox_latency_p50_ms", "ms", "", None),
    ("6 laned CPU per reading", "gateway_laned_cpu_ms_per_reading", "ms", "", None),
    ("6 gateway CPU per reading", "gateway_cpu_ms_per_reading", "ms", "", None),
    ("6 laned / gateway CPU per reading", "gateway_cpu_ratio", "", "≤ 0.7", lambda v: v <= 0.7),
    ("6 modbus2mqtt CPU per reading", "gateway2_cpu_ms_per_reading", "ms", "", None),
    ("6 laned / modbus2mqtt CPU per reading", "gateway2_cpu_ratio", "", "≤ 0.5", lambda v: v <= 0.5),
    ("  floor (same job, least Python) / gateway", "gateway_floor_cpu_ratio", "", "", None),
    ("  library floor (pymodbus + aiomqtt alone)", "gateway_libfloor_cpu_ms_per_reading", "ms", "", None),
    ("  library floor / gateway", "gateway_libfloor_cpu_ratio", "", "", None),
    ("  laned / library floor", "gateway_laned_over_libfloor", "", "", None),
    ("6 laned reading -> subscriber p50", "gateway_laned_latency_p50_ms", "ms", "", None),
    ("6 gateway reading -> subscriber p50", "gateway_latency_p50_ms", "ms", "", None),
    ("6 curve samples delivered, laned", "gateway_curve_laned_captured_ratio", "", "= 1.0", lambda v: v >= 0.99),
    ("6 curve samples delivered, gateway", "gateway_curve_captured_ratio", "", "", None),
    ("6 laned CPU per curve sample", "gateway_curve_laned_cpu_ms_per_sample", "ms", "", None),
    ("6 gateway CPU per curve sample", "gateway_curve_cpu_ms_per_sample", "ms", "", None),
    ("6 laned / gateway CPU per curve sample", "gateway_curve_cpu_ratio", "", "≤ 0.5", lambda v: v <= 0.5),
]
PAIRED = {"latency_live_brake_tester_p50_ms", "latency_live_gas_analyzer_p50_ms", "latency_live_opacimeter_p50_ms",
          "latency_live_dynamometer_p50_ms", "serial_round_trips_per_s"}


def _value(document: dict[str, Any], key: str) -> str:
    value = document.get(key)
    if value is None:
        return "—"
    if key in PAIRED:
        other = key.replace("_p50_", "_p99_") if "_p50_" in key else "serial_line_limit_per_s"
        return f"{value} / {document.get(other, '—')}"
    return str(value)


def render_table(document: dict[str, Any]) -> str:
    lines = ["", f"{'figure':44} {'value':>18} {'unit':7} {'target':8} ok"]
    lines.append("-" * len(lines[-1]))
    for label, key, unit, target, check in ROWS:
        value = document.get(key)
        verdict = "" if check is None or value is None else ("yes" if check(value) else "NO")
        lines.append(f"{label:44} {_value(document, key):>18} {unit:7} {target:8} {verdict}")
    for count in sorted({int(k.rsplit('_n', 1)[1]) for k in document if k.startswith("cpu_lane_pct_core_n")}):
        cpu, rss = document.get(f"cpu_lane_pct_core_n{count}"), document.get(f"rss_lane_peak_mb_n{count}")
        lines.append(f"{f'4 N = {count} lanes: CPU per lane / peak RSS':44} {cpu!s:>9} / {rss!s:>6} {'%, MB':7}")
    if document.get("gateway_name"):
        lines.append(f"gateway: {document['gateway_name']}")
    if document.get("gateway2_name"):
        lines.append(f"gateway 2: {document['gateway2_name']}")
        if document.get("gateway_laned_follows_curve"):
            lines.append("6 laned there also follows the 100 Hz curve (2 requests a poll, ~10 samples a message): "
                         "not like for like with the gateway")
    machine = document.get("machine", {})
    lines.append(f"machine: {machine.get('cores')} cores, {machine.get('cpu_model')}, Python {machine.get('python')}, "
                 f"broker {document.get('broker')}; {document.get('mode')} run, median of {document.get('repeats')} "
                 f"windows, {document.get('duration_s')} s")
    lines += ["", "goals (issue 17), measured in this run:"]
    for key, label, target, check in GOALS:
        value = document.get(key)
        verdict = "" if value is None or not target else ("met" if check(value) else "NOT met")
        lines.append(f"  {key:44} {label:52} {'—' if value is None else value!s:>8} {target:6} {verdict}")
    for failure in document.get("failures", []):
        lines.append(f"FAILED {failure}")
    return "\n".join(lines)
