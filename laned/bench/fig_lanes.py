"""Figures 3 and 4 — latency and the cost of a lane.

Cost (4): for N = 1, 4, 8 lanes, each a `laned run --config` daemon with its gas
analyzer (10 Hz), opacimeter (20 Hz), brake tester (its 100 Hz curve followed over TCP:
10 polls a second, each one block read of the new ring samples and one snapshot, published
as one live message carrying the ~10 new samples) and chassis dynamometer (its 10 Hz ring
followed over Modbus TCP the same way, 10 polls a second) publishing live readings, the CPU
seconds per minute and the peak RSS of each daemon process, read from /proc. Simulators, broker
and bench are other processes.

Floor (4): the same I/O as one lane, done by `laned.bench.floor_lane` (raw sockets, no
framework) on its own simulators and the same broker: what the machine charges for the lane's
wake-ups and system calls plus the least Python that carries them. `cpu_lane_over_floor` is
figure 4 against it: what laned's drivers, checks and libraries add.

Latency (3): with one lane, every `…/live/…` message is timed in a loopback subscriber
against the moment the simulator made the measurement it carries (its SEQ or
SAMPLE_INDEX counts the simulator's ticks from a known origin); the dynamometer's ring
samples are counted at the subscriber (`dyno_lossless_ratio`: made between the first and the
last seen, the fraction seen exactly once), and its share of the lane's CPU is the lane
measured again without it (`dyno_cpu_share`); and after the cost
windows, exterior-only inspections (start, the PDA's capture, two results) are timed from
the PDA's last capture message to the later of the two results, both seen by the subscriber.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from laned.bench.common import (
    Broker,
    Child,
    CpuMeter,
    Subscriber,
    measured_at,
    median,
    percentile,
    proc_status_kb,
    python_module,
    rounded,
)
from laned.bench.lanes import STATION, TOPIC_PREFIX, BenchLane, LaneRates, LaneSet

#: the field of each device's live message that counts its simulator's ticks
COUNTER_FIELD = {"gas-analyzer": "seq", "opacimeter": "seq", "brake-tester": "sample_index",
                 "dynamometer": "sample_index"}
#: the devices of a bench lane without its dynamometer (the dynamometer's CPU share is the difference)
NO_DYNO = ("gas-analyzer", "opacimeter", "brake-tester")
#: SEQ and the ring's SAMPLE_INDEX are both 16-bit counts
COUNTER_MODULUS = 65536
RESULT_VEHICLE = "gasoline-car"


@dataclass(frozen=True)
class LaneParams:
    counts: tuple[int, ...]
    window_s: float  # one repeat with one lane
    window_many_s: float  # one repeat with several lanes
    repeats: int
    inspections: int


class LiveTimer:
    """Times live messages against their measurements; counts messages per lane and device."""

    def __init__(self, lanes: list[BenchLane], *, timed: bool) -> None:
        self.origins = {lane.name: lane.origins for lane in lanes}
        self.timed = timed
        self.latencies_s: dict[str, list[float]] = defaultdict(list)
        self.counts: dict[tuple[str, str], int] = defaultdict(int)
        self._seen: set[tuple[str, str, int]] = set()
        self.negative = 0
        self.coverage = Coverage()
        self.batch_sizes: dict[str, list[int]] = defaultdict(list)
        self.after_read_s: dict[str, list[float]] = defaultdict(list)
        #: the dynamometer's ring samples as they arrived, per lane: index -> times seen, and the order
        self.ring_seen: dict[str, dict[int, int]] = defaultdict(dict)
        self.ring_order: dict[str, list[int]] = defaultdict(list)

    def reset(self) -> None:
        self.latencies_s.clear()
        self.counts.clear()
        self.coverage = Coverage()
        self.batch_sizes.clear()
        self.after_read_s.clear()
        self.ring_seen.clear()
        self.ring_order.clear()

    def on_message(self, arrived: float, topic: str, payload: bytes) -> None:
        parts = topic.split("/")  # laned/v1/STATION/LANE/live/DEVICE
        lane, device = parts[3], parts[5]
        self.counts[(lane, device)] += 1
        document = json.loads(payload) if self.timed or device == "dynamometer" else {}
        if device == "dynamometer":
            self._ring_samples(lane, document)
        if not self.timed:
            return
        lane_time = document.get("lane_time")
        if isinstance(lane_time, (int, float)):  # the reply read off the line -> here: laned's own part
            self.after_read_s[device].append(time.time() - lane_time)
        self.coverage.add(lane, device, document)
        self.batch_sizes[device].append(len(document.get("readings") or [document]))
        counter = document.get(COUNTER_FIELD.get(device, ""))
        origin = self.origins.get(lane, {}).get(device)
        if counter is None or origin is None or (lane, device, counter) in self._seen:
            return  # a measurement read twice counts once, at its first arrival
        self._seen.add((lane, device, counter))
        latency = arrived - measured_at(origin, int(counter), arrived)
        if latency < 0:
            self.negative += 1
        self.latencies_s[device].append(latency)

    def _ring_samples(self, lane: str, document: dict[str, Any]) -> None:
        """Every ring sample a dynamometer message carries. Its readings each hold their `speeds_kmh`
        (one per sample); `first_sample_index` is at the top level only, the newest reading's
        (laned.devices strips it from each reading, as for the brake tester's curve), so the
        earlier readings' samples are the ones just before, walking back (the driver follows the
        ring without gaps; a gap it logged would show here as samples placed wrong, not as more)."""
        first = document.get("first_sample_index")
        if first is None:
            return
        seen, order = self.ring_seen[lane], self.ring_order[lane]
        readings = document.get("readings", [])
        if not readings:
            return
        end = int(first) + len(readings[-1].get("speeds_kmh") or ())  # after the newest reading's samples
        placed: list[int] = []
        for reading in reversed(readings):
            count = len(reading.get("speeds_kmh") or ())
            placed[:0] = [(end - count + k) % 65536 for k in range(count)]
            end -= count
        for index in placed:
            if index not in seen:
                order.append(index)
            seen[index] = seen.get(index, 0) + 1

    def ring_lossless(self) -> float | None:
        """Of the ring samples the dynamometers made between the first and the last one seen, the
        fraction seen exactly once at the subscriber (median over the lanes)."""
        ratios = []
        for lane, seen in self.ring_seen.items():
            order = self.ring_order[lane]
            if len(order) < 2:
                continue
            span = (max((i - order[0]) % 65536 for i in order)) + 1
            ratios.append(sum(1 for n in seen.values() if n == 1) / span)
        return median(ratios)


class Coverage:
    """Whether every update of each device reached the subscriber exactly once: the analyzer's and
    the opacimeter's SEQ of every reading a message carries (`readings`), the brake tester's ring
    index of every curve sample (`first_sample_index` on), each unwrapped to a count that only grows.
    Coverage is the distinct counts seen over the span from the first to the last; a count seen
    twice is a duplicate (the same update read or sent twice)."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], list[int]] = defaultdict(list)

    def add(self, lane: str, device: str, document: dict[str, Any]) -> None:
        if device == "brake-tester":
            first, left = document.get("first_sample_index"), document.get("left_force_dan") or []
            counters = [] if first is None else [(int(first) + k) % COUNTER_MODULUS for k in range(len(left))]
        else:
            counters = [int(r["seq"]) for r in document.get("readings", [document]) if r.get("seq") is not None]
        seen = self.seen[(lane, device)]
        for counter in counters:
            if seen:  # unwrap against the last count: a step back of more than half the modulus is a wrap
                step = (counter - seen[-1]) % COUNTER_MODULUS
                seen.append(seen[-1] + (step if step < COUNTER_MODULUS // 2 else step - COUNTER_MODULUS))
            else:
                seen.append(counter)

    def figures(self) -> dict[str, Any]:
        """Per device (the median over lanes has one lane here): coverage and duplicates."""
        out: dict[str, Any] = {}
        ratios: list[float] = []
        for (_lane, device), seen in sorted(self.seen.items()):
            if not seen:
                continue
            distinct = len(set(seen))
            ratio = distinct / (max(seen) - min(seen) + 1)
            key = device.replace("-", "_")
            out[f"live_coverage_{key}"] = rounded(ratio, 4)
            out[f"live_duplicates_{key}"] = len(seen) - distinct
            out[f"live_updates_{key}"] = distinct
            ratios.append(ratio)
        out["live_coverage"] = rounded(min(ratios), 4) if ratios else None
        out["live_duplicates"] = sum(v for k, v in out.items() if k.startswith("live_duplicates_"))
        return out


async def measure_lanes(workdir: Path, broker: Broker, params: LaneParams) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for count in params.counts:
        results.update(await _lanes(workdir / f"n{count}", broker, count, params))
    if 1 in params.counts:
        results.update(await _floor(workdir / "floor", broker, params))
        lane, floor = results.get("cpu_lane_pct_core_n1"), results["cpu_floor_pct_core"]
        results["cpu_lane_over_floor"] = rounded(lane / floor, 2) if lane and floor else None
    return results


async def _floor(workdir: Path, broker: Broker, params: LaneParams) -> dict[str, Any]:
    """The floor process on a lane's simulators: its CPU over windows as long as the N-lane ones
    (it has no start-up to wait out), and its message rate (it must do the lane's work: 40
    messages a second)."""
    lane = BenchLane("F1", workdir / "F1", ("gas-analyzer", "opacimeter", "brake-tester", "dynamometer"),
                     LaneRates())
    floor: Child | None = None
    try:
        await lane.start_sims()
        await lane.sims_ready()
        floor = Child("floor lane", python_module(
            "laned.bench.floor_lane", "--gas", str(lane.workdir / "gas-analyzer"), "--opac",
            str(lane.workdir / "opacimeter"), "--brake-port", str(lane.brake_port), "--dyno-port", str(lane.dyno_port),
            "--broker", f"{broker.host}:{broker.port}", "--root", lane.root), workdir / "floor.log")
        count = [0]
        async with Subscriber(broker.host, broker.port, [f"{lane.root}/live/#"],
                              lambda _arrived, _topic, _payload: count.__setitem__(0, count[0] + 1)):
            await floor.start()
            await asyncio.sleep(1.0)  # it has nothing to settle but its imports
            shares: list[float] = []
            count[0], started = 0, time.monotonic()
            for _ in range(params.repeats):
                meter = CpuMeter(floor.pid)
                meter.start()
                await asyncio.sleep(params.window_many_s)
                if not floor.running:
                    raise RuntimeError(f"the floor lane exited:\n{floor.log_tail()}")
                cpu, wall = meter.read()
                shares.append(cpu / wall)
            rate = count[0] / (time.monotonic() - started)
    finally:
        if floor is not None:
            await floor.stop()
        await lane.stop()
    share = median(shares)
    assert share is not None
    return {"cpu_floor_pct_core": rounded(share * 100, 2), "cpu_floor_messages_per_s": rounded(rate, 1)}


async def _lanes(workdir: Path, broker: Broker, count: int, params: LaneParams) -> dict[str, Any]:
    lanes = LaneSet(workdir, broker, count)
    out: dict[str, Any] = {}
    try:
        await lanes.start()
        timer = LiveTimer(lanes.lanes, timed=count == 1)
        topic = f"{TOPIC_PREFIX}/{STATION}/+/live/#"
        async with Subscriber(broker.host, broker.port, [topic], timer.on_message):
            await asyncio.sleep(2.0)  # settle: every driver polling, every queue flowing
            timer.reset()
            window_s = params.window_s if count == 1 else params.window_many_s
            cpu_per_lane: list[float] = []
            cpu_all: list[float] = []
            started = time.monotonic()
            for _ in range(params.repeats):
                meters = [CpuMeter(pid) for pid in lanes.daemon_pids]
                for meter in meters:
                    meter.start()
                await asyncio.sleep(window_s)
                shares = [cpu / wall for cpu, wall in (meter.read() for meter in meters)]
                cpu_per_lane.append(sum(shares) / len(shares))
                cpu_all.append(sum(shares))
            elapsed = time.monotonic() - started
        rss_mb = [proc_status_kb(pid, "VmHWM") / 1024 for pid in lanes.daemon_pids]
        share = median(cpu_per_lane)
        assert share is not None
        suffix = f"_n{count}"
        out[f"cpu_lane_s_per_min{suffix}"] = rounded(share * 60, 3)
        out[f"cpu_lane_pct_core{suffix}"] = rounded(share * 100, 2)
        out[f"cpu_all_lanes_pct_core{suffix}"] = rounded((median(cpu_all) or 0.0) * 100, 2)
        out[f"rss_lane_peak_mb{suffix}"] = rounded(max(rss_mb), 1)
        rates = defaultdict(list)
        for (_lane, device), n in timer.counts.items():
            rates[device].append(n / elapsed)
        out[f"live_rates_hz{suffix}"] = {device: rounded(median(values), 1) for device, values in rates.items()}
        lossless = timer.ring_lossless()
        out[f"dyno_lossless_ratio{suffix}"] = None if lossless is None else rounded(lossless, 4)
        if count == 1:
            out.update(_latency_figures(timer))
            out["dyno_lossless_ratio"] = out[f"dyno_lossless_ratio{suffix}"]
            out.update(await _result_latency(lanes.lanes[0], broker, params.inspections))
    finally:
        await lanes.stop()
    if count == 1:
        out.update(await _dyno_share(workdir.parent / "nodyno", broker, params, out["cpu_lane_pct_core_n1"]))
    return out


async def _dyno_share(workdir: Path, broker: Broker, params: LaneParams, with_dyno_pct: float) -> dict[str, Any]:
    """The dynamometer's share of one lane's CPU: the same lane without it, measured the same way."""
    lanes = LaneSet(workdir, broker, 1, devices=NO_DYNO, prefix="D")
    shares: list[float] = []
    try:
        await lanes.start()
        await asyncio.sleep(2.0)
        for _ in range(params.repeats):
            meter = CpuMeter(lanes.daemon_pids[0])
            meter.start()
            await asyncio.sleep(params.window_s)
            cpu, wall = meter.read()
            shares.append(cpu / wall)
    finally:
        await lanes.stop()
    without = (median(shares) or 0.0) * 100
    return {"cpu_lane_without_dyno_pct_core": rounded(without, 2),
            "dyno_cpu_share": rounded((with_dyno_pct - without) / with_dyno_pct, 3) if with_dyno_pct else None}


def _latency_figures(timer: LiveTimer) -> dict[str, Any]:
    every = [x for values in timer.latencies_s.values() for x in values]
    out: dict[str, Any] = {
        "latency_live_p50_ms": rounded(_ms(percentile(every, 50)), 2),
        "latency_live_p99_ms": rounded(_ms(percentile(every, 99)), 2),
        "latency_live_messages": len(every),
    }
    for device, values in sorted(timer.latencies_s.items()):
        key = device.replace("-", "_")
        out[f"latency_live_{key}_p50_ms"] = rounded(_ms(percentile(values, 50)), 2)
        out[f"latency_live_{key}_p99_ms"] = rounded(_ms(percentile(values, 99)), 2)
        out[f"latency_live_{key}_max_ms"] = rounded(_ms(max(values)), 2)
    for device, values in sorted(timer.after_read_s.items()):
        key = device.replace("-", "_")
        out[f"latency_live_{key}_after_read_p50_ms"] = rounded(_ms(percentile(values, 50)), 2)
        out[f"latency_live_{key}_after_read_p99_ms"] = rounded(_ms(percentile(values, 99)), 2)
    for device, sizes in sorted(timer.batch_sizes.items()):  # readings a message carries (live_hz)
        out[f"live_readings_per_message_{device.replace('-', '_')}"] = rounded(sum(sizes) / len(sizes), 2)
    out.update(timer.coverage.figures())
    if timer.negative:
        out["latency_live_negative"] = timer.negative  # would mean a clock or origin error
    return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


# ----- results of an inspection ------------------------------------------------------------------


def exterior_start(inspection_no: str, request_id: str) -> dict[str, Any]:
    """A station's `start` for the simulated gasoline car with the exterior check as its only item."""
    from simulators.vehicle import load_vehicle_file

    v = load_vehicle_file(RESULT_VEHICLE)["vehicle"]
    return {
        "schema": "lane-cmd-start/1", "request_id": request_id, "inspection_no": inspection_no,
        "station_time": time.strftime("%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(time.time() + 8 * 3600)),
        "vehicle": {**{k: v[k] for k in ("plate", "plate_type", "vin", "vehicle_class", "fuel", "curb_mass_kg",
                                         "total_mass_kg", "new_registration", "rated_engine_speed_rpm")},
                    "registration_date": str(v["registration_date"]), "has_obd": True},
        "axles": [{"position": "front"}, {"position": "rear", "parking_brake": True}],
        "items": {"exterior": True},
    }


async def _result_latency(lane: BenchLane, broker: Broker, inspections: int) -> dict[str, Any]:
    """Exterior-only inspections, one after the other: from the PDA's last message to the later result."""
    from simulators.pda import PdaSimulator

    seen: dict[str, Any] = {"pda": 0.0, "results": {}, "bytes": [], "replies": {}}

    def on_message(arrived: float, topic: str, payload: bytes) -> None:
        if topic.startswith(f"{lane.root}/pda/capture") or topic.startswith(f"{lane.root}/pda/photo/"):
            seen["pda"] = arrived
        elif topic.startswith(f"{lane.root}/reply/"):
            seen["replies"][topic.rsplit("/", 1)[1]] = json.loads(payload)
        elif topic.startswith(f"{lane.root}/result/"):
            seen["results"][topic.rsplit("/", 1)[1]] = arrived
            seen["bytes"].append(len(payload))

    latencies: list[float] = []
    async with Subscriber(broker.host, broker.port, [f"{lane.root}/#"], on_message, qos=1), \
            aiomqtt.Client(broker.host, broker.port, identifier=f"bench-station-{uuid.uuid4().hex[:8]}") as station:
        for number in range(1, inspections + 1):
            inspection_no = f"BENCH{int(time.time())}{number:03d}"
            seen["results"] = {}
            request_id = uuid.uuid4().hex[:12]
            start = exterior_start(inspection_no, request_id)
            await station.publish(f"{lane.root}/cmd/start", json.dumps(start, ensure_ascii=False), qos=1)
            await _wait(functools.partial(_has, seen["replies"], request_id), 10,
                        f"{lane.name}: no reply to {inspection_no}")
            if not seen["replies"][request_id].get("accepted"):
                raise RuntimeError(f"{lane.name}: start refused: {seen['replies'][request_id]}")
            pda = PdaSimulator(RESULT_VEHICLE, host=broker.host, port=broker.port, base=f"{lane.root}/pda")
            acks = await pda.capture(inspection_no)
            if not acks or not acks[-1].complete:
                raise RuntimeError(f"{lane.name}: the PDA capture of {inspection_no} was not completed: {acks}")
            await _wait(lambda: len(seen["results"]) >= 2, 30, f"{lane.name}: no two results for {inspection_no}")
            latencies.append(max(seen["results"].values()) - seen["pda"])
    return {
        "latency_result_p50_ms": rounded(_ms(percentile(latencies, 50)), 2),
        "latency_result_p99_ms": rounded(_ms(percentile(latencies, 99)), 2),
        "latency_result_inspections": len(latencies),
        "latency_result_bytes": int(median(seen["bytes"]) or 0),
        "latency_result_method": "exterior-only inspection: PDA's last capture message -> later of the two results",
    }


def _has(mapping: dict[str, Any], key: str) -> bool:
    return key in mapping


async def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout_s:g} s")
        await asyncio.sleep(0.005)
