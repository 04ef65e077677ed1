"""Lug-down (加载减速法, GB 3847-2018 Appendix B) on the chassis dynamometer, the opacimeter and a
GA-5N: item `JZJS`.

The steps, each announced as `lug_down.<step>` with the driver's prompts:

1. preconditions (the runner refuses the start otherwise; checked again here): today's
   analyzer checks and the dynamometer's loaded coast-down, and an analyzer that reads NOx
   (a GA-5N);
   the engine warm: oil at least `oil_temp_min_c` where the opacimeter has an oil probe, else
   the driver is told to warm it (`warm_engine`) and the lane waits (laned/procedures/oil_temp.py);
2. probes in (`insert_probe`), the idle speed recorded, the dynamometer readied (fan on, lift
   down, tare, PAU armed);
3. full throttle in the gear nearest 70 km/h (`lug_full_throttle`); `ScanStart` on the
   per-second speeds; at START: SPEED_TARGET = the present speed, SPEED_RAMP = 2.00,
   CONTROL_MODE 3, SPEED_TARGET = 20 km/h;
4. the power scan (`LugDownScan`) from the first whole second in mode 3 until END or VOID;
5. SPEED_RAMP 0 and the 100 % then the 80 % VelMaxHP target, each a `LugDownPoint` fed
   per-second: the dynamometer's ring, the opacimeter's K / N / RPM (20 Hz) and the GA-5N's
   NOx and CO2 means of the same second;
6. CONTROL_MODE 0, PAU off, the driver releases (`lug_release`), the roller brake below
   10 km/h, the lift up when the rollers stopped, probe out.

Every ring sample from the throttle prompt on is in one row of the per-second data. On an
error or abort the dynamometer is unloaded (mode 0, PAU off) in `finally`.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import structlog

from drivers.errors import DeviceError
from laned.figures import write_report_figures
from laned.judging.lug_down import (
    LugDownPoint,
    LugDownScan,
    LugEvent,
    PointResult,
    PointSecond,
    ScanResult,
    ScanSecond,
    ScanStart,
    judge_lug_down,
    point_targets,
)
from laned.procedures import InspectionContext, ItemOutcome, ProcedureError, utc_now
from laned.procedures.dyno_steps import (
    DynoSeconds,
    TimedSecond,
    exact,
    fault_reason,
    ready_rollers,
    split_fields,
    stop_rollers,
    unload,
)
from laned.procedures.emissions_items import ReadingFeed, cancelling, dropout_reason, env_fields, settings_from
from laned.procedures.loaded_items import lug_down_item, lug_row, num
from laned.procedures.oil_temp import oil_c_of_opacimeter, oil_temp_precondition
from laned.procedures.two_speed_idle import stop_pump
from laned.settings.lug_down import LugDownSettings
from laned.settings.two_speed_idle import TwoSpeedIdleSettings
from protocols.ring import HALF_INDEX, INDEX_MODULUS

log = structlog.get_logger("laned.procedures.lug_down")

IDLE_MIN_WINDOW_S = 1.0
STAGE_SCAN, STAGE_MOVING, STAGE_100, STAGE_80 = 0, 1, 2, 3


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


class LugDownTest:
    """One lug-down test (see the module docstring)."""

    def __init__(self, ctx: InspectionContext, dyno: Any, meter: Any, analyzer: Any,
                 settings: LugDownSettings) -> None:
        self.ctx, self.dyno, self.meter, self.analyzer, self.s = ctx, dyno, meter, analyzer, settings
        self.tsi = settings_from(ctx.settings, "two_speed_idle", TwoSpeedIdleSettings)
        vehicle = ctx.command.vehicle
        self.rated_power_kw = vehicle.rated_engine_power_kw
        self.rated_rpm = vehicle.rated_engine_speed_rpm
        self.started_at = utc_now()
        self.rows: list[dict[str, Any]] = []
        self.void: list[str] = []
        self.env: Any = None
        self.idle_rpm: float | None = None
        self.targets: tuple[Decimal, Decimal] | None = None
        self.phase_text = "preparation"
        self.pre_checks: dict[str, Any] = {}
        self.gas: ReadingFeed
        self.smoke: ReadingFeed
        self.seconds: DynoSeconds

    async def run(self) -> ItemOutcome:
        ctx = self.ctx
        ctx.step("lug_down", "lug-down test (GB 3847-2018 Appendix B)", rated_power_kw=self.rated_power_kw,
                 rated_rpm=self.rated_rpm)
        completed = False
        scan: ScanResult | None = None
        points: list[PointResult] = []
        async with ReadingFeed(self.analyzer, silence_s=self.tsi.analyzer_silence_s) as gas, \
                ReadingFeed(self.meter, silence_s=self.tsi.analyzer_silence_s) as smoke:
            self.gas, self.smoke = gas, smoke
            try:
                self.phase_text = "oil temperature check"
                self.pre_checks["oil_temp"] = await oil_temp_precondition(
                    ctx, smoke, oil_c_of_opacimeter, step="lug_down", setting="inspection.lug_down", settings=self.s)
                self.phase_text = "preparation"
                await self.analyzer.pump("sample")
                ctx.prompt("insert_probe", "insert the opacimeter's and the analyzer's probes into the tailpipe "
                                           "(插入烟度计和分析仪探头)")
                self.env = await self.analyzer.read_env()
                await self._idle_rpm()
                self.phase_text = "readying the dynamometer"
                await ready_rollers(ctx, self.dyno, "lug_down.dynamometer")
                self.seconds = DynoSeconds(self.dyno, gas)
                await self.seconds.start()
                if await self._scan_start():
                    scan = await self._scan()
                if scan is not None:
                    self.targets = point_targets(scan.vel_max_hp_kmh)
                    await self.dyno.set_speed_ramp(0)
                    for name, target, stage in (("100", self.targets[0], STAGE_100),
                                                ("80", self.targets[1], STAGE_80)):
                        point = await self._point(name, target, stage)
                        if point is None:
                            break
                        points.append(point)
                await self._drain()
                await stop_rollers(ctx, self.dyno, "lug_down.stop", prompt_action="lug_release",
                                   text="release the throttle (松油门); the rollers are braked below 10 km/h")
                completed = True
            except DeviceError as exc:
                device = {self.dyno.name: self.dyno, self.meter.name: self.meter}.get(exc.device, self.analyzer)
                raise ProcedureError(dropout_reason(device, self.phase_text, exc), step=ctx.current_step) from None
            finally:
                await self._finish(completed)
        return self._outcome(scan, points)

    # ----- steps --------------------------------------------------------------------------------

    def _alive(self) -> None:
        self.gas.check_alive()
        self.smoke.check_alive()

    async def _idle_rpm(self) -> None:
        ctx = self.ctx
        ctx.step("lug_down.idle", f"idle speed: mean over {self.s.idle_rpm_s} s")
        t0 = self.smoke.now_s()
        window_s = max(ctx.scaled(self.s.idle_rpm_s), IDLE_MIN_WINDOW_S)  # real: the meter's own 20 Hz
        deadline = time.monotonic() + window_s
        while time.monotonic() < deadline:
            self._alive()
            await ctx.sleep(0.05, scaled=False)
        readings = self.smoke.between(t0, self.smoke.now_s())
        self.idle_rpm = _mean([float(r.rpm) for r in readings if r.rpm > 0])
        if self.idle_rpm is None:
            ctx.warn(f"{self.meter.name}: no engine speed at idle; the idle speed is not recorded")

    async def _next(self) -> TimedSecond:
        timed = await self.seconds.next_second(self.ctx, alive=self._alive)
        reason = fault_reason(self.dyno)
        if reason is not None:
            raise ProcedureError(reason, step=self.ctx.current_step)
        return timed

    async def _scan_start(self) -> bool:
        ctx, s = self.ctx, self.s
        self.phase_text = "scan start"
        ctx.step("lug_down.scan_start", f"full throttle in the gear nearest {s.gear_target_speed_kmh:g} km/h")
        ctx.prompt("lug_full_throttle", f"choose the gear nearest {s.gear_target_speed_kmh:g} km/h at full throttle "
                                        "and hold the throttle fully open (全油门)",
                   gear_target_speed_kmh=s.gear_target_speed_kmh)
        start = ScanStart(s)
        while True:
            timed = await self._next()
            step = start.feed(exact(timed.record.speed_kmh))
            self._row(STAGE_SCAN, timed, ScanSecond(exact(timed.record.speed_kmh), exact(timed.record.power_kw),
                                                     self._rpm(timed)), part="scan_start")
            if step.event is LugEvent.VOID:
                self.void.append(step.reason)
                ctx.warn(step.reason)
                return False
            if step.event is LugEvent.START:
                speed = self.dyno.last_snapshot.speed_kmh
                await self.dyno.set_speed_target_and_ramp(speed, s.scan_rate_kmh_s)
                self._mode_index = await self.dyno.set_control_mode(3)
                await self.dyno.set_speed_target_kmh(s.scan_floor_kmh)
                ctx.step_done("lug_down.scan_start", f"power scan from {speed:.1f} km/h", speed_kmh=speed)
                return True

    def _after(self, timed: TimedSecond, index: int) -> bool:
        """Whether the second begins after sample `index` (wrapping)."""
        return 0 < (timed.record.first_index - index) % INDEX_MODULUS < HALF_INDEX

    async def _scan(self) -> ScanResult | None:
        ctx = self.ctx
        self.phase_text = "power scan"
        ctx.step("lug_down.scan", "power scan: the dynamometer lowers the speed at full throttle")
        scan = LugDownScan(self.s)
        while True:
            timed = await self._next()
            second = ScanSecond(exact(timed.record.speed_kmh), exact(timed.record.power_kw), self._rpm(timed))
            if not self._after(timed, self._mode_index):
                self._row(STAGE_SCAN, timed, second, part="scan_start")
                continue
            step = scan.feed(second)
            self._row(STAGE_SCAN, timed, second, part="scan", scan_second=step.second)
            if step.event is LugEvent.VOID:
                self.void.append(step.reason)
                ctx.warn(step.reason)
                return None
            if step.event is LugEvent.END:
                result = scan.result
                assert result is not None
                ctx.step_done("lug_down.scan", f"Pmax {num(result.pmax_kw, 1)} kW at "
                              f"{num(result.vel_max_hp_kmh, 1)} km/h", pmax_kw=num(result.pmax_kw, 1),
                              vel_max_hp_kmh=num(result.vel_max_hp_kmh, 1))
                return result

    async def _point(self, name: str, target: Decimal, stage: int) -> PointResult | None:
        ctx = self.ctx
        self.phase_text = f"the {name} % point"
        ctx.step(f"lug_down.point_{name}", f"{name} % VelMaxHP: {num(target, 2)} km/h", target_kmh=num(target, 2))
        await self.dyno.set_speed_target_kmh(float(target))
        written = (await self.dyno.snapshot()).sample_index
        point = LugDownPoint(name, target, self.s)
        while True:
            timed = await self._next()
            if not self._after(timed, written):
                self._row(STAGE_MOVING, timed, self._scan_second(timed))
                continue
            second = self._point_second(timed)
            step = point.feed(second)
            self._row(stage, timed, second, event=step.event.value, stable=step.stable)
            if step.event is LugEvent.VOID:
                self.void.append(step.reason)
                ctx.warn(step.reason)
                return None
            if step.event is LugEvent.DONE:
                assert point.result is not None
                ctx.step_done(f"lug_down.point_{name}", f"{name} %: K {num(point.result.k_m1, 2)} m⁻¹",
                              k_m1=num(point.result.k_m1, 2), nox_ppm=num(point.result.nox_ppm, 0))
                return point.result

    async def _drain(self) -> None:
        await self.seconds.poll()
        while self.seconds.pending:
            timed = self.seconds.pending.popleft()
            self._row(STAGE_MOVING, timed, self._scan_second(timed), part="end")

    # ----- per-second joins ------------------------------------------------------------------------

    def _smoke(self, timed: TimedSecond) -> list[Any]:
        shift = self.gas.started - self.smoke.started  # the seconds are on the gas feed's clock
        t0 = timed.t0_s + shift
        return self.smoke.between(t0, t0 + 1.0) or [self.smoke.latest]

    def _gases(self, timed: TimedSecond) -> list[Any]:
        return self.gas.between(timed.t0_s, timed.t0_s + 1.0) or [self.gas.latest]

    def _rpm(self, timed: TimedSecond) -> float | None:
        rpms = [float(r.rpm) for r in self._smoke(timed) if r is not None and r.rpm > 0]
        return _mean(rpms)

    def _scan_second(self, timed: TimedSecond) -> ScanSecond:
        return ScanSecond(exact(timed.record.speed_kmh), exact(timed.record.power_kw), self._rpm(timed))

    def _point_second(self, timed: TimedSecond) -> PointSecond:
        smoke = [r for r in self._smoke(timed) if r is not None]
        gases = [r for r in self._gases(timed) if r is not None]
        if not smoke or not gases:
            raise ProcedureError("no opacimeter or analyzer reading for a point second", step=self.ctx.current_step)
        return PointSecond(
            speed_kmh=exact(timed.record.speed_kmh), power_kw=exact(timed.record.power_kw),
            k_m1=sum(r.k_m1 for r in smoke) / len(smoke), opacity_pct=sum(r.opacity_pct for r in smoke) / len(smoke),
            nox_ppm=sum((r.nox_ppm or 0) for r in gases) / len(gases),
            co2_pct=sum(r.co2_pct for r in gases) / len(gases), rpm=self._rpm(timed),
        )

    def _row(self, stage: int, timed: TimedSecond, second: ScanSecond | PointSecond, **extra: Any) -> None:
        r = timed.record
        self.rows.append(lug_row(stage, r.k, second, first_index=r.first_index, samples=r.samples,
                                 force_n=num(exact(r.force_n), 0), **split_fields(timed), **extra))

    async def _finish(self, completed: bool) -> None:
        if cancelling():
            return
        if not completed:
            await unload(self.dyno)
        if not await stop_pump(self.analyzer):
            self.ctx.warn(f"{self.analyzer.name} did not confirm the pump stop; the lane retries until it answers")
        self.ctx.prompt("remove_probe", "take the probes out of the tailpipe (取出探头)")

    # ----- result -----------------------------------------------------------------------------

    def _outcome(self, scan: ScanResult | None, points: list[PointResult]) -> ItemOutcome:
        ctx = self.ctx
        assert self.rated_power_kw is not None and self.rated_rpm is not None
        verdict = judge_lug_down(scan, points, ctx.limits.emissions, self.s, rated_power_kw=self.rated_power_kw,
                                 rated_rpm=self.rated_rpm, idle_rpm=self.idle_rpm, void_reasons=self.void)
        for flag in verdict.flags:
            ctx.warn(flag)
        item = lug_down_item(
            verdict, targets=self.targets,
            ambient={**env_fields(self.env), "source": f"{self.analyzer.name} READ_ENV"},
            process_data=self.seconds.process_data(self.started_at, self.rows),
            settings=self.s.model_dump(),
            oil_temp_c=self.pre_checks.get("oil_temp", {}).get("oil_temp_c"),
            pre_checks=self.pre_checks,
        )
        write_report_figures([item], ctx.state_dir, ctx.inspection_no, procedure="lug_down")  # for the report
        devices = {d.name: ctx.device_identity(d) for d in (self.dyno, self.meter, self.analyzer)}
        ctx.step_done("lug_down", f"lug-down: {verdict.verdict}", verdict=verdict.verdict)
        return ItemOutcome(procedure="lug_down", platform="emissions", items=[item], verdict=verdict.verdict,
                           devices=devices)


async def run_lug_down(ctx: InspectionContext) -> ItemOutcome:
    """The lug-down item of one inspection (see the module docstring)."""
    settings = settings_from(ctx.settings, "lug_down", LugDownSettings)
    dyno = ctx.driver("dynamometer")
    meter = ctx.driver("opacimeter")
    analyzer = ctx.driver("gas_analyzer")
    if not analyzer.is_ga5n:
        model = analyzer.health.identity.get("model") or "GA-5"
        raise ProcedureError(f"{analyzer.name}: lug-down measures NOx at 80 %: a {model} without NOx cannot "
                             "(a GA-5N is needed)", step="lug_down")
    if ctx.command.vehicle.rated_engine_power_kw is None:
        raise ProcedureError("the start carries no rated engine power (vehicle.rated_engine_power_kw)",
                             step="lug_down")
    if ctx.daily_checks is not None and (missing := ctx.daily_checks.missing_reasons()):
        raise ProcedureError("; ".join(missing), step="lug_down")
    return await LugDownTest(ctx, dyno, meter, analyzer, settings).run()
