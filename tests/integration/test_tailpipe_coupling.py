"""The dynamometer lane's exhaust side over real ptys: a GA-5N read by the real driver (NOx with the
main reading), a plain GA-5 refusing READ_NOX, and tailpipe coupling — engine states sent to each
simulator's control socket as the dynamometer simulator sends them, 10 per second on one
connection, make the gases, K and RPM follow the vehicle file's loaded maps. Expected values are
the vehicle files' numbers, written out here by hand."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from drivers.base import Backoff
from drivers.errors import DeviceRefused
from drivers.gas_analyzer import GasAnalyzerDriver
from drivers.opacimeter import OpacimeterDriver
from protocols import gas_analyzer as ga
from protocols import opacimeter as op
from simulators.control import ControlServer
from simulators.gas_analyzer import GasAnalyzerSimulator, load_analyzer_config
from simulators.opacimeter import MeterSettings, OpacimeterSimulator

pytestmark = pytest.mark.integration
R = TypeVar("R")
QUIET = {"hc_ppm": 0, "co_pct": 0, "co2_pct": 0, "o2_pct": 0, "no_ppm": 0, "no2_ppm": 0, "rpm": 0}


@contextlib.asynccontextmanager
async def gas_analyzer(tmp_path: Path, vehicle: str, **overrides: Any) -> AsyncIterator[
    tuple[GasAnalyzerSimulator, GasAnalyzerDriver, Path]
]:
    """A fast simulated analyzer with a control socket, and the real driver polling it."""
    config = load_analyzer_config(fast=True, seed=3, **overrides)
    control = tmp_path / "ga.ctl"
    async with GasAnalyzerSimulator(tmp_path / "ga", config=config, vehicle=vehicle) as sim:
        server = ControlServer(control, sim.control)
        await server.start()
        driver = GasAnalyzerDriver("gas-analyzer", port=str(sim.pty.link), backoff=Backoff(0.05, 0.3))
        task = asyncio.create_task(driver.run())
        try:
            await driver.wait_connected(5)
            yield sim, driver, control
        finally:
            await driver.stop()
            await asyncio.wait_for(task, 5)
            await server.close()


@contextlib.asynccontextmanager
async def engine_states(control: Path, state: dict[str, float]) -> AsyncIterator[dict[str, float]]:
    """Send `state` as engine_state lines at 10 Hz on one connection (the dynamometer's way) until the
    block ends; the caller may change the dict meanwhile."""
    reader, writer = await asyncio.open_unix_connection(str(control))

    async def send() -> None:
        while True:
            writer.write(json.dumps({"do": "engine_state"} | state).encode() + b"\n")
            answer = json.loads(await reader.readline())
            assert answer["ok"], answer
            await asyncio.sleep(0.1)

    task = asyncio.create_task(send())
    try:
        yield state
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        writer.close()


async def reading_where(driver: Any, check: Callable[[Any], bool], timeout_s: float = 5.0) -> Any:
    """The first published reading that passes `check`."""
    with driver.readings.subscription() as queue:
        async with asyncio.timeout(timeout_s):
            while not check(reading := await queue.get()):
                pass
            return reading


def warm(reading: ga.MainReading) -> bool:
    return ga.Flags.WARMING_UP not in reading.flags


# ----- GA-5N and GA-5 ----------------------------------------------------------------------


async def test_a_ga5n_is_polled_for_nox_and_publishes_no_no2_and_their_sum(tmp_path: Path) -> None:
    async with gas_analyzer(tmp_path, "lug-pass", model="GA-5N") as (sim, driver, _control):
        assert driver.identity == ga.Identity("GA-5N", "SIM0001", "1.0.0") and driver.is_ga5n
        warming = await reading_where(driver, lambda r: True)
        if not warm(warming):  # while warming up NO, NO2 and NOX read 0
            assert (warming.no_ppm, warming.no2_ppm, warming.nox_ppm) == (0, 0, 0)
        sim.control({"do": "probe", "inserted": True})
        sim.control({"do": "engine", "mode": "idle"})
        await driver.pump("sample")
        # lug-pass [exhaust.idle]: NO 160 ppm, NO2 40 ppm (noise 2 and 1 ppm)
        settled = await reading_where(driver, lambda r: warm(r) and r.no_ppm > 140 and r.no2_ppm > 30)
        assert abs(settled.no_ppm - 160) <= 8 and abs(settled.no2_ppm - 40) <= 5
        assert settled.nox_ppm == settled.no_ppm + settled.no2_ppm
        direct = await driver.read_nox()
        assert direct.nox_ppm == direct.no_ppm + direct.no2_ppm and abs(direct.no2_ppm - 40) <= 5


async def test_every_polled_reading_pairs_the_main_frame_with_the_nox_of_its_own_update(tmp_path: Path) -> None:
    async with gas_analyzer(tmp_path, "lug-pass", model="GA-5N") as (sim, driver, _control):
        sim.control({"do": "probe", "inserted": True})
        sim.control({"do": "engine", "mode": "idle"})
        await driver.pump("sample")
        await reading_where(driver, lambda r: warm(r) and r.no_ppm > 140)
        served = sim.requests_served
        readings = []
        with driver.readings.subscription() as queue:
            async with asyncio.timeout(5):
                while len(readings) < 20:
                    readings.append(await queue.get())
        # with NO noise (2 ppm) a NOx frame of another update would show as NOX != NO + NO2
        assert all(r.nox_ppm == r.no_ppm + r.no2_ppm for r in readings)
        assert len({r.seq for r in readings}) >= 15  # about one reading per 10 Hz update
        assert sim.requests_served - served <= 3 * len(readings) + 3  # at most NOX, MAIN, NOX a poll


async def test_a_plain_ga5_refuses_read_nox_and_publishes_no_nox(tmp_path: Path) -> None:
    async with gas_analyzer(tmp_path, "asm-pass") as (_sim, driver, _control):
        assert driver.identity is not None and driver.identity.model == "GA-5" and not driver.is_ga5n
        with pytest.raises(DeviceRefused, match=r"the analyzer is a GA-5 without NOx \(READ_NOX answered NAK\)"):
            await driver.read_nox()
        reading = await reading_where(driver, lambda r: True)
        assert reading.no2_ppm is None and reading.nox_ppm is None


async def test_cli_model_option_makes_the_simulator_a_ga5n(tmp_path: Path) -> None:
    from simulators import gas_analyzer as sim_module

    parser = __import__("argparse").ArgumentParser()
    sim_module.add_arguments(parser)
    args = parser.parse_args(["--link", str(tmp_path / "ga"), "--fast", "--model", "GA-5N"])
    task = asyncio.create_task(sim_module.run(args))
    try:
        async with asyncio.timeout(5):
            while not (tmp_path / "ga").exists():
                await asyncio.sleep(0.02)
        driver = GasAnalyzerDriver("ga", port=str(tmp_path / "ga"))
        runner = asyncio.create_task(driver.run())
        try:
            await driver.wait_connected(5)
            assert driver.identity is not None and driver.identity.model == "GA-5N"
        finally:
            await driver.stop()
            await asyncio.wait_for(runner, 5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# ----- tailpipe coupling: the gas analyzer ---------------------------------------------------------


async def test_engine_states_drive_the_gases_and_rpm_then_the_engine_mode_is_back(tmp_path: Path) -> None:
    async with gas_analyzer(tmp_path, "asm-pass", noise=QUIET) as (sim, driver, control):
        sim.control({"do": "probe", "inserted": True})  # engine mode stays "off"
        await driver.pump("sample")
        state = {"rpm": 2350.0, "load": 0.45, "power_kw": 9.8, "speed_kmh": 25.0}
        async with engine_states(control, state):
            # asm-pass [exhaust.loaded] at 25 km/h (flat from 20 to 30): HC 60, CO 0.30, CO2 14.5,
            # O2 0.5, NO 450; HC with the -2 ppm zero drift before a passed ZERO
            r = await reading_where(driver, lambda r: warm(r) and r.no_ppm == 450 and r.co2_pct == 14.5)
            assert (r.hc_ppm, r.co_pct, r.o2_pct, r.rpm) == (58, 0.30, 0.5, 2350)
            # at 37.5 km/h, half way from the 35 km/h point (HC 50, NO 420) to the 45 km/h point
            # (the same): HC 50, CO 0.25, CO2 14.6, NO 420, and the tachometer follows the engine
            state.update(speed_kmh=37.5, rpm=2900.0)
            r = await reading_where(driver, lambda r: r.no_ppm == 420 and r.rpm == 2900 and r.hc_ppm == 48)
            assert (r.co_pct, r.co2_pct) == (0.25, 14.6)
            # 32.5 km/h, half way from the 30 (NO 450) to the 35 km/h point (NO 420): 435
            state.update(speed_kmh=32.5)
            r = await reading_where(driver, lambda r: r.no_ppm == 435)
            assert r.hc_ppm == 53  # (60 + 50) / 2 - 2
        # no engine state for over a second: the engine mode ("off") is back, RPM 0, room air comes
        r = await reading_where(driver, lambda r: r.rpm == 0, timeout_s=3)
        back = await reading_where(driver, lambda r: r.co2_pct < 1.0 and r.no_ppm == 0, timeout_s=5)
        assert back.rpm == 0 and back.o2_pct == pytest.approx(20.9, abs=0.1)


async def test_the_gas_follows_the_map_only_after_the_hose_delay_and_the_bench_lag(tmp_path: Path) -> None:
    sim = GasAnalyzerSimulator("/nonexistent/ga", config=load_analyzer_config(fast=True, noise=QUIET),
                               vehicle="asm-pass", clock=(clock := _Clock()))
    clock.now += 1.5
    sim.control({"do": "probe", "inserted": True})
    sim.handle(ga.encode_request(ga.Command.PUMP_SAMPLE))
    sim.control({"do": "engine_state", "rpm": 2350, "load": 0.45, "power_kw": 9.8, "speed_kmh": 25})
    clock.now += 0.1
    first = _main(sim)
    assert first.rpm == 2350 and first.no_ppm == 0  # the tachometer at once, the gas still in the hose
    for _ in range(4):
        clock.now += 0.1
        sim.control({"do": "engine_state", "rpm": 2350, "load": 0.45, "power_kw": 9.8, "speed_kmh": 25})
    # 0.5 s: 0.2 s in the hose, then 0.3 s of lag (T90 0.3 s): about 90 % of the way, 405 ppm
    assert 380 <= _main(sim).no_ppm <= 430
    for _ in range(15):  # 2 s in all: 1.8 s of lag leave 10^-6 of the way
        clock.now += 0.1
        sim.control({"do": "engine_state", "rpm": 2350, "load": 0.45, "power_kw": 9.8, "speed_kmh": 25})
    assert _main(sim).no_ppm == 450
    clock.now += 1.25  # silence over 1 s (the updates come on a 0.1 s grid): the engine mode ("off") again
    assert _main(sim).rpm == 0


async def test_the_vehicles_weather_is_what_read_env_answers(tmp_path: Path) -> None:
    async with gas_analyzer(tmp_path, "asm-humidity-fail") as (_sim, driver, _control):
        assert await driver.read_env() == ga.EnvReading(ambient_temp_c=25.0, baro_kpa=100.5, rh_pct=70.0)


async def test_a_ga5n_on_the_dynamometer_reads_the_diesels_nox_map_by_rpm(tmp_path: Path) -> None:
    async with gas_analyzer(tmp_path, "lug-fail-nox80", model="GA-5N", noise=QUIET) as (sim, driver, control):
        sim.control({"do": "probe", "inserted": True})
        await driver.pump("sample")
        async with engine_states(control, {"rpm": 1600.0, "load": 1.0, "power_kw": 120.0, "speed_kmh": 55.0}) as state:
            # lug-fail-nox80 at 1600 r/min, half way from 1400 (NO 1620, NO2 160) to 1800 (1550, 160):
            # NO 1585, NO2 160, NOx 1745
            r = await reading_where(driver, lambda r: warm(r) and r.no_ppm == 1585)
            assert (r.no2_ppm, r.nox_ppm, r.rpm) == (160, 1745, 1600)
            # back to idle speed and no load (the driver let go): [exhaust.idle] NO 160, NO2 40 at 650
            state.update(rpm=650.0, load=0.0, power_kw=0.0)
            r = await reading_where(driver, lambda r: r.no_ppm == 160 and r.rpm == 650)
            assert (r.no2_ppm, r.nox_ppm, r.co2_pct) == (40, 200, 2.6)


# ----- tailpipe coupling: the opacimeter ---------------------------------------------------------


async def test_engine_states_drive_the_opacimeters_k_and_rpm_then_idle_is_back(tmp_path: Path) -> None:
    control = tmp_path / "op.ctl"
    sim = OpacimeterSimulator(tmp_path / "op", vehicle="lug-pass", settings=MeterSettings(warmup_s=0.2, zero_s=0.2),
                              control_path=control, seed=5)
    async with sim:
        driver = OpacimeterDriver("opacimeter", port=str(sim.pty.link), backoff=Backoff(0.05, 0.3))
        task = asyncio.create_task(driver.run())
        try:
            await driver.wait_connected(5)
            async with engine_states(control, {"rpm": 1400.0, "load": 1.0, "power_kw": 110.0, "speed_kmh": 50.0}):
                # lug-pass [smoke.loaded] at 1400 r/min: K 0.80 (noise 0.006); N = 100 (1 - e^(-0.43 × 0.80))
                # = 100 (1 - 0.7089) = 29.1 %
                r = await reading_where(driver, lambda r: abs(r.rpm - 1400) <= 40 and abs(r.k_m1 - 0.80) <= 0.03)
                assert abs(r.opacity_pct - 100 * (1 - math.exp(-0.43 * r.k_m1))) <= 0.1
                assert abs(r.opacity_pct - 29.1) <= 1.0
            # silence: idle again, 650 r/min and K falling to idle_k 0.06
            r = await reading_where(driver, lambda r: abs(r.rpm - 650) <= 40 and r.k_m1 <= 0.10, timeout_s=4)
            assert isinstance(r, op.RealtimeReading)
            assert await driver.env() == op.EnvReading(ambient_temp_k=290.2, rh_pct=62.0, baro_kpa=101.3)
        finally:
            await driver.stop()
            await asyncio.wait_for(task, 5)


# ----- the GA-5N's NOx frame on a fake clock -------------------------------------------------------


def _bench(model: str, vehicle: str = "lug-pass", **overrides: Any) -> tuple[GasAnalyzerSimulator, _Clock]:
    clock = _Clock()
    config = load_analyzer_config(fast=True, seed=11, model=model, **overrides)
    return GasAnalyzerSimulator("/nonexistent/ga", config=config, vehicle=vehicle, clock=clock), clock


def _ask(sim: GasAnalyzerSimulator, command: ga.Command) -> Any:
    reply = sim.handle(ga.encode_request(command))
    assert reply is not None
    (item,) = ga.ReplyDecoder(command).feed(reply)
    return item


def test_ga5n_nox_frame_reads_zero_while_warming_up_then_the_same_updates_no() -> None:
    sim, clock = _bench("GA-5N")
    sim.control({"do": "probe", "inserted": True})
    sim.control({"do": "engine", "mode": "idle"})
    assert _ask(sim, ga.Command.READ_NOX) == ga.NoxReading(0, 0, 0)  # warming up (fast: 1 s)
    clock.now += 1.5
    assert _ask(sim, ga.Command.PUMP_SAMPLE) == ga.Ack()
    clock.now += 3.0
    for _ in range(10):  # NO carries 2 ppm of noise: each update's NO differs, the pair never does
        clock.now += 0.1
        main, nox = _main(sim), _ask(sim, ga.Command.READ_NOX)
        assert nox.no_ppm == main.no_ppm and nox.nox_ppm == nox.no_ppm + nox.no2_ppm
        assert abs(nox.no2_ppm - 40) <= 5  # lug-pass [exhaust.idle] NO2 40 ppm


def test_a_frozen_ga5n_freezes_its_nox_frame_with_the_main_frame() -> None:
    sim, clock = _bench("GA-5N")
    sim.control({"do": "probe", "inserted": True})
    sim.control({"do": "engine", "mode": "idle"})
    clock.now += 1.5
    _ask(sim, ga.Command.PUMP_SAMPLE)
    clock.now += 3.0
    sim.inject("frozen_seq")
    frozen = _ask(sim, ga.Command.READ_NOX)
    clock.now += 1.0
    assert _ask(sim, ga.Command.READ_NOX) == frozen


def test_read_nox_is_naked_by_a_ga5_always_and_by_a_ga5n_during_a_zero() -> None:
    ga5, clock5 = _bench("GA-5")
    assert _ask(ga5, ga.Command.READ_NOX) == ga.Nak()
    clock5.now += 1.5
    assert _ask(ga5, ga.Command.READ_NOX) == ga.Nak()
    ga5n, clock = _bench("GA-5N")
    clock.now += 1.5
    assert _ask(ga5n, ga.Command.ZERO) == ga.Ack()
    assert _ask(ga5n, ga.Command.READ_NOX) == ga.Nak()  # the manual: only reads of MAIN, ENV, STATUS
    clock.now += 0.6  # fast ZERO 0.5 s
    assert isinstance(_ask(ga5n, ga.Command.READ_NOX), ga.NoxReading)


async def test_a_ga5n_driver_zeroes_without_asking_for_nox_meanwhile(tmp_path: Path) -> None:
    async with gas_analyzer(tmp_path, "lug-pass", model="GA-5N", warmup_s=0.0) as (_sim, driver, _control):
        await reading_where(driver, lambda r: r.nox_ppm is not None)
        states: list[str] = []
        driver.add_health_listener(lambda _name, health: states.append(health.state))
        with driver.readings.subscription() as queue:
            assert await driver.zero() is True
            during = [queue.get_nowait() for _ in range(queue.qsize())]
        assert during and any(r.nox_ppm is None for r in during)  # main readings go on without NOx
        assert "degraded" not in states  # no NAK was asked for
        assert (await reading_where(driver, lambda r: r.nox_ppm is not None)).nox_ppm is not None


# ----- helpers for the bench on a fake clock ----------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _main(sim: GasAnalyzerSimulator) -> ga.MainReading:
    reply = sim.handle(ga.encode_request(ga.Command.READ_MAIN))
    assert reply is not None
    (item,) = ga.ReplyDecoder(ga.Command.READ_MAIN).feed(reply)
    assert isinstance(item, ga.MainReading)
    return item
