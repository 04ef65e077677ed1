"""GA-5 gas analyzer simulator (simulators/gas_analyzer.py) over a real pty, talked to with
serial_asyncio_fast and the protocol's ReplyDecoder, plus its bench model driven through
`handle()` on a fake clock. Expected behaviour is the manual's (spec/devices/gas-analyzer.md,
"Behaviour that a simulator must reproduce"); vehicle values are written out by hand from
config/vehicles/*.toml."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import serial_asyncio_fast

from protocols import gas_analyzer as ga
from protocols.errors import FrameError
from simulators import gas_analyzer as sim_module
from simulators.control import ControlServer, send_control
from simulators.gas_analyzer import GasAnalyzerSimulator, load_analyzer_config

pytestmark = pytest.mark.integration

C = ga.Command
WIRE_CHAR_S = 10 / 9600  # 9600 8N1


class _Receiver(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.arrived = asyncio.Event()
        self.lost = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.buffer.extend(data)
        self.arrived.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()
        self.arrived.set()


class Host:
    """The host's end: send a request, collect what the decoder makes of the reply."""

    def __init__(self, transport: asyncio.Transport, rx: _Receiver) -> None:
        self.transport, self.rx = transport, rx

    @classmethod
    async def open(cls, link: Path) -> Host:
        transport, rx = await serial_asyncio_fast.create_serial_connection(
            asyncio.get_running_loop(), _Receiver, str(link), baudrate=9600
        )
        assert isinstance(rx, _Receiver)
        return cls(transport, rx)

    def close(self) -> None:
        self.transport.close()

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    async def collect(self, command: ga.Command, timeout_s: float = 0.3, *, until_reply: bool = True) -> list[Any]:
        """Decoded items arriving within `timeout_s` (stopping at the first reply if asked)."""
        decoder = ga.ReplyDecoder(command)
        items: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            if self.rx.buffer:
                chunk = bytes(self.rx.buffer)
                self.rx.buffer.clear()
                items += decoder.feed(chunk)
                if until_reply and any(not isinstance(i, FrameError) for i in items):
                    return items
            self.rx.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.rx.arrived.wait(), remaining)
        return items

    async def ask(self, command: ga.Command, span: ga.SpanGas | None = None, timeout_s: float = 0.3) -> Any:
        """One request, its one reply (the manual's 300 ms host timeout); None if nothing came."""
        self.rx.buffer.clear()
        self.write(ga.encode_request(command, span))
        replies = [i for i in await self.collect(command, timeout_s) if not isinstance(i, FrameError)]
        return replies[0] if replies else None


def fast_config(**overrides: Any) -> sim_module.AnalyzerConfig:
    return load_analyzer_config(fast=True, **({"seed": 7} | overrides))


@pytest.fixture
def link(tmp_path: Path) -> Path:
    return tmp_path / "ga5"


@contextlib.asynccontextmanager
async def analyzer(link: Path, **overrides: Any) -> AsyncIterator[tuple[GasAnalyzerSimulator, Host]]:
    async with GasAnalyzerSimulator(link, config=fast_config(**overrides)) as sim:
        host = await Host.open(link)
        try:
            yield sim, host
        finally:
            host.close()


async def until(check: Callable[[], Any], timeout_s: float = 5.0, every_s: float = 0.05) -> Any:
    """Poll an async `check()` until it returns something truthy."""
    async with asyncio.timeout(timeout_s):
        while not (result := await check()):
            await asyncio.sleep(every_s)
        return result


async def wait_ready(host: Host) -> None:
    async def ready() -> bool:
        status = await host.ask(C.READ_STATUS)
        return isinstance(status, ga.StatusReading) and status.state is ga.AnalyzerState.READY

    await until(ready)


# ----- over the pty --------------------------------------------------------------------------


async def test_warms_up_reading_zero_gases_then_reports_ready(link: Path) -> None:
    async with analyzer(link, warmup_s=1.0) as (_sim, host):
        status = await host.ask(C.READ_STATUS)
        assert status.state is ga.AnalyzerState.WARMING_UP and status.warmup_left_s == 1
        main = await host.ask(C.READ_MAIN)
        assert ga.Flags.WARMING_UP in main.flags and ga.Flags.ZERO_DUE in main.flags
        assert (main.hc_ppm, main.co_pct, main.co2_pct, main.o2_pct, main.no_ppm, main.lambda_value) == (
            0, 0.0, 0.0, 0.0, 0, None
        )
        assert main.pef == 0.525  # the bench's constant, warming up or not
        await wait_ready(host)
        assert (await host.ask(C.READ_STATUS)).warmup_left_s == 0
        main = await host.ask(C.READ_MAIN)
        assert ga.Flags.WARMING_UP not in main.flags
        assert ga.Flags.ZERO_DUE in main.flags  # due at power-up until a passed ZERO
        assert main.o2_pct == pytest.approx(20.9, abs=0.1)  # the bench holds room air
        assert main.lambda_value is None  # CO2 about 0.04 % < 0.10 %


async def test_identifies_as_ga5_with_the_configured_serial_and_firmware(link: Path) -> None:
    async with analyzer(link) as (_sim, host):
        assert await host.ask(C.IDENTIFY) == ga.Identity("GA-5", "SIM0001", "1.0.0")


async def test_seq_advances_at_about_10_hz_and_same_seq_means_same_reading(link: Path) -> None:
    async with analyzer(link) as (_sim, host):
        first = await host.ask(C.READ_MAIN)
        await asyncio.sleep(1.0)
        second = await host.ask(C.READ_MAIN)
        assert 5 <= (second.seq - first.seq) % 65536 <= 25  # about 10 Hz, loosely (a busy loop may lag)
        reads = [await host.ask(C.READ_MAIN) for _ in range(6)]
        by_seq: dict[int, ga.MainReading] = {}
        for r in reads:
            assert by_seq.setdefault(r.seq, r) == r


async def test_reply_arrives_no_earlier_than_its_wire_time(link: Path) -> None:
    async with analyzer(link) as (sim, host):
        host.rx.buffer.clear()
        started = time.monotonic()
        host.write(b"\x01")
        await host.collect(C.READ_MAIN, 1.0)
        elapsed = time.monotonic() - started
        expected = 25 * WIRE_CHAR_S + sim.config.reply_delay_s  # 1 request + 24 reply bytes + think time
        assert elapsed >= 0.9 * expected


async def test_zero_acks_then_reports_running_then_passed(link: Path) -> None:
    async with analyzer(link, warmup_s=0.2) as (_sim, host):
        await wait_ready(host)
        assert await host.ask(C.ZERO) == ga.Ack()
        assert await host.ask(C.PROCESS_RESULT) == ga.ProcessReply(ga.ProcessResult.RUNNING)
        assert (await host.ask(C.READ_STATUS)).state is ga.AnalyzerState.ZEROING
        assert await host.ask(C.ZERO) == ga.Ack()  # a repeat during its own process changes nothing
        assert await host.ask(C.PUMP_SAMPLE) == ga.Nak()  # anything else but reads is refused
        assert await host.ask(C.IDENTIFY) == ga.Nak()
        assert isinstance(await host.ask(C.READ_ENV), ga.EnvReading)

        async def passed() -> bool:
            return await host.ask(C.PROCESS_RESULT) == ga.ProcessReply(ga.ProcessResult.PASSED)

        await until(passed, timeout_s=3.0)
        assert (await host.ask(C.READ_STATUS)).state is ga.AnalyzerState.READY
        await asyncio.sleep(0.15)  # the main frame changes at the next 10 Hz update
        assert ga.Flags.ZERO_DUE not in (await host.ask(C.READ_MAIN)).flags


async def test_failed_process_reports_failed_and_returns_to_ready(link: Path) -> None:
    async with analyzer(link, warmup_s=0.2) as (sim, host):
        await wait_ready(host)
        sim.control({"fault": "leak_fails"})
        assert await host.ask(C.LEAK_CHECK) == ga.Ack()

        async def finished() -> Any:
            reply = await host.ask(C.PROCESS_RESULT)
            return reply if reply.result is not ga.ProcessResult.RUNNING else None

        assert await until(finished, timeout_s=4.0) == ga.ProcessReply(ga.ProcessResult.FAILED)
        assert (await host.ask(C.READ_STATUS)).state is ga.AnalyzerState.READY


async def test_process_commands_and_write_span_are_naked_while_warming_up(link: Path) -> None:
    async with analyzer(link, warmup_s=30.0) as (_sim, host):
        for command in (C.ZERO, C.LEAK_CHECK, C.CALIBRATE):
            assert await host.ask(command) == ga.Nak()
        assert await host.ask(C.WRITE_SPAN, ga.DEFAULT_SPAN) == ga.Nak()
        assert await host.ask(C.PROCESS_RESULT) == ga.ProcessReply(ga.ProcessResult.NONE_SINCE_POWER_UP)
        assert await host.ask(C.PUMP_AMBIENT) == ga.Ack()  # the pump may run while warming up


async def test_write_span_out_of_range_is_naked_and_in_range_acked(link: Path) -> None:
    async with analyzer(link, warmup_s=0.2) as (_sim, host):
        await wait_ready(host)
        assert await host.ask(C.WRITE_SPAN, ga.SpanGas(10001, 3.50, 14.00, 1500)) == ga.Nak()
        assert await host.ask(C.WRITE_SPAN, ga.SpanGas(3200, 3.50, 20.01, 1500)) == ga.Nak()
        assert await host.ask(C.WRITE_SPAN, ga.SpanGas(10000, 10.00, 20.00, 5000)) == ga.Ack()


async def test_calibrate_reads_span_gas_with_hc_as_propane_times_pef(link: Path) -> None:
    async with analyzer(link, warmup_s=0.2) as (_sim, host):
        await wait_ready(host)
        assert await host.ask(C.CALIBRATE) == ga.Ack()
        await asyncio.sleep(0.25)  # a couple of 10 Hz updates into the process
        main = await host.ask(C.READ_MAIN)
        # the manual: 3200 ppm propane at PEF 0.525 reads 1680 ppm HC; the other gases as written
        assert (main.hc_ppm, main.co_pct, main.co2_pct, main.no_ppm) == (1680, 3.50, 14.00, 1500)


async def test_partial_request_followed_by_a_long_gap_is_dropped(link: Path) -> None:
    async with analyzer(link) as (_sim, host):
        host.write(SPAN_START := bytes.fromhex("23 0c"))
        await asyncio.sleep(0.06)  # > 20 ms: the analyzer forgets the partial WRITE_SPAN
        host.write(b"\x01")
        items = await host.collect(C.READ_MAIN, 0.5)
        assert any(isinstance(i, ga.MainReading) for i in items), SPAN_START


async def test_request_with_short_pauses_between_bytes_is_whole(link: Path) -> None:
    async with analyzer(link, warmup_s=0.2) as (_sim, host):
        await wait_ready(host)
        frame = ga.encode_request(C.WRITE_SPAN, ga.DEFAULT_SPAN)
        host.rx.buffer.clear()
        host.write(frame[:4])
        await asyncio.sleep(0.005)
        host.write(frame[4:])
        assert await host.collect(C.WRITE_SPAN, 0.5) == [ga.Ack()]


async def test_unknown_command_is_naked(link: Path) -> None:
    async with analyzer(link) as (_sim, host):
        host.rx.buffer.clear()
        host.write(b"\x99")
        assert await host.collect(C.READ_MAIN, 0.3) == [ga.Nak()]


async def test_silence_fault_gives_no_reply_until_cleared(link: Path) -> None:
    async with analyzer(link) as (sim, host):
        sim.control({"fault": "silence"})
        assert await host.ask(C.READ_STATUS) is None
        sim.control({"clear": "silence"})
        assert isinstance(await host.ask(C.READ_STATUS), ga.StatusReading)


async def test_bad_checksum_fault_makes_the_decoder_report_a_frame_error(link: Path) -> None:
    async with analyzer(link) as (sim, host):
        sim.control({"fault": "bad_checksum"})
        host.rx.buffer.clear()
        host.write(b"\x01")
        items = await host.collect(C.READ_MAIN, 0.3, until_reply=False)
        assert items and all(isinstance(i, FrameError) for i in items)
        assert len(items[0].raw) == 24


async def test_short_reply_fault_never_completes_a_frame(link: Path) -> None:
    async with analyzer(link) as (sim, host):
        sim.control({"fault": "short_reply"})
        assert await host.ask(C.READ_MAIN) is None


async def test_stray_bytes_before_a_reply_are_skipped(link: Path) -> None:
    async with analyzer(link) as (sim, host):
        sim.control({"fault": "stray_bytes"})
        for _ in range(5):
            assert isinstance(await host.ask(C.READ_MAIN), ga.MainReading)
            assert await host.ask(C.PUMP_STOP) == ga.Ack()


async def test_nak_fault_answers_nak_to_everything(link: Path) -> None:
    async with analyzer(link) as (sim, host):
        sim.control({"fault": "nak", "for_s": 5})
        assert await host.ask(C.READ_MAIN) == ga.Nak()
        assert await host.ask(C.IDENTIFY) == ga.Nak()


async def test_frozen_seq_fault_freezes_the_reading(link: Path) -> None:
    async with analyzer(link) as (sim, host):
        sim.control({"fault": "frozen_seq"})
        first = await host.ask(C.READ_MAIN)
        await asyncio.sleep(0.5)
        assert await host.ask(C.READ_MAIN) == first
        sim.control({"clear": None})
        await asyncio.sleep(0.25)
        assert (await host.ask(C.READ_MAIN)).seq != first.seq


async def test_lost_cable_removes_the_link_and_plugs_it_back(link: Path) -> None:
    async with analyzer(link) as (sim, host):
        sim.control({"fault": "lost_cable", "for_s": 0.6})

        async def gone() -> bool:
            return not link.exists()

        async def back() -> bool:
            return link.exists()

        await until(gone, timeout_s=2.0, every_s=0.01)
        await until(back, timeout_s=3.0, every_s=0.01)
        host.close()
        again = await Host.open(link)
        try:
            assert isinstance(await again.ask(C.READ_STATUS), ga.StatusReading)
        finally:
            again.close()


async def test_hc_falls_to_a_few_ppm_on_ambient_air_after_sampling(link: Path) -> None:
    async with analyzer(link, warmup_s=0.2) as (sim, host):
        await wait_ready(host)
        sim.control({"do": "set", "mode": "high_idle", "hc_ppm": 400})
        sim.control({"do": "probe", "inserted": True})
        sim.control({"do": "engine", "mode": "high_idle"})
        assert await host.ask(C.PUMP_SAMPLE) == ga.Ack()

        async def high_hc() -> bool:
            return (await host.ask(C.READ_MAIN)).hc_ppm > 300

        await until(high_hc, timeout_s=3.0)
        await asyncio.sleep(1.0)  # the hose takes up some hydrocarbons
        assert await host.ask(C.PUMP_AMBIENT) == ga.Ack()
        await asyncio.sleep(0.15)  # the main frame changes at the next 10 Hz update
        main = await host.ask(C.READ_MAIN)
        assert ga.Flags.PUMP_AMBIENT in main.flags and ga.Flags.PUMP_SAMPLE not in main.flags

        async def cleared() -> Any:
            reading = await host.ask(C.READ_MAIN)
            return reading if reading.hc_ppm < 20 else None

        reading = await until(cleared, timeout_s=6.0)
        assert reading.co2_pct == pytest.approx(0.04, abs=0.08)
        assert reading.o2_pct == pytest.approx(20.9, abs=0.1)


async def test_control_socket_plays_the_driver_and_reports_state(link: Path, tmp_path: Path) -> None:
    async with GasAnalyzerSimulator(link, config=fast_config()) as sim:
        control = ControlServer(tmp_path / "ctl", sim.control)
        await control.start()
        try:
            state = await send_control(tmp_path / "ctl", {"do": "engine", "mode": "idle"})
            assert state["engine"] == "idle"
            state = await send_control(tmp_path / "ctl", {"do": "probe", "inserted": True})
            assert state["probe_inserted"] is True
            assert await send_control(tmp_path / "ctl", {"fault": "silence", "for_s": 1}) == ["silence"]
            with pytest.raises(RuntimeError, match="unknown fault"):
                await send_control(tmp_path / "ctl", {"fault": "meltdown"})
            with pytest.raises(RuntimeError, match="engine mode"):
                await send_control(tmp_path / "ctl", {"do": "engine", "mode": "warp"})
            state = await send_control(tmp_path / "ctl", {"get": "state"})
            assert state["vehicle"]["plate"] == "鲁N12345" and state["faults"] == ["silence"]
        finally:
            await control.close()


async def test_cli_run_serves_the_link_and_the_control_socket(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    sim_module.add_arguments(parser)
    args = parser.parse_args(
        ["--link", str(tmp_path / "ga5"), "--control", str(tmp_path / "ctl"), "--fast", "--vehicle", "gasoline-diluted"]
    )
    task = asyncio.create_task(sim_module.run(args))
    try:
        async def up() -> bool:
            return (tmp_path / "ga5").exists() and (tmp_path / "ctl").exists()

        await until(up, timeout_s=3.0, every_s=0.01)
        host = await Host.open(tmp_path / "ga5")
        try:
            assert await host.ask(C.IDENTIFY) == ga.Identity("GA-5", "SIM0001", "1.0.0")
        finally:
            host.close()
        state = await send_control(tmp_path / "ctl", {"get": "state"})
        assert state["vehicle"]["vin"] == "LFV2A21K0M3045678"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert not (tmp_path / "ga5").exists()


# ----- the bench model on a fake clock (no pty, no waiting) -----------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bench(vehicle: str = "gasoline-car", **overrides: Any) -> tuple[GasAnalyzerSimulator, Clock]:
    clock = Clock()
    config = fast_config(**({"noise": {"hc_ppm": 0, "co_pct": 0, "co2_pct": 0, "o2_pct": 0, "no_ppm": 0, "rpm": 0}}
                            | overrides))
    return GasAnalyzerSimulator("/nonexistent/ga5", config=config, vehicle=vehicle, clock=clock), clock


def ask(sim: GasAnalyzerSimulator, command: ga.Command, span: ga.SpanGas | None = None) -> Any:
    reply = sim.handle(ga.encode_request(command, span))
    assert reply is not None
    (item,) = ga.ReplyDecoder(command).feed(reply)
    return item


def sampling(vehicle: str, mode: str) -> tuple[GasAnalyzerSimulator, ga.MainReading]:
    sim, clock = bench(vehicle)
    clock.now += 1.5  # past the 1 s fast warm-up
    sim.control({"do": "probe", "inserted": True})
    sim.control({"do": "engine", "mode": mode})
    assert ask(sim, C.PUMP_SAMPLE) == ga.Ack()
    clock.now += 5.0  # fast transport delay 0.2 s + T90 0.3 s: long settled
    return sim, ask(sim, C.READ_MAIN)


def test_settled_high_idle_reads_the_vehicles_exhaust_and_brettschneider_lambda() -> None:
    _, main = sampling("gasoline-car", "high_idle")
    # gasoline-car [exhaust.high_idle]: HC 20 ppm, CO 0.10 %, CO2 14.8 %, O2 0.25 %, NO 120 ppm, 2500 r/min
    # (HC: the -2 ppm zero drift until a passed ZERO), oil 88.5 °C
    assert (main.hc_ppm, main.co_pct, main.co2_pct, main.o2_pct, main.no_ppm) == (18, 0.10, 14.80, 0.25, 120)
    assert (main.rpm, main.oil_temp_c) == (2500, 88.5)
    # Brettschneider of 18 / 0.10 / 14.80 / 0.25: CO/CO2 = 0.006757; 0.431525 × 3.5/3.506757 − 0.0088
    # = 0.421893; × 14.90 = 6.28620; numerator 14.80 + 0.05 + 0.25 + 6.28620 = 21.38620;
    # denominator 1.422725 × (14.90 + 0.0108) = 21.21397; λ = 1.00812
    assert main.lambda_value == 1.008
    assert ga.Flags.PUMP_SAMPLE in main.flags


def test_preconditioning_runs_at_70_percent_of_rated_speed() -> None:
    _, main = sampling("gasoline-car", "precondition")
    assert main.rpm == 4200  # 0.70 × 6000 r/min


def test_diluted_sample_reads_co_plus_co2_below_6_percent() -> None:
    _, main = sampling("gasoline-diluted", "idle")
    # 35 % of CO 0.15 / CO2 14.6 plus 65 % of air (CO2 0.04): CO 0.0525 → 0.05, CO2 5.11 + 0.026 = 5.136 → 5.14
    assert (main.co_pct, main.co2_pct) == (0.05, 5.14)
    assert main.co_pct + main.co2_pct < 6.0


def test_unstable_rpm_leaves_a_200_rpm_band() -> None:
    sim, clock = bench()
    sim.control({"do": "set", "mode": "idle", "rpm_unstable": True})
    sim.control({"do": "engine", "mode": "idle"})
    speeds = []
    for _ in range(40):
        clock.now += 0.1
        speeds.append(ask(sim, C.READ_MAIN).rpm)
    assert max(speeds) - 780 > 200 and 780 - min(speeds) > 200


def test_lambda_reads_zero_below_010_percent_co2() -> None:
    sim, clock = bench()
    clock.now += 1.5
    assert ask(sim, C.PUMP_AMBIENT) == ga.Ack()
    clock.now += 5.0
    main = ask(sim, C.READ_MAIN)
    assert main.co2_pct == 0.04 and main.lambda_value is None
    assert ga.Flags.PUMP_AMBIENT in main.flags


def test_backflush_sets_no_pump_bit_and_stops_the_pump_after_its_time() -> None:
    sim, clock = bench()
    assert ask(sim, C.BACKFLUSH) == ga.Ack()
    clock.now += 0.2
    assert not ask(sim, C.READ_MAIN).flags & (ga.Flags.PUMP_SAMPLE | ga.Flags.PUMP_AMBIENT)
    clock.now += 1.0  # fast backflush is 1 s
    sim.advance()
    assert sim.pump == "stop"


def test_zero_due_comes_back_30_minutes_after_the_last_passed_zero() -> None:
    sim, clock = bench(warmup_s=0.0)
    clock.now += 0.05
    assert ask(sim, C.ZERO) == ga.Ack()
    clock.now += 0.6  # fast ZERO: 0.5 s
    assert ask(sim, C.PROCESS_RESULT) == ga.ProcessReply(ga.ProcessResult.PASSED)
    assert ga.Flags.ZERO_DUE not in ask(sim, C.READ_MAIN).flags
    clock.now += 1790.0
    assert ga.Flags.ZERO_DUE not in ask(sim, C.READ_MAIN).flags
    clock.now += 20.0  # 1810 s after the zero
    assert ga.Flags.ZERO_DUE in ask(sim, C.READ_MAIN).flags


def test_seq_wraps_at_65536() -> None:
    sim, clock = bench()
    clock.now += 6553.65  # 65536 updates of 0.1 s (and half of one more)
    assert ask(sim, C.READ_MAIN).seq == 0


def test_process_stuck_keeps_reporting_running() -> None:
    sim, clock = bench(warmup_s=0.0)
    clock.now += 0.05
    sim.control({"fault": "process_stuck"})
    assert ask(sim, C.CALIBRATE) == ga.Ack()
    clock.now += 10.0
    assert ask(sim, C.PROCESS_RESULT) == ga.ProcessReply(ga.ProcessResult.RUNNING)
    assert ask(sim, C.READ_STATUS).state is ga.AnalyzerState.CALIBRATING


def test_power_cycle_restarts_warm_up_with_no_process_result() -> None:
    sim, clock = bench(warmup_s=0.0)
    clock.now += 0.05
    ask(sim, C.ZERO)
    clock.now += 1.0
    sim.control({"do": "power_cycle"})
    assert ask(sim, C.PROCESS_RESULT) == ga.ProcessReply(ga.ProcessResult.NONE_SINCE_POWER_UP)


def test_scheduled_faults_and_exhaust_tables_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        fast_config(faults=[{"at_s": 1, "fault": "meltdown"}])
    with pytest.raises(ValueError, match="no \\[exhaust\\] table"):
        bench("diesel-truck")


def test_set_overrides_dilution_flags_and_environment_live() -> None:
    sim, clock = bench()
    sim.control({"do": "set", "dilution": 0.65, "low_flow": True, "ambient_temp_c": 30.0, "baro_kpa": 95.2})
    clock.now += 1.5
    sim.control({"do": "probe", "inserted": True})
    sim.control({"do": "engine", "mode": "idle"})
    ask(sim, C.PUMP_SAMPLE)
    clock.now += 5.0
    main = ask(sim, C.READ_MAIN)
    assert (main.co_pct, main.co2_pct) == (0.05, 5.14)  # as gasoline-diluted: 35 % exhaust, 65 % air
    assert ga.Flags.LOW_FLOW in main.flags
    assert ask(sim, C.READ_ENV) == ga.EnvReading(30.0, 95.2, 55.3)
    with pytest.raises(ValueError, match="cannot set"):
        sim.control({"do": "set", "colour": "blue"})


def test_identity_that_does_not_fit_the_frame_is_refused_in_the_device_file() -> None:
    with pytest.raises(ValueError, match="at most 40"):
        fast_config(serial="X" * 40)


async def test_scheduled_fault_switches_on_at_its_time(link: Path) -> None:
    async with analyzer(link, faults=[{"at_s": 0.2, "fault": "silence", "for_s": 5}]) as (_sim, host):
        assert isinstance(await host.ask(C.READ_STATUS), ga.StatusReading)
        await asyncio.sleep(0.3)
        assert await host.ask(C.READ_STATUS) is None
