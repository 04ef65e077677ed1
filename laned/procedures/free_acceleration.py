"""Free acceleration (自由加速, GB 3847-2018 Appendix A) on the OP-1 opacimeter: item `ZYJS`.

The steps, each announced as `free_acceleration.<step>`:

1. the meter warm (waiting out its warm-up) and zeroed (`zero_before_test`);
   ambient conditions from ENV; the probe in (`insert_probe`); the engine's idle
   speed taken from the meter's tachometer;
2. three purging free accelerations (`free_accelerate`, data `purpose: purge`);
3. measured free accelerations (`purpose: measured`) until three count: for each,
   CLEAR_PEAK, the prompt, the engine speed rising and falling back to idle, then
   PEAK (K, N and the engine speed at the peak K). An acceleration whose top speed
   (the largest of the tachometer readings and the speed at the peak) stays under
   the governed speed is flagged and, with `below_governed = "repeat"`, made again
   (at most `max_repeats` times; with too few valid ones the test is void);
4. the mean of the counted peak K, rounded to 0.01 m⁻¹, judged against the limit
   set in force (laned/judging/emissions.py); N and K of every peak and reading
   cross-checked through the optical path length L (a disagreement is flagged).

Pauses between accelerations are settings scaled by the lane's `time_scale`; the
accelerations themselves happen at the engine's own pace, so their timeouts are
real seconds. The required top speed is `governed_min_rpm`, or
`governed_min_share_of_rated` × the rated speed of the `start` command.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

import structlog

from drivers.errors import DeviceError, DeviceTimeout
from laned.judging.emissions import FreeAccelerationVerdict, judge_free_acceleration
from laned.judging.limits import FreeAccelerationLimits, LimitsError
from laned.procedures import InspectionContext, ItemOutcome, ProcedureError, utc_now
from laned.procedures.emissions_items import (
    Acceleration,
    ReadingFeed,
    bucket_rows,
    cancelling,
    dropout_reason,
    env_fields,
    free_acceleration_item,
    n_k_consistent,
    rounded,
    settings_from,
    smoke_row,
)
from laned.settings.free_acceleration import FreeAccelerationSettings
from protocols import opacimeter as op

log = structlog.get_logger("laned.procedures.free_acceleration")


class FreeAccelerationTest:
    """One free acceleration test on one opacimeter (see the module docstring)."""

    def __init__(self, ctx: InspectionContext, meter: Any, settings: FreeAccelerationSettings) -> None:
        self.ctx, self.meter, self.s = ctx, meter, settings
        self.limits: FreeAccelerationLimits = ctx.limits.emissions.free_acceleration
        rated = ctx.command.vehicle.rated_engine_speed_rpm or 0
        if settings.governed_min_rpm is not None:
            self.required_rpm = settings.governed_min_rpm
            self.required_basis = "setting governed_min_rpm"
        else:
            self.required_rpm = round(settings.governed_min_share_of_rated * rated)
            self.required_basis = f"{settings.governed_min_share_of_rated:g} × rated speed {rated} r/min"
        self.window_s = max(ctx.scaled(settings.sample_interval_s), settings.min_window_s)
        self.started_at = utc_now()
        self.accelerations: list[Acceleration] = []
        self.flags: list[str] = []
        self.phase_text = "preparation"
        self.idle_rpm = 0.0
        self.env: Any = None
        self.zero: dict[str, Any] | None = None
        self.feed: ReadingFeed

    async def run(self) -> ItemOutcome:
        ctx = self.ctx
        ctx.step("free_acceleration", "free acceleration test (GB 3847-2018 Appendix A)",
                 limit_set=self.limits.limit_set.value, required_rpm=self.required_rpm)
        async with ReadingFeed(self.meter, silence_s=self.s.meter_silence_s) as feed:
            self.feed = feed
            try:
                await self._prepare()
                for n in range(1, self.s.purge_accelerations + 1):
                    self.phase_text = f"purging free acceleration {n}"
                    await self._accelerate(n, "purge")
                await self._measure()
            except DeviceError as exc:
                raise ProcedureError(self._dropout(exc), step=ctx.current_step) from None
            finally:
                if not cancelling():
                    ctx.prompt("remove_probe", "take the opacimeter probe out of the tailpipe (取出探头)")
        return self._outcome()

    # ----- steps --------------------------------------------------------------------------------

    async def _prepare(self) -> None:
        ctx, meter, s = self.ctx, self.meter, self.s
        state = await meter.status()
        if state != op.MeterState.READY:
            ctx.step("free_acceleration.warm_up", f"waiting for the opacimeter ({state.name.lower()})")
            deadline = time.monotonic() + s.warmup_timeout_s
            while state != op.MeterState.READY:
                if state == op.MeterState.FAULT:
                    raise ProcedureError(f"{meter.name} reports a fault: clean the optics, check the lamp, then "
                                         "start again", step=ctx.current_step)
                if time.monotonic() > deadline:
                    raise ProcedureError(f"{meter.name} still {state.name.lower()} after {s.warmup_timeout_s:g} s",
                                         step=ctx.current_step)
                await ctx.sleep(0.5, scaled=False)
                state = await meter.status()
        if s.zero_before_test:
            self.phase_text = "zero"
            ctx.step("free_acceleration.zero", "zeroing the opacimeter")
            passed = await meter.zero()
            self.zero = {"passed": passed, "at": utc_now().isoformat()}
            if not passed:
                raise ProcedureError(f"{meter.name}: the zero failed; clean the optics and check the lamp, then "
                                     "start again", step=ctx.current_step)
        self.env = await meter.env()
        self.feed.restart_silence_clock()  # a warming or zeroing meter gives no readings
        self.phase_text = "idle"
        self.feed.phase = "idle"
        ctx.step("free_acceleration.idle", "engine at idle, probe in the tailpipe")
        ctx.prompt("insert_probe", "insert the opacimeter probe into the tailpipe; engine at idle (探头插入，怠速)")
        await self._pause(self.window_s)
        idle = self.feed.between(self.feed.now_s() - self.window_s, self.feed.now_s()) or [self.feed.latest]
        if idle[0] is None:
            raise DeviceTimeout(meter.name, "no reading after the zero", port=meter.port)
        self.idle_rpm = sum(r.rpm for r in idle) / len(idle)

    async def _measure(self) -> None:
        ctx, s = self.ctx, self.s
        wanted = int(self.limits.measured_accelerations.value)
        counted = repeats = 0
        number = 0
        while counted < wanted:
            number += 1
            self.phase_text = f"measured free acceleration {number}"
            acc = await self._accelerate(number, "measured")
            if acc.reached_governed or s.below_governed == "flag":
                counted += 1
                self.accelerations[-1] = _with(acc, counted=True)
            if acc.reached_governed:
                continue
            action = "counted" if s.below_governed == "flag" else "not counted, repeated"
            if s.below_governed == "repeat" and repeats >= s.max_repeats:
                action = "not counted; no repeats left"
            flag = (f"measured free acceleration {number} reached only {acc.max_rpm} r/min, below governed speed "
                    f"(≥ {self.required_rpm} r/min, {self.required_basis}): {action}")
            self.flags.append(flag)
            ctx.warn(flag, number=number, max_rpm=acc.max_rpm, required_rpm=self.required_rpm)
            if s.below_governed == "repeat":
                if repeats >= s.max_repeats:
                    return
                repeats += 1

    async def _accelerate(self, number: int, purpose: Literal["purge", "measured"]) -> Acceleration:
        ctx, meter, s, feed = self.ctx, self.meter, self.s, self.feed
        step = f"free_acceleration.{purpose}{number}"
        ctx.step(step, f"{purpose} free acceleration {number}")
        if purpose == "measured":
            await meter.clear_peak()
        feed.phase = f"{purpose} {number}"
        t0 = feed.now_s()
        ctx.prompt("free_accelerate", "floor the throttle within 1 s, hold it until governed speed, then release "
                   "(自由加速)", number=number, purpose=purpose)
        started = self.idle_rpm + s.start_rise_rpm
        await self._until(lambda: self._rpm() > started, s.start_timeout_s,
                          f"the engine speed did not rise above {started:.0f} r/min within {s.start_timeout_s:g} s "
                          f"of the {purpose} free acceleration {number} prompt")
        back = self.idle_rpm + s.idle_return_rpm
        await self._until(lambda: self._rpm() < back, s.acceleration_timeout_s,
                          f"the engine did not return to idle (below {back:.0f} r/min) within "
                          f"{s.acceleration_timeout_s:g} s in {purpose} free acceleration {number}")
        readings = feed.between(t0, feed.now_s())
        max_rpm = max((r.rpm for r in readings), default=0)
        acc = Acceleration(number=number, purpose=purpose, max_rpm=max_rpm)
        if purpose == "measured":
            peak = await meter.peak()
            top = max(max_rpm, peak.rpm)
            consistent = n_k_consistent(peak.opacity_pct, peak.k_m1, self.limits.optical_path_length_m,
                                        self.limits.n_k_tolerance_pct)
            if not consistent:
                self.flags.append(f"measured free acceleration {number}: peak N {peak.opacity_pct:g} % does not "
                                  f"agree with peak K {peak.k_m1:g} m⁻¹ through L; check the opacimeter")
            acc = Acceleration(number=number, purpose=purpose, max_rpm=top, peak_k_m1=peak.k_m1,
                               peak_opacity_pct=peak.opacity_pct, rpm_at_peak=peak.rpm,
                               reached_governed=top >= self.required_rpm, n_k_consistent=consistent)
            ctx.step_done(step, f"peak K {peak.k_m1:.2f} m⁻¹ at {peak.rpm} r/min", peak_k_m1=peak.k_m1,
                          peak_opacity_pct=peak.opacity_pct, rpm_at_peak=peak.rpm, max_rpm=top)
        else:
            acc = _with(acc, reached_governed=max_rpm >= self.required_rpm)
        self.accelerations.append(acc)
        feed.phase = "idle"
        await self._pause(ctx.scaled(s.idle_between_s))
        return acc

    # ----- waiting ------------------------------------------------------------------------------

    def _rpm(self) -> float:
        latest = self.feed.latest
        return float(latest.rpm) if latest is not None else 0.0

    async def _pause(self, real_s: float) -> None:
        deadline = time.monotonic() + real_s
        while True:
            self.feed.check_alive()
            if (remaining := deadline - time.monotonic()) <= 0:
                return
            await self.ctx.sleep(min(remaining, 0.05), scaled=False)

    async def _until(self, condition: Callable[[], bool], timeout_s: float, reason: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise ProcedureError(reason, step=self.ctx.current_step)
            await self._pause(0.02)

    def _dropout(self, exc: DeviceError) -> str:
        return dropout_reason(self.meter, self.phase_text, exc)

    # ----- result -------------------------------------------------------------------------------

    def _outcome(self) -> ItemOutcome:
        ctx, limits = self.ctx, self.limits
        counted = [a for a in self.accelerations if a.counted]
        wanted = int(limits.measured_accelerations.value)
        verdict: FreeAccelerationVerdict | None = None
        void_reason = None
        if len(counted) < wanted:
            void_reason = (f"only {len(counted)} of {wanted} measured free accelerations reached governed speed "
                           f"(≥ {self.required_rpm} r/min); repeat the test")
            ctx.warn(f"free acceleration void: {void_reason}")
        else:
            try:
                verdict = judge_free_acceleration([a.peak_k_m1 or 0.0 for a in counted], ctx.limits.emissions,
                                                  peak_rpm=[a.rpm_at_peak or 0 for a in counted])
            except LimitsError as exc:
                raise ProcedureError(f"cannot judge free acceleration: {'; '.join(exc.problems)}") from None
        samples = self.feed.samples
        inconsistent = [s for s in samples if not n_k_consistent(s.reading.opacity_pct, s.reading.k_m1,
                                                                 limits.optical_path_length_m,
                                                                 limits.n_k_tolerance_pct)]
        if inconsistent:
            self.flags.append(f"{len(inconsistent)} of {len(samples)} readings have N and K that disagree through "
                              f"L = {limits.optical_path_length_m.value:g} m; check the opacimeter")
        rows = [smoke_row(t, phase, readings, env=self.env, started_at=self.started_at)
                for t, phase, readings in bucket_rows(samples, self.window_s)]
        oil = [s.reading.oil_temp_k for s in samples if s.reading.oil_temp_k is not None]
        limit_set = verdict.limit_set if verdict is not None else limits.limit_set.value
        item = free_acceleration_item(
            verdict,
            accelerations=self.accelerations,
            governed={"required_min_rpm": self.required_rpm, "basis": self.required_basis,
                      "below_governed": self.s.below_governed, "max_repeats": self.s.max_repeats},
            path=limits.optical_path_length_m,
            tolerance=limits.n_k_tolerance_pct,
            limit=limits.sets[limit_set].k_max_m1 if limit_set in limits.sets else None,
            limit_set=limit_set,
            void_reason=void_reason,
            flags=self.flags,
            ambient={**env_fields(self.env), "source": f"{self.meter.name} ENV"},
            oil_temp_c=rounded(sum(oil) / len(oil) - 273.15, 1) if oil else None,
            process_data={"interval_s": self.s.sample_interval_s, "row_real_s": round(self.window_s, 3),
                          "time_scale": ctx.time_scale, "started_at": self.started_at.isoformat(), "rows": rows},
            settings=self.s.model_dump(),
            zero=self.zero,
        )
        result = item["verdict"]
        device = {**ctx.device_identity(self.meter), "last_zero": self.zero}
        ctx.step_done("free_acceleration", f"free acceleration: {result}", verdict=result,
                      mean_k_m1=None if verdict is None else verdict.mean_k_m1)
        return ItemOutcome(procedure="free_acceleration", platform="emissions", items=[item], verdict=result,
                           devices={self.meter.name: device})


def _with(acc: Acceleration, **changes: Any) -> Acceleration:
    return replace(acc, **changes)


async def run_free_acceleration(ctx: InspectionContext) -> ItemOutcome:
    """The free acceleration item of one inspection (see the module docstring)."""
    settings = settings_from(ctx.settings, "free_acceleration", FreeAccelerationSettings)
    meter = ctx.driver("opacimeter")
    return await FreeAccelerationTest(ctx, meter, settings).run()
