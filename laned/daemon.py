"""The lane daemon: supervises the devices and the MQTT side, and keeps `…/status` truthful.

Start-up: the outbox opens (pending messages from a previous run are sent
first), the drivers start, the MQTT link connects with an offline will. The
lane publishes itself `online` once every enabled device has had its first
good read, or after `startup_grace_s` with the devices that are still missing
shown as such. Each device's first good read comes after its safe state (rollers
stopped and lift up, pump off: drivers/base.py), so a lane restarted after a crash
never leaves a device running that the dead process had started. An unfinished
inspection resumes only once the lane is online and the broker connected (`up`).
Stop (SIGTERM, SIGINT): every device is put in its safe state first (motors off,
pump off), then the offline status is published, then the ports and the broker
connection close.

Supervision: every task the lane spawns must run for the lane's whole life. One
that ends (an unexpected error, or it returned) is logged as `task_crashed`
with its traceback, the lane stops in the same order, and `run()` raises
`LaneCrashed`, so `laned run` exits non-zero and systemd restarts it. The lane's
own loops beat a heartbeat (`beat()`); `stalled_loops()` names those that did
not, and the systemd watchdog is fed only while it names none.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from drivers.base import DeviceHealth, Driver
from laned import __version__
from laned.config import LaneConfig, require_standard_timings
from laned.devices import LiveSender, build_driver
from laned.errors import LaneCrashed
from laned.mqtt import MqttLink, Topics
from laned.outbox import Outbox
from laned.private_files import private_dir

log = structlog.get_logger("laned")

Handler = Callable[[str, bytes], Awaitable[None]]
STATUS_SCHEMA = "lane-status/2"


class Lane:
    """One lane: its devices, its broker link, its status. `run()` until `request_stop()`."""

    def __init__(
        self,
        config: LaneConfig,
        *,
        startup_grace_s: float = 10.0,
        status_interval_s: float = 5.0,
        simulation: bool = False,
    ) -> None:
        """`simulation`: the lane runs on simulated devices for tests, demos or training
        (`laned run --simulation`); only then may the config shorten a procedure below the
        standard's (a time scale below 1, …): ConfigError otherwise. Every result says which."""
        require_standard_timings(config, simulation=simulation)
        self.config = config
        self.simulation = simulation
        self.topics = Topics.for_lane(config.mqtt.topic_prefix, config.lane.station, config.lane.lane)
        self.startup_grace_s = startup_grace_s
        self.status_interval_s = status_interval_s
        private_dir(config.lane.state_dir, warn_if_open=True)
        self.outbox = Outbox(config.lane.state_dir / "outbox.sqlite3", max_messages=config.lane.outbox_max_messages)
        self.drivers: dict[str, Driver] = {
            name: build_driver(name, device) for name, device in config.devices.items() if device.enabled
        }
        self.live_enabled = {name for name, device in config.devices.items() if device.enabled and device.live}
        self._handlers: dict[str, Handler] = {}
        self.mqtt = MqttLink(
            config,
            self.outbox,
            offline_status=lambda: self.status_document(online=False),
            on_message=self._dispatch,
            subscriptions=[self.topics.commands, f"{self.topics.pda}/capture", f"{self.topics.pda}/photo/#"],
            on_oversize=self._refuse_oversize,
            on_connected=self.publish_status,  # the status re-sent on connect names the broker now in use
            on_progress=lambda: self.beat("mqtt", self._mqtt_period_s()),
        )
        #: each live device's messages, at its live_hz, with the readings since its last
        self.live_senders = {
            name: LiveSender(name, driver.kind, config.devices[name].live_interval_s, self.mqtt.publish_live)
            for name, driver in self.drivers.items()
            if name in self.live_enabled
        }
        self.started_at = time.time()
        self.online = False
        #: set once the lane is online (every device answered, or the grace period ended) and the
        #: broker link is up: a resumed inspection waits for it before it runs an item again
        self.up = asyncio.Event()
        self.inspection: dict[str, Any] | None = None  # set by the inspection runner
        self.status_extra: dict[str, Any] = {}
        from laned.inspection import InspectionRunner

        self.runner = InspectionRunner(self)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        self._forever: set[str] = set()  # names of the tasks that must not end before the lane stops
        self.crashed: LaneCrashed | None = None
        self._beats: dict[str, tuple[float, float]] = {}  # loop -> (last beat, its period s), monotonic
        self.log = log.bind(station=config.lane.station, lane=config.lane.lane)
        for driver in self.drivers.values():
            driver.add_health_listener(self._on_health)

    # ----- status -------------------------------------------------------------------

    def status_document(self, *, online: bool | None = None) -> dict[str, Any]:
        is_online = self.online if online is None else online
        return {
            "schema": STATUS_SCHEMA,
            "station": self.config.lane.station,
            "lane": self.config.lane.lane,
            "state": "online" if is_online else "offline",
            "version": __version__,
            "started_at": self.started_at,
            "lane_time": time.time(),
            "devices": {
                name: {**driver.health.as_dict(), "kind": driver.kind, "port": driver.port}
                for name, driver in self.drivers.items()
            },
            "inspection": self.inspection,
            "outbox": self.outbox.stats(),
            "daily_checks": self._daily_checks_status(),
            "broker": self.mqtt.broker if is_online and self.mqtt.connected else None,
            **self.status_extra,
        }

    def _daily_checks_status(self) -> dict[str, Any] | None:
        checks = self.runner.daily_checks
        if checks is None or not any(d.kind in ("gas_analyzer", "dynamometer") for d in self.drivers.values()):
            return None
        try:
            status: dict[str, Any] = checks.status()
        except Exception as exc:  # an unreadable file must not take the status with it
            self.log.warning("daily_checks_unreadable", error=str(exc))
            return None
        return status

    def publish_status(self) -> None:
        if self.online:
            self.mqtt.set_status(self.status_document())

    def _on_health(self, device: str, health: DeviceHealth) -> None:
        self.publish_status()

    def status_line(self) -> str:
        """One line for `systemctl status` and the demo's screen."""
        devices = ", ".join(f"{name} {driver.health.state}" for name, driver in self.drivers.items())
        inspection = self.inspection or {}
        doing = f"inspection {inspection.get('inspection_no')}: {inspection.get('step')}" if inspection else "idle"
        broker = "broker up" if self.mqtt.connected else "broker down"
        return f"{doing}; {devices or 'no devices'}; {broker}; outbox {self.outbox.depth}"

    # ----- messages -----------------------------------------------------------------

    def route(self, topic_prefix: str, handler: Handler) -> None:
        """Send messages whose topic starts with `topic_prefix` to `handler`."""
        self._handlers[topic_prefix] = handler

    async def _dispatch(self, topic: str, payload: bytes) -> None:
        for prefix, handler in self._handlers.items():
            if topic.startswith(prefix):
                await handler(topic, payload)
                return
        self.log.warning("mqtt_unhandled", topic=topic, bytes=len(payload))

    def _refuse_oversize(self, topic: str, size: int, limit: int, setting: str) -> None:
        """A payload over its topic's limit was dropped unread: the sender is told by a warning event
        (its request_id or capture_id is not looked for: that would mean parsing it)."""
        shown = topic if len(topic) <= 200 else topic[:197] + "..."
        self.publish_event_model(
            type="warning",
            text=f"message on {shown} refused unread: {size} bytes, over the limit of {limit} bytes ({setting})",
            data={"topic": shown, "bytes": size, "limit_bytes": limit, "setting": setting},
        )

    def publish_event_model(self, **fields: Any) -> None:
        """An `…/event` (see protocols.messages.Event) through the outbox; never raises."""
        from laned.inspection import event_document
        from laned.outbox import OutboxFull

        try:
            self.mqtt.enqueue(self.topics.event, event_document(**fields), kind="event")
        except OutboxFull as exc:
            self.log.warning("event_dropped", reason=str(exc), event_type=fields.get("type"))

    # ----- life -----------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)

    def spawn(self, coro: Awaitable[Any], name: str, *, forever: bool = True) -> asyncio.Task[Any]:
        """Run `coro` as a supervised task: if it raises (or, `forever`, ends at all) before the
        lane stops, the lane stops and `run()` raises `LaneCrashed`."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.append(task)
        if forever:
            self._forever.add(name)
        task.add_done_callback(functools.partial(self._task_ended, forever=forever))
        return task

    def _task_ended(self, task: asyncio.Task[Any], *, forever: bool) -> None:
        if self._stopping:
            return
        cause = None if task.cancelled() else task.exception()
        if cause is None and not forever and not task.cancelled():
            return
        if self.crashed is None:
            self.crashed = LaneCrashed(task.get_name(), cause)
        self.log.error(
            "task_crashed",
            task=task.get_name(),
            error=repr(cause) if cause is not None else "ended",
            exc_info=cause if cause is not None else False,
        )
        self._stop.set()

    def beat(self, loop: str, period_s: float) -> None:
        """`loop` made progress and will again within `period_s`."""
        self._beats[loop] = (time.monotonic(), period_s)

    def _mqtt_period_s(self) -> float:
        """The longest the MQTT link may go without a turn of its loop or a status published
        (once a status tick, when online): a reconnect pause at its longest (with jitter), a
        connect and a publish at aiomqtt's timeout (10 s each), the start before online."""
        mqtt = self.config.mqtt
        return max(self.status_interval_s, self.startup_grace_s, 1.2 * mqtt.reconnect_max_s + 20.0)

    def stalled_loops(self, max_age_s: float = 0.0) -> list[str]:
        """The supervised loops that did not beat within three of their periods (and not within
        `max_age_s`), and the supervised tasks that ended: empty while the lane makes progress."""
        now = time.monotonic()
        stalled = [
            loop for loop, (at, period_s) in self._beats.items() if now - at > max(3 * period_s, max_age_s)
        ]
        ended = [t.get_name() for t in self._tasks if t.done() and t.get_name() in self._forever]
        return stalled + ended

    async def run(self, *, ready: Callable[[], None] | None = None) -> None:
        """Run until `request_stop()`; raises `LaneCrashed` (after the ordered stop) if a task crashed."""
        self.log.info(
            "lane_starting",
            devices=sorted(self.drivers),
            broker=self.mqtt.broker,
            brokers=[f"{h}:{p}" for h, p in self.mqtt.brokers],
            outbox_pending=self.outbox.depth,
            version=__version__,
        )
        for name, driver in self.drivers.items():
            self.spawn(driver.run(), f"driver-{name}")
            if name in self.live_senders:
                driver.readings.listen(self.live_senders[name].add)
        self.spawn(self.mqtt.run(), "mqtt")
        self.spawn(self._go_online(ready), "online", forever=False)
        self.beat("status", self.status_interval_s)
        self.spawn(self._status_ticker(), "status")
        self.runner.resume()
        try:
            await self._stop.wait()
        finally:
            await self.shutdown()
        if self.crashed is not None:
            raise self.crashed from self.crashed.cause

    async def _go_online(self, ready: Callable[[], None] | None) -> None:
        waits = [driver.wait_connected(self.startup_grace_s) for driver in self.drivers.values()]
        results = await asyncio.gather(*waits, return_exceptions=True)
        missing = [name for name, result in zip(self.drivers, results, strict=True) if isinstance(result, Exception)]
        if missing:
            self.log.warning("lane_online_with_devices_missing", missing=missing, grace_s=self.startup_grace_s)
        self.online = True
        self.publish_status()
        await self.mqtt.wait_connected()
        self.log.info("lane_online", devices={n: str(d.health.state) for n, d in self.drivers.items()})
        self.up.set()
        if ready is not None:
            ready()

    async def _status_ticker(self) -> None:
        period_s = self.status_interval_s
        while True:
            await asyncio.sleep(self.status_interval_s)
            self.publish_status()
            self.beat("status", period_s)

    async def shutdown(self) -> None:
        """Safe states first, then the offline status, then everything else."""
        self._stopping = True
        self.log.info("lane_stopping", crashed=self.crashed.task if self.crashed else None)
        self.runner.cancel()  # first, and without waiting: the procedure sends no further command
        await asyncio.gather(*(driver.safe_stop() for driver in self.drivers.values()))
        await self.runner.wait_stopped()
        self.online = False
        try:
            final_status = self.status_document(online=False)
        except Exception:  # what broke the lane may break its status too: the will's document then
            self.log.exception("final_status_unavailable")
            final_status = None
        await self.mqtt.stop(final_status=final_status, fallback_to_will=True)
        for sender in self.live_senders.values():
            sender.close()
        for driver in self.drivers.values():
            await driver.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.outbox.close()
        self.runner.requests.close()
        self.log.info("lane_stopped")
