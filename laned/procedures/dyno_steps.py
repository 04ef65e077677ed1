"""What the loaded methods (ASM, lug-down) do with the chassis dynamometer besides judging:
following its ring as whole seconds, readying the rollers, and bringing the vehicle to a stop.

`DynoSeconds` follows the ring from the sample index read when the test's seconds start: every
sample from there on lands in exactly one `SecondRecord` (protocols/dynamometer.py), so the
per-second process data holds every ring sample. Each second also gets its place on the
analyzer's clock (`ReadingFeed.now_s()`), so the gases of the same second can be joined to it.
The device's own time is real time: these seconds are never scaled by the lane's time_scale.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

import structlog

from drivers.errors import DeviceError, DeviceUnavailable
from laned.procedures import InspectionContext, ProcedureError
from laned.procedures.loaded_items import num
from protocols import dynamometer as dy
from protocols.dyno_power import LossModel, PowerSplit, power_split
from protocols.ring import INDEX_MODULUS

log = structlog.get_logger("laned.procedures.dyno_steps")

LIFT_WAIT_S = 10.0  # real: the lift's travel is a few seconds
STOP_WAIT_S = 60.0  # real: the vehicle coasting or braked to standstill
BRAKE_BELOW_KMH = 10.0  # the roller brake is accepted at or below 10 km/h


def exact(value: Fraction) -> Decimal:
    """A ring mean (an exact Fraction) as a Decimal at 40 digits, as the judging computes."""
    with localcontext() as context:
        context.prec = 40
        return Decimal(value.numerator) / Decimal(value.denominator)


@dataclass(frozen=True)
class TimedSecond:
    """One second of the ring and where it lies on the feed's clock [t0_s, t0_s + 1); `split` its
    parasitic, base-inertia and PAU power (protocols/dyno_power.py)."""

    record: dy.SecondRecord
    t0_s: float
    split: PowerSplit | None = None


class DynoSeconds:
    """The dynamometer's ring as whole seconds from the index read at `start()`."""

    def __init__(self, dyno: Any, clock: Any) -> None:
        self.dyno = dyno
        self.clock = clock  # has now_s(): the analyzer feed's clock
        self.i0 = 0
        self.t0_s = 0.0
        self.pending: deque[TimedSecond] = deque()
        self.seconds = 0
        self.samples = 0
        self._next = 0
        self._agg: dy.PerSecondAggregator | None = None
        self._reconnects = 0
        self.losses: LossModel | None = None

    async def start(self) -> int:
        """Note the sample index now: the first sample of the test's seconds; and BASE_INERTIA and
        PL_A…PL_C, which split each second's power into parasitic, inertia and PAU power."""
        self._reconnects = self.dyno.health.reconnects
        self.losses = LossModel.of_holding(await self.dyno.read_holding())
        snapshot = await self.dyno.snapshot()
        self.t0_s = self.clock.now_s()
        self.i0 = self._next = (snapshot.sample_index + 1) % INDEX_MODULUS
        self._agg = dy.PerSecondAggregator(self.i0)
        return self.i0

    async def poll(self) -> None:
        """Fetch the samples since the last poll; complete seconds go to `pending`."""
        assert self._agg is not None, "start() first"
        self.check_link()
        samples = await self.dyno.samples_since(self._next)
        if not samples:
            return
        self._next = (samples[-1].index + 1) % INDEX_MODULUS
        for record in self._agg.feed(samples):
            split = None if self.losses is None else power_split(record, self.losses)
            self.pending.append(TimedSecond(record, self.t0_s + record.k, split))
            self.seconds += 1
            self.samples += record.samples

    def check_link(self) -> None:
        """DeviceUnavailable when the driver lost the dynamometer since `start()`, even if it is back
        now: the test's seconds and the load it wrote are no longer known to be continuous."""
        dyno = self.dyno
        if not dyno.is_connected or dyno.health.reconnects != self._reconnects:
            raise DeviceUnavailable(dyno.name, f"the connection was lost during the test "
                                    f"({dyno.health.last_error or dyno.health.state})", port=dyno.port)

    @property
    def end_index(self) -> int:
        """The index after the last sample of the last complete second."""
        return (self.i0 + 10 * self.seconds) % INDEX_MODULUS

    def process_data(self, started_at: datetime, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The item's per-second process data (ASM and lug-down alike): the test's `rows`, one a
        second, with where they stand in the ring (first and end index, seconds and samples)."""
        return {
            "interval_s": 1, "started_at": started_at.isoformat(), "first_index": self.i0,
            "end_index": self.end_index, "seconds": self.seconds, "samples": self.samples,
            "rows": rows,
        }

    async def next_second(self, ctx: InspectionContext, *, alive: Any = None, timeout_s: float = 5.0) -> TimedSecond:
        """The next complete second (waiting for it; ProcedureError when none comes for `timeout_s`
        real seconds: the dynamometer stopped sampling)."""
        deadline = time.monotonic() + timeout_s
        while not self.pending:
            if alive is not None:
                alive()
            await self.poll()
            if self.pending:
                break
            if time.monotonic() > deadline:
                raise ProcedureError(f"{self.dyno.name}: no new ring samples for {timeout_s:g} s",
                                     step=ctx.current_step)
            await ctx.sleep(0.1, scaled=False)
        return self.pending.popleft()


def split_fields(timed: TimedSecond) -> dict[str, float | None]:
    """The row fields of a second's power split: parasitic and PAU power (kW, 2 decimals)."""
    split = timed.split
    if split is None:
        return {"parasitic_power_kw": None, "pau_power_kw": None}
    return {"parasitic_power_kw": num(exact(split.parasitic_kw), 2), "pau_power_kw": num(exact(split.pau_kw), 2)}


def fault_reason(dyno: Any) -> str | None:
    """Why the dynamometer cannot go on loading, from its newest snapshot (None: it can)."""
    snapshot = dyno.last_snapshot
    if snapshot is None:
        return None
    if snapshot.state == dy.DynoState.FAULT:
        return f"{dyno.name} faulted ({snapshot.fault_code.name}): the load was dropped"
    return None


async def ready_rollers(ctx: InspectionContext, dyno: Any, step: str) -> None:
    """Fan on, lift down, force channel tared, PAU armed (0 then 1, clearing an old fault)."""
    ctx.step(step, "dynamometer: fan on, lift down, tare, PAU armed")
    await dyno.set_control_mode(0)
    await dyno.set_fan(True)
    await dyno.set_roller_brake(False)
    await dyno.set_lift(False, wait_s=LIFT_WAIT_S)
    await rollers_stopped(ctx, dyno, STOP_WAIT_S)
    await dyno.tare()
    await dyno.set_pau_enable(False)
    await dyno.set_pau_enable(True)


async def stop_rollers(ctx: InspectionContext, dyno: Any, step: str, *, prompt_action: str, text: str) -> None:
    """Mode 0 and PAU off, the driver told to release and brake, the roller brake below 10 km/h,
    the lift up once the rollers stopped."""
    ctx.step(step, "unloading the dynamometer and stopping the rollers")
    await dyno.set_control_mode(0)
    await dyno.set_pau_enable(False)
    ctx.prompt(prompt_action, text)
    await dyno.wait_snapshot(lambda s: s.speed_kmh <= BRAKE_BELOW_KMH, STOP_WAIT_S,
                             what=f"speed at or below {BRAKE_BELOW_KMH:g} km/h")
    with contextlib.suppress(DeviceError):  # refused while still too fast: the driver brakes anyway
        await dyno.set_roller_brake(True)
    await rollers_stopped(ctx, dyno, STOP_WAIT_S)
    await dyno.set_lift(True, wait_s=LIFT_WAIT_S)
    ctx.prompt("drive_off_dyno", "drive off the dynamometer (驶离底盘测功机)")


async def rollers_stopped(ctx: InspectionContext, dyno: Any, timeout_s: float) -> None:
    """Wait for ROLLERS_STOPPED (real seconds); ProcedureError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (await dyno.inputs()).rollers_stopped:
        if time.monotonic() > deadline:
            raise ProcedureError(f"{dyno.name}: the rollers did not stop within {timeout_s:g} s",
                                 step=ctx.current_step)
        await ctx.sleep(0.1, scaled=False)


async def unload(dyno: Any) -> bool:
    """CONTROL_MODE 0 and PAU off now (after an error or an abort); never raises."""
    confirmed: bool = await dyno.emergency_stop()
    if not confirmed:
        log.error("dyno_unload_unconfirmed", device=dyno.name)
    return confirmed
