"""OP-1 opacimeter: the driver against the simulator over a real pty, and the simulator's physics.

Expected values come from the manual (spec/devices/opacimeter.md) and from the
vehicle files in config/vehicles/ (written out here by hand, not read from them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.base import Backoff, DeviceHealth, HealthState
from drivers.errors import DeviceRefused, DeviceUnavailable
from drivers.opacimeter import OpacimeterDriver
from drivers.serial_link import SerialLink
from protocols import opacimeter as op
from simulators import opacimeter as sim_module
from simulators.control import send_control
from simulators.line import LateReply
from simulators.opacimeter import MeterSettings, OpacimeterSimulator, SmokeModel, load_smoke

pytestmark = pytest.mark.integration

H = bytes.fromhex


def quick(warmup_s: float = 0.3, zero_s: float = 0.3) -> MeterSettings:
    return MeterSettings(warmup_s=warmup_s, zero_s=zero_s)


class Recorder:
    """Health states of a driver, in order."""

    def __init__(self, driver: OpacimeterDriver) -> None:
        self.states: list[HealthState] = []
        driver.add_health_listener(self._on)

    def _on(self, _name: str, health: DeviceHealth) -> None:
        self.states.append(health.state)

    async def wait_for(self, state: HealthState, timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while state not in self.states:
                await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(driver: OpacimeterDriver) -> AsyncIterator[OpacimeterDriver]:
    task = asyncio.create_task(driver.run())
    try:
        yield driver
    finally:
        await driver.stop()
        async with asyncio.timeout(5):
            await task


def make_driver(link: Path) -> OpacimeterDriver:
    return OpacimeterDriver("opacimeter", port=str(link), backoff=Backoff(initial_s=0.05, max_s=0.3))


@pytest.fixture
def link(tmp_path: Path) -> Path:
    return tmp_path / "op1"


@pytest.fixture
def control(tmp_path: Path) -> Path:
    return tmp_path / "ctl"


async def next_reading(driver: OpacimeterDriver, timeout_s: float = 3.0) -> op.RealtimeReading:
    with driver.readings.subscription() as queue:
        async with asyncio.timeout(timeout_s):
            reading: op.RealtimeReading = await queue.get()
            return reading


class RawBytes:
    """A 'decoder' for SerialLink.request that returns the first `count` bytes as they came."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer.extend(data)
        return [bytes(self.buffer[: self.count])] if len(self.buffer) >= self.count else []


# ----- the simulator on the wire, byte for byte ------------------------------------------------


async def test_warming_meter_answers_status_and_env_and_refuses_measuring_with_15_03(link: Path) -> None:
    async with OpacimeterSimulator(link, settings=quick(warmup_s=30)):
        raw = SerialLink("test", str(link), baudrate=9600)
        await raw.open()
        try:
            assert await raw.request(H("a1 5f"), RawBytes(3), 0.3, expected="status") == H("a1 01 5e")
            # ENV with the settings' 294.6 K, 55.3 %, 100.8 kPa: the manual's ENV example
            assert await raw.request(H("af 51"), RawBytes(8), 0.3, expected="env") == H("af 0b 82 02 29 03 f0 a6")
            for request in ("a5 5b", "a6 5a", "a7 59", "a4 5c"):
                assert await raw.request(H(request), RawBytes(3), 0.3, expected="error") == H("15 03 e8")
        finally:
            await raw.close()


async def test_meter_answers_bad_checksum_with_02_and_unknown_command_with_01(link: Path) -> None:
    async with OpacimeterSimulator(link, settings=quick(warmup_s=0)):
        raw = SerialLink("test", str(link), baudrate=9600)
        await raw.open()
        try:
            assert await raw.request(H("a1 5e"), RawBytes(3), 0.3, expected="error") == H("15 02 e9")
            assert await raw.request(H("b0 50"), RawBytes(3), 0.3, expected="error") == H("15 01 ea")
            assert await raw.request(H("a7 59"), RawBytes(2), 0.3, expected="ack") == H("a7 59")
        finally:
            await raw.close()


async def test_a_lost_port_is_reported_as_lost_even_after_the_driver_closed_it(link: Path) -> None:
    # a procedure's request can race the driver's reconnect: it must still read "lost", which
    # is what a technician looks for in the item's reason, not "not open"
    raw = SerialLink("test", str(link), baudrate=9600)
    async with OpacimeterSimulator(link, settings=quick(warmup_s=0)):
        await raw.open()
        assert await raw.request(H("a7 59"), RawBytes(2), 0.3, expected="ack") == H("a7 59")
    with pytest.raises(DeviceUnavailable, match="serial port lost"):
        await raw.request(H("a7 59"), RawBytes(2), 1.0, expected="ack")
    await raw.close()
    with pytest.raises(DeviceUnavailable, match="serial port lost"):
        await raw.request(H("a7 59"), RawBytes(2), 0.3, expected="ack")
    with pytest.raises(DeviceUnavailable, match="serial port not open"):
        await SerialLink("test", str(link), baudrate=9600).request(H("a7 59"), RawBytes(2), 0.3, expected="ack")


async def test_during_a_zero_status_says_2_everything_else_is_busy_and_the_reply_comes_when_done(
    link: Path,
) -> None:
    async with OpacimeterSimulator(link, settings=quick(warmup_s=0, zero_s=0.8)) as sim:
        raw = SerialLink("test", str(link), baudrate=9600)
        await raw.open()
        try:
            raw.write(H("a4 5c"))  # ZERO, reply awaited below
            await asyncio.sleep(0.1)
            assert await raw.request(H("a1 5f"), RawBytes(3), 0.3, expected="status") == H("a1 02 5d")
            for request in ("a5 5b", "af 51", "a4 5c"):
                assert await raw.request(H(request), RawBytes(3), 0.3, expected="busy") == H("15 04 e7")
            zero = await raw.request(b"", op.ReplyDecoder(op.Command.ZERO), 2.0, expected="zero")
            assert zero == op.ZeroReply(passed=True)
            assert await raw.request(H("a1 5f"), RawBytes(3), 0.3, expected="status") == H("a1 00 5f")
            assert sim.zero_results == [True]
        finally:
            await raw.close()


# ----- the driver against the simulator ----------------------------------------------------------


async def test_driver_is_connected_only_after_a_good_read_and_reads_once_warm(link: Path) -> None:
    driver = make_driver(link)
    recorder = Recorder(driver)
    async with running(driver):
        await asyncio.sleep(0.3)  # no meter at the port yet: the driver retries, never connected
        assert HealthState.CONNECTED not in recorder.states
        assert driver.health.last_good_read is None
        async with OpacimeterSimulator(link, settings=quick(warmup_s=1.0)):
            await driver.wait_connected(3.0)
            # STATUS was answered: a good read, the meter is still warming up, nothing published
            assert driver.meter_state == op.MeterState.WARMING_UP
            assert driver.readings.latest is None
            reading = await next_reading(driver, 3.0)
            assert driver.meter_state == op.MeterState.READY
            # diesel-truck.toml: idle 650 r/min, oil 355 K, idle K 0.06 1/m
            assert reading.oil_temp_k == 355
            assert 550 <= reading.rpm <= 750
            assert reading.k_m1 <= 0.1
            # warm-up refusals are not link errors: never degraded on the way
            connected_at = recorder.states.index(HealthState.CONNECTED)
            assert HealthState.DEGRADED not in recorder.states[connected_at:]
            assert driver.health.identity == {"model": "OP-1", "port": str(link)}


async def test_readings_stream_at_about_20_hz_with_a_new_seq_each(link: Path) -> None:
    async with OpacimeterSimulator(link, settings=quick()), running(make_driver(link)) as driver:
        await next_reading(driver)
        readings: list[op.RealtimeReading] = []
        with driver.readings.subscription() as queue:
            started = time.monotonic()
            while time.monotonic() - started < 2.0:
                with contextlib.suppress(TimeoutError):
                    readings.append(await asyncio.wait_for(queue.get(), 0.5))
        # 20 Hz for 2 s is 40 updates; a loose lower bound keeps slow machines green
        assert 10 <= len(readings) <= 42
        seqs = [r.seq for r in readings]
        assert all((b - a) % 65536 >= 1 for a, b in itertools.pairwise(seqs))
        assert all(op.consistent(r.opacity_pct, r.k_m1) for r in readings)


async def test_the_oil_probe_reading_is_set_live_through_the_control_socket(link: Path, control: Path) -> None:
    async with (
        OpacimeterSimulator(link, settings=quick(), control_path=control, seed=7),
        running(make_driver(link)) as driver,
    ):
        assert (await next_reading(driver)).oil_temp_k == 355  # diesel-truck.toml
        assert await send_control(control, {"do": "set", "oil_temp_k": 331}) == {"oil_temp_k": 331}
        await asyncio.sleep(0.2)
        assert (await next_reading(driver)).oil_temp_k == 331  # a cold engine: 57.85 °C
        await send_control(control, {"do": "set", "oil_temp_k": None})
        await asyncio.sleep(0.2)
        assert (await next_reading(driver)).oil_temp_k is None  # no probe: OIL_T 0xFFFF on the wire
        with pytest.raises(RuntimeError, match="set takes oil_temp_k"):
            await send_control(control, {"do": "set", "k_m1": 3})


async def test_free_acceleration_via_control_gives_the_vehicle_files_peak(link: Path, control: Path) -> None:
    async with (
        OpacimeterSimulator(link, settings=quick(), control_path=control, seed=7),
        running(make_driver(link)) as driver,
    ):
        await next_reading(driver)
        await driver.clear_peak()
        # diesel-truck.toml: idle 650 r/min, governed 2420 r/min; the first acceleration
        # (purge 1) peaks at K 0.95 1/m
        result = await send_control(control, {"do": "accelerate"})
        assert result == {"acceleration": 1, "peak_k_m1": 0.95, "top_rpm": 2420}
        top_rpm = 0
        with driver.readings.subscription() as queue:
            async with asyncio.timeout(8.0):
                while True:  # RPM rises to the governed speed, then falls back to idle
                    rpm = (await queue.get()).rpm
                    top_rpm = max(top_rpm, rpm)
                    if top_rpm >= 2350 and rpm < 800:
                        break
        peak = await driver.peak()
        assert peak.k_m1 == pytest.approx(0.95, abs=0.02)
        assert peak.rpm == pytest.approx(2420, abs=60)
        assert op.consistent(peak.opacity_pct, peak.k_m1)
        # the next acceleration is the file's second: purge 2 at 0.80 1/m
        assert (await send_control(control, {"do": "accelerate"}))["peak_k_m1"] == 0.80


async def test_zero_passes_and_a_failed_zero_reports_false(link: Path, control: Path) -> None:
    async with (
        OpacimeterSimulator(link, settings=quick(zero_s=0.5), control_path=control) as sim,
        running(make_driver(link)) as driver,
    ):
        await next_reading(driver)
        assert await driver.zero() is True
        await send_control(control, {"fault": "zero_fails"})
        assert await driver.zero() is False
        assert await driver.status() == op.MeterState.READY  # a failed zero leaves the meter ready
        assert sim.zero_results == [True, False]


async def test_zero_waits_out_a_zero_already_running_instead_of_sending_into_it(link: Path) -> None:
    async with (
        OpacimeterSimulator(link, settings=quick(zero_s=0.8)) as sim,
        running(make_driver(link)) as driver,
    ):
        await next_reading(driver)
        # a ZERO whose reply never reached the host: the meter zeroes, the reply is lost
        assert isinstance(sim.handle(op.encode_request(op.Command.ZERO)), LateReply)
        assert sim.state() == op.MeterState.ZEROING
        # a ZERO sent into the running zero would be answered 15 04 and raise DeviceRefused
        assert await driver.zero() is True
        assert sim.zero_results == [True]  # the driver's own zero, sent once the first had ended


async def test_zero_during_warm_up_is_refused_with_the_reason(link: Path) -> None:
    async with OpacimeterSimulator(link, settings=quick(warmup_s=30)), running(make_driver(link)) as driver:
        await driver.wait_connected(3.0)
        with pytest.raises(DeviceRefused, match="warming_up"):
            await driver.zero()


async def test_error_reply_raises_device_refused_naming_the_meaning(link: Path, control: Path) -> None:
    async with (
        OpacimeterSimulator(link, settings=quick(), control_path=control),
        running(make_driver(link)) as driver,
    ):
        await next_reading(driver)
        await send_control(control, {"fault": "error_reply", "code": "busy", "for_s": 0.5})
        with pytest.raises(DeviceRefused, match=r"ENV refused with error 04: busy"):
            await driver.env()
        await asyncio.sleep(0.6)
        await driver.wait_connected(5.0)
        assert (await driver.env()).baro_kpa == 100.8


async def test_silence_degrades_then_disconnects_and_recovers_when_cleared(link: Path, control: Path) -> None:
    async with OpacimeterSimulator(link, settings=quick(), control_path=control):
        driver = make_driver(link)
        recorder = Recorder(driver)
        async with running(driver):
            await next_reading(driver)
            recorder.states.clear()
            await send_control(control, {"fault": "silence"})
            await recorder.wait_for(HealthState.DISCONNECTED)
            assert recorder.states.index(HealthState.DEGRADED) < recorder.states.index(HealthState.DISCONNECTED)
            assert "no valid REALTIME reply" in (driver.health.last_error or "")
            await send_control(control, {"clear": "silence"})
            await driver.wait_connected(5.0)
            await next_reading(driver)


async def test_lost_cable_disconnects_and_reconnects_by_itself(link: Path, control: Path) -> None:
    async with OpacimeterSimulator(link, settings=quick(), control_path=control):
        driver = make_driver(link)
        recorder = Recorder(driver)
        async with running(driver):
            await next_reading(driver)
            recorder.states.clear()
            await send_control(control, {"fault": "lost_cable", "for_s": 0.6})
            await recorder.wait_for(HealthState.DISCONNECTED)
            await driver.wait_connected(5.0)
            await next_reading(driver)
            assert driver.health.reconnects >= 1


async def test_bad_checksum_frames_are_counted_and_skipped(link: Path, control: Path) -> None:
    async with (
        OpacimeterSimulator(link, settings=quick(), control_path=control),
        running(make_driver(link)) as driver,
    ):
        await next_reading(driver)
        assert driver.frame_errors == 0
        await send_control(control, {"fault": "bad_checksum", "for_s": 0.25})
        await asyncio.sleep(0.4)
        assert driver.frame_errors >= 1
        await driver.wait_connected(5.0)
        reading = await next_reading(driver)
        assert op.consistent(reading.opacity_pct, reading.k_m1)


async def test_stray_bytes_before_replies_are_skipped_and_readings_go_on(link: Path, control: Path) -> None:
    async with (
        OpacimeterSimulator(link, settings=quick(), control_path=control),
        running(make_driver(link)) as driver,
    ):
        await next_reading(driver)
        await send_control(control, {"fault": "stray_bytes", "for_s": 1.0})
        got = []
        with driver.readings.subscription() as queue:
            started = time.monotonic()
            while time.monotonic() - started < 0.8:
                got.append(await asyncio.wait_for(queue.get(), 1.0))
        assert len(got) >= 5
        assert driver.link.bytes_in > 0


async def test_frozen_seq_is_stale_after_one_second_and_the_link_is_reopened(link: Path, control: Path) -> None:
    async with OpacimeterSimulator(link, settings=quick(), control_path=control):
        driver = make_driver(link)
        recorder = Recorder(driver)
        async with running(driver):
            await next_reading(driver)
            recorder.states.clear()
            await send_control(control, {"fault": "frozen_seq", "for_s": 1.6})
            await recorder.wait_for(HealthState.DISCONNECTED, 4.0)
            assert "SEQ stuck" in (driver.health.last_error or "")
            await asyncio.sleep(0.8)
            await driver.wait_connected(5.0)
            first = await next_reading(driver)
            second = await next_reading(driver)
            assert second.seq != first.seq


async def test_cli_run_serves_with_fast_timings_and_a_control_socket(link: Path, control: Path) -> None:
    parser = argparse.ArgumentParser()
    sim_module.add_arguments(parser)
    args = parser.parse_args(["--link", str(link), "--control", str(control), "--fast", "--vehicle", "diesel-car"])
    task = asyncio.create_task(sim_module.run(args))
    try:
        async with asyncio.timeout(5):
            while not control.exists():
                await asyncio.sleep(0.02)
        state = await send_control(control, {"get": "state"})
        assert state["vehicle"].endswith("diesel-car.toml")
        async with running(make_driver(link)) as driver:
            reading = await next_reading(driver, 4.0)  # --fast: ready within about a second
            assert reading.oil_temp_k == 356  # diesel-car.toml
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# ----- the simulator's physics, without the line --------------------------------------------------


def _accelerate_all(vehicle: str) -> list[op.PeakReading]:
    smoke, _ = load_smoke(vehicle)
    model = SmokeModel(smoke, seed=3)
    model.advance(20)
    peaks = []
    for _ in smoke.accelerations:
        model.clear_peak()
        model.accelerate()
        model.advance(160)  # 8 s: the whole acceleration and its decay
        peaks.append(model.peak)
    return peaks


@pytest.mark.parametrize(
    ("vehicle", "peaks_k_m1", "governed_rpm"),
    [
        ("diesel-truck", [0.95, 0.80, 0.72, 0.62, 0.58, 0.60], 2420),
        ("diesel-car", [0.52, 0.41, 0.37, 0.35, 0.32, 0.33], 4400),
        ("diesel-fail-k", [1.85, 1.66, 1.58, 1.45, 1.52, 1.49], 3500),
    ],
)
def test_each_acceleration_peaks_at_the_vehicle_files_k_at_governed_speed(
    vehicle: str, peaks_k_m1: list[float], governed_rpm: int
) -> None:
    peaks = _accelerate_all(vehicle)
    assert [p.k_m1 for p in peaks] == pytest.approx(peaks_k_m1, abs=0.02)
    assert all(abs(p.rpm - governed_rpm) <= 60 for p in peaks)
    assert all(op.consistent(p.opacity_pct, p.k_m1) for p in peaks)


def test_low_governed_vehicle_misses_governed_speed_on_its_fifth_acceleration() -> None:
    peaks = _accelerate_all("diesel-low-governed")
    # diesel-low-governed.toml: governed 2700 r/min; the 5th (measured 2) tops out at 1750
    assert [p.k_m1 for p in peaks] == pytest.approx([0.68, 0.55, 0.49, 0.45, 0.42, 0.44], abs=0.02)
    assert peaks[4].rpm == pytest.approx(1750, abs=60)
    assert all(abs(p.rpm - 2700) <= 60 for i, p in enumerate(peaks) if i != 4)


def test_filtered_k_follows_a_step_with_a_half_second_response() -> None:
    bessel = sim_module.BesselFilter(0.0)
    out = [bessel.step(1.0) for _ in range(60)]
    t10 = next(i for i, y in enumerate(out) if y >= 0.1) * sim_module.TICK_S
    t90 = next(i for i, y in enumerate(out) if y >= 0.9) * sim_module.TICK_S
    assert t90 - t10 == pytest.approx(0.5, abs=0.1)  # 10-90 % in 0.5 s, at 50 ms resolution
    assert out[-1] == pytest.approx(1.0, abs=1e-3)


def test_vehicles_without_a_smoke_table_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="no \\[smoke\\] table"):
        load_smoke("gasoline-car")
