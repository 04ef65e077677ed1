"""Steady-state ASM (稳态工况法, GB 18285-2018 Appendix B): per-second corrections, one phase's
state machine, and the test's verdict. Pure: no I/O, no clock.

A procedure feeds an `AsmPhase` one `AsmSecond` per whole second of the dynamometer's
per-second grid (with the analyzer's means over the same second) and acts on what each
second returns: `LOAD_ON` (write FORCE_TARGET and CONTROL_MODE = 2), `CLOCK_STARTED` (read
the ambient conditions for kH if not yet read), `RESTART`, and the end of the phase
(`FAST_PASS`, `FAST_FAIL`, `PASS`, `FAIL` or `VOID`). `judge_asm` turns the phases' results
into the test's verdict. The rules, their order within a second and the rounding follow
standards.md ("Gasoline: steady-state ASM" and its Clarifications); arithmetic is in Decimal
at 40 digits up to the final rounding, half away from zero.

Over 400 lines: the corrections, the phase machine and the verdict are one method's rules,
read together against standards.md; split, each half would need the other's to be checked.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, localcontext
from typing import Literal

from laned.judging.limits import AsmPhaseLimits, CitedValue, check
from laned.judging.rounding import _PRECISION, Check, Number, round_half_away, to_decimal
from laned.judging.rounding import decimal_mean as _mean
from laned.judging.rounding import decimal_mean_or_none as _mean_or_none
from laned.settings.asm import AsmSettings

Mode = Literal["ASM5025", "ASM2540"]
NOMINAL_SPEED_KMH: dict[str, Decimal] = {"ASM5025": Decimal(25), "ASM2540": Decimal(40)}
Decision = Literal["fast_pass", "fast_fail", "pass", "fail", "void"]

ZERO = Decimal(0)


# ----- per-second corrections --------------------------------------------------------------


def dilution_factor(co2_pct: Number, co_pct: Number, fuel_factor_a: Number) -> Decimal:
    """DF = CO2x / CO2 with X = CO2 / (CO2 + CO) and CO2x = X / (a + 1.88·X) · 100 (raw %vol).

    The denominator is the measured CO2 alone (vendor: only this form reproduces Nanhua's
    records). Undefined without CO2 in the sample (ValueError)."""
    co2, co, a = to_decimal(co2_pct), to_decimal(co_pct), to_decimal(fuel_factor_a)
    if co2 <= 0:
        raise ValueError(f"the dilution factor is undefined with CO2 at {co2} %vol (no exhaust in the sample)")
    with localcontext(_PRECISION):
        x = co2 / (co2 + co)
        co2x = x / (a + Decimal("1.88") * x) * 100
        return co2x / co2


def saturation_pressure_kpa(t_c: Number) -> Decimal:
    """Saturation vapour pressure of water at `t_c` °C: Pd = 0.61078 · exp(17.27·T / (T + 237.3)) kPa."""
    t = to_decimal(t_c)
    with localcontext(_PRECISION):
        return Decimal("0.61078") * (Decimal("17.27") * t / (t + Decimal("237.3"))).exp()


def humidity_h(rh_pct: Number, pa_kpa: Number, t_c: Number) -> Decimal:
    """Absolute humidity H = 6.211 · RH · Pd / (Pa − Pd · RH / 100), g water per kg dry air."""
    rh, pa = to_decimal(rh_pct), to_decimal(pa_kpa)
    pd = saturation_pressure_kpa(t_c)
    with localcontext(_PRECISION):
        return Decimal("6.211") * rh * pd / (pa - pd * rh / 100)


def kh(h: Number) -> Decimal:
    """The NO humidity correction kH = 1 / (1 − 0.0329 · (H − 10.71)) (vendor formula)."""
    with localcontext(_PRECISION):
        return 1 / (1 - Decimal("0.0329") * (to_decimal(h) - Decimal("10.71")))


def kh_of_ambient(t_c: Number, rh_pct: Number, pa_kpa: Number) -> Decimal:
    """kH from the ambient temperature (°C), relative humidity (%) and pressure (kPa)."""
    return kh(humidity_h(rh_pct, pa_kpa, t_c))


def reference_mass_kg(curb_mass_kg: Number, settings: AsmSettings) -> Decimal:
    """RM = curb mass + 100 kg (HJ/T 291-2006 §3.3)."""
    return to_decimal(curb_mass_kg) + to_decimal(settings.reference_mass_add_kg)


def asm_loads(curb_mass_kg: Number, settings: AsmSettings) -> tuple[Decimal, int, Decimal, int]:
    """(P5025 kW, F5025 N, P2540 kW, F2540 N): P = RM / 148 and RM / 185 (the divisors are settings),
    F = P · 3600 / v rounded half away to 1 N (the FORCE_TARGET written); P unrounded."""
    rm = reference_mass_kg(curb_mass_kg, settings)
    with localcontext(_PRECISION):
        p5025 = rm / to_decimal(settings.load_divisor_5025)
        p2540 = rm / to_decimal(settings.load_divisor_2540)
        f5025 = int(round_half_away(p5025 * 3600 / 25, 0))
        f2540 = int(round_half_away(p2540 * 3600 / 40, 0))
    return p5025, f5025, p2540, f2540


# ----- one phase -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AsmSecond:
    """One whole second of a phase: the dynamometer's means (ring) and the analyzer's means.

    `rpm` None: no engine-speed signal in that second. `braking`: the inspector reported
    the driver braking in that second."""

    speed_kmh: Number
    force_n: Number
    power_kw: Number
    hc_ppm: Number
    co_pct: Number
    co2_pct: Number
    o2_pct: Number
    no_ppm: Number
    lambda_value: Number
    rpm: Number | None = None
    oil_temp_c: Number | None = None
    braking: bool = False


class AsmEvent(enum.Enum):
    """What one fed second did to the phase."""

    WAITING = "waiting"  # speed not yet in the band: no load
    LOAD_ON = "load_on"  # the speed entered the band: write the load now
    STABILISING = "stabilising"  # counting in-tolerance seconds
    CLOCK_STARTED = "clock_started"  # t = 0 at the end of this second
    RUNNING = "running"  # t advanced; recorded (and averaged from the fast window on)
    RESTART = "restart"  # the clock was reset: stabilising again
    FAST_PASS = "fast_pass"
    FAST_FAIL = "fast_fail"
    PASS = "pass"
    FAIL = "fail"
    VOID = "void"

    @property
    def ends_phase(self) -> bool:
        return self in _ENDS


_ENDS = {AsmEvent.FAST_PASS, AsmEvent.FAST_FAIL, AsmEvent.PASS, AsmEvent.FAIL, AsmEvent.VOID}


@dataclass(frozen=True)
class AsmRecord:
    """One second's process data as the phase computed it (the procedure adds clock times and
    the dynamometer's parasitic and PAU powers). Values exact; rounded only for reporting."""

    phase: str
    second: int  # seconds fed to this phase, from 1
    step: str  # waiting / stabilising / running / decided
    t: int | None  # the phase clock (None before it runs)
    restarts: int
    speed_kmh: Decimal
    force_target_n: int
    force_n: Decimal
    power_kw: Decimal
    power_target_kw: Decimal
    in_tolerance: bool
    braking: bool
    rpm: Decimal | None
    oil_temp_c: Decimal | None
    hc_ppm: Decimal  # raw, as read (may be negative)
    co_pct: Decimal
    co2_pct: Decimal
    o2_pct: Decimal
    no_ppm: Decimal
    lambda_value: Decimal
    df: Decimal | None
    kh: Decimal | None
    hc_corrected_ppm: Decimal | None  # negative HC taken as 0 first
    co_corrected_pct: Decimal | None
    no_corrected_ppm: Decimal | None
    hc_avg_ppm: Decimal | None = None  # 10 s moving averages, from t = 10
    co_avg_pct: Decimal | None = None
    no_avg_ppm: Decimal | None = None


@dataclass(frozen=True)
class AsmStep:
    """What a fed second returned: the event, the clock, the second's record, and for a void
    or a restart the reason."""

    event: AsmEvent
    t: int | None
    record: AsmRecord | None
    reason: str = ""


@dataclass(frozen=True)
class AsmPhaseResult:
    """A phase as decided: the rounded corrected means judged, with the same window's other means.

    `window` is (first t, last t) of the judged window; None for a phase void before a decision."""

    mode: str
    decision: Decision
    limits: AsmPhaseLimits
    restarts: int
    force_target_n: int
    power_target_kw: Decimal
    window: tuple[int, int] | None = None
    hc_ppm: Decimal | None = None  # rounded to 1 ppm
    co_pct: Decimal | None = None  # rounded to 0.01 %
    no_ppm: Decimal | None = None  # rounded to 1 ppm
    co2_pct: Decimal | None = None  # the window's means, exact
    o2_pct: Decimal | None = None
    lambda_value: Decimal | None = None
    rpm: Decimal | None = None
    oil_temp_c: Decimal | None = None
    speed_kmh: Decimal | None = None
    force_n: Decimal | None = None
    power_kw: Decimal | None = None
    df: Decimal | None = None
    kh: Decimal | None = None
    void_reason: str | None = None
    thresholds: dict[str, Decimal] = field(default_factory=dict)  # fast pass / fast fail levels used


class AsmPhase:
    """One phase (ASM5025 or ASM2540) as a state machine over its seconds (see the module docstring).

    `kh_value` is the test's constant kH (from the ambient read when the first phase's clock
    started): pass it here for ASM2540, or call `set_kh()` after ASM5025's `CLOCK_STARTED`.
    `rpm_source` False: the lane has no engine-speed signal, the stall rule is off."""

    def __init__(
        self,
        mode: Mode,
        *,
        force_target_n: int,
        power_target_kw: Number,
        limits: AsmPhaseLimits,
        settings: AsmSettings,
        fuel: str = "gasoline",
        rpm_source: bool = True,
        kh_value: Number | None = None,
    ) -> None:
        if mode not in NOMINAL_SPEED_KMH:
            raise ValueError(f"unknown ASM phase {mode!r} (ASM5025 or ASM2540)")
        self.mode: Mode = mode
        self.force_target_n = force_target_n
        self.power_target_kw = to_decimal(power_target_kw)
        self.limits = limits
        self.s = settings
        self.fuel_factor = settings.fuel_factor(fuel)
        self.co_co2_min = settings.co_co2_min(fuel)
        self.rpm_source = rpm_source
        self.kh: Decimal | None = None if kh_value is None else to_decimal(kh_value)
        self.nominal = NOMINAL_SPEED_KMH[mode]
        self.records: list[AsmRecord] = []
        self.restarts = 0
        self.result: AsmPhaseResult | None = None
        self._state = "waiting"
        self._second = 0
        self._since_load_on: int | None = None
        self._stable = 0
        self._t = 0
        self._out_run = 0
        self._out_total = 0
        self._stall_run = 0
        self._clocked: list[AsmRecord] = []  # the records of t = 1 … now since the last (re)start

    @property
    def state(self) -> str:
        return self._state

    @property
    def t(self) -> int | None:
        return self._t if self._state == "running" else None

    def set_kh(self, kh_value: Number) -> None:
        """The test's kH, from the ambient conditions read when the first phase's clock started."""
        self.kh = to_decimal(kh_value)

    def in_tolerance(self, second: AsmSecond) -> bool:
        """Speed within nominal ± speed tolerance and force within ± force tolerance % of the target
        (exact means, inclusive)."""
        v, f = to_decimal(second.speed_kmh), to_decimal(second.force_n)
        with localcontext(_PRECISION):
            force_tol = Decimal(self.force_target_n) * to_decimal(self.s.force_tolerance_pct) / 100
        return abs(v - self.nominal) <= to_decimal(self.s.speed_tolerance_kmh) and abs(
            f - self.force_target_n
        ) <= force_tol

    def in_band(self, second: AsmSecond) -> bool:
        return abs(to_decimal(second.speed_kmh) - self.nominal) <= to_decimal(self.s.speed_tolerance_kmh)

    # ----- feeding ---------------------------------------------------------------------------

    def feed(self, second: AsmSecond) -> AsmStep:
        """Take the next whole second; returns what it did. Order within a second (standards.md):
        void conditions, then the restart rule, then the decision due at the fast check or t = 90."""
        if self.result is not None:
            raise RuntimeError(f"{self.mode} has ended ({self.result.decision}); no more seconds")
        self._second += 1
        if self._state == "waiting":
            if not self.in_band(second):
                return AsmStep(AsmEvent.WAITING, None, self._record(second, None))
            self._state = "stabilising"
            self._since_load_on = 0
            return AsmStep(AsmEvent.LOAD_ON, None, self._record(second, None))
        assert self._since_load_on is not None
        self._since_load_on += 1
        ok = self.in_tolerance(second)
        if self._state == "running":
            self._t += 1  # this second is t
        # 1. void conditions
        reason = self._void_reason(second)
        if reason is not None:
            return self._void(reason, second)
        if self._state == "stabilising":
            self._stable = 0 if second.braking or not ok else self._stable + 1
            if self._stable >= self.s.stabilise_s:
                self._start_clock()
                step = AsmStep(AsmEvent.CLOCK_STARTED, 0, self._record(second, None))
            else:
                step = AsmStep(AsmEvent.STABILISING, None, self._record(second, None))
            return self._timeout_or(step, second)
        # 2. the restart rule
        if ok:
            self._out_run = 0
        else:
            self._out_run += 1
            self._out_total += 1
        why = None
        if second.braking:
            why = "the driver braked"
        elif self._out_run >= self.s.restart_consecutive_s:
            why = f"{self._out_run} consecutive seconds out of tolerance"
        elif self._out_total >= self.s.restart_cumulative_s:
            why = f"{self._out_total} seconds out of tolerance since t = 0"
        if why is not None:
            t = self._t
            record = self._record(second, t)
            if self.restarts >= self.s.max_restarts:
                return self._void(f"{self.mode} needed restart {self.restarts + 1} at t = {t} ({why}); "
                                  f"{self.s.max_restarts} allowed", second, record)
            self.restarts += 1
            self._state, self._stable, self._t = "stabilising", 0, 0
            return self._timeout_or(AsmStep(AsmEvent.RESTART, t, record, why), second)
        record = self._record(second, self._t)
        self._clocked.append(record)
        # 3. the decision due now
        if self._t == self.s.fast_check_t:
            fast = self._fast_check()
            if fast is not None:
                return fast
        if self._t == self.s.phase_s:  # (a shortened phase may end at its fast check's second)
            return self._final()
        return self._timeout_or(AsmStep(AsmEvent.RUNNING, self._t, record), second)

    def void(self, reason: str) -> AsmStep:
        """End the phase void from outside: the dynamometer dropped its mode or faulted, the
        inspector aborted."""
        if self.result is not None:
            raise RuntimeError(f"{self.mode} has ended ({self.result.decision})")
        return self._void(reason, None)

    # ----- internals -------------------------------------------------------------------------

    def _void_reason(self, second: AsmSecond) -> str | None:
        co, co2 = to_decimal(second.co_pct), to_decimal(second.co2_pct)
        if co + co2 < self.co_co2_min:
            return (f"{self.mode}: sample diluted, CO + CO2 = {co + co2} % below {self.co_co2_min} % "
                    f"in second {self._second}; check the probe depth and the exhaust for leaks")
        if co2 <= 0:
            return f"{self.mode}: no CO2 in the sample in second {self._second}"
        rpm = second.rpm
        if self.rpm_source and rpm is not None and to_decimal(rpm) < to_decimal(self.s.stall_rpm):
            self._stall_run += 1
        else:
            self._stall_run = 0
        if self._stall_run >= self.s.stall_s:
            return (f"{self.mode}: the engine stalled (below {self.s.stall_rpm:g} r/min for "
                    f"{self._stall_run} s) in second {self._second}")
        return None

    def _timeout_or(self, step: AsmStep, second: AsmSecond) -> AsmStep:
        assert self._since_load_on is not None
        if self._since_load_on >= self.s.max_phase_s:
            return self._void(
                f"{self.mode}: no decision {self.s.max_phase_s} s after the load was set "
                f"({self.restarts} restart(s))", second, step.record)
        return step

    def _start_clock(self) -> None:
        self._state, self._t, self._out_run, self._out_total = "running", 0, 0, 0
        self._clocked = []

    def _void(self, reason: str, second: AsmSecond | None, record: AsmRecord | None = None) -> AsmStep:
        t = self.t
        if record is None and second is not None:
            record = self._record(second, t)
        self._state = "decided"
        self.result = AsmPhaseResult(
            self.mode, "void", self.limits, self.restarts, self.force_target_n, self.power_target_kw,
            void_reason=reason,
        )
        return AsmStep(AsmEvent.VOID, t, record, reason)

    def _record(self, second: AsmSecond, t: int | None) -> AsmRecord:
        co2, co = to_decimal(second.co2_pct), to_decimal(second.co_pct)
        hc, no = to_decimal(second.hc_ppm), to_decimal(second.no_ppm)
        df = dilution_factor(co2, co, self.fuel_factor) if co2 > 0 else None
        with localcontext(_PRECISION):
            hc_c = None if df is None else max(hc, ZERO) * df
            co_c = None if df is None else co * df
            no_c = None if df is None or self.kh is None else no * df * self.kh
        averages: dict[str, Decimal | None] = {}
        if t is not None and t >= self.s.moving_average_s:
            # the window t − 9 … t: the clocked records before this second, and this one
            earlier = self._clocked[len(self._clocked) - (self.s.moving_average_s - 1):]
            hcs = [*(r.hc_corrected_ppm for r in earlier), hc_c]
            cos = [*(r.co_corrected_pct for r in earlier), co_c]
            nos = [*(r.no_corrected_ppm for r in earlier), no_c]
            averages = {"hc_avg_ppm": _mean_all(hcs), "co_avg_pct": _mean_all(cos), "no_avg_ppm": _mean_all(nos)}
        record = AsmRecord(
            phase=self.mode, second=self._second, step=self._state, t=t, restarts=self.restarts,
            speed_kmh=to_decimal(second.speed_kmh), force_target_n=self.force_target_n,
            force_n=to_decimal(second.force_n), power_kw=to_decimal(second.power_kw),
            power_target_kw=self.power_target_kw, in_tolerance=self.in_tolerance(second), braking=second.braking,
            rpm=None if second.rpm is None else to_decimal(second.rpm),
            oil_temp_c=None if second.oil_temp_c is None else to_decimal(second.oil_temp_c),
            hc_ppm=hc, co_pct=co, co2_pct=co2, o2_pct=to_decimal(second.o2_pct), no_ppm=no,
            lambda_value=to_decimal(second.lambda_value), df=df, kh=self.kh,
            hc_corrected_ppm=hc_c, co_corrected_pct=co_c, no_corrected_ppm=no_c, **averages,
        )
        self.records.append(record)
        return record

    def _window(self, first_t: int, last_t: int) -> list[AsmRecord]:
        return [r for r in self._clocked if r.t is not None and first_t <= r.t <= last_t]

    def _means(self, first_t: int, last_t: int, decision: Decision) -> AsmPhaseResult:
        rows = self._window(first_t, last_t)
        if any(r.no_corrected_ppm is None for r in rows):
            raise RuntimeError(f"{self.mode}: kH was not set before the clock ran (call set_kh)")
        hc = _mean([r.hc_corrected_ppm for r in rows if r.hc_corrected_ppm is not None])
        co = _mean([r.co_corrected_pct for r in rows if r.co_corrected_pct is not None])
        no = _mean([r.no_corrected_ppm for r in rows if r.no_corrected_ppm is not None])
        return AsmPhaseResult(
            self.mode, decision, self.limits, self.restarts, self.force_target_n, self.power_target_kw,
            window=(first_t, last_t),
            hc_ppm=round_half_away(hc, 0), co_pct=round_half_away(co, 2), no_ppm=round_half_away(no, 0),
            co2_pct=_mean([r.co2_pct for r in rows]), o2_pct=_mean([r.o2_pct for r in rows]),
            lambda_value=_mean([r.lambda_value for r in rows]), rpm=_mean_or_none([r.rpm for r in rows]),
            oil_temp_c=_mean_or_none([r.oil_temp_c for r in rows]), speed_kmh=_mean([r.speed_kmh for r in rows]),
            force_n=_mean([r.force_n for r in rows]), power_kw=_mean([r.power_kw for r in rows]),
            df=_mean_or_none([r.df for r in rows]), kh=_mean_or_none([r.kh for r in rows]),
        )

    def _thresholds(self, pct: float) -> dict[str, Decimal]:
        with localcontext(_PRECISION):
            share = to_decimal(pct) / 100
            return {
                "hc_ppm": to_decimal(self.limits.hc_max_ppm.value) * share,
                "co_pct": to_decimal(self.limits.co_max_pct.value) * share,
                "no_ppm": to_decimal(self.limits.no_max_ppm.value) * share,
            }

    def _fast_check(self) -> AsmStep | None:
        first = self.s.response_s + 1
        means = self._means(first, self.s.fast_check_t, "fast_pass")
        values = {"hc_ppm": means.hc_ppm, "co_pct": means.co_pct, "no_ppm": means.no_ppm}
        low, high = self._thresholds(self.s.fast_pass_pct), self._thresholds(self.s.fast_fail_pct)
        if all(v is not None and v <= low[k] for k, v in values.items()):
            decision: Decision = "fast_pass"
            thresholds = low
        elif any(v is not None and v > high[k] for k, v in values.items()):
            decision, thresholds = "fast_fail", high
        else:
            return None
        return self._decide(replace(means, decision=decision, thresholds=thresholds))

    def _final(self) -> AsmStep:
        first = self.s.phase_s - self.s.result_window_s + 1
        means = self._means(first, self.s.phase_s, "pass")
        ok = (means.hc_ppm is not None and means.hc_ppm <= to_decimal(self.limits.hc_max_ppm.value)
              and means.co_pct is not None and means.co_pct <= to_decimal(self.limits.co_max_pct.value)
              and means.no_ppm is not None and means.no_ppm <= to_decimal(self.limits.no_max_ppm.value))
        return self._decide(replace(means, decision="pass" if ok else "fail"))

    def _decide(self, result: AsmPhaseResult) -> AsmStep:
        self.result = result
        self._state = "decided"
        event = AsmEvent(result.decision)
        return AsmStep(event, self._t, self._clocked[-1])


def _mean_all(values: Sequence[Decimal | None]) -> Decimal | None:
    return None if any(v is None for v in values) else _mean([v for v in values if v is not None])


# ----- the test's verdict --------------------------------------------------------------------


@dataclass(frozen=True)
class AsmVerdict:
    """The ASM test: pass / fail, or void with its reason and no verdict. `phases` in the order
    run; `not_run` names a phase the test did not need (ASM2540 after a failed or fast-passed
    ASM5025)."""

    verdict: Literal["pass", "fail", "void"]
    limit_set: str
    phases: tuple[AsmPhaseResult, ...]
    checks: tuple[Check, ...]
    not_run: tuple[str, ...]
    void_reason: str | None = None


def needs_asm2540(asm5025: AsmPhaseResult, settings: AsmSettings) -> bool:
    """Whether ASM2540 runs after this ASM5025: after a pass, or a fast pass when
    `fast_pass_5025_ends_test` is off."""
    if asm5025.decision == "pass":
        return True
    return asm5025.decision == "fast_pass" and not settings.fast_pass_5025_ends_test


def phase_checks(result: AsmPhaseResult) -> list[Check]:
    """The phase's HC, CO and NO (corrected, rounded) against its limits; none for a void phase."""
    if result.decision == "void" or result.window is None:
        return []
    first, last = result.window
    fast = result.decision in ("fast_pass", "fast_fail")
    basis = f"mean of the corrected values over t = {first} … {last}" + (" (fast check)" if fast else "")
    prefix = result.mode.lower()

    def note(key: str) -> str:
        if not fast or key not in result.thresholds:
            return ""
        word = "fast pass at or below" if result.decision == "fast_pass" else "fast fail above"
        return f"{word} {result.thresholds[key].normalize():f}"

    items: list[tuple[str, Decimal | None, str, CitedValue, str]] = [
        (f"{prefix}_hc", result.hc_ppm, "ppm", result.limits.hc_max_ppm, "hc_ppm"),
        (f"{prefix}_co", result.co_pct, "%", result.limits.co_max_pct, "co_pct"),
        (f"{prefix}_no", result.no_ppm, "ppm", result.limits.no_max_ppm, "no_ppm"),
    ]
    return [
        check(item, value, unit, "<=", limit, basis=basis, note=note(key)) for item, value, unit, limit, key in items
    ]


def judge_asm(phases: Sequence[AsmPhaseResult], settings: AsmSettings) -> AsmVerdict:
    """The test's verdict from its phases as run (ASM5025 first): void if a phase was void; fail on a
    (fast) fail; pass when the last phase needed passed. ValueError if ASM2540 was needed and is missing."""
    if not phases or phases[0].mode != "ASM5025":
        raise ValueError("an ASM test starts with ASM5025")
    limit_set = phases[0].limits.limit_set
    checks = tuple(c for p in phases for c in phase_checks(p))
    void = next((p for p in phases if p.decision == "void"), None)
    if void is not None:
        return AsmVerdict("void", limit_set, tuple(phases), checks, (), void.void_reason or "void")
    first = phases[0]
    if first.decision in ("fail", "fast_fail"):
        return AsmVerdict("fail", limit_set, (first,), checks, ("ASM2540",))
    if not needs_asm2540(first, settings):
        return AsmVerdict("pass", limit_set, (first,), checks, ("ASM2540",))
    if len(phases) < 2:
        raise ValueError(f"ASM5025 ended {first.decision}: ASM2540 must be run before the test is judged")
    second = phases[1]
    verdict: Literal["pass", "fail"] = "pass" if second.decision in ("pass", "fast_pass") else "fail"
    return AsmVerdict(verdict, limit_set, (first, second), checks, ())
