"""The dynamometer's daily checks (parasitic loss, loaded coast-down) on the simulated CD-1 over
Modbus TCP, with the real driver following the ring.

The simulated machine here is light (500 kg) and lossy (four times the default true parasitic
coefficients) with a quick PAU and motor, so a coast from 60 to 10 km/h takes ~16 s instead of
~110 s; its true parasitic coefficients differ from its PL registers, as on the default machine."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.base import Backoff
from drivers.dynamometer import DynamometerDriver
from drivers.modbus_device import ModbusLink
from laned.daily_checks import DailyChecks
from laned.daily_checks_dyno import perform_dyno_checks
from laned.settings.dyno_checks import DynoCheckSettings
from simulators.dynamometer import DynamometerSimulator
from simulators.dyno.config import DynoConfig, DynoParams

pytestmark = pytest.mark.integration

TRUE_A, TRUE_B, TRUE_C = 248.0, 4.2, 0.054  # N, N per km/h, N per (km/h)²: 4 × the default machine's
MASS_KG = 500


def machine() -> DynoConfig:
    return DynoConfig(dyno=DynoParams(true_base_inertia_kg=MASS_KG, true_pl_a_n=TRUE_A, true_pl_b=TRUE_B,
                                      true_pl_c=TRUE_C, pau_lag_s=0.05, motor_run_up_s=1.5, lift_travel_s=0.3,
                                      tare_s=0.1))


@contextlib.asynccontextmanager
async def rig() -> AsyncIterator[tuple[DynamometerSimulator, DynamometerDriver]]:
    async with DynamometerSimulator("asm-car", tcp=("127.0.0.1", 0), config=machine(), drive_on=False) as sim:
        link = ModbusLink(transport="tcp", host="127.0.0.1", tcp_port=sim.tcp_port or 0, timeout_s=0.3)
        driver = DynamometerDriver("dyno", link, backoff=Backoff(initial_s=0.05, max_s=0.2))
        task = asyncio.create_task(driver.run())
        try:
            await driver.wait_connected(5)
            await driver.wait_snapshot(lambda s: s.speed_kmh == 0, 5)
            await asyncio.sleep(1.1)  # ROLLERS_STOPPED after 1 s: the calibration registers take writes
            await driver.set_base_inertia_kg(MASS_KG)  # the machine is calibrated to its true mass
            yield sim, driver
        finally:
            await driver.stop()
            await asyncio.wait_for(task, 5)


def force(a: float, b: float, c: float, v: float) -> float:
    return a + b * v + c * v * v


async def test_a_healthy_dynamometer_passes_both_and_the_fit_finds_its_true_losses(tmp_path: Path) -> None:
    daily = DailyChecks(tmp_path / "daily-checks.json")
    events: list[tuple[str, str, str]] = []
    assert daily.status()["dynamometer_ready"] is False
    async with rig() as (sim, driver):
        results = await perform_dyno_checks(
            driver, daily, ["dyno_coast_down", "dyno_parasitic"], settings=DynoCheckSettings(),
            announce=lambda kind, step, text, **_: events.append((kind, step, text)))
        holding = await driver.read_holding()
        assert sim.model.control_mode == 0 and not sim.model.motor_on  # left safe
    parasitic, coast = results["dyno_parasitic"], results["dyno_coast_down"]
    assert parasitic["passed"], parasitic
    d = parasitic["details"]
    for v in (16, 25, 40, 50):  # the fitted curve is the machine's true one within 2 %
        assert force(d["pl_a_n"], d["pl_b"], d["pl_c"], v) == pytest.approx(force(TRUE_A, TRUE_B, TRUE_C, v), rel=0.02)
    assert d["written"] is True
    assert holding.pl_a_n == pytest.approx(d["pl_a_n"], abs=0.1)
    assert holding.pl_c_n_per_kmh2 == pytest.approx(d["pl_c"], abs=0.0001)
    # CCDT = 500 · ((50/3.6)² − (30/3.6)²) / 36000 = 1.715 s
    assert coast["passed"], str(coast["details"])
    assert coast["details"]["ccdt_s"] == pytest.approx(1.715, abs=0.001)
    assert abs(coast["details"]["deviation_pct"]) <= 4.0
    assert [e[1] for e in events if e[0] == "step_finished"] == ["daily_check.dyno_parasitic",
                                                                 "daily_check.dyno_coast_down"]
    status = daily.status()
    assert status["dynamometer_ready"] is True
    assert status["last_dyno_coast_down"]["passed"] is True


async def test_a_wrong_base_inertia_fails_the_loaded_coast_down_and_blocks(tmp_path: Path) -> None:
    daily = DailyChecks(tmp_path / "daily-checks.json")
    events: list[tuple[str, str, str, dict[str, Any]]] = []
    async with rig() as (sim, driver):
        await driver.write_parasitic_coefficients(TRUE_A, TRUE_B, TRUE_C)  # its losses are known right
        await driver.set_base_inertia_kg(550)  # but its mass is set 10 % too heavy: CCDT 1.886 s, not 1.715 s
        results = await perform_dyno_checks(
            driver, daily, ["dyno_coast_down"], settings=DynoCheckSettings(),
            announce=lambda kind, step, text, **data: events.append((kind, step, text, data)))
        assert sim.model.control_mode == 0 and not sim.model.motor_on
    coast = results["dyno_coast_down"]
    assert coast["passed"] is False
    assert coast["details"]["ccdt_s"] == pytest.approx(1.886, abs=0.001)
    assert coast["details"]["deviation_pct"] < -4.0  # the rollers (500 kg) stop sooner than 550 kg would
    assert "limit ±4 %" in coast["details"]["reason"]
    assert daily.status()["dynamometer_ready"] is False
    assert "loaded coast-down has not passed today (failed" in daily.dynamometer_missing_reasons()[0]
    finished = [e for e in events if e[0] == "step_finished"]
    assert finished[0][2].startswith("dynamometer loaded coast-down FAILED")


async def test_a_vehicle_on_the_rollers_stops_the_checks_before_the_motor_turns(tmp_path: Path) -> None:
    daily = DailyChecks(tmp_path / "daily-checks.json")
    events: list[tuple[str, str, str]] = []
    async with rig() as (sim, driver):
        sim.model.drive_on()
        results = await perform_dyno_checks(driver, daily, ["dyno_coast_down"], settings=DynoCheckSettings(),
                                            announce=lambda kind, step, text, **_: events.append((kind, step, text)))
        assert not sim.model.motor_on and sim.model.speed_kmh == 0
    assert results["dyno_coast_down"]["passed"] is False
    assert daily.last("dyno_coast_down") is None  # not run: nothing recorded
    assert any("IN_POSITION = 1" in text for kind, _, text in events if kind == "warning")


async def test_the_cli_runs_the_loaded_coast_down_on_the_port_and_keeps_it_for_the_day(tmp_path: Path) -> None:
    """`laned daily-check --checks dyno_coast_down` with no daemon: on the dynamometer's own TCP port,
    the default CD-1L (910 kg, CCDT 3.121 s), its outcome printed and kept in daily-checks.json."""
    from laned.broker import free_port
    from tests.helpers import ROOT, laned_command

    config = tmp_path / "lane.toml"
    async with DynamometerSimulator("asm-car", tcp=("127.0.0.1", 0), fast=True, drive_on=False) as sim:
        config.write_text(
            f'[lane]\nstation = "370100"\nlane = "T1"\nstate_dir = "{tmp_path / "state"}"\n'
            f"[mqtt]\nport = {free_port()}\n"
            f'[devices.dyno]\nkind = "dynamometer"\ntransport = {{ type = "tcp", host = "127.0.0.1", '
            f"port = {sim.tcp_port} }}\n", encoding="utf-8")
        process = await asyncio.create_subprocess_exec(
            *laned_command("daily-check", "--config", str(config), "--checks", "dyno_coast_down"),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert sim.model.control_mode == 0 and not sim.model.motor_on
    assert process.returncode == 0, err.decode()[-2000:]
    assert "PASSED — daily checks: dynamometer loaded coast-down passed" in out.decode()
    kept = DailyChecks(tmp_path / "state" / "daily-checks.json")
    assert kept.status()["dynamometer_ready"] is True
    assert kept.last("dyno_coast_down")["details"]["ccdt_s"] == pytest.approx(3.121, abs=0.001)
