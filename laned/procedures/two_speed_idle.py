"""Two-speed idle (双怠速, GB 18285-2018 Appendix A) on the GA-5 gas analyzer: item `SDS`.

The steps, each announced as `two_speed_idle.<step>` with the driver's prompts:

1. the analyzer's daily leak check and zero must have passed today (the runner
   refuses the start otherwise; checked again here); the analyzer must be warm,
   and it is zeroed when it says a zero is due;
2. HC residue: pump on ambient air, HC below the limit (unless a passed check is
   recent: `hc_residue_max_age_s`);
3. preconditioning at 70 % of rated speed for 30 s (`engine_precondition`);
4. high idle, 2500 ± 200 r/min for light vehicles (`engine_high_idle`), probe at
   least 400 mm into the tailpipe (`insert_probe`; the pump draws from the probe
   and exhaust must show), 15 s settling, 30 s measurement;
5. idle (`engine_idle`), 15 s settling, 30 s measurement;
6. pump off, probe out (`remove_probe`), engine off (`engine_off`) — at the end
   and on any error or abort.

Every duration is a setting (`TwoSpeedIdleSettings`, standards.md marks them
unconfirmed) multiplied by the lane's `time_scale`; a row of process data never
covers less than `min_window_s` of real time, so that each holds fresh analyzer
readings however small the scale. The measurement's one-second means are the
rows of the measured phases; judging (laned/judging/emissions.py) voids the test
when a second is diluted or out of its speed band, and flags a λ disagreement.
An analyzer that stops giving new readings ends the item with a reason naming
the phase ("gas-analyzer stopped answering during the high-idle measurement: …").

Over 400 lines: the HC residue check and the pump stop, which the daily checks
(laned/daily_checks.py) run too, are kept here beside the test that needs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from drivers.errors import DeviceError, DeviceTimeout
from laned.judging.emissions import (
    GasSecond,
    PhaseMeans,
    high_idle_band,
    judge_hc_residue,
    judge_two_speed_idle,
    phase_means,
)
from laned.judging.limits import CitedBand, LimitsError, TwoSpeedIdleLimits
from laned.judging.rounding import Check, check_dict
from laned.procedures import InspectionContext, ItemOutcome, ProcedureError, utc_now
from laned.procedures.emissions_items import (
    ReadingFeed,
    cancelling,
    dropout_reason,
    env_fields,
    gas_row,
    gas_second,
    rounded,
    settings_from,
    two_speed_idle_item,
    windows,
)
from laned.settings.two_speed_idle import HcResidueSettings, TwoSpeedIdleSettings
from protocols import gas_analyzer as ga

log = structlog.get_logger("laned.procedures.two_speed_idle")

_PENDING_PUMP_STOPS: set[asyncio.Task[None]] = set()


# ----- HC residue (also run by the daily checks) -------------------------------------------------


@dataclass(frozen=True)
class HcResidue:
    hc_ppm: float  # the mean of the last measurement, signed
    check: Check
    attempts: int
    purged_s: float  # real seconds on ambient air

    @property
    def passed(self) -> bool:
        return self.check.passed

    def as_dict(self) -> dict[str, Any]:
        return {
            "hc_ppm": self.check.value, "passed": self.passed, "attempts": self.attempts,
            "purged_s": round(self.purged_s, 1), "check": check_dict(self.check),
        }


async def hc_residue_check(
    analyzer: Any,
    feed: ReadingFeed,
    limits: TwoSpeedIdleLimits,
    settings: HcResidueSettings,
    *,
    time_scale: float,
    pause: Callable[[float], Awaitable[None]],
) -> HcResidue:
    """Pump on ambient air; mean HC over `measure_s`, measured again until it is below the limit
    or `timeout_s` has passed. `pause(real_s)` waits (and raises when the analyzer drops out)."""
    await analyzer.pump("ambient")
    feed.phase = "hc_residue"
    started = time.monotonic()
    await pause(settings.settle_s * time_scale)
    measure_real_s = max(settings.measure_s * time_scale, settings.min_measure_real_s)
    attempts = 0
    while True:
        attempts += 1
        t0 = feed.now_s()
        await pause(measure_real_s)
        readings = feed.between(t0, feed.now_s()) or [feed.latest]
        if readings[0] is None:
            raise DeviceTimeout(analyzer.name, "no reading during the HC residue check", port=analyzer.port)
        hc_ppm = sum(r.hc_ppm for r in readings) / len(readings)
        check = judge_hc_residue(hc_ppm, limits)
        purged_s = time.monotonic() - started
        if check.passed or purged_s >= settings.timeout_s * time_scale:
            return HcResidue(hc_ppm, check, attempts, purged_s)


async def stop_pump(analyzer: Any, *, retry_s: float = 300.0) -> bool:
    """PUMP_STOP now; if the analyzer does not answer, keep trying in the background until it
    answers again (at most `retry_s`), so a pump left drawing stops as soon as it can."""
    try:
        async with asyncio.timeout(2.0):
            await analyzer.pump("stop")
        return True
    except (DeviceError, TimeoutError) as exc:
        log.warning("pump_stop_failed", device=analyzer.name, port=analyzer.port, error=str(exc),
                    hint="retrying in the background until the analyzer answers")
        task = asyncio.create_task(_stop_pump_later(analyzer, retry_s), name=f"pump-stop-{analyzer.name}")
        _PENDING_PUMP_STOPS.add(task)
        task.add_done_callback(_PENDING_PUMP_STOPS.discard)
        return False


async def _stop_pump_later(analyzer: Any, retry_s: float) -> None:
    deadline = time.monotonic() + retry_s
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        if not analyzer.is_connected:
            continue
        with contextlib.suppress(DeviceError):
            await analyzer.pump("stop")
            log.info("pump_stopped_late", device=analyzer.name, port=analyzer.port)
            return
    log.error("pump_stop_gave_up", device=analyzer.name, port=analyzer.port, retry_s=retry_s,
              hint="stop the analyzer's pump by hand")


# ----- the test ---------------------------------------------------------------------------------


class TwoSpeedIdleTest:
    """One two-speed idle test on one analyzer (see the module docstring)."""

    def __init__(self, ctx: InspectionContext, analyzer: Any, settings: TwoSpeedIdleSettings) -> None:
        self.ctx, self.analyzer, self.s = ctx, analyzer, settings
        self.limits: TwoSpeedIdleLimits = ctx.limits.emissions.two_speed_idle
        vehicle = ctx.command.vehicle
        self.high_band = high_idle_band(self.limits, vehicle.total_mass_kg)
        self.idle_band = self.limits.rpm.idle
        rated = vehicle.rated_engine_speed_rpm or 0
        self.precondition_rpm = round(settings.precondition_share_of_rated * rated)
        self.window_s = max(ctx.scaled(settings.sample_interval_s), settings.min_window_s)
        self.started_at = utc_now()
        self.rows: list[dict[str, Any]] = []
        self.env: Any = None
        self._env_at = -math.inf
        self.phase_text = "preparation"
        self.pre_checks: dict[str, Any] = {}
        self.feed: ReadingFeed

    async def run(self) -> ItemOutcome:
        ctx, s = self.ctx, self.s
        ctx.step("two_speed_idle", "two-speed idle test (GB 18285-2018 Appendix A)",
                 limit_set=self.limits.limit_set.value, high_idle_rpm=[self.high_band.min, self.high_band.max])
        if ctx.daily_checks is not None and (missing := ctx.daily_checks.missing_reasons()):
            raise ProcedureError("; ".join(missing), step=ctx.current_step)
        async with ReadingFeed(self.analyzer, silence_s=s.analyzer_silence_s) as feed:
            self.feed = feed
            try:
                await self._prepare()
                await self._hc_residue()
                await self._precondition()
                high_idle = await self._phase("high_idle", self.high_band)
                idle = await self._phase("idle", self.idle_band)
            except DeviceError as exc:
                raise ProcedureError(self._dropout(exc), step=ctx.current_step) from None
            finally:
                await self._finish()
        return self._outcome(high_idle, idle)

    # ----- steps --------------------------------------------------------------------------------

    async def _prepare(self) -> None:
        ctx, analyzer = self.ctx, self.analyzer
        state = (await analyzer.status()).state
        if state != ga.AnalyzerState.READY:
            ctx.step("two_speed_idle.warm_up", f"waiting for the gas analyzer ({state.name.lower()})")
            deadline = time.monotonic() + self.s.warmup_timeout_s
            while state != ga.AnalyzerState.READY:
                if state == ga.AnalyzerState.FAULT:
                    raise ProcedureError(f"{analyzer.name} reports a bench fault (STATE 5): check the condensate "
                                         "trap, the filters and the flow, then start again", step=ctx.current_step)
                if time.monotonic() > deadline:
                    raise ProcedureError(f"{analyzer.name} still {state.name.lower()} after "
                                         f"{self.s.warmup_timeout_s:g} s", step=ctx.current_step)
                await self._pause(0.5)
                state = (await analyzer.status()).state
        while self.feed.latest is None:
            await self._pause(0.05)
        flags = self.feed.latest.flags
        self.pre_checks["analyzer_flags"] = [str(f.name).lower() for f in ga.Flags if f in flags]
        for flag, text in ((ga.Flags.LOW_FLOW, "low flow"), (ga.Flags.CONDENSATE_FULL, "condensate trap full"),
                           (ga.Flags.O2_SENSOR_AGED, "O2 sensor aged"), (ga.Flags.NO_SENSOR_AGED, "NO sensor aged")):
            if flag in flags:
                ctx.warn(f"{analyzer.name}: {text}", flag=str(flag.name).lower())
        if self.s.zero_when_due and ga.Flags.ZERO_DUE in flags:
            ctx.step("two_speed_idle.zero", "the analyzer says a zero is due: zeroing")
            passed = await analyzer.zero()
            if ctx.daily_checks is not None:
                ctx.daily_checks.record("zero", passed, {"device": analyzer.name, "by": "two_speed_idle"})
            self.pre_checks["zero_before_test"] = {"passed": passed, "at": utc_now().isoformat()}
            if not passed:
                raise ProcedureError(f"{analyzer.name}: the zero before the test failed; check the zero-air "
                                     "filter and zero again", step=ctx.current_step)

    async def _hc_residue(self) -> None:
        ctx, s = self.ctx, self.s
        daily = ctx.daily_checks
        age = daily.passed_age_s("hc_residue") if daily is not None else None
        if daily is not None and age is not None and age <= s.hc_residue_max_age_s:
            last = daily.last("hc_residue") or {}
            self.pre_checks["hc_residue"] = {"run": False, "passed_s_ago": round(age, 1), **last}
            return
        self.phase_text = "HC residue check"
        ctx.step("two_speed_idle.hc_residue", "HC residue check: pump on ambient air")
        result = await hc_residue_check(self.analyzer, self.feed, self.limits, s.hc_residue,
                                        time_scale=ctx.time_scale, pause=self._pause)
        if daily is not None:
            daily.record("hc_residue", result.passed, {"device": self.analyzer.name, "by": "two_speed_idle",
                                                        **result.as_dict()})
        self.pre_checks["hc_residue"] = {"run": True, **result.as_dict()}
        ctx.step_done("two_speed_idle.hc_residue", f"HC residue {result.check.value:g} ppm", passed=result.passed)
        if not result.passed:
            raise ProcedureError(
                f"HC residue {result.check.value:g} ppm is not below {result.check.limit:g} ppm after "
                f"{result.purged_s:.0f} s on ambient air: backflush the probe and hose, then start again",
                step=ctx.current_step)

    async def _precondition(self) -> None:
        ctx, s = self.ctx, self.s
        target = self.precondition_rpm
        low, high = target * (1 - s.precondition_tolerance_pct / 100), target * (1 + s.precondition_tolerance_pct / 100)
        self.phase_text = "preconditioning"
        ctx.step("two_speed_idle.precondition", f"preconditioning at {target} r/min for {s.precondition_s:g} s")
        ctx.prompt("engine_precondition", f"raise the engine to {target} r/min and hold it (预热 {target} r/min)",
                   target_rpm=target, hold_s=s.precondition_s)
        await self._record("precondition_speed", until=lambda: self._rpm_within(low, high),
                           timeout_s=s.engine_speed_timeout_s,
                           reason=f"the engine did not reach {low:.0f}…{high:.0f} r/min for preconditioning "
                                  f"within {s.engine_speed_timeout_s:g} s")
        await self._record("precondition", count=windows(s.precondition_s, s.sample_interval_s))

    async def _phase(self, name: str, band: CitedBand) -> PhaseMeans:
        ctx, s = self.ctx, self.s
        label = name.replace("_", "-")
        target = round((band.min + band.max) / 2)
        self.phase_text = f"{label} speed"
        ctx.step(f"two_speed_idle.{name}", f"{label}: {band.min:g}…{band.max:g} r/min")
        ctx.prompt(f"engine_{name}", f"bring the engine to {label} ({band.min:g}…{band.max:g} r/min) and hold it",
                   target_rpm=target, band_rpm=[band.min, band.max])
        await self._record(f"{name}_speed", until=lambda: self._rpm_within(band.min, band.max),
                           timeout_s=s.engine_speed_timeout_s,
                           reason=f"the engine did not reach {label} ({band.min:g}…{band.max:g} r/min) within "
                                  f"{s.engine_speed_timeout_s:g} s")
        if name == "high_idle":
            self.phase_text = "probe insertion"
            await self.analyzer.pump("sample")
            ctx.prompt("insert_probe", f"insert the sampling probe at least {s.probe_depth_mm} mm into the "
                                       f"tailpipe (探头插入 ≥ {s.probe_depth_mm} mm)", depth_mm=s.probe_depth_mm)
            await self._record("probe", until=self._exhaust_seen, timeout_s=s.probe_timeout_s,
                               reason=f"no exhaust at the analyzer (CO2 below {s.exhaust_detect_co2_pct:g} %) "
                                      f"{s.probe_timeout_s:g} s after the probe prompt: is the probe in the tailpipe?")
        self.phase_text = f"{label} settling"
        settle_s = s.high_idle_settle_s if name == "high_idle" else s.idle_settle_s
        await self._record(f"{name}_settle", count=windows(settle_s, s.sample_interval_s))
        self.phase_text = f"{label} measurement"
        ctx.step(f"two_speed_idle.{name}.measure", f"{label} measurement: mean of {s.measure_s:g} s")
        seconds = await self._record(name, count=windows(s.measure_s, s.sample_interval_s), measured=True)
        means = phase_means(seconds)
        ctx.step_done(f"two_speed_idle.{name}.measure", f"{label} measured",
                      co_pct=rounded(means.co_pct, 2), hc_ppm=rounded(max(0.0, means.hc_ppm), 0),
                      co2_pct=rounded(means.co2_pct, 2), lambda_value=rounded(means.lambda_value, 3),
                      rpm=rounded(means.rpm, 0))
        return means

    async def _finish(self) -> None:
        """Pump off, probe out, engine off: at the end, on an error, on an abort (not when the
        daemon is stopping: then its own safe stop runs and nothing else may be sent)."""
        if cancelling():
            return
        stopped = await stop_pump(self.analyzer)
        if not stopped:
            self.ctx.warn(f"{self.analyzer.name} did not confirm the pump stop; the lane retries until it answers")
        self.ctx.prompt("remove_probe", "take the sampling probe out of the tailpipe (取出探头)")
        self.ctx.prompt("engine_off", "switch the engine off (熄火)")

    # ----- recording --------------------------------------------------------------------------

    async def _pause(self, real_s: float) -> None:
        """Wait `real_s` (not scaled), noticing an abort and an analyzer that stopped answering."""
        deadline = time.monotonic() + real_s
        while True:
            self.feed.check_alive()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await self.ctx.sleep(min(remaining, 0.05), scaled=False)

    async def _record(
        self,
        phase: str,
        *,
        count: int | None = None,
        until: Callable[[], bool] | None = None,
        timeout_s: float | None = None,
        reason: str = "",
        measured: bool = False,
    ) -> list[GasSecond]:
        """Rows of `window_s` in `phase`: `count` of them, or until `until()` (ProcedureError
        `reason` after `timeout_s`, scaled). Returns the rows' one-second means."""
        feed = self.feed
        feed.phase = phase
        seconds: list[GasSecond] = []
        if until is not None and until():
            return seconds
        start = feed.now_s()
        deadline = None if timeout_s is None else start + max(self.ctx.scaled(timeout_s), self.window_s)
        while True:
            t0 = start + len(seconds) * self.window_s
            await self._pause(t0 + self.window_s - feed.now_s())
            readings = feed.between(t0, t0 + self.window_s)
            held = not readings
            if held:
                readings = [feed.latest]
            await self._refresh_env()
            seconds.append(gas_second(readings))
            self.rows.append(gas_row(t0, phase, readings, measured=measured, held=held, env=self.env,
                                     started_at=self.started_at))
            if count is not None and len(seconds) >= count:
                return seconds
            if until is not None and until():
                return seconds
            if deadline is not None and feed.now_s() >= deadline:
                raise ProcedureError(reason, step=self.ctx.current_step)

    async def _refresh_env(self) -> None:
        now = time.monotonic()
        if now - self._env_at >= self.ctx.scaled(self.s.env_interval_s):
            self.env = await self.analyzer.read_env()
            self._env_at = now

    def _rpm_within(self, low: float, high: float) -> bool:
        latest = self.feed.latest
        return latest is not None and low <= latest.rpm <= high

    def _exhaust_seen(self) -> bool:
        latest = self.feed.latest
        return latest is not None and latest.co2_pct >= self.s.exhaust_detect_co2_pct

    def _dropout(self, exc: DeviceError) -> str:
        return dropout_reason(self.analyzer, self.phase_text, exc)

    # ----- result -----------------------------------------------------------------------------

    def _outcome(self, high_idle: PhaseMeans, idle: PhaseMeans) -> ItemOutcome:
        ctx, vehicle = self.ctx, self.ctx.command.vehicle
        try:
            verdict = judge_two_speed_idle(high_idle, idle, ctx.limits.emissions,
                                           total_mass_kg=vehicle.total_mass_kg, fuel=vehicle.fuel)
        except LimitsError as exc:
            raise ProcedureError(f"cannot judge two-speed idle: {'; '.join(exc.problems)}") from None
        for flag in verdict.flags:
            ctx.warn(flag)
        if verdict.void_reasons:
            ctx.warn("two-speed idle void: " + "; ".join(verdict.void_reasons))
        oil = [r["oil_temp_c"] for r in self.rows if r["measured"] and r["oil_temp_c"] is not None]
        daily = ctx.daily_checks
        if daily is not None:
            self.pre_checks |= {"leak_check": daily.last("leak_check"), "zero": daily.last("zero")}
        item = two_speed_idle_item(
            verdict,
            high_idle=high_idle,
            tolerance=self.limits.lambda_cross_check_tolerance,
            bands={"high_idle": self.high_band, "idle": self.idle_band},
            ambient={**env_fields(self.env), "source": f"{self.analyzer.name} READ_ENV"},
            oil_temp_c=rounded(sum(oil) / len(oil), 1) if oil else None,
            pre_checks=self.pre_checks,
            process_data={
                "interval_s": self.s.sample_interval_s, "row_real_s": round(self.window_s, 3),
                "time_scale": ctx.time_scale, "started_at": self.started_at.isoformat(), "rows": self.rows,
            },
            settings=self.s.model_dump(),
        )
        device = {**ctx.device_identity(self.analyzer), **(daily.summary() if daily is not None else {})}
        ctx.step_done("two_speed_idle", f"two-speed idle: {verdict.verdict}", verdict=verdict.verdict)
        return ItemOutcome(procedure="two_speed_idle", platform="emissions", items=[item], verdict=verdict.verdict,
                           devices={self.analyzer.name: device})


async def run_two_speed_idle(ctx: InspectionContext) -> ItemOutcome:
    """The two-speed idle item of one inspection (see the module docstring)."""
    settings = settings_from(ctx.settings, "two_speed_idle", TwoSpeedIdleSettings)
    analyzer = ctx.driver("gas_analyzer")
    return await TwoSpeedIdleTest(ctx, analyzer, settings).run()
