"""Figure 6 — laned against a generic Modbus-to-MQTT gateway, side by side in one run.

The gateway is modbus4mqtt from PyPI, installed by the bench into its own virtual
environment under a cache dir (it pins pymodbus < 3 and paho-mqtt < 2, so it cannot share
the daemon's environment; in its own it gets pymodbus 2.5.3). If it cannot be installed or
does not publish, the bench falls back to laned/bench/generic_gateway.py and says so.

Both poll the same simulated brake tester's input registers 0..15 over Modbus TCP at
about 10 Hz and publish each poll as one JSON message to the same broker: laned as a
`laned run --config` daemon with only the brake tester, its live readings on; the
gateway with every register in one JSON object (`json_key`), published on every poll.
A lane with live on also follows the 100 Hz curve ring (a second request a poll, ~10
samples a message); the bench turns that off here (`follow_curve = false`) so that both
do the same job, and `gateway_laned_follows_curve` records which of the two was measured.
Per process: CPU seconds per published reading (from /proc), and reading-to-subscriber
latency (the reading's SAMPLE_INDEX says when the tester made it). In the same windows the
floor (`laned.bench.floor_lane --brake-only`: the same job with raw sockets and no framework)
shows what a reading costs on this machine at the least (`gateway_floor_…`), and the library
floor (`laned.bench.library_floor`: the same job through pymodbus and aiomqtt alone, no laned
code) what the two libraries laned must stand on add to it (`gateway_libfloor_…`): no lane can
cost less than that on the supported paths, so `gateway_laned_over_libfloor` is laned's own share.

Then the same two on the job a brake lane is for, the 100 Hz force curve (`gateway_curve_…`):
laned with its default live path (following the ring at 10 Hz polls, every sample once) and
the gateway polling the snapshot as fast as it can (modbus4mqtt: `update_rate: 0`, still
its fixed 50 ms sleep a poll; the fallback: every 10 ms), each sample it sees being the one
force pair registers 0..3 hold at that moment. Per process: the share of the samples the
tester made that reached the subscriber, and CPU per sample that did.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from laned.bench.common import (
    Broker,
    Child,
    CpuMeter,
    Subscriber,
    measured_at,
    median,
    percentile,
    python_module,
    rounded,
)
from laned.bench.lanes import LaneRates, LaneSet, brake_follows_curve

GATEWAY_PACKAGE, GATEWAY_VERSION = "modbus4mqtt", "0.7.1"
GATEWAY_PREFIX = "bench-gateway"
#: the second gateway (issue 17): modbus2mqtt, a topic per register, `--always-publish` so that
#: every poll is a message like laned's and modbus4mqtt's; its readings are counted on one topic
M2M_PACKAGE, M2M_VERSION = "modbus2mqtt", "0.73"
M2M_PREFIX = "bench-m2m"
M2M_COUNTED = f"{M2M_PREFIX}/brake/state/sample_index"
FLOOR_ROOT = "bench-floor"
LIBFLOOR_ROOT = "bench-libfloor"
POLL_HZ = 10.0
#: modbus4mqtt sleeps 50 ms after every block read, then `update_rate`: 0.05 gives about 10 Hz
MODBUS4MQTT_UPDATE_RATE_S = 0.05
#: the gateway chasing the 100 Hz curve: no update_rate sleep (modbus4mqtt), a poll every 10 ms (fallback)
CURVE_MODBUS4MQTT_UPDATE_RATE_S = 0.0
CURVE_FALLBACK_INTERVAL_S = 0.01
#: wait this long after a window for the samples made in it that are still on their way
IN_FLIGHT_S = 0.6
REGISTERS = [("left_force_n", 0, "int32", 1), ("right_force_n", 2, "int32", 1), ("left_load_n", 4, "int32", 1),
             ("right_load_n", 6, "int32", 1), ("left_speed_kmh", 8, "uint16", 0.01),
             ("right_speed_kmh", 9, "uint16", 0.01), ("state", 10, "uint16", 1), ("fault_code", 11, "uint16", 1),
             ("sample_index", 12, "uint16", 1), ("sample_rate_hz", 13, "uint16", 1), ("ring_size", 14, "uint16", 1)]


@dataclass(frozen=True)
class GatewayParams:
    window_s: float
    repeats: int
    venv: Path


def default_venv() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "laned" / ".venv-bench-gateway"


def ensure_gateway_venv(venv: Path) -> tuple[Path | None, str]:
    """modbus4mqtt in its own venv (installed once, then reused): its executable, or None and why not."""
    marker = venv / f".installed-{GATEWAY_PACKAGE}-{GATEWAY_VERSION}"
    executable = venv / "bin" / GATEWAY_PACKAGE
    if marker.exists() and executable.exists():
        return executable, "cached"
    try:
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
        pip = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q",
             f"{GATEWAY_PACKAGE}=={GATEWAY_VERSION}"], capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"cannot create {venv}: {exc}"
    if pip.returncode != 0 or not executable.exists():
        return None, f"pip install {GATEWAY_PACKAGE} failed: {(pip.stderr or pip.stdout)[-500:]}"
    marker.write_text(GATEWAY_VERSION + "\n")
    return executable, "installed"


def m2m_venv(gateway_venv: Path) -> Path:
    return gateway_venv.with_name(".venv-bench-modbus2mqtt")


def ensure_m2m_venv(venv: Path) -> tuple[Path | None, str]:
    """modbus2mqtt in its own venv, with its one-word fix for the pymodbus 3.16 it pulls in: the
    unit keyword of pymodbus's requests is `device_id=` since 3.10 (`slave=` before), and modbus2mqtt
    0.73 still passes `slave=`. Its python, or None and why not."""
    marker = venv / f".installed-{M2M_PACKAGE}-{M2M_VERSION}-patched"
    python = venv / "bin" / "python"
    if marker.exists() and python.exists():
        return python, "cached"
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
             f"{M2M_PACKAGE}=={M2M_VERSION}"], capture_output=True, text=True, timeout=600, check=False)
        if pip.returncode != 0:
            return None, f"pip install {M2M_PACKAGE} failed: {(pip.stderr or pip.stdout)[-500:]}"
        where = subprocess.run([str(python), "-c", "import importlib.util as u; "
                                "print(u.find_spec('modbus2mqtt.modbus2mqtt').origin)"],
                               capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"cannot install {M2M_PACKAGE} in {venv}: {exc}"
    source = Path(where)
    source.write_text(source.read_text().replace("slave=", "device_id="))
    marker.write_text(M2M_VERSION + "\n")
    return python, "installed"


def m2m_config() -> str:
    """modbus2mqtt's CSV: one poller of input registers 0..15 every 0.1 s, a topic per field."""
    kinds = {"int32": "int32BE", "uint16": "uint16"}
    rows = ["type,topic,col2,col3,col4,col5,col6", f"poller,brake,1,0,16,input_register,{1 / POLL_HZ}"]
    rows += [f"reference,{name},{address},r,{kinds[kind]},{scale if scale != 1 else ''},"
             for name, address, kind, scale in REGISTERS]
    return "\n".join(rows) + "\n"


def _versions(executable: Path) -> str:
    """The pymodbus and paho-mqtt the gateway's venv really holds."""
    code = "import importlib.metadata as m; print(m.version('pymodbus'), m.version('paho-mqtt'))"
    try:
        out = subprocess.run([str(executable.parent / "python"), "-c", code], capture_output=True, text=True,
                             timeout=30, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return "versions unknown"
    return f"pymodbus {out[0]}, paho-mqtt {out[1]}" if len(out) == 2 else "versions unknown"


def modbus4mqtt_config(port: int, update_rate_s: float = MODBUS4MQTT_UPDATE_RATE_S) -> str:
    lines = ["ip: 127.0.0.1", f"port: {port}", "device_address: 1", f"update_rate: {update_rate_s}",
             "address_offset: 0", "scan_batching: 16", "registers:"]
    for name, address, kind, scale in REGISTERS:
        lines += ['  - pub_topic: "brake/snapshot"', f"    json_key: {name}", "    table: input",
                  f"    address: {address}", f"    type: {kind}", "    pub_only_on_change: false"]
        if scale != 1:
            lines.append(f"    scale: {scale}")
    return "\n".join(lines) + "\n"


def _gateway_argv(executable: Path | None, how: str, versions: str, workdir: Path, port: int, broker: Broker,
                  prefix: str, *, curve: bool) -> tuple[str, list[str]]:
    """(name, argv) of the gateway polling the simulated tester on `port`."""
    if executable is not None:
        config = workdir / f"modbus4mqtt-{prefix}.yaml"
        rate = CURVE_MODBUS4MQTT_UPDATE_RATE_S if curve else MODBUS4MQTT_UPDATE_RATE_S
        config.write_text(modbus4mqtt_config(port, rate))
        return (f"{GATEWAY_PACKAGE} {GATEWAY_VERSION} ({versions}; own venv, {how})",
                [str(executable), "--hostname", broker.host, "--port", str(broker.port), "--config", str(config),
                 "--mqtt_topic_prefix", prefix])
    interval = CURVE_FALLBACK_INTERVAL_S if curve else 1 / POLL_HZ
    return (f"laned/bench/generic_gateway.py (pymodbus + paho; {GATEWAY_PACKAGE} unavailable: {how})",
            python_module("laned.bench.generic_gateway", "--modbus", f"127.0.0.1:{port}",
                          "--broker", f"{broker.host}:{broker.port}", "--prefix", prefix,
                          "--interval-s", str(interval)))


async def measure_gateway(workdir: Path, broker: Broker, params: GatewayParams) -> dict[str, Any]:
    executable, how = await asyncio.to_thread(ensure_gateway_venv, params.venv)
    versions = await asyncio.to_thread(_versions, executable) if executable is not None else ""
    m2m_python, m2m_how = await asyncio.to_thread(ensure_m2m_venv, m2m_venv(params.venv))
    out: dict[str, Any] = {"gateway2_name": (
        f"{M2M_PACKAGE} {M2M_VERSION} ({_versions(m2m_python.parent / M2M_PACKAGE)}; own venv, {m2m_how}, "
        "slave= -> device_id=)" if m2m_python is not None else f"{M2M_PACKAGE} not measured: {m2m_how}")}
    for curve in (False, True):
        # the snapshot alone (like for like), then the curve (laned's default live path)
        rates = LaneRates(brake_tester_hz=POLL_HZ, brake_follow_curve=curve)
        lanes = LaneSet(workdir, broker, 1, devices=("brake-tester",), rates=rates, prefix="C" if curve else "G")
        gateway: Child | None = None
        floor: Child | None = None
        libfloor: Child | None = None
        m2m: Child | None = None
        prefix = f"{GATEWAY_PREFIX}-curve" if curve else GATEWAY_PREFIX
        try:
            await lanes.start()
            lane = lanes.lanes[0]
            name, argv = _gateway_argv(executable, how, versions, workdir, lane.brake_port, broker, prefix,
                                       curve=curve)
            gateway = Child(prefix, argv, workdir / f"{prefix}.log")
            await gateway.start()
            if curve:
                out |= await _curve_side_by_side(lane.origins["brake-tester"], lanes, gateway, broker, lane.root,
                                                 prefix, params)
            else:
                floor = Child("floor", python_module("laned.bench.floor_lane", "--brake-only", "--brake-port",
                                                     str(lane.brake_port), "--broker", f"{broker.host}:{broker.port}",
                                                     "--root", FLOOR_ROOT), workdir / "floor.log")
                await floor.start()
                libfloor = Child("libfloor", python_module(
                    "laned.bench.library_floor", "--brake-port", str(lane.brake_port), "--broker",
                    f"{broker.host}:{broker.port}", "--root", LIBFLOOR_ROOT), workdir / "libfloor.log")
                await libfloor.start()
                if m2m_python is not None:
                    config = workdir / "modbus2mqtt.csv"
                    config.write_text(m2m_config())
                    m2m = Child(M2M_PREFIX, [
                        str(m2m_python), "-m", M2M_PACKAGE, "--mqtt-host", broker.host, "--mqtt-port",
                        str(broker.port), "--mqtt-topic", f"{M2M_PREFIX}/", "--tcp", "127.0.0.1", "--tcp-port",
                        str(lane.brake_port), "--config", str(config), "--always-publish", "--verbosity", "1"],
                        workdir / f"{M2M_PREFIX}.log")
                    await m2m.start()
                out |= await _side_by_side(lane.origins["brake-tester"], lanes, gateway, floor, broker, lane.root,
                                           prefix, params, m2m, libfloor)
                out |= {"gateway_name": name, "gateway_laned_follows_curve": brake_follows_curve(rates)}
        finally:
            for child in (m2m, libfloor, floor, gateway):
                if child is not None:
                    await child.stop()
            await lanes.stop()
    return out


async def _wait_for_gateway(gateway: Child, counts: dict[str, int], who: str = "gateway") -> None:
    """Until the gateway publishes (it retries its Modbus connection at first), then a second more."""
    deadline = time.monotonic() + 20
    while counts[who] < 5:
        if not gateway.running or time.monotonic() > deadline:
            raise RuntimeError(f"the gateway published nothing within 20 s:\n{gateway.log_tail()}")
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)


async def _side_by_side(origin: dict[str, Any], lanes: LaneSet, gateway: Child, floor: Child, broker: Broker,
                        root: str, prefix: str, params: GatewayParams, m2m: Child | None = None,
                        libfloor: Child | None = None) -> dict[str, Any]:
    whos = ["laned", "gateway", "floor"] + (["m2m"] if m2m is not None else []) + (
        ["libfloor"] if libfloor is not None else [])
    counts = dict.fromkeys(whos, 0)
    latencies: dict[str, list[float]] = {who: [] for who in whos}

    def on_message(arrived: float, topic: str, payload: bytes) -> None:
        if topic == M2M_COUNTED:  # modbus2mqtt: the value alone, on a topic of its own
            who, text = "m2m", payload.decode(errors="replace")
        else:
            who = ("gateway" if topic.startswith(prefix) else "floor" if topic.startswith(FLOOR_ROOT)
                   else "libfloor" if topic.startswith(LIBFLOOR_ROOT) else "laned")
            text = ""
        with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
            index = int(float(text)) if who == "m2m" else json.loads(payload)["sample_index"]
            counts[who] += 1
            latencies[who].append(arrived - measured_at(origin, int(index), arrived))

    topics = [f"{root}/live/brake-tester", f"{prefix}/brake/snapshot", f"{FLOOR_ROOT}/live/brake-tester", M2M_COUNTED,
              f"{LIBFLOOR_ROOT}/live/brake-tester"]
    async with Subscriber(broker.host, broker.port, topics, on_message):
        await _wait_for_gateway(gateway, counts)
        if m2m is not None:
            await _wait_for_gateway(m2m, counts, "m2m")
        if libfloor is not None:
            await _wait_for_gateway(libfloor, counts, "libfloor")
        per_reading: dict[str, list[float]] = {who: [] for who in whos}
        rates: dict[str, list[float]] = {who: [] for who in whos}
        for key in latencies:
            latencies[key].clear()
        for _ in range(params.repeats):
            meters = {"laned": CpuMeter(lanes.daemon_pids[0]), "gateway": CpuMeter(gateway.pid),
                      "floor": CpuMeter(floor.pid)}
            if m2m is not None:
                meters["m2m"] = CpuMeter(m2m.pid)
            if libfloor is not None:
                meters["libfloor"] = CpuMeter(libfloor.pid)
            for meter in meters.values():
                meter.start()
            before = dict(counts)
            await asyncio.sleep(params.window_s)
            for who, meter in meters.items():
                cpu, wall = meter.read()
                readings = counts[who] - before[who]
                per_reading[who].append(cpu / readings if readings else float("nan"))
                rates[who].append(readings / wall)
    if not floor.running:
        raise RuntimeError(f"the floor exited:\n{floor.log_tail()}")
    if libfloor is not None and not libfloor.running:
        raise RuntimeError(f"the library floor exited:\n{libfloor.log_tail()}")
    out: dict[str, Any] = {}
    for who, key in (("laned", "gateway_laned"), ("gateway", "gateway"), ("floor", "gateway_floor"),
                     ("m2m", "gateway2"), ("libfloor", "gateway_libfloor")):
        if who not in whos:
            continue
        out[f"{key}_cpu_ms_per_reading"] = rounded((median(per_reading[who]) or 0.0) * 1000, 3)
        out[f"{key}_readings_per_s"] = rounded(median(rates[who]), 1)
        out[f"{key}_latency_p50_ms"] = rounded((percentile(latencies[who], 50) or 0.0) * 1000, 2)
        out[f"{key}_latency_p99_ms"] = rounded((percentile(latencies[who], 99) or 0.0) * 1000, 2)
    gateway_cpu = out["gateway_cpu_ms_per_reading"]
    laned_cpu, floor_cpu = out["gateway_laned_cpu_ms_per_reading"], out["gateway_floor_cpu_ms_per_reading"]
    out["gateway_cpu_ratio"] = rounded(laned_cpu / gateway_cpu, 3) if gateway_cpu else None
    out["gateway_floor_cpu_ratio"] = rounded(floor_cpu / gateway_cpu, 3) if gateway_cpu else None
    m2m_cpu = out.get("gateway2_cpu_ms_per_reading")
    out["gateway2_cpu_ratio"] = rounded(laned_cpu / m2m_cpu, 3) if m2m_cpu else None
    libfloor_cpu = out.get("gateway_libfloor_cpu_ms_per_reading")
    if libfloor_cpu:
        # what the libraries alone cost against the gateway: a ratio laned cannot go below
        out["gateway_libfloor_cpu_ratio"] = rounded(libfloor_cpu / gateway_cpu, 3) if gateway_cpu else None
        out["gateway_laned_over_libfloor"] = rounded(laned_cpu / libfloor_cpu, 3)
    return out


async def _curve_side_by_side(origin: dict[str, Any], lanes: LaneSet, gateway: Child, broker: Broker, root: str,
                              prefix: str, params: GatewayParams) -> dict[str, Any]:
    """Curve samples that reach the subscriber, by the tester's tick that made them, and CPU per sample."""
    t0, tick_s = float(origin["t0"]), float(origin["tick_s"])
    counts = {"gateway": 0}  # the gateway's messages, to know it publishes
    ticks: dict[str, set[int]] = {"laned": set(), "gateway": set()}

    def tick_of(counter: int, arrived: float) -> int:
        return round((measured_at(origin, counter, arrived) - t0) / tick_s)

    def on_message(arrived: float, topic: str, payload: bytes) -> None:
        with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
            doc = json.loads(payload)
            if topic.startswith(prefix):
                counts["gateway"] += 1
                ticks["gateway"].add(tick_of(int(doc["sample_index"]), arrived))
            elif doc.get("first_sample_index") is not None:
                first = tick_of(int(doc["first_sample_index"]), arrived)
                ticks["laned"].update(range(first, first + len(doc["left_force_dan"])))

    captured: dict[str, list[float]] = {"laned": [], "gateway": []}
    per_sample: dict[str, list[float]] = {"laned": [], "gateway": []}
    topics = [f"{root}/live/brake-tester", f"{prefix}/brake/snapshot"]
    async with Subscriber(broker.host, broker.port, topics, on_message):
        await _wait_for_gateway(gateway, counts)
        for _ in range(params.repeats):
            meters = {"laned": CpuMeter(lanes.daemon_pids[0]), "gateway": CpuMeter(gateway.pid)}
            for meter in meters.values():
                meter.start()
            first_tick = int((time.monotonic() - t0) / tick_s) + 1
            await asyncio.sleep(params.window_s)
            cpu = {who: meter.read()[0] for who, meter in meters.items()}
            end_tick = int((time.monotonic() - t0) / tick_s)
            await asyncio.sleep(IN_FLIGHT_S)
            made = end_tick - first_tick
            for who in ticks:
                got = sum(1 for n in ticks[who] if first_tick <= n < end_tick)
                captured[who].append(got / made if made > 0 else float("nan"))
                per_sample[who].append(cpu[who] / got if got else float("nan"))
    out: dict[str, Any] = {}
    for who, key in (("laned", "gateway_curve_laned"), ("gateway", "gateway_curve")):
        out[f"{key}_captured_ratio"] = rounded(median(captured[who]), 3)
        out[f"{key}_cpu_ms_per_sample"] = rounded((median(per_sample[who]) or 0.0) * 1000, 3)
    gateway_cpu, laned_cpu = out["gateway_curve_cpu_ms_per_sample"], out["gateway_curve_laned_cpu_ms_per_sample"]
    out["gateway_curve_cpu_ratio"] = rounded(laned_cpu / gateway_cpu, 3) if gateway_cpu else None
    return out
