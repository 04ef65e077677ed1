"""Test procedures: what the lane does with its devices for one inspection item.

A procedure is an async function `run(ctx: InspectionContext) -> ItemOutcome`.
It talks to devices only through their drivers, tells the driver and the
technicians what is happening through `ctx.step()`, `ctx.prompt()` and
`ctx.warn()`, waits with `ctx.sleep()` / `ctx.wait_for()` (scaled by the lane's
`time_scale` and interrupted by an abort), and ends either with an
`ItemOutcome` (measured and judged items, canonical and platform-neutral) or
by raising `ProcedureError` with a reason a technician understands.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from protocols.errors import LaneError

if TYPE_CHECKING:
    from drivers.base import Driver
    from protocols.messages import StartCommand

T = TypeVar("T")
Platform = Literal["safety", "emissions"]
Verdict = Literal["pass", "fail", "void", "not_tested", "not_completed"]


class ProcedureError(LaneError):
    """An item could not be completed; `reason` is shown to technicians and put in the result."""

    def __init__(self, reason: str, *, step: str | None = None) -> None:
        self.reason = reason
        self.step = step
        super().__init__(reason)


class InspectionAborted(LaneError):
    """The station (or the lane's shutdown) aborted the inspection."""


@dataclass
class ItemOutcome:
    """What one procedure produced: canonical result items for one platform.

    Each item is a JSON-ready dict with at least `code` (platform item code, e.g. B1),
    `item` (a stable English name), `verdict`, and measured `values` with units in
    their names, the `limits` applied, the `checks` made and the `process_data`.
    """

    procedure: str
    platform: Platform
    items: list[dict[str, Any]]
    verdict: Verdict
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def utc_now() -> datetime:
    return datetime.now(UTC)


class InspectionContext:
    """Everything a procedure may use during one inspection."""

    def __init__(
        self,
        *,
        inspection_no: str,
        command: StartCommand,
        drivers: dict[str, Driver],
        limits: Any,
        settings: Any,
        publish_event: Callable[..., None],
        set_step: Callable[[str | None], None],
        abort: asyncio.Event,
        state_dir: Any = None,
        daily_checks: Any = None,
    ) -> None:
        self.inspection_no = inspection_no
        self.command = command
        self.drivers = drivers
        self.limits = limits
        self.settings = settings
        self._publish_event = publish_event
        self._set_step = set_step
        self.abort = abort
        self.state_dir = state_dir
        self.daily_checks = daily_checks
        self.time_scale: float = float(getattr(settings, "time_scale", 1.0))
        self.current_step: str | None = None
        self.halted: str | None = None
        self._claims = contextlib.ExitStack()
        self._claimed: set[str] = set()

    # ----- devices -----------------------------------------------------------------

    def driver(self, kind: str) -> Any:
        """The lane's driver of this kind; ProcedureError if the lane has none or it is down.

        The driver is claimed (`Driver.claim()`) until `release_devices()` (the runner, at the end
        of the item): a reconnect meanwhile does not put the device in its safe state under the
        running procedure."""
        for driver in self.drivers.values():
            if driver.kind == kind:
                if not driver.is_connected:
                    raise ProcedureError(
                        f"{driver.name} is {driver.health.state} ({driver.health.last_error or 'no reply yet'})",
                        step=self.current_step,
                    )
                if driver.name not in self._claimed:
                    self._claims.enter_context(driver.claim())
                    self._claimed.add(driver.name)
                return driver
        raise ProcedureError(f"this lane has no {kind.replace('_', ' ')} configured", step=self.current_step)

    def release_devices(self) -> None:
        """The item has ended: the devices it used are no longer ours (a reconnect puts them in
        their safe state again)."""
        self._claims.close()
        self._claimed.clear()

    @staticmethod
    def device_identity(driver: Driver) -> dict[str, Any]:
        return {"device": driver.name, "kind": driver.kind, **driver.health.identity}

    # ----- telling people ---------------------------------------------------------------

    def step(self, step: str, text: str = "", **data: Any) -> None:
        self.current_step = step
        self._set_step(step)
        self._publish_event(type="step_started", step=step, text=text, data=data)

    def step_done(self, step: str, text: str = "", **data: Any) -> None:
        self._publish_event(type="step_finished", step=step, text=text, data=data)

    def prompt(self, action: str, text: str, **data: Any) -> None:
        """A prompt for the driver (the lane's LED board, the PDA) and for simulators' drivers."""
        self._publish_event(type="prompt", step=self.current_step, action=action, text=text, data=data)

    def warn(self, text: str, **data: Any) -> None:
        self._publish_event(type="warning", step=self.current_step, text=text, data=data)

    # ----- waiting ----------------------------------------------------------------------

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale

    def halt(self, reason: str) -> None:
        """End the running item at its next wait with ProcedureError(`reason`): the lane lost
        something the item cannot go on without (the broker during a brake test: the driver no
        longer sees the prompts). The runner clears it when the item has ended."""
        if self.halted is None:
            self.halted = reason
        self.abort.set()  # wakes every wait at once; check_abort() tells a halt from an abort

    def resume(self, *, aborted: bool) -> None:
        """After a halted item: the next item runs, unless the station `aborted` meanwhile."""
        if self.halted is not None:
            self.halted = None
            if not aborted:
                self.abort.clear()

    def check_abort(self) -> None:
        if self.halted is not None:
            raise ProcedureError(self.halted, step=self.current_step)
        if self.abort.is_set():
            raise InspectionAborted("inspection aborted")

    async def sleep(self, seconds: float, *, scaled: bool = True) -> None:
        """Sleep (scaled), waking at once with InspectionAborted if the inspection is aborted
        (ProcedureError if its item was halted)."""
        delay = self.scaled(seconds) if scaled else seconds
        try:
            await asyncio.wait_for(self.abort.wait(), delay)
        except TimeoutError:
            return
        self.check_abort()

    async def wait_for(
        self,
        condition: Callable[[], Awaitable[T | None]],
        *,
        timeout_s: float,
        reason: str,
        poll_s: float = 0.1,
        scaled_timeout: bool = True,
    ) -> T:
        """Poll `condition` until it returns something not None; ProcedureError(`reason`) on timeout."""
        deadline = time.monotonic() + (self.scaled(timeout_s) if scaled_timeout else timeout_s)
        while True:
            self.check_abort()
            value = await condition()
            if value is not None:
                return value
            if time.monotonic() >= deadline:
                raise ProcedureError(reason, step=self.current_step)
            await self.sleep(poll_s, scaled=False)
