"""The gas analyzer's daily checks: leak check and zero passed today, and the HC residue.

GB 18285-2018 lets a two-speed idle test start only when the analyzer's leak
check and zero have passed that day, and the HC left in the sampling system is
below its limit. `DailyChecks` keeps the latest result of each check (and a
short history) in a JSON file in the lane's state directory, written
atomically, so a restart keeps them; "today" is the lane PC's local date. The
file is read again whenever it changed, so checks run with the CLI while the
daemon runs count at once.

The checks run either on the station's MQTT command `…/cmd/daily-check`
(`run_daily_checks`, events on `…/event` as steps `daily_check` and
`daily_check.<check>`, prompts `cap_probe` / `uncap_probe` for the leak check)
or from the lane PC with `laned daily-check --config FILE` (`add_arguments` /
`run`): through the daemon's command when a daemon runs the lane, otherwise on
the analyzer's port directly, with no broker (one process per lane and port).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from drivers.errors import DeviceError, DeviceRefused, DeviceUnavailable
from laned.private_files import open_private, private_dir
from laned.procedures.emissions_items import ReadingFeed, settings_from
from laned.procedures.two_speed_idle import hc_residue_check, stop_pump
from laned.settings.daily_checks import DailyCheckSettings
from protocols import gas_analyzer as ga
from protocols.messages import ANALYZER_CHECKS, DAILY_CHECKS, DYNO_CHECKS

if TYPE_CHECKING:
    from drivers.base import Driver
    from laned.config import LaneConfig
    from laned.judging.limits import TwoSpeedIdleLimits

log = structlog.get_logger("laned.daily_checks")

CHECK_NAMES = {"leak_check": "leak check", "zero": "zero", "hc_residue": "HC residue check",
               "dyno_coast_down": "dynamometer loaded coast-down", "dyno_parasitic": "dynamometer parasitic loss"}
#: what must have passed today before a two-speed idle test may start
REQUIRED_TODAY = ("leak_check", "zero")
#: what must have passed today before an ASM or lug-down test may start
DYNO_REQUIRED_TODAY = ("dyno_coast_down",)
HOW_TO_RUN = (
    "run `laned daily-check --config <lane config>` on the lane PC, or send the station command …/cmd/daily-check"
)
HISTORY_KEPT = 100
SCHEMA = "laned-daily-checks/1"

Announce = Callable[..., None]


class CheckLane(Protocol):
    """What the daily checks use of the lane that runs them (the daemon's `Lane` has it): its
    config (settings, limits folder), its drivers, and its event and status publishers."""

    @property
    def config(self) -> LaneConfig: ...
    @property
    def drivers(self) -> dict[str, Driver]: ...
    def publish_event_model(self, **fields: Any) -> None: ...
    def publish_status(self) -> None: ...


def _local_now() -> datetime:
    return datetime.now().astimezone()


class DailyChecks:
    """The latest result of each daily check, in a JSON file that survives restarts."""

    def __init__(self, path: str | Path, *, clock: Callable[[], datetime] = _local_now) -> None:
        self.path = Path(path)
        self.clock = clock
        self.running = False  # set while run_daily_checks runs: a start must wait
        self._mtime_ns: int | None = None
        self._data: dict[str, Any] = {"schema": SCHEMA, "checks": {}, "history": []}
        self._reload()

    # ----- the file --------------------------------------------------------------------------

    def _reload(self) -> None:
        try:
            mtime_ns = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._mtime_ns = None
            return
        if mtime_ns == self._mtime_ns:
            return
        self._mtime_ns = mtime_ns
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("checks"), dict):
                raise ValueError("expected an object with a 'checks' object")
        except (OSError, ValueError) as exc:
            log.error("daily_checks_unreadable", path=str(self.path), error=str(exc),
                      hint="the checks count as not run; run them again")
            return
        self._data = {"schema": SCHEMA, "checks": data["checks"], "history": list(data.get("history", []))}

    def _save(self) -> None:
        private_dir(self.path.parent)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with os.fdopen(open_private(tmp), "w", encoding="utf-8") as fh:
            json.dump(self._data, fh, ensure_ascii=False, indent=1, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.path)
        with contextlib.suppress(OSError):
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._mtime_ns = self.path.stat().st_mtime_ns

    # ----- recording and asking ---------------------------------------------------------------

    def record(self, check: str, passed: bool, details: dict[str, Any] | None = None) -> dict[str, Any]:
        """Keep the result of one check run now (the latest result of a check is the one that counts)."""
        if check not in CHECK_NAMES:
            raise ValueError(f"unknown daily check {check!r} (known: {', '.join(CHECK_NAMES)})")
        self._reload()
        entry = {"check": check, "passed": bool(passed), "at": self.clock().isoformat(), "details": details or {}}
        self._data["checks"][check] = entry
        self._data["history"] = [*self._data["history"], entry][-HISTORY_KEPT:]
        self._save()
        (log.info if passed else log.warning)("daily_check_recorded", check=check, passed=bool(passed),
                                              path=str(self.path))
        return entry

    def last(self, check: str) -> dict[str, Any] | None:
        self._reload()
        entry = self._data["checks"].get(check)
        return dict(entry) if isinstance(entry, dict) else None

    def _at(self, entry: dict[str, Any]) -> datetime | None:
        try:
            at = datetime.fromisoformat(str(entry.get("at")))
        except ValueError:
            return None
        return at if at.tzinfo is not None else None

    def passed_today(self, check: str) -> bool:
        """Passed, and on the lane PC's local date of today."""
        entry = self.last(check)
        if entry is None or not entry.get("passed"):
            return False
        at, now = self._at(entry), self.clock()
        return at is not None and at.astimezone(now.tzinfo).date() == now.date()

    def passed_age_s(self, check: str) -> float | None:
        """Seconds since the check last passed, if its latest result is a pass."""
        entry = self.last(check)
        if entry is None or not entry.get("passed"):
            return None
        at = self._at(entry)
        return None if at is None else max(0.0, (self.clock() - at).total_seconds())

    def missing_reasons(self) -> list[str]:
        """Why a two-speed idle test may not start now: each check missing, and how to run it."""
        reasons = []
        if self.running:
            reasons.append("the gas analyzer's daily checks are running now: start again when they have finished")
        for check in REQUIRED_TODAY:
            if self.passed_today(check):
                continue
            entry = self.last(check)
            at = self._at(entry) if entry else None
            shown = at.astimezone(self.clock().tzinfo).strftime("%Y-%m-%d %H:%M") if at else "?"
            if entry is None:
                state = "never run on this lane"
            elif not entry.get("passed"):
                state = f"failed at {shown}"
            else:
                state = f"last passed {shown}"
            reasons.append(f"daily check missing: the gas analyzer's {CHECK_NAMES[check]} has not passed today "
                           f"({state}); {HOW_TO_RUN}")
        return reasons

    def dynamometer_missing_reasons(self) -> list[str]:
        """Why an ASM or lug-down test may not start now: the dynamometer's loaded coast-down has
        not passed today (or a daily check runs)."""
        reasons = []
        if self.running:
            reasons.append("the daily checks are running now: start again when they have finished")
        for check in DYNO_REQUIRED_TODAY:
            if self.passed_today(check):
                continue
            entry = self.last(check)
            if entry is None:
                state = "never run on this lane"
            else:
                why = (entry.get("details") or {}).get("reason") or (entry.get("details") or {}).get("error") or ""
                state = ("last passed " if entry.get("passed") else "failed ") + str(entry.get("at")) + (
                    f": {why}" if why and not entry.get("passed") else "")
            reasons.append(f"daily check missing: the {CHECK_NAMES[check]} has not passed today ({state}); "
                           "run `laned daily-check --config <lane config> --checks dyno_coast_down` or send "
                           "…/cmd/daily-check with checks [\"dyno_coast_down\"]")
        return reasons

    def status(self) -> dict[str, Any]:
        """The daily checks as `…/status` shows them (protocols.status.DailyChecksStatus)."""
        due = [check for check in REQUIRED_TODAY if not self.passed_today(check)]
        dyno_due = [check for check in DYNO_REQUIRED_TODAY if not self.passed_today(check)]
        return {"two_speed_idle_ready": not due and not self.running, "running": self.running, "due_today": due,
                **self.summary(), "dynamometer_ready": not dyno_due and not self.running,
                **{f"last_{check}": self._last_shown(check) for check in DYNO_CHECKS},
                "dyno_coast_down": self._coast_down_detail()}

    def _last_shown(self, check: str) -> dict[str, Any] | None:
        entry = self.last(check)
        return None if entry is None else {"passed": entry.get("passed"), "at": entry.get("at")}

    def _coast_down_detail(self) -> dict[str, Any] | None:
        entry = self.last("dyno_coast_down")
        if entry is None:
            return None
        d = entry.get("details") or {}
        return {"acdt_s": d.get("acdt_s"), "ccdt_s": d.get("ccdt_s"), "deviation_pct": d.get("deviation_pct"),
                "limit_pct": d.get("limit_pct"), "reason": d.get("reason") or d.get("error") or ""}

    def summary(self) -> dict[str, Any]:
        """The last leak check, zero and HC residue (passed, when) for a result's device block."""
        out: dict[str, Any] = {}
        for check in ANALYZER_CHECKS:
            entry = self.last(check)
            out[f"last_{check}"] = None if entry is None else {"passed": entry.get("passed"), "at": entry.get("at")}
        return out


# ----- running the checks -----------------------------------------------------------------------


async def _wait_ready(analyzer: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while (state := (await analyzer.status()).state) != ga.AnalyzerState.READY:
        if state == ga.AnalyzerState.FAULT or time.monotonic() > deadline:
            raise DeviceRefused(analyzer.name, f"not ready for its daily checks ({state.name.lower()})",
                                port=analyzer.port)
        await asyncio.sleep(0.5)


async def perform_daily_checks(
    analyzer: Any,
    daily: DailyChecks,
    checks: Iterable[str],
    *,
    limits: TwoSpeedIdleLimits,
    settings: DailyCheckSettings,
    time_scale: float,
    announce: Announce,
    wait_capped: Callable[[], Awaitable[None]],
) -> dict[str, dict[str, Any]]:
    """Leak check, zero, HC residue (in that order, those asked for); every result recorded.

    `announce(type, step, text, action=None, **data)` tells people; `wait_capped()` returns
    once the probe is capped. A check the analyzer could not finish is recorded as failed
    with the error; after one, the rest are not run."""
    wanted = [c for c in ANALYZER_CHECKS if c in set(checks)]
    results: dict[str, dict[str, Any]] = {}
    if not wanted:
        return results
    daily.running = True
    held = contextlib.ExitStack()  # the analyzer is ours while they run: a reconnect leaves its pump as set
    held.enter_context(analyzer.claim())
    try:
        async with ReadingFeed(analyzer, silence_s=settings.analyzer_silence_s) as feed:

            async def pause(real_s: float) -> None:
                deadline = time.monotonic() + real_s
                while True:
                    feed.check_alive()
                    if (remaining := deadline - time.monotonic()) <= 0:
                        return
                    await asyncio.sleep(min(remaining, 0.05))

            async def leak_check() -> tuple[bool, dict[str, Any]]:
                announce("prompt", "daily_check.leak_check", "cap the sampling probe for the leak check (堵住探头)",
                         action="cap_probe")
                await wait_capped()
                passed = await analyzer.leak_check()
                announce("prompt", "daily_check.leak_check", "take the cap off the sampling probe",
                         action="uncap_probe")
                return passed, {}

            async def zero() -> tuple[bool, dict[str, Any]]:
                return await analyzer.zero(), {}

            async def hc_residue() -> tuple[bool, dict[str, Any]]:
                result = await hc_residue_check(analyzer, feed, limits, settings.hc_residue, time_scale=time_scale,
                                                pause=pause)
                await analyzer.pump("stop")
                return result.passed, result.as_dict()

            run = {"leak_check": leak_check, "zero": zero, "hc_residue": hc_residue}
            try:
                await _wait_ready(analyzer, settings.ready_timeout_s)
                for check in wanted:
                    step = f"daily_check.{check}"
                    announce("step_started", step, f"gas analyzer {CHECK_NAMES[check]}")
                    try:
                        passed, details = await run[check]()
                    except DeviceError as exc:
                        results[check] = daily.record(check, False, {"device": analyzer.name, "error": str(exc)})
                        announce("warning", step, f"{CHECK_NAMES[check]} not completed: {exc}")
                        break
                    results[check] = daily.record(check, passed, {"device": analyzer.name, **details})
                    announce("step_finished", step, f"{CHECK_NAMES[check]} {'passed' if passed else 'FAILED'}",
                             passed=passed, details=details)
            except DeviceError as exc:  # not ready: nothing was run, nothing recorded
                announce("warning", "daily_check", f"daily checks not run: {exc}")
            finally:
                await stop_pump(analyzer)
    finally:
        daily.running = False
        held.close()
    for check in wanted:
        results.setdefault(check, {"check": check, "passed": False, "at": None, "details": {"not_run": True}})
    return results


def _summary_text(results: dict[str, dict[str, Any]]) -> str:
    parts = [f"{CHECK_NAMES[c]} {'passed' if r.get('passed') else 'FAILED'}" for c, r in results.items()]
    return "daily checks: " + (", ".join(parts) or "none run")


async def run_daily_checks(
    lane: CheckLane, daily_checks: DailyChecks, checks: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """The `…/cmd/daily-check` command: the checks asked for on the lane's gas analyzer and/or
    dynamometer (laned/daily_checks_dyno.py), with events."""

    def announce(kind: str, step: str, text: str, *, action: str | None = None, **data: Any) -> None:
        lane.publish_event_model(type=kind, step=step, text=text, action=action, data=data)

    asked = list(checks)
    settings = settings_from(lane.config.inspection, "daily_checks", DailyCheckSettings)
    time_scale = float(lane.config.inspection.time_scale)
    results: dict[str, dict[str, Any]] = {}
    analyzer_asked = [c for c in asked if c in ANALYZER_CHECKS]
    dyno_asked = [c for c in asked if c in DYNO_CHECKS]
    announce("step_started", "daily_check", "daily checks: " + ", ".join(CHECK_NAMES[c] for c in asked))
    try:
        if analyzer_asked:
            analyzer = _usable(lane, "gas_analyzer", "gas analyzer", announce)
            if analyzer is not None:
                from laned.judging.limits import load_limits

                limits = load_limits(lane.config.lane.limits_dir).emissions.two_speed_idle

                async def wait_capped() -> None:
                    await asyncio.sleep(settings.cap_wait_s * time_scale)

                results.update(await perform_daily_checks(
                    analyzer, daily_checks, analyzer_asked, limits=limits, settings=settings,
                    time_scale=time_scale, announce=announce, wait_capped=wait_capped))
        if dyno_asked:
            dyno = _usable(lane, "dynamometer", "dynamometer", announce)
            if dyno is not None:
                from laned.daily_checks_dyno import perform_dyno_checks

                results.update(await perform_dyno_checks(dyno, daily_checks, dyno_asked,  # type: ignore[arg-type]
                                                         settings=settings.dynamometer, announce=announce))
    except Exception as exc:  # never kill the daemon; say what happened
        log.exception("daily_checks_crashed")
        announce("warning", "daily_check", f"daily checks stopped: {exc!r}")
    finally:
        announce("step_finished", "daily_check", _summary_text(results),
                 results={c: {"passed": r.get("passed"), "at": r.get("at")} for c, r in results.items()},
                 missing=daily_checks.missing_reasons() + (
                     daily_checks.dynamometer_missing_reasons() if dyno_asked else []))
        lane.publish_status()  # …/status shows whether two-speed idle / ASM / lug-down tests may start now
    return results


def _usable(lane: CheckLane, kind: str, noun: str, announce: Announce) -> Driver | None:
    """The lane's first device of `kind` if it is connected; otherwise say why and None."""
    devices = [d for d in lane.drivers.values() if d.kind == kind]
    if not devices:
        announce("warning", "daily_check", f"this lane has no {noun} configured")
        return None
    if not devices[0].is_connected:
        d = devices[0]
        announce("warning", "daily_check", f"{d.name} is {d.health.state} ({d.health.last_error or 'no reply'})")
        return None
    return devices[0]


# ----- `laned daily-check --config FILE` --------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", required=True, type=Path, help="the lane's TOML config")
    parser.add_argument("--device", default=None, help="the gas analyzer's name in the config (default: the first)")
    parser.add_argument("--dyno-device", default=None,
                        help="the dynamometer's name in the config (default: the first)")
    parser.add_argument("--checks", nargs="+", choices=DAILY_CHECKS, default=list(ANALYZER_CHECKS),
                        help="which checks (default: the gas analyzer's, in the order leak check, zero, HC residue; "
                        "the dynamometer's: dyno_coast_down, dyno_parasitic — the parasitic loss runs first)")
    parser.add_argument("--dyno", action="store_true",
                        help="the dynamometer's checks: same as --checks dyno_parasitic dyno_coast_down")
    parser.add_argument("--capped", action="store_true",
                        help="the probe is capped already: start the leak check without asking")
    parser.add_argument("--simulation", action="store_true",
                        help="allow a time scale below 1 (simulated analyzers: tests, demos, training)")
    parser.epilog = ("exit codes: 0 every check passed, 1 a check failed, 2 the config is unusable (a time scale "
                     "below 1 without --simulation included), 3 the checks could not run (the analyzer or "
                     "dynamometer does not answer, another daily-check has the lane, the running daemon refused or "
                     "did not answer), 130 stopped with Ctrl-C")


def _asked(args: argparse.Namespace) -> list[str]:
    if getattr(args, "dyno", False):
        return list(DYNO_CHECKS)
    return list(args.checks)


async def run(args: argparse.Namespace) -> int:
    """Run the daily checks on the analyzer and/or dynamometer of a lane config: through the daemon
    when one runs the lane (over MQTT, laned/daily_check_remote.py), otherwise on the ports
    themselves, without a broker, holding the lane's lock (laned/lane_lock.py) so that no daemon
    starts meanwhile.

    Exit status: 0 every check passed, 1 a check failed, 2 the config is unusable (a time scale
    below 1 without `--simulation` included), 3 the checks could not run: a device does not
    answer, another `laned daily-check` has the lane, or the running daemon refused them or did
    not answer."""
    from laned.config import load_config, require_standard_timings
    from laned.errors import ConfigError, LaneBusy
    from laned.judging.limits import load_limits
    from laned.lane_lock import LaneLock

    checks = _asked(args)
    try:
        config = load_config(args.config)
        require_standard_timings(config, simulation=bool(getattr(args, "simulation", False)), source=str(args.config))
        limits = load_limits(config.lane.limits_dir).emissions.two_speed_idle
    except ConfigError as exc:
        log.error("daily_check_config_unusable", config=str(args.config), problems=exc.problems)
        return 2
    devices: dict[str, tuple[str, Any]] = {}
    for kind, wanted, chosen in (("gas_analyzer", ANALYZER_CHECKS, args.device),
                                 ("dynamometer", DYNO_CHECKS, getattr(args, "dyno_device", None))):
        if not any(c in wanted for c in checks):
            continue
        found = {n: d for n, d in config.devices.items() if d.kind == kind and d.enabled}
        name = chosen or next(iter(found), None)
        if name is None or name not in found:
            log.error(f"daily_check_no_{kind}", config=str(args.config), device=chosen, found=sorted(found))
            return 2
        devices[kind] = (name, found[name])
    lock = LaneLock.for_config(config, role="daily-check")
    try:
        lock.acquire()
    except LaneBusy as exc:
        if exc.owner is not None and exc.owner.role == "run":  # the daemon has the ports: ask it
            from laned.daily_check_remote import run_through_daemon

            return await run_through_daemon(config, exc.owner, checks)
        print(f"laned: {exc}", file=sys.stderr, flush=True)
        return 3
    except ConfigError as exc:
        log.error("daily_check_config_unusable", config=str(args.config), problems=exc.problems)
        return 2
    try:
        return await _run_on_the_ports(args, config, checks, devices, limits)
    finally:
        lock.release()


async def _run_on_the_ports(args: argparse.Namespace, config: Any, checks: list[str],
                            devices: dict[str, tuple[str, Any]], limits: TwoSpeedIdleLimits) -> int:
    """The checks on the devices' own ports, this process holding the lane's lock."""
    from drivers.port_lock import in_use_detail, lock_holder
    from laned.daily_checks_dyno import perform_dyno_checks
    from laned.devices import build_driver

    settings = settings_from(config.inspection, "daily_checks", DailyCheckSettings)
    drivers = {kind: build_driver(name, device_config) for kind, (name, device_config) in devices.items()}
    daily = DailyChecks(config.lane.state_dir / "daily-checks.json")

    def announce(kind: str, step: str, text: str, *, action: str | None = None, **data: Any) -> None:
        (log.warning if kind in ("prompt", "warning") else log.info)(
            "daily_check", event_type=kind, step=step, text=text, action=action, **data)

    async def wait_capped() -> None:
        if args.capped:
            return
        if sys.stdin is not None and sys.stdin.isatty():
            log.warning("daily_check_waiting", text="press Enter once the probe is capped")
            await asyncio.to_thread(sys.stdin.readline)
        else:
            await asyncio.sleep(settings.cap_wait_s * config.inspection.time_scale)

    for kind, driver in drivers.items():
        if lock_holder(driver.port) is not None:  # held by a process that is not a daemon of this lane: say so now
            log.error(f"daily_check_{kind}_unavailable", device=driver.name, port=driver.port,
                      error=str(DeviceUnavailable(driver.name, in_use_detail(driver.port), port=driver.port)))
            return 3
    supervisors = [asyncio.create_task(d.run(), name=f"driver-{d.name}") for d in drivers.values()]
    results: dict[str, dict[str, Any]] = {}
    try:
        for kind, driver in drivers.items():
            try:
                await driver.wait_connected(settings.connect_timeout_s)
            except DeviceError as exc:
                log.error(f"daily_check_{kind}_unavailable", device=driver.name, port=driver.port, error=str(exc))
                return 3
        if "gas_analyzer" in drivers:
            results.update(await perform_daily_checks(
                drivers["gas_analyzer"], daily, checks, limits=limits, settings=settings,
                time_scale=config.inspection.time_scale, announce=announce, wait_capped=wait_capped))
        if "dynamometer" in drivers:
            results.update(await perform_dyno_checks(drivers["dynamometer"], daily, checks,  # type: ignore[arg-type]
                                                     settings=settings.dynamometer, announce=announce))
    finally:
        for driver in drivers.values():
            await driver.stop()
        for supervisor in supervisors:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await supervisor
    passed = all(r.get("passed") for r in results.values())
    missing = daily.missing_reasons() if "gas_analyzer" in drivers else []
    missing += daily.dynamometer_missing_reasons() if "dynamometer" in drivers else []
    (log.info if passed else log.error)("daily_check_done", text=_summary_text(results), path=str(daily.path),
                                        missing=missing)
    # the outcome, whatever the log level: the technician ran this to learn it
    print(f"{'PASSED' if passed else 'FAILED'} — {_summary_text(results)}", flush=True)
    return 0 if passed else 1
