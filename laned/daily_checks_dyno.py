"""The dynamometer's daily checks on the rollers: loaded coast-down and parasitic loss.

spec/devices/dynamometer.md "Self-checks": both run with no vehicle on the rollers
(IN_POSITION = 0), the lift down and the roller brake off. The drive motor spins the
rollers up to MOTOR_SPEED (60 km/h), is cut, and the rollers coast:

- parasitic loss: CONTROL_MODE stays 0 (PAU off); the rollers coast on their own losses
  through the bands; the fitted F_pl = A + B·v + C·v² is written to PL_A…PL_C when it
  reproduces every band;
- loaded coast-down: CONTROL_MODE 1 with POWER_TARGET = P_cd; ACDT from 50 to 30 km/h
  against CCDT = M (v1² − v2²) / (2 P_cd), M = BASE_INERTIA. A pass today makes
  `DailyChecks.status()["dynamometer_ready"]`, which ASM and lug-down starts require.

Both are computed from the ring (`DynamometerDriver.samples_since`), never from POWER.
When both are asked for, the parasitic loss runs first, so the coast-down works with the
coefficients just fitted. The driver is claimed while they run; at the end, whatever
happened, CONTROL_MODE 0 and MOTOR 0 (and PAU off), and the rollers are braked to a stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from drivers.errors import DeviceError, DeviceRefused
from laned.judging import dyno_checks as jd
from laned.settings.dyno_checks import DynoCheckSettings
from protocols import dynamometer as dy

if TYPE_CHECKING:
    from drivers.dynamometer import DynamometerDriver

Announce = Callable[..., None]


class CheckRecords(Protocol):
    """What the checks use of laned.daily_checks.DailyChecks (imported by it, so not imported here)."""

    running: bool

    def record(self, check: str, passed: bool, details: dict[str, Any] | None = None) -> dict[str, Any]: ...

log = structlog.get_logger("laned.daily_checks")

#: the order they run in when both are asked for
DYNO_CHECK_ORDER = ("dyno_parasitic", "dyno_coast_down")
DYNO_CHECK_NAMES = {"dyno_coast_down": "dynamometer loaded coast-down",
                    "dyno_parasitic": "dynamometer parasitic loss"}
BRAKE_BELOW_KMH = dy.BRAKE_MAX_SPEED_RAW / 100 - 0.5


async def _prepare(driver: DynamometerDriver, settings: DynoCheckSettings) -> None:
    """No vehicle, lift down, brake off, nothing loaded: refused with the reason otherwise."""
    inputs = await driver.inputs()
    if inputs.in_position:
        raise DeviceRefused(driver.name, "a vehicle is on the rollers (IN_POSITION = 1): drive it off for the "
                            "dynamometer's self-checks", port=driver.port)
    if inputs.fault:
        raise DeviceRefused(driver.name, "the dynamometer reports a fault (FAULT = 1)", port=driver.port)
    await driver.set_control_mode(dy.ControlMode.IDLE)
    await driver.set_motor(False)
    if not inputs.lift_down:
        await driver.set_lift(False, wait_s=settings.lift_timeout_s)
    await driver.set_roller_brake(False)


async def _spin_up(driver: DynamometerDriver, settings: DynoCheckSettings) -> None:
    """MOTOR_SPEED, MOTOR = 1, wait until SPEED is within `at_speed_within_kmh`, MOTOR = 0."""
    target = settings.motor_speed_kmh
    await driver.set_motor_speed_kmh(target)
    await driver.set_motor(True)
    await driver.wait_snapshot(lambda s: s.speed_kmh >= target - settings.at_speed_within_kmh,
                               settings.run_up_timeout_s, what=f"{target:g} km/h from the drive motor")
    await driver.set_motor(False)


async def _coast_to(driver: DynamometerDriver, v_kmh: float, timeout_s: float) -> None:
    await driver.wait_snapshot(lambda s: s.speed_kmh <= v_kmh, timeout_s, what=f"a coast down to {v_kmh:g} km/h")


async def _brake_to_stop(driver: DynamometerDriver, settings: DynoCheckSettings) -> None:
    """From below the brake's speed limit: ROLLER_BRAKE until the rollers stand, then off."""
    await _coast_to(driver, BRAKE_BELOW_KMH, settings.coast_timeout_s)
    await driver.set_roller_brake(True)
    deadline = time.monotonic() + settings.stop_timeout_s
    try:
        while not (await driver.inputs()).rollers_stopped:
            if time.monotonic() > deadline:
                raise DeviceError(driver.name, f"the rollers did not stop within {settings.stop_timeout_s:g} s of "
                                  "ROLLER_BRAKE = 1", port=driver.port)
            await asyncio.sleep(0.1)
    finally:
        await driver.set_roller_brake(False)


async def _points(driver: DynamometerDriver, i0: int, through_kmh: float) -> list[jd.Point]:
    """The ring from `i0` as (t, speed), once the samples reach down to `through_kmh` (the follower's
    log trails the newest snapshot by up to a poll); what there is after a few polls otherwise."""
    deadline = time.monotonic() + 4 * driver.poll_interval_s + 0.5
    while True:
        samples = await driver.samples_since(i0)
        if (samples and samples[-1].speed_kmh <= through_kmh) or time.monotonic() > deadline:
            break
        await asyncio.sleep(driver.poll_interval_s / 2)
    rate = driver.last_snapshot.sample_rate_hz if driver.last_snapshot else dy.DEFAULT_SAMPLE_RATE_HZ
    return jd.ring_points(samples, float(rate))


async def loaded_coast_down(driver: DynamometerDriver, settings: DynoCheckSettings) -> tuple[bool, dict[str, Any]]:
    """Spin up, CONTROL_MODE 1 at P_cd, time v1 → v2 on the ring; the verdict and its numbers."""
    mass = (await driver.read_holding()).base_inertia_kg
    await driver.set_pau_enable(True)
    await driver.write_holding(dy.HoldingRegister.INERTIA_SIM, [0])  # no inertia simulation: P_cd alone
    await driver.set_power_target_kw(settings.coast_power_kw)
    await _spin_up(driver, settings)
    i0 = await driver.set_control_mode(dy.ControlMode.CONSTANT_POWER)
    end_kmh = settings.coast_v2_kmh - 1.0
    try:
        await _coast_to(driver, end_kmh, 10 * jd.ccdt_s(mass, settings.coast_v1_kmh, settings.coast_v2_kmh,
                                                         settings.coast_power_kw) + 10)
        points = await _points(driver, i0, end_kmh)
        # keep the load on down to the brake's limit: the rollers stop sooner
        await _coast_to(driver, BRAKE_BELOW_KMH, settings.coast_timeout_s)
    finally:
        await driver.set_control_mode(dy.ControlMode.IDLE)
    verdict = jd.loaded_coast_down_verdict(points, mass_kg=mass, v1_kmh=settings.coast_v1_kmh,
                                           v2_kmh=settings.coast_v2_kmh, power_kw=settings.coast_power_kw,
                                           limit_pct=settings.coast_limit_pct)
    await driver.set_pau_enable(False)
    await _brake_to_stop(driver, settings)
    return verdict.passed, verdict.as_dict()


async def parasitic_loss(driver: DynamometerDriver, settings: DynoCheckSettings) -> tuple[bool, dict[str, Any]]:
    """Spin up, coast with the PAU off through the bands, fit; PL_A…PL_C written when it passes."""
    mass = (await driver.read_holding()).base_inertia_kg
    await driver.set_pau_enable(False)
    await _spin_up(driver, settings)
    i0 = (await driver.snapshot()).sample_index
    await _coast_to(driver, settings.parasitic_until_kmh, settings.coast_timeout_s)
    points = await _points(driver, i0, settings.parasitic_until_kmh)
    bands = jd.parasitic_bands(points, mass, settings.bands)
    verdict = jd.parasitic_verdict(bands, tolerance_kw=settings.parasitic_tolerance_kw,
                                   tolerance_pct=settings.parasitic_tolerance_pct)
    await _brake_to_stop(driver, settings)
    details = {**verdict.as_dict(), "mass_kg": mass, "written": False}
    if verdict.passed and settings.write_coefficients:
        assert verdict.pl_a_n is not None and verdict.pl_b is not None and verdict.pl_c is not None
        await driver.write_parasitic_coefficients(verdict.pl_a_n, verdict.pl_b, verdict.pl_c)
        details["written"] = True
    return verdict.passed, details


async def _end_safe(driver: DynamometerDriver) -> None:
    """CONTROL_MODE 0, MOTOR 0, PAU off, whatever happened before; the emergency stop if a write fails."""
    try:
        await driver.set_control_mode(dy.ControlMode.IDLE)
        await driver.set_motor(False)
        await driver.set_pau_enable(False)
    except Exception as exc:  # the checks are ending: make the device safe, never raise
        log.error("dyno_checks_end_write_failed", device=driver.name, error=str(exc))
        await driver.emergency_stop()


async def perform_dyno_checks(driver: DynamometerDriver, daily: CheckRecords, checks: Iterable[str], *,
                              settings: DynoCheckSettings, announce: Announce) -> dict[str, dict[str, Any]]:
    """The dynamometer's checks asked for (parasitic loss first), each result recorded; a check the
    dynamometer could not finish is recorded as failed with the error, and the rest are not run."""
    asked = set(checks)
    wanted = [c for c in DYNO_CHECK_ORDER if c in asked]
    results: dict[str, dict[str, Any]] = {}
    if not wanted:
        return results
    run = {"dyno_coast_down": loaded_coast_down, "dyno_parasitic": parasitic_loss}
    daily.running = True
    try:
        with driver.claim():
            try:
                await _prepare(driver, settings)
                for check in wanted:
                    step = f"daily_check.{check}"
                    announce("step_started", step, DYNO_CHECK_NAMES[check])
                    try:
                        passed, details = await run[check](driver, settings)
                    except DeviceError as exc:
                        results[check] = daily.record(check, False, {"device": driver.name, "error": str(exc)})
                        announce("warning", step, f"{DYNO_CHECK_NAMES[check]} not completed: {exc}")
                        break
                    results[check] = daily.record(check, passed, {"device": driver.name, **details})
                    text = f"{DYNO_CHECK_NAMES[check]} {'passed' if passed else 'FAILED'}"
                    if details.get("reason"):
                        text += f": {details['reason']}"
                    announce("step_finished", step, text, passed=passed, details=details)
            except DeviceError as exc:  # not ready (a vehicle on the rollers, a fault): nothing run or recorded
                announce("warning", "daily_check", f"dynamometer checks not run: {exc}")
            finally:
                with contextlib.suppress(Exception):
                    await _end_safe(driver)
    finally:
        daily.running = False
    for check in wanted:
        results.setdefault(check, {"check": check, "passed": False, "at": None, "details": {"not_run": True}})
    return results
