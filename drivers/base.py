"""The one life of every device driver: connect, run, lose the link, back off, reconnect.

A driver subclasses `Driver` and implements four small methods:

    _open()     open the transport (serial port, TCP connection)
    _close()    close it; must not raise
    _hello()    the first exchange after opening (identify, read status); proves the device answers
    _poll()     one cycle of background reading (live values); called at `poll_interval_s`

Everything else lives here once: the supervision loop, capped exponential
backoff with jitter, health state (`connecting`, `connected`, `degraded`,
`disconnected`) with the last error, one request at a time on the line
(`exchange()` holds the line lock), fan-out of readings to subscribers, and
the safe state (`safe_stop()`) that runs before anything else when the daemon
stops or a procedure fails. A device is marked `connected` only after a good
read, never on merely opening a port.

Safe state on connect: after every good `_hello()` (the first connect and every
reconnect) and before the device is shown connected, a driver whose device has a
dangerous state (`safe_state_action` set: rollers, pump) is put in its safe state,
unless one of our own procedures has it `claim()`ed. A daemon killed mid-test left
the rollers turning; the next daemon's first contact stops them. A procedure that
owns the device when its link drops and comes back is not interrupted by this: it
sees the error itself, and stops the device when it fails. A safe state that fails
fails the connect: the device is not offered to anyone until its safe state holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar

import structlog

from drivers.errors import DeviceError, DeviceStale, DeviceTimeout, DeviceUnavailable

log = structlog.get_logger("drivers")

#: the longest a safe state may take (on connect, on stop) before it counts as failed
SAFE_STATE_TIMEOUT_S = 2.0

R = TypeVar("R")


class HealthState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DEGRADED = "degraded"
    DISCONNECTED = "disconnected"
    STOPPED = "stopped"


@dataclass
class DeviceHealth:
    """What `…/status` shows for one device."""

    state: HealthState = HealthState.DISCONNECTED
    since: float = field(default_factory=time.time)
    last_error: str | None = None
    last_good_read: float | None = None
    consecutive_errors: int = 0
    errors_total: int = 0
    reconnects: int = 0
    identity: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": str(self.state),
            "since": self.since,
            "last_error": self.last_error,
            "last_good_read": self.last_good_read,
            "errors_total": self.errors_total,
            "reconnects": self.reconnects,
            "identity": dict(self.identity),
        }


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter: initial, ×factor each failure, at most max_s."""

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2  # ± this fraction

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        base = min(self.max_s, self.initial_s * self.factor ** max(0, attempt))
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, min(self.max_s, base * (1.0 + spread)))


class Broadcast(Generic[R]):
    """Fan-out of readings to any number of subscribers. A slow subscriber loses its oldest
    readings (and is told how many), never blocks the driver."""

    def __init__(self, maxsize: int = 1000) -> None:
        self._queues: set[asyncio.Queue[R]] = set()
        self._listeners: list[Callable[[R], None]] = []
        self._maxsize = maxsize
        self.latest: R | None = None
        self.dropped = 0

    def listen(self, callback: Callable[[R], None]) -> Callable[[], None]:
        """Call `callback(reading)` at once for every reading, in the driver's turn; returns what
        ends it. For cheap, non-blocking work only (a live message): no task, no queue, no wake-up
        of another task per reading (docs/performance.md). A callback that raises is logged and
        kept; the driver never sees the error."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def publish(self, item: R) -> None:
        self.latest = item
        for callback in self._listeners:
            try:
                callback(item)
            except Exception:
                log.exception("reading_listener_failed", listener=getattr(callback, "__qualname__", repr(callback)))
        for queue in self._queues:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                    self.dropped += 1
            queue.put_nowait(item)

    @contextlib.contextmanager
    def subscription(self, maxsize: int | None = None) -> Iterator[asyncio.Queue[R]]:
        queue: asyncio.Queue[R] = asyncio.Queue(maxsize or self._maxsize)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)

    async def stream(self) -> AsyncIterator[R]:
        with self.subscription() as queue:
            while True:
                yield await queue.get()


HealthListener = Callable[[str, DeviceHealth], None]


def next_slot(now: float, interval_s: float) -> float:
    """The next multiple of `interval_s` on the monotonic clock after `now`.

    Every driver polls on this grid, so devices whose rates divide each other wake the loop
    together (10, 20 and 50 Hz polls share every 100 ms tick): each wake-up of an idle process
    costs more than the work a reading needs (docs/performance.md). A poll that overruns its
    slot waits for the next one rather than catching up in a burst."""
    slot = (math.floor(now / interval_s) + 1) * interval_s
    return slot if slot > now else slot + interval_s


#: Set by a driver's poll loop, for its own task only: the grid tick after the one the poll started
#: on. A serial request made under it reads its reply at that tick, where the poll loop wakes
#: anyway, instead of when the bytes arrive (a wake-up of its own). Requests from procedures and
#: commands run in other tasks and read their replies as they come.
READ_REPLY_AT: ContextVar[float | None] = ContextVar("laned_read_reply_at", default=None)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Driver(ABC):
    """Base of every device driver. See the module docstring for what a subclass adds."""

    kind: ClassVar[str] = "device"
    #: what `_safe_state()` does, for the log ("MOTORS = 0, LIFT = 1"); None for a device with
    #: no dangerous state, which is then left alone on connect
    safe_state_action: ClassVar[str | None] = None

    def __init__(
        self,
        name: str,
        *,
        port: str,
        poll_interval_s: float = 0.1,
        backoff: Backoff | None = None,
        errors_to_disconnect: int = 3,
    ) -> None:
        self.name = name
        self.port = port
        self.poll_interval_s = poll_interval_s
        self.backoff = backoff or Backoff()
        self.errors_to_disconnect = errors_to_disconnect
        self.health = DeviceHealth()
        self.readings: Broadcast[Any] = Broadcast()
        self._line = asyncio.Lock()
        self._listeners: list[HealthListener] = []
        self._stopping = asyncio.Event()
        self._pause_waiter: asyncio.Future[None] | None = None
        self._open_now = False
        self._connected = asyncio.Event()
        self._claims = 0
        self._greeting = False  # between opening and the safe state: good reads do not yet make it connected
        self.log = log.bind(device=name, kind=self.kind, port=port)

    # ----- what a subclass implements ------------------------------------------

    @abstractmethod
    async def _open(self) -> None: ...

    @abstractmethod
    async def _close(self) -> None: ...

    @abstractmethod
    async def _hello(self) -> None:
        """First exchange after opening (through `exchange()`); raise DeviceError if the device
        does not answer right."""

    async def _poll(self) -> None:  # noqa: B027 - optional: many devices have nothing to poll
        """One cycle of background reading; publish readings with `self.readings.publish`."""

    async def _safe_state(self) -> None:  # noqa: B027 - optional
        """Put the device in its safe state (motors off, pump off). Called with the line held:
        talk to the device directly, not through `exchange()`."""

    # ----- health ---------------------------------------------------------------

    def add_health_listener(self, listener: HealthListener) -> None:
        self._listeners.append(listener)

    def _set_state(self, state: HealthState, error: str | None = None) -> None:
        if error is not None:
            self.health.last_error = error
        if state == self.health.state:
            return
        previous = self.health.state
        self.health.state = state
        self.health.since = time.time()
        event = "device_state"
        fields: dict[str, Any] = {"state": str(state), "previous": str(previous)}
        if error:
            fields["error"] = error
        (self.log.warning if state in (HealthState.DEGRADED, HealthState.DISCONNECTED) else self.log.info)(
            event, **fields
        )
        if state == HealthState.CONNECTED:
            self._connected.set()
        else:
            self._connected.clear()
        for listener in list(self._listeners):
            try:
                listener(self.name, self.health)
            except Exception:  # a listener's bug must not take the driver down
                self.log.exception("health_listener_failed")

    def good_read(self) -> None:
        """Record a good exchange: the device answers correctly."""
        self.health.consecutive_errors = 0
        self.health.last_good_read = time.time()
        if not self._greeting:  # during the hello and the safe state the device is still connecting
            self._set_state(HealthState.CONNECTED)

    def bad_read(self, error: DeviceError) -> None:
        """Record a failed exchange; enough of them in a row mean the link is gone."""
        self.health.consecutive_errors += 1
        self.health.errors_total += 1
        if self.health.consecutive_errors >= self.errors_to_disconnect or isinstance(error, DeviceUnavailable):
            self._set_state(HealthState.DISCONNECTED, str(error))
        else:
            self._set_state(HealthState.DEGRADED, str(error))

    @property
    def is_connected(self) -> bool:
        return self.health.state in (HealthState.CONNECTED, HealthState.DEGRADED)

    async def wait_connected(self, timeout_s: float | None = None) -> None:
        """Wait for a good read; raises DeviceUnavailable naming the last error on timeout."""
        try:
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        except TimeoutError:
            raise DeviceUnavailable(
                self.name,
                f"not connected after {timeout_s:g} s (last error: {self.health.last_error})",
                port=self.port,
            ) from None

    # ----- ownership --------------------------------------------------------------

    @contextlib.contextmanager
    def claim(self) -> Iterator[None]:
        """Held while one of our own procedures (an inspection item, the daily checks) works the
        device: a reconnect meanwhile leaves the device as the procedure set it (the procedure owns
        it, sees the error and stops the device itself when it fails). Claims nest."""
        self._claims += 1
        try:
            yield
        finally:
            self._claims -= 1

    @property
    def claimed(self) -> bool:
        """Whether a procedure of ours is working the device now (see `claim()`)."""
        return self._claims > 0

    # ----- requests -------------------------------------------------------------

    async def exchange(self, work: Callable[[], Awaitable[R]]) -> R:
        """Run one request/reply on the line, alone. Records health from its outcome and
        re-raises the error for the caller."""
        if not self._open_now:
            raise DeviceUnavailable(
                self.name, f"not connected ({self.health.last_error or 'port closed'})", port=self.port
            )
        async with self._line:
            try:
                result = await work()
            except DeviceError as exc:
                self.bad_read(exc)
                raise
        self.good_read()
        return result

    # ----- life -----------------------------------------------------------------

    async def run(self) -> None:
        """Supervise the device until `stop()`: open, hello, poll; on loss back off and retry, forever."""
        attempt = 0
        while not self._stopping.is_set():
            self._set_state(HealthState.CONNECTING)
            try:
                await self._open()
                self._open_now = True
                self._greeting = True
                try:
                    await self._hello()
                    await self._safe_state_on_connect()
                finally:
                    self._greeting = False
                self.good_read()
                attempt = 0
                await self._poll_loop()
            except DeviceError as exc:
                self.health.errors_total += 1
                self._set_state(HealthState.DISCONNECTED, str(exc))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug in a driver must not end supervision
                self.log.exception("driver_crashed")
                self._set_state(HealthState.DISCONNECTED, f"internal error: {exc!r}")
            finally:
                self._open_now = False
                with contextlib.suppress(Exception):
                    await self._close()
            if self._stopping.is_set():
                break
            delay = self.backoff.delay(attempt)
            attempt += 1
            self.health.reconnects += 1
            self.log.info("device_reconnect_wait", delay_s=round(delay, 2), attempt=attempt)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
        self._set_state(HealthState.STOPPED)

    async def _safe_state_on_connect(self) -> None:
        """The device's safe state after a good hello, unless a procedure of ours owns it; logged
        either way (`safe_state_on_connect`). A failure is logged (`safe_state_failed`) and raised
        as a DeviceError: the connect fails and is retried after the backoff, so the device is
        never shown connected with its rollers or pump left running."""
        action = self.safe_state_action
        if action is None:
            return
        if self.claimed:
            self.log.info("safe_state_on_connect", done=False, action=action,
                          reason="a procedure of ours is running on the device: it owns its state")
            return
        try:
            async with asyncio.timeout(SAFE_STATE_TIMEOUT_S), self._line:
                await self._safe_state()
        except (DeviceError, TimeoutError) as exc:
            error = str(exc) or f"no confirmation within {SAFE_STATE_TIMEOUT_S:g} s"
            self.log.error("safe_state_failed", on="connect", action=action, error=error)
            raise DeviceUnavailable(self.name, f"safe state on connect ({action}) failed: {error}",
                                    port=self.port) from None
        self.log.info("safe_state_on_connect", done=True, action=action)

    async def _poll_loop(self) -> None:
        interval = self.poll_interval_s
        while not self._stopping.is_set():
            tick = next_slot(time.monotonic(), interval)
            token = READ_REPLY_AT.set(tick)
            try:
                await self._poll()
            except DeviceTimeout:
                pass  # counted by exchange(); enough in a row raise below
            except DeviceStale as exc:
                raise exc
            except DeviceError:
                pass
            finally:
                READ_REPLY_AT.reset(token)
            if self.health.state == HealthState.DISCONNECTED:
                raise DeviceUnavailable(self.name, self.health.last_error or "link lost", port=self.port)
            now = time.monotonic()
            if now < tick:
                await self._pause_until(tick)
            elif now - tick >= interval / 2:  # overran: the next slot, not a burst of catching up
                await self._pause_until(next_slot(now, interval))
            # else the reply was read at this tick: the next poll starts in the same wake-up

    async def _pause_until(self, when: float) -> None:
        """Sleep until monotonic time `when` between polls, woken at once by `stop()`. One future and
        one timer: this runs at every poll, and `wait_for` on the stop event costs a task per call
        (docs/performance.md)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._pause_waiter = waiter
        timer = loop.call_at(when, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._pause_waiter = None

    async def safe_stop(self) -> None:
        """Put the device in its safe state before anything else, if the line allows."""
        if not self._open_now:
            return
        try:
            async with asyncio.timeout(SAFE_STATE_TIMEOUT_S):
                async with self._line:
                    await self._safe_state()
        except Exception as exc:
            self.log.error("safe_state_failed", error=str(exc))

    async def stop(self) -> None:
        """Safe state first, then end supervision and close the port."""
        await self.safe_stop()
        self._stopping.set()
        if self._pause_waiter is not None:
            _wake(self._pause_waiter)
