"""The roller brake test (GB 38900-2020): each axle's service brake, the parking brake, items B1…Bn, BZ, B0.

The vehicle drives through the tester front to back, one axle at a time
(`items.brake_axles`, in order). Per axle: prompt `drive_on_axle`, wait for
IN_POSITION, lower the lift; per run on the rollers: TARE, weigh (LEFT_LOAD /
RIGHT_LOAD averaged over one steady second of tester time, the second before
the motors start), start the recording of the curve ring and the motors, wait
for RUNNING, let the rollers settle, wait for one full second of drag samples,
prompt `brake` ("brake now"), record until the peak has passed or a wheel
locks (STOPPED_SLIP), MOTORS = 0, prompt `release_brake`. A parking axle gets
its parking run (prompt `apply_parking_brake`) right after its service run,
while it is still on the rollers (a vehicle passes the tester once). Then the
lift goes up, prompt `drive_off`, and the axle must leave before the next one.
Axles in `items.road_test_axles` are reported not tested with their reason.

Safety: MOTORS = 0 is written on every way out of a run (peak, lock, error,
abort, cancel) ahead of any other request (`emergency_stop`); after a failure
the procedure keeps trying until the tester confirms or `stop_confirm_s` ran
out, and says so. A failed axle does not lose the axles measured before it:
its item (and what depends on it: BZ, B0, the axles after it) is
`not_completed` with the reason, unless the lane is set to abort on failures.

Timing: waits and pauses are scaled by the lane's `time_scale`; the tester
samples in real time (100 Hz), so the drag second, the weighing second and
the peak-hold time are counted in samples and never scaled. While the rollers
run, every curve sample also goes to `…/live/{device}` (BrakeCurveLive, ten
times a second) next to the driver's snapshots.

The module is over 400 lines because the run on the rollers is one sequence
whose every exit must stop the motors; the pure parts (settings, peak watch,
items) live in brake_items.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import structlog

from drivers.brake_tester import BrakeTesterDriver, CurveRecorder, record_curve
from drivers.errors import DeviceError, DeviceRefused, DeviceTimeout, DeviceUnavailable
from laned.figures import write_report_figures
from laned.judging.brakes import AxleMeasurement
from laned.judging.limits import select_brake_row
from laned.procedures import InspectionContext, ItemOutcome, ProcedureError, utc_now
from laned.procedures.brake_items import (
    BrakeRecord,
    BrakeRun,
    PeakWatch,
    RunKind,
    build_brake_items,
    curve_dan,
    dan,
    mean_n,
    settings_from,
)
from laned.settings.brake import BrakeSettings
from protocols import brake_tester as bt

__all__ = ["BrakeCurveLive", "BrakeSettings", "Visit", "plan_visits", "run_brake_test"]

log = structlog.get_logger("laned.procedures.brake")
S = bt.TesterState
PROMPTS = {"service": ("brake", "brake now: press the brake pedal hard"),
           "parking": ("apply_parking_brake", "apply the parking brake now")}


@dataclass(frozen=True)
class Visit:
    """One axle on the rollers and the runs it gets (none: weighed only, for the parking rate)."""

    axle_no: int
    position: Literal["front", "rear"]
    parking_axle: bool
    service: bool
    parking: bool

    @property
    def kinds(self) -> list[RunKind]:
        kinds: list[RunKind] = []
        if self.service:
            kinds.append("service")
        if self.parking:
            kinds.append("parking")
        return kinds or ["weigh"]


@dataclass(frozen=True)
class BrakeCurveLive:
    """Curve samples for the technicians' screens on `…/live/{device}`: each sample once, in order."""

    axle_no: int
    test: str
    sample_rate_hz: int
    first_sample_index: int
    left_force_dan: list[float | int]
    right_force_dan: list[float | int]
    left_force_n: int
    right_force_n: int


def plan_visits(command: Any) -> list[Visit]:
    """The axles to put on the rollers, front to back: the service axles in the station's order, and
    for a parking test the parking axles and any other axle still to be weighed (Σ G of all axles)."""
    wanted = command.items
    road = wanted.road_test_axles
    service = [n for n in wanted.brake_axles if n not in road]
    parking = [i + 1 for i, a in enumerate(command.axles) if a.parking_brake] if wanted.parking_brake else []
    order = list(service)
    if wanted.parking_brake:
        for n in range(1, len(command.axles) + 1):
            if n not in order and n not in road:
                order.insert(next((i for i, m in enumerate(order) if m > n), len(order)), n)
    return [Visit(n, command.axles[n - 1].position, command.axles[n - 1].parking_brake, n in service,
                  n in parking) for n in order]


async def run_brake_test(ctx: InspectionContext) -> ItemOutcome:
    """The brake item of one inspection (see the module docstring)."""
    settings = settings_from(ctx.settings)
    command = ctx.command
    try:
        select_brake_row(ctx.limits, command.vehicle.vehicle_class, command.vehicle.total_mass_kg)
    except ValueError as exc:
        raise ProcedureError(f"no brake limits for this vehicle: {exc}") from None
    record = BrakeRecord()
    visits = plan_visits(command)
    devices: dict[str, dict[str, Any]] = {}
    if visits:
        driver = cast(BrakeTesterDriver, ctx.driver("brake_tester"))
        devices[driver.name] = await _prepare(ctx, driver)
        test = BrakeTest(ctx, driver, settings, record)
        for k, visit in enumerate(visits):
            try:
                await test.visit(visit, last=k == len(visits) - 1)
            except (ProcedureError, DeviceError) as exc:
                reason = exc.reason if isinstance(exc, ProcedureError) else str(exc)
                if not reason.startswith(f"axle {visit.axle_no}"):
                    reason = f"axle {visit.axle_no}: {reason}"
                await test.after_failure(visit, reason)
                if getattr(ctx.settings, "on_item_failure", "continue") == "abort":
                    raise ProcedureError(reason, step=ctx.current_step) from None
                for kind in visit.kinds:
                    if not record.has(kind, visit.axle_no):
                        record.failed[(kind, visit.axle_no)] = reason
                for later in visits[k + 1:]:
                    for kind in later.kinds:
                        record.failed[(kind, later.axle_no)] = f"not tested: the brake test stopped ({reason})"
                break
    items, verdict = build_brake_items(command, ctx.limits, record)
    write_report_figures(items, ctx.state_dir, ctx.inspection_no, procedure="brake")  # the curves, for the report
    return ItemOutcome(procedure="brake", platform="safety", items=items, verdict=verdict, devices=devices)


async def _prepare(ctx: InspectionContext, driver: BrakeTesterDriver) -> dict[str, Any]:
    """The tester's identity and settings for the result; rollers stopped and no fault before we start."""
    try:
        tester = await driver.read_settings()
        snap = await driver.snapshot()
        if snap.motors_run or snap.state == S.FAULT:
            if snap.motors_run:
                ctx.warn(f"{driver.name}: the rollers were running before the brake test; stopping them")
            await driver.set_motors(False)  # also clears a fault whose cause is gone
            snap = await driver.snapshot()
        if snap.state == S.FAULT:
            raise ProcedureError(f"{driver.name} reports a fault ({snap.fault_code.name}, FAULT_CODE "
                                 f"{int(snap.fault_code)}): clear its cause before the brake test")
    except DeviceError as exc:
        raise ProcedureError(f"brake tester not ready: {exc}") from None
    return {
        **ctx.device_identity(driver),
        "settings": {"slip_threshold_pct": tester.slip_threshold_pct, "sample_rate_set_hz": tester.sample_rate_set_hz,
                     "auto_stop_s": tester.auto_stop_s},
        "sample_rate_hz": snap.sample_rate_hz,
        "tare": "force channels zeroed (TARE) before every run",
        "calibration": "not reported: the RB-2 register map carries no calibration data",
    }


class BrakeTest:
    """The runs of one inspection on one tester; `record` collects what they measured."""

    def __init__(self, ctx: InspectionContext, driver: BrakeTesterDriver, settings: BrakeSettings,
                 record: BrakeRecord) -> None:
        self.ctx, self.driver, self.settings, self.record = ctx, driver, settings, record
        self.start_pct = float(ctx.limits.brakes.braking_start.wheel_load_pct.value)
        self.motors_unconfirmed = False  # MOTORS = 1 was written and no MOTORS = 0 was confirmed since
        self.braked = False  # a brake prompt went out on this axle
        self.on_rollers = False  # this axle was seen IN_POSITION
        self.live_sent = 0  # curve samples of this run already on …/live

    # ----- one axle -------------------------------------------------------------------------

    async def visit(self, v: Visit, *, last: bool) -> None:
        ctx, n, s = self.ctx, v.axle_no, self.settings
        self.braked = self.on_rollers = False
        self.driver = cast(BrakeTesterDriver, ctx.driver("brake_tester"))  # still connected?
        kinds = v.kinds
        ctx.step(_step(kinds[0], n), f"axle {n}: {_what(kinds[0])}", axle=n)
        ctx.prompt("drive_on_axle", f"drive axle {n} onto the rollers and stop", axle=n)
        await ctx.wait_for(lambda: self._input("in_position", True), timeout_s=s.in_position_timeout_s,
                           reason=f"axle {n} not in position after {s.in_position_timeout_s:g} s")
        self.on_rollers = True
        await self._lift(n, up=False)
        for kind in kinds:
            if kind != kinds[0]:
                ctx.step(_step(kind, n), f"axle {n}: {_what(kind)}", axle=n)
            if kind == "weigh":
                left_n, right_n, readings = await self._weigh(n)
                self.record.loads_n[n] = (left_n, right_n)
                ctx.step_done(_step(kind, n), f"axle {n}: {left_n:.0f} / {right_n:.0f} N", axle=n, readings=readings)
                continue
            run = await self._run(v, kind)
            m = run.measurement
            (self.record.service if kind == "service" else self.record.parking)[n] = run
            self.record.loads_n.setdefault(n, (m.left_wheel_load_n, m.right_wheel_load_n))
            ctx.step_done(_step(kind, n), f"axle {n} {kind} brake recorded ({run.end_reason})", axle=n,
                          samples=len(m.left_force_n), end=run.end_reason,
                          left_max_force_dan=dan(max(m.left_force_n[m.prompt_index:])),
                          right_max_force_dan=dan(max(m.right_force_n[m.prompt_index:])))
        await self._lift(n, up=True)
        ctx.prompt("drive_off", f"drive axle {n} off the rollers", axle=n)
        try:
            await ctx.wait_for(lambda: self._input("in_position", False), timeout_s=s.drive_off_timeout_s,
                               reason=f"axle {n} still on the rollers {s.drive_off_timeout_s:g} s after the "
                                      "drive-off prompt")
        except ProcedureError as exc:
            if not last:
                raise
            ctx.warn(exc.reason, axle=n)  # every measurement is in: the vehicle leaving is not part of it

    async def after_failure(self, v: Visit, reason: str) -> None:
        """Motors stopped for sure, the driver told, the lift up so the vehicle can leave."""
        ctx, n = self.ctx, v.axle_no
        log.warning("brake_axle_not_completed", inspection_no=ctx.inspection_no, axle=n, reason=reason)
        if self.motors_unconfirmed:
            await self._stop_for_sure()
        ctx.warn(f"brake test stopped at axle {n}: {reason}", axle=n, motors_stopped=not self.motors_unconfirmed)
        if self.braked:
            ctx.prompt("release_brake", "release the brake", axle=n)
        if self.motors_unconfirmed or not self.on_rollers or not self.driver.is_connected:
            return
        with contextlib.suppress(DeviceError, ProcedureError):
            await self._lift(n, up=True)
            ctx.prompt("drive_off", f"test stopped: drive axle {n} off the rollers", axle=n)

    # ----- one run on the rollers ---------------------------------------------------------------

    async def _run(self, v: Visit, kind: Literal["service", "parking"]) -> BrakeRun:
        n, driver, s = v.axle_no, self.driver, self.settings
        await driver.tare()
        left_n, right_n, readings = await self._weigh(n)
        self.live_sent = 0
        with driver.readings.subscription(maxsize=5000) as queue:
            started_at = utc_now()
            async with record_curve(driver, interval_s=s.curve_poll_s) as recorder:
                live = asyncio.create_task(self._live_feed(recorder, v, kind), name=f"brake-live-{n}")
                try:
                    self.motors_unconfirmed = True
                    try:
                        await driver.set_motors(True)
                    except DeviceRefused as exc:
                        raise ProcedureError(f"axle {n}: the brake tester refused to start the rollers "
                                             f"({exc.detail}): axle in position, lift down, no fault?") from None
                    _drain(queue)
                    prompt_index, end_reason, slip = await self._braking(v, kind, queue, recorder, (left_n, right_n))
                    await driver.set_motors(False)
                    self.motors_unconfirmed = False
                finally:
                    if self.motors_unconfirmed:  # first, before anything else goes on the line
                        self.motors_unconfirmed = not await asyncio.shield(driver.emergency_stop())
                    live.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await live
            self._publish_live(recorder, v, kind)
        self.ctx.prompt("release_brake", "release the brake", axle=n)
        if recorder.error is not None:
            raise ProcedureError(f"axle {n}: the curve recording stopped: {recorder.error}")
        if recorder.capture.lost:
            raise ProcedureError(f"axle {n}: {recorder.capture.lost} curve samples lost (the link could not keep "
                                 f"up with the tester's {recorder.capture.sample_rate_hz} Hz ring): test again")
        samples = recorder.samples
        first = samples[0].index
        offsets = {side: None if index is None else (index - first) % bt.INDEX_MODULUS for side, index in slip.items()}
        prompt = (prompt_index - first) % bt.INDEX_MODULUS
        try:
            measurement = AxleMeasurement(
                axle_no=n, position=v.position, parking_brake=v.parking_axle,
                left_wheel_load_n=left_n, right_wheel_load_n=right_n,
                left_force_n=[x.left_force_n for x in samples], right_force_n=[x.right_force_n for x in samples],
                sample_rate_hz=recorder.capture.sample_rate_hz, prompt_index=prompt,
                left_slip_index=offsets["left"], right_slip_index=offsets["right"],
            )
        except ValueError as exc:
            raise ProcedureError(f"axle {n}: the recorded curve cannot be judged: {exc}") from None
        return BrakeRun(kind, measurement, first, started_at, readings, 0, end_reason)

    async def _braking(self, v: Visit, kind: Literal["service", "parking"], queue: asyncio.Queue[Any],
                       recorder: CurveRecorder, loads_n: tuple[float, float]) -> tuple[int, str, dict[str, int | None]]:
        """RUNNING, the drag second, the prompt, the braking: (prompt sample index, end reason, slip indices)."""
        ctx, n, s, driver = self.ctx, v.axle_no, self.settings, self.driver
        await self._watch(queue, recorder, {S.STARTING, S.RUNNING}, lambda snap: snap.state == S.RUNNING,
                          s.running_timeout_s, f"axle {n}: rollers not at test speed {s.running_timeout_s:g} s "
                          "after the motors were started")
        await ctx.sleep(s.drag_settle_s)
        rate = recorder.capture.sample_rate_hz
        settled = (driver.last_snapshot or await driver.snapshot()).sample_index
        await self._watch(queue, recorder, {S.RUNNING}, lambda snap: _behind(settled, snap.sample_index) >= rate,
                          5.0, f"axle {n}: no full second of drag samples from the tester", scaled=False)
        prompt_index = (await driver.snapshot()).sample_index
        action, text = PROMPTS[kind]
        ctx.prompt(action, text, axle=n)
        self.braked = True
        started = time.monotonic()
        watch: PeakWatch | None = None
        done = 0
        while True:
            ctx.check_abort()
            for snap in self._snapshots(queue, recorder, {S.RUNNING, S.STOPPED_SLIP, S.STOPPED, S.IDLE}):
                if snap.state == S.STOPPED_SLIP:
                    inputs = await driver.inputs()
                    at = snap.sample_index
                    return prompt_index, "wheel lock", {"left": at if inputs.left_slip else None,
                                                        "right": at if inputs.right_slip else None}
                if snap.state != S.RUNNING:
                    if watch is None or not watch.braking:
                        raise ProcedureError(f"axle {n}: the tester stopped the rollers before braking "
                                             f"(state {snap.state.name})")
                    ctx.warn(f"axle {n}: the tester stopped the rollers itself ({snap.state.name})", axle=n)
                    return prompt_index, f"rollers stopped by the tester ({snap.state.name})", _NO_SLIP
            samples = recorder.samples
            if watch is None and samples:
                at = (prompt_index - samples[0].index) % bt.INDEX_MODULUS
                if len(samples) > at:
                    watch = self._peak_watch(samples, at, rate, loads_n)
                    done = at + 1
            if watch is not None:
                for i in range(done, len(samples)):
                    watch.feed(i, samples[i].left_force_n, samples[i].right_force_n)
                done = len(samples)
                if watch.peak_passed:
                    return prompt_index, "peak passed", _NO_SLIP
                if not watch.braking and time.monotonic() - started > ctx.scaled(s.brake_timeout_s):
                    raise ProcedureError(f"axle {n}: no braking force {s.brake_timeout_s:g} s after the "
                                         f"'{action}' prompt (forces stayed at drag)")
            if time.monotonic() - started > s.record_limit_s:  # tester time: the brakes take real time
                ctx.warn(f"axle {n}: the force was still rising {s.record_limit_s:g} s after the prompt", axle=n)
                return prompt_index, "record limit", _NO_SLIP
            await ctx.sleep(s.curve_poll_s, scaled=False)

    def _peak_watch(self, samples: list[bt.CurveSample], at: int, rate: int,
                    loads_n: tuple[float, float]) -> PeakWatch:
        """Thresholds as the judging's start of braking: drag (the second ending at the prompt) + share of load."""
        drag = [mean_n([getattr(x, f"{side}_force_n") for x in samples[at - rate + 1 : at + 1]])
                for side in ("left", "right")]
        share = self.start_pct / 100
        s = self.settings
        return PeakWatch(drag[0] + share * loads_n[0], drag[1] + share * loads_n[1], s.peak_rise_n,
                         round(s.peak_hold_s * rate), level_n=[samples[at].left_force_n, samples[at].right_force_n])

    # ----- waiting on the tester --------------------------------------------------------------------

    def _snapshots(self, queue: asyncio.Queue[Any], recorder: CurveRecorder,
                   allowed: set[bt.TesterState]) -> list[bt.TesterSnapshot]:
        """The snapshots read since the last look; errors for a lost link, a fault or an unexpected state."""
        if recorder.error is not None:
            raise ProcedureError(f"the curve recording stopped: {recorder.error}")
        snaps = _drain(queue)
        for snap in snaps:
            if snap.state == S.FAULT:
                raise ProcedureError(f"{self.driver.name} stopped with a fault: {snap.fault_code.name} "
                                     f"(FAULT_CODE {int(snap.fault_code)})")
            if snap.state not in allowed:
                hint = ": was the brake pressed before the prompt?" if snap.state == S.STOPPED_SLIP else ""
                raise ProcedureError(f"{self.driver.name} went to {snap.state.name}, expected "
                                     f"{' or '.join(sorted(x.name for x in allowed))}{hint}")
        return snaps

    async def _watch(self, queue: asyncio.Queue[Any], recorder: CurveRecorder, allowed: set[bt.TesterState],
                     until: Callable[[bt.TesterSnapshot], bool], timeout_s: float, reason: str,
                     *, scaled: bool = True) -> bt.TesterSnapshot:
        async def seen() -> bt.TesterSnapshot | None:
            return next((snap for snap in self._snapshots(queue, recorder, allowed) if until(snap)), None)

        return await self.ctx.wait_for(seen, timeout_s=timeout_s, reason=reason, poll_s=self.settings.curve_poll_s,
                                       scaled_timeout=scaled)

    async def _input(self, name: str, wanted: bool) -> bool | None:
        """True once discrete input `name` reads `wanted`; a single timed-out read is only retried."""
        try:
            inputs = await self.driver.inputs()
        except DeviceTimeout:
            if self.driver.is_connected:
                return None
            raise
        return True if getattr(inputs, name) == wanted else None

    async def _lift(self, n: int, *, up: bool) -> None:
        s = self.settings
        await self.driver.set_lift(up)
        await self.ctx.wait_for(lambda: self._input("lift_up", up), timeout_s=s.lift_timeout_s,
                                reason=f"axle {n}: lift still {'down' if up else 'up'} {s.lift_timeout_s:g} s after "
                                       f"it was told to go {'up' if up else 'down'}")

    async def _weigh(self, n: int) -> tuple[float, float, int]:
        """Mean static wheel loads over one steady second of tester time: (left N, right N, readings)."""
        ctx, s = self.ctx, self.settings
        deadline = time.monotonic() + ctx.scaled(s.load_timeout_s)
        readings: list[bt.TesterSnapshot] = []
        first_index: int | None = None
        while True:
            snap = await self.driver.snapshot()
            first_index = snap.sample_index if first_index is None else first_index
            rate = snap.sample_rate_hz
            readings = [r for r in [*readings, snap] if _behind(r.sample_index, snap.sample_index) <= rate]
            if _behind(first_index, snap.sample_index) >= snap.sample_rate_hz:
                loads = [[r.left_load_n for r in readings], [r.right_load_n for r in readings]]
                means = [mean_n(values) for values in loads]
                steady = all(min(v) > 0 and max(v) - min(v) <= max(s.load_steady_n, s.load_steady_pct / 100 * m)
                             for v, m in zip(loads, means, strict=True))
                if steady:
                    return means[0], means[1], len(readings)
                if time.monotonic() > deadline:
                    empty = [side for side, v in zip(("left", "right"), loads, strict=True) if max(v) <= 0]
                    if empty:
                        raise ProcedureError(f"axle {n}: the weighing plate shows no load on the {empty[0]} wheel: "
                                             "is the axle on the rollers and the lift down?")
                    spread = ", ".join(f"{side} {min(v)}–{max(v)} N" for side, v in zip(("left", "right"), loads,
                                                                                          strict=True))
                    raise ProcedureError(f"axle {n}: wheel loads not steady within {s.load_timeout_s:g} s ({spread} "
                                         "over the last second): is the vehicle still moving?")
            await ctx.sleep(0.1, scaled=False)

    async def _stop_for_sure(self) -> None:
        """After a failure with the rollers maybe running: MOTORS = 0 until the tester confirms it."""
        ctx, driver = self.ctx, self.driver
        deadline = time.monotonic() + self.settings.stop_confirm_s
        ctx.warn(f"{driver.name}: the rollers are not confirmed stopped; sending MOTORS = 0 until the tester "
                 "answers", device=driver.name)
        while time.monotonic() < deadline:
            try:
                await driver.wait_connected(min(1.0, max(0.01, deadline - time.monotonic())))
            except DeviceUnavailable:
                continue  # still reconnecting
            if await asyncio.shield(driver.emergency_stop()):
                self.motors_unconfirmed = False
                log.warning("brake_rollers_stopped_after_failure", device=driver.name)
                return
            await asyncio.sleep(0.1)
        log.error("brake_rollers_not_stopped", device=driver.name, port=driver.port)
        ctx.warn(f"{driver.name}: could NOT stop the rollers within {self.settings.stop_confirm_s:g} s: "
                 "use the tester's emergency stop", device=driver.name)

    # ----- live curve --------------------------------------------------------------------------------

    async def _live_feed(self, recorder: CurveRecorder, v: Visit, kind: str) -> None:
        while True:
            await asyncio.sleep(self.settings.live_interval_s)
            self._publish_live(recorder, v, kind)

    def _publish_live(self, recorder: CurveRecorder, v: Visit, kind: str) -> None:
        fresh = recorder.samples[self.live_sent :]
        if not fresh:
            return
        self.live_sent += len(fresh)
        self.driver.readings.publish(BrakeCurveLive(
            v.axle_no, kind, recorder.capture.sample_rate_hz, fresh[0].index,
            curve_dan([x.left_force_n for x in fresh]), curve_dan([x.right_force_n for x in fresh]),
            fresh[-1].left_force_n, fresh[-1].right_force_n,
        ))


_NO_SLIP: dict[str, int | None] = {"left": None, "right": None}


def _drain(queue: asyncio.Queue[Any]) -> list[bt.TesterSnapshot]:
    out = []
    while not queue.empty():
        item = queue.get_nowait()
        if isinstance(item, bt.TesterSnapshot):
            out.append(item)
    return out


def _behind(older: int, newer: int) -> int:
    """How many samples `newer` is past `older` (mod 65536; negative if it is in fact older)."""
    ahead = (newer - older) % bt.INDEX_MODULUS
    return ahead - bt.INDEX_MODULUS if ahead >= bt.HALF_INDEX else ahead


def _step(kind: RunKind, n: int) -> str:
    return {"service": f"brake.axle{n}", "parking": f"parking_brake.axle{n}", "weigh": f"brake.weigh_axle{n}"}[kind]


def _what(kind: RunKind) -> str:
    return {"service": "service brake", "parking": "parking brake", "weigh": "weighing"}[kind]

