"""Telling systemd how the lane is: the sd_notify protocol, without python-systemd.

Under `Type=notify` systemd passes the path of a datagram socket in
`$NOTIFY_SOCKET` (a file path, or `@name` for an abstract socket) and, with
`WatchdogSec=`, the watchdog period in `$WATCHDOG_USEC`. The daemon sends
newline-separated `KEY=value` assignments to it:

- `READY=1` once the lane is online (devices answered or their grace period
  ended, broker connected): `systemctl start` returns then;
- `STATUS=…` the lane's one-line status (`Lane.status_line()`), shown by
  `systemctl status`, sent when it changes and refreshed every few seconds;
- `WATCHDOG=1` every half watchdog period, from the event loop itself, and only
  while the lane's own loops make progress (`Lane.stalled_loops()` names none):
  a hung event loop, or a loop of the lane that stopped beating, stops feeding
  and systemd restarts the daemon;
- `EXTEND_TIMEOUT_USEC=…` while starting: a lane waiting for its broker is
  alive, not hung, and must not be killed by the start timeout;
- `STOPPING=1` as soon as a stop is requested (safe stop follows).

Without `$NOTIFY_SOCKET` (a terminal, a test, another supervisor) every call
is a silent no-op. A failed send is logged, never raised: systemd's view of the
lane must not be able to stop the lane.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from laned.daemon import Lane

log = structlog.get_logger("laned.systemd")

#: how often the status line is looked at for changes, and re-sent even when unchanged
STATUS_POLL_S = 1.0
STATUS_REFRESH_S = 5.0
#: heartbeat while starting when systemd gave no watchdog period
HEARTBEAT_WITHOUT_WATCHDOG_S = 10.0


def notify_address(value: str | None) -> str | None:
    """The socket address for `$NOTIFY_SOCKET`: a path as is, `@name` as the abstract `\\0name`."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # vsock: and other transports of newer systemd: not for a lane PC


def watchdog_interval_from_env(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """Half of `$WATCHDOG_USEC`, in seconds, as sd_watchdog_enabled() advises; None without a watchdog
    or when `$WATCHDOG_PID` names another process (the variables were inherited, not meant for us)."""
    usec_text = environ.get("WATCHDOG_USEC", "")
    try:
        usec = int(usec_text)
    except ValueError:
        return None
    if usec <= 0:
        return None
    watchdog_pid = environ.get("WATCHDOG_PID")
    if watchdog_pid:
        try:
            if int(watchdog_pid) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return usec / 1_000_000 / 2


def _one_line(text: str) -> str:
    """A STATUS value on one line: a newline would start another assignment."""
    return " ".join(text.split())


class SystemdNotifier:
    """The daemon's side of sd_notify; inert when not started by systemd."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        status_poll_s: float = STATUS_POLL_S,
        status_refresh_s: float = STATUS_REFRESH_S,
    ) -> None:
        env = os.environ if environ is None else environ
        self.socket_name = env.get("NOTIFY_SOCKET") or None
        self.address = notify_address(self.socket_name)
        self.watchdog_interval_s = watchdog_interval_from_env(env) if self.address else None
        self.status_poll_s = status_poll_s
        self.status_refresh_s = status_refresh_s
        self._sock: socket.socket | None = None
        self._ready_wanted = False
        self._ready_sent = False
        self._stopping_wanted = False
        self._stopping_sent = False
        self._last_status: str | None = None
        self._last_status_at = 0.0
        self._poke = asyncio.Event()
        self._last_error: str | None = None
        if self.socket_name and self.address is None:
            log.warning("systemd_notify_socket_unsupported", notify_socket=self.socket_name)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def heartbeat_s(self) -> float:
        """Period of WATCHDOG=1 (and of the start-timeout extension before READY)."""
        return self.watchdog_interval_s or HEARTBEAT_WITHOUT_WATCHDOG_S

    # ----- the wire ---------------------------------------------------------------------

    def send(self, *assignments: str) -> bool:
        """One datagram of `KEY=value` lines. True when the kernel took it; never raises."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)  # the event loop must never wait on systemd
            self._sock.sendto("\n".join(assignments).encode("utf-8"), self.address)
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
            if error != self._last_error:  # once per distinct problem, not once per heartbeat
                log.warning(
                    "systemd_notify_failed", notify_socket=self.socket_name, error=error, sent=list(assignments)
                )
            self._last_error = error
            return False
        self._last_error = None
        return True

    # ----- what the daemon says -------------------------------------------------------------

    @property
    def stopping_requested(self) -> bool:
        return self._stopping_wanted

    def ready(self, status: str | None = None) -> bool:
        """READY=1 (with the status line); retried by `run()` if the send failed. Not after STOPPING=1."""
        if self._stopping_wanted:
            return False
        self._ready_wanted = True
        return self._send_ready(status)

    def _send_ready(self, status: str | None) -> bool:
        assignments = ["READY=1"]
        if status is not None:
            assignments.append(f"STATUS={_one_line(status)}")
        self._ready_sent = self.send(*assignments)
        if self._ready_sent and status is not None:
            self._remember_status(_one_line(status))
        return self._ready_sent

    def stopping(self, status: str | None = "stopping: devices to their safe state") -> bool:
        """STOPPING=1: systemd shows `deactivating` and the stop timeout starts."""
        self._stopping_wanted = True
        assignments = ["STOPPING=1"]
        if status is not None:
            assignments.append(f"STATUS={_one_line(status)}")
        self._stopping_sent = self.send(*assignments)
        if self._stopping_sent and status is not None:
            self._remember_status(_one_line(status))
        return self._stopping_sent

    def status(self, text: str) -> bool:
        line = _one_line(text)
        sent = self.send(f"STATUS={line}")
        if sent:
            self._remember_status(line)
        return sent

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        return self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def poke(self) -> None:
        """Something changed (a device's state): look at the status line now, not at the next poll."""
        self._poke.set()

    def _remember_status(self, line: str) -> None:
        self._last_status = line
        self._last_status_at = time.monotonic()

    # ----- the loop ------------------------------------------------------------------------

    async def run(self, status_line: Callable[[], str], stalled: Callable[[], list[str]] | None = None) -> None:
        """Feed the watchdog and keep STATUS current until cancelled. Returns at once when inert.

        `stalled` names the loops that made no progress lately: while it names any, the watchdog
        is not fed (logged once as `watchdog_withheld`), so systemd restarts a daemon whose event
        loop runs but whose work stopped."""
        if not self.enabled:
            return
        log.info(
            "systemd_notify",
            notify_socket=self.socket_name,
            watchdog_interval_s=self.watchdog_interval_s,
        )
        next_heartbeat = time.monotonic()
        next_status = time.monotonic()
        withheld: list[str] = []
        while True:
            now = time.monotonic()
            if now >= next_heartbeat:
                next_heartbeat = now + self.heartbeat_s
                if self.watchdog_interval_s is not None:
                    withheld = self._feed_watchdog(stalled, withheld)
                if not self._ready_wanted and not self._stopping_wanted:
                    # "still starting, and alive": 3 heartbeats, so one late heartbeat is no failure
                    self.extend_timeout(3 * self.heartbeat_s)
                if self._ready_wanted and not self._ready_sent:
                    self._send_ready(None)
                if self._stopping_wanted and not self._stopping_sent:
                    self.stopping(None)
            if now >= next_status or self._poke.is_set():
                self._poke.clear()
                next_status = now + self.status_poll_s
                self._update_status(status_line)
            wait_s = max(0.0, min(next_heartbeat, next_status) - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), wait_s)

    def _feed_watchdog(self, stalled: Callable[[], list[str]] | None, withheld: list[str]) -> list[str]:
        """WATCHDOG=1 unless a loop stalled; returns the stalled loops (logged when they change)."""
        try:
            now_stalled = stalled() if stalled is not None else []
        except Exception as exc:  # a check that fails cannot vouch for the lane
            now_stalled = [f"check failed: {exc!r}"]
        if not now_stalled:
            if withheld:
                log.info("watchdog_resumed")
            self.watchdog()
        elif now_stalled != withheld:
            log.error("watchdog_withheld", stalled=now_stalled,
                      hint="systemd restarts the daemon when WatchdogSec passes without WATCHDOG=1")
        return now_stalled

    def _update_status(self, status_line: Callable[[], str]) -> None:
        try:
            line = _one_line(status_line())
        except Exception as exc:  # the status must never stop the watchdog
            line = f"status unavailable: {exc!r}"
        stale = time.monotonic() - self._last_status_at >= self.status_refresh_s
        if line != self._last_status or stale:
            self.status(line)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def run_lane(lane: Lane, notifier: SystemdNotifier | None = None) -> None:
    """Run `lane` until SIGTERM/SIGINT with systemd kept informed: READY when online, STATUS,
    WATCHDOG from this loop, STOPPING=1 the moment a stop is asked for (before the safe stop)."""
    notifier = notifier or SystemdNotifier()
    loop = asyncio.get_running_loop()

    def stop() -> None:
        notifier.stopping()
        lane.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    for driver in lane.drivers.values():
        driver.add_health_listener(lambda _device, _health: notifier.poke())

    def ready() -> None:
        notifier.ready(lane.status_line())

    def stalled() -> list[str]:
        return lane.stalled_loops(2 * (notifier.watchdog_interval_s or 0.0))  # no older than WatchdogSec

    feeder = lane.spawn(notifier.run(lane.status_line, stalled), "systemd-notify", forever=False)
    try:
        await lane.run(ready=ready)
    finally:
        if not notifier.stopping_requested:  # the lane ended without a signal (an error): say so too
            notifier.stopping()
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
        notifier.status(f"crashed: {lane.crashed}" if lane.crashed is not None else "stopped")
        notifier.close()
