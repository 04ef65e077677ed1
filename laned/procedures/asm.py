"""Steady-state ASM (稳态工况法, GB 18285-2018 Appendix B) on the chassis dynamometer and the gas
analyzer: item `WT`.

The steps, each announced as `asm.<step>` with the driver's prompts:

1. the analyzer's daily leak check and zero and the dynamometer's loaded coast-down must have
   passed today (the runner refuses the start otherwise);
   the engine warm: oil at least `oil_temp_min_c` where the analyzer has an oil probe, else the
   driver is told to warm it (`warm_engine`) and the lane waits (laned/procedures/oil_temp.py);
2. HC residue on ambient air (as two-speed idle; skipped after a recent pass), probe in
   (`insert_probe`);
3. the dynamometer readied: fan on, lift down, force channel tared, PAU armed;
4. ASM5025: the driver is told to hold 25 km/h (`asm_hold_25`); from then on every ring sample
   is in a whole second (laned/procedures/dyno_steps.py) joined with the analyzer's readings of
   that second and fed to `AsmPhase`: on LOAD_ON the lane writes POWER_TARGET/FORCE_TARGET and
   CONTROL_MODE 2, on CLOCK_STARTED it reads the ambient (READ_ENV) for kH once;
5. ASM2540 likewise at 40 km/h (`asm_hold_40`) when the test needs it (`needs_asm2540`);
6. CONTROL_MODE 0, PAU off, the driver releases and brakes (`asm_stop`), lift up when the
   rollers stopped, probe out (`remove_probe`).

On any error or abort the dynamometer is unloaded (mode 0, PAU off) and the pump stopped in
`finally`; a dynamometer that faults voids the phase with the reason. Judging is
laned/judging/asm.py, the item laned/procedures/loaded_items.py.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import structlog

from drivers.errors import DeviceError
from laned.figures import write_report_figures
from laned.judging.asm import (
    AsmEvent,
    AsmPhase,
    AsmPhaseResult,
    AsmSecond,
    asm_loads,
    judge_asm,
    kh_of_ambient,
    needs_asm2540,
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
from laned.procedures.loaded_items import asm_item, asm_row, num
from laned.procedures.oil_temp import oil_c_of_analyzer, oil_temp_precondition
from laned.procedures.two_speed_idle import hc_residue_check, stop_pump
from laned.settings.asm import AsmSettings
from laned.settings.two_speed_idle import TwoSpeedIdleSettings

log = structlog.get_logger("laned.procedures.asm")

SPEEDS = {"ASM5025": 25, "ASM2540": 40}


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def gas_means(readings: list[Any]) -> dict[str, Any]:
    """The analyzer's means over one second (its readings of that second)."""
    lambdas = [r.lambda_value for r in readings if r.lambda_value is not None]
    oils = [r.oil_temp_c for r in readings if r.oil_temp_c is not None]
    return {
        "hc_ppm": mean([r.hc_ppm for r in readings]), "co_pct": mean([r.co_pct for r in readings]),
        "co2_pct": mean([r.co2_pct for r in readings]), "o2_pct": mean([r.o2_pct for r in readings]),
        "no_ppm": mean([r.no_ppm for r in readings]), "lambda_value": mean(lambdas) if lambdas else 0.0,
        "rpm": mean([r.rpm for r in readings]), "oil_temp_c": mean(oils) if oils else None,
    }


class AsmTest:
    """One ASM test (see the module docstring)."""

    def __init__(self, ctx: InspectionContext, dyno: Any, analyzer: Any, settings: AsmSettings) -> None:
        self.ctx, self.dyno, self.analyzer, self.s = ctx, dyno, analyzer, settings
        self.tsi = settings_from(ctx.settings, "two_speed_idle", TwoSpeedIdleSettings)
        vehicle = ctx.command.vehicle
        self.loads = asm_loads(vehicle.curb_mass_kg, settings)
        self.limits = ctx.limits.emissions.asm
        self.fuel = vehicle.fuel
        self.started_at = utc_now()
        self.rows: list[dict[str, Any]] = []
        self.kh: Decimal | None = None
        self.env: Any = None
        self.pre_checks: dict[str, Any] = {}
        self.phase_text = "preparation"
        self.feed: ReadingFeed
        self.seconds: DynoSeconds

    async def run(self) -> ItemOutcome:
        ctx = self.ctx
        p5025, f5025, p2540, f2540 = self.loads
        ctx.step("asm", "steady-state ASM test (GB 18285-2018 Appendix B)",
                 asm5025={"power_kw": num(p5025, 2), "force_n": f5025},
                 asm2540={"power_kw": num(p2540, 2), "force_n": f2540})
        completed = False
        async with ReadingFeed(self.analyzer, silence_s=self.tsi.analyzer_silence_s) as feed:
            self.feed = feed
            try:
                self.phase_text = "oil temperature check"
                self.pre_checks["oil_temp"] = await oil_temp_precondition(
                    ctx, feed, oil_c_of_analyzer, step="asm", setting="inspection.asm", settings=self.s)
                self.phase_text = "preparation"
                await self._hc_residue()
                await self.analyzer.pump("sample")
                ctx.prompt("insert_probe", f"insert the sampling probe at least {self.tsi.probe_depth_mm} mm into "
                                           f"the tailpipe (探头插入 ≥ {self.tsi.probe_depth_mm} mm)",
                           depth_mm=self.tsi.probe_depth_mm)
                self.phase_text = "readying the dynamometer"
                await ready_rollers(ctx, self.dyno, "asm.dynamometer")
                self.seconds = DynoSeconds(self.dyno, feed)
                await self.seconds.start()
                phases = [await self._phase("ASM5025", p5025, f5025)]
                if needs_asm2540(phases[0], self.s):
                    phases.append(await self._phase("ASM2540", p2540, f2540))
                await self._drain()
                await stop_rollers(ctx, self.dyno, "asm.stop", prompt_action="asm_stop",
                                   text="release the throttle and brake to a stop (松油门, 制动停车)")
                completed = True
            except DeviceError as exc:
                device = self.dyno if exc.device == self.dyno.name else self.analyzer
                raise ProcedureError(dropout_reason(device, self.phase_text, exc), step=ctx.current_step) from None
            finally:
                await self._finish(completed)
        return self._outcome(phases)

    # ----- steps --------------------------------------------------------------------------------

    async def _hc_residue(self) -> None:
        ctx, daily = self.ctx, self.ctx.daily_checks
        age = daily.passed_age_s("hc_residue") if daily is not None else None
        if daily is not None and age is not None and age <= self.tsi.hc_residue_max_age_s:
            self.pre_checks["hc_residue"] = {"run": False, "passed_s_ago": round(age, 1)}
            return
        self.phase_text = "HC residue check"
        ctx.step("asm.hc_residue", "HC residue check: pump on ambient air")
        result = await hc_residue_check(self.analyzer, self.feed, ctx.limits.emissions.two_speed_idle,
                                        self.tsi.hc_residue, time_scale=ctx.time_scale, pause=self._pause)
        if daily is not None:
            daily.record("hc_residue", result.passed, {"device": self.analyzer.name, "by": "asm", **result.as_dict()})
        self.pre_checks["hc_residue"] = {"run": True, **result.as_dict()}
        if not result.passed:
            raise ProcedureError(f"HC residue {result.check.value:g} ppm is not below {result.check.limit:g} ppm: "
                                 "backflush the probe and hose, then start again", step=ctx.current_step)

    async def _pause(self, real_s: float) -> None:
        deadline = time.monotonic() + real_s
        while (remaining := deadline - time.monotonic()) > 0:
            self.feed.check_alive()
            await self.ctx.sleep(min(remaining, 0.05), scaled=False)

    async def _phase(self, mode: str, power_kw: Decimal, force_n: int) -> AsmPhaseResult:
        ctx, dyno = self.ctx, self.dyno
        speed = SPEEDS[mode]
        phase = AsmPhase(mode, force_target_n=force_n, power_target_kw=power_kw,  # type: ignore[arg-type]
                         limits=self.limits.phase(mode), settings=self.s, fuel=self.fuel, kh_value=self.kh)
        self.phase_text = mode
        ctx.step(f"asm.{mode.lower()}", f"{mode}: hold {speed} km/h; load {num(power_kw, 2)} kW ({force_n} N)",
                 speed_kmh=speed, power_kw=num(power_kw, 2), force_n=force_n)
        ctx.prompt(f"asm_hold_{speed}", f"drive at {speed} km/h and hold it (保持 {speed} km/h)", speed_kmh=speed)
        waiting = 0
        while True:
            timed = await self.seconds.next_second(ctx, alive=self.feed.check_alive)
            reason = fault_reason(dyno) if phase.state != "waiting" else None
            if reason is not None:
                step = phase.void(reason)
                self._row(timed, None, mode)
                ctx.warn(reason)
                assert phase.result is not None
                return phase.result
            step = phase.feed(self._second(timed))
            assert step.record is not None
            self._row(timed, step.record, mode, event=step.event.value)
            if step.event is AsmEvent.WAITING:
                waiting += 1
                if waiting >= self.s.max_phase_s:
                    phase.void(f"{mode}: the vehicle did not reach {speed} km/h within {waiting} s")
            elif step.event is AsmEvent.LOAD_ON:
                await dyno.set_power_and_force_targets(float(power_kw), force_n)
                await dyno.set_control_mode(2)
                ctx.step_done(f"asm.{mode.lower()}.load", f"{mode}: load on", force_n=force_n)
            elif step.event is AsmEvent.CLOCK_STARTED and self.kh is None:
                self.env = await self.analyzer.read_env()
                self.kh = kh_of_ambient(self.env.ambient_temp_c, self.env.rh_pct, self.env.baro_kpa)
                phase.set_kh(self.kh)
                ctx.step_done(f"asm.{mode.lower()}.clock", f"{mode}: clock started", kh=num(self.kh, 4))
            elif step.event is AsmEvent.RESTART:
                ctx.warn(f"{mode}: clock restarted ({step.reason})", restarts=phase.restarts)
            elif step.event is AsmEvent.VOID:
                ctx.warn(step.reason)
            if phase.result is not None:
                ctx.step_done(f"asm.{mode.lower()}", f"{mode}: {phase.result.decision}",
                              decision=phase.result.decision)
                return phase.result

    async def _drain(self) -> None:
        """The seconds left after the last phase: still process data (every ring sample)."""
        await self.seconds.poll()
        while self.seconds.pending:
            self._row(self.seconds.pending.popleft(), None, "end")

    def _readings(self, timed: TimedSecond) -> tuple[list[Any], bool]:
        readings = self.feed.between(timed.t0_s, timed.t0_s + 1.0)
        if readings:
            return readings, False
        return [self.feed.latest], True

    def _second(self, timed: TimedSecond) -> AsmSecond:
        readings, _held = self._readings(timed)
        gases = gas_means(readings)
        r = timed.record
        return AsmSecond(speed_kmh=exact(r.speed_kmh), force_n=exact(r.force_n), power_kw=exact(r.power_kw), **gases)

    def _row(self, timed: TimedSecond, record: Any, stage: str, event: str | None = None) -> None:
        r = timed.record
        extra = {
            "k": r.k, "first_index": r.first_index, "samples": r.samples, "stage": stage, "event": event,
            **split_fields(timed),
        }
        if record is not None:
            self.rows.append(asm_row(record, **extra))
            return
        readings, held = self._readings(timed)
        gases = gas_means(readings)
        self.rows.append({"phase": stage, "speed_kmh": num(exact(r.speed_kmh), 2),
                          "force_n": num(exact(r.force_n), 0), "power_kw": num(exact(r.power_kw), 2),
                          "hc_ppm": num(gases["hc_ppm"], 1),
                          "co_pct": num(gases["co_pct"], 2), "co2_pct": num(gases["co2_pct"], 2),
                          "no_ppm": num(gases["no_ppm"], 0), "held": held, **extra})

    async def _finish(self, completed: bool) -> None:
        """On an error or abort: the dynamometer unloaded at once; always: pump off, probe out."""
        if cancelling():
            return
        if not completed:
            await unload(self.dyno)
        if not await stop_pump(self.analyzer):
            self.ctx.warn(f"{self.analyzer.name} did not confirm the pump stop; the lane retries until it answers")
        self.ctx.prompt("remove_probe", "take the sampling probe out of the tailpipe (取出探头)")

    # ----- result -----------------------------------------------------------------------------

    def _outcome(self, phases: list[AsmPhaseResult]) -> ItemOutcome:
        ctx = self.ctx
        verdict = judge_asm(phases, self.s)
        item = asm_item(
            verdict,
            ambient={**env_fields(self.env), "source": f"{self.analyzer.name} READ_ENV"},
            process_data=self.seconds.process_data(self.started_at, self.rows),
            settings=self.s.model_dump(),
            pre_checks=self.pre_checks,
        )
        write_report_figures([item], ctx.state_dir, ctx.inspection_no, procedure="asm")  # the traces, for the report
        daily = ctx.daily_checks
        devices = {
            self.analyzer.name: {**ctx.device_identity(self.analyzer), **(daily.summary() if daily else {})},
            self.dyno.name: ctx.device_identity(self.dyno),
        }
        ctx.step_done("asm", f"ASM: {verdict.verdict}", verdict=verdict.verdict)
        return ItemOutcome(procedure="asm", platform="emissions", items=[item], verdict=verdict.verdict,
                           devices=devices)


async def run_asm(ctx: InspectionContext) -> ItemOutcome:
    """The ASM item of one inspection (see the module docstring)."""
    settings = settings_from(ctx.settings, "asm", AsmSettings)
    dyno = ctx.driver("dynamometer")
    analyzer = ctx.driver("gas_analyzer")
    if ctx.daily_checks is not None and (missing := ctx.daily_checks.missing_reasons()):
        raise ProcedureError("; ".join(missing), step="asm")
    return await AsmTest(ctx, dyno, analyzer, settings).run()
