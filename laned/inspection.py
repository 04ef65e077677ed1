"""Inspections from the station: `start` and `abort`, one at a time, run to two results.

The runner answers every command on `…/reply/{request_id}` (accepted, or
refused with every reason), runs the items' procedures in order while the
PDA's capture arrives in parallel, keeps the inspection record on disk after
every step (so a crash or a power cut loses no measurement: on restart the
inspection resumes waiting for what it still needs), and when both the
measurements and the capture are in, publishes the safety and the emissions
result through the durable outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from pydantic import BaseModel, ValidationError

from laned.daily_checks import CheckLane
from laned.errors import ConfigError
from laned.mqtt import dumps
from laned.private_files import private_dir, write_private
from laned.procedures import InspectionAborted, InspectionContext, ItemOutcome, ProcedureError, utc_now
from laned.record import InspectionRecord
from laned.requests import FirstReply, RequestLog
from protocols.messages import (
    MAX_NESTING,
    REQUEST_ID_MAX,
    REQUEST_ID_PATTERN,
    AbortCommand,
    DailyCheckCommand,
    Event,
    Reply,
    StartCommand,
    dump,
    nesting_depth,
)
from protocols.pda import FieldError

if TYPE_CHECKING:
    from laned.mqtt import MessageHandler, MqttLink, Topics

#: every JPEG begins with SOI (FF D8) and the next marker's FF
JPEG_START = b"\xff\xd8\xff"
#: how often a running brake test checks that the broker is still there
BROKER_WATCH_S = 0.1

log = structlog.get_logger("laned.inspection")

LOADED_METHODS = ("asm", "lug_down")
COMMANDS: dict[str, type[BaseModel]] = {"start": StartCommand, "abort": AbortCommand, "daily-check": DailyCheckCommand}
_REQUEST_ID_RE = re.compile(REQUEST_ID_PATTERN)
#: a refusal lists at most this many reasons, each at most REASON_CHARS long: a reply stays small
#: whatever the command held (a field name is part of a reason, and the station chose it)
MAX_REASONS = 20
REASON_CHARS = 300
_PATH_PART_CHARS = 40


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_validation(exc: ValidationError) -> list[str]:
    """One reason per problem, each naming its field by its dotted path ("vehicle.vin: ...")."""
    reasons: list[str] = []
    for err in exc.errors():
        path = ".".join(_shorten(str(p), _PATH_PART_CHARS) for p in err["loc"]) or "(message)"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "missing":
            message = "required field is missing"
        elif err["type"] == "value_error" and not err["loc"]:  # the model's own checks name their fields
            reasons.extend(_shorten(problem, REASON_CHARS) for problem in message.split("; "))
            continue
        reasons.append(_shorten(f"{path}: {message}", REASON_CHARS))
    if len(reasons) > MAX_REASONS:
        reasons[MAX_REASONS - 1 :] = [f"... and {len(reasons) - MAX_REASONS + 1} more problems"]
    return reasons


def parse_command_document(payload: bytes) -> tuple[Any, str | None]:
    """The payload as JSON and what makes it unusable as a command (None: an object within the
    nesting limit). Never raises: not UTF-8, not JSON, nested past Python's recursion limit
    (a RecursionError, not a ValueError) each come back as a problem."""
    try:
        document = json.loads(payload)
    except RecursionError:
        return None, f"malformed JSON: nested deeper than {MAX_NESTING} levels"
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        return None, f"malformed JSON: {_shorten(str(exc), REASON_CHARS)}"
    if not isinstance(document, dict):
        kind = "null" if document is None else type(document).__name__
        return document, f"expected a JSON object, found {kind}"
    depth = nesting_depth(document)
    if depth > MAX_NESTING:
        return document, f"(message): nested {depth} levels deep, at most {MAX_NESTING}"
    return document, None


class RunnerLane(CheckLane, Protocol):
    """What the runner uses of the lane it runs on (the daemon's `Lane`, which composes the parts):
    besides the daily checks' config, drivers and publishers, its topics and MQTT link (replies,
    results), command routes, run mode, the `up` event and the inspection shown in its status."""

    topics: Topics
    mqtt: MqttLink
    inspection: dict[str, Any] | None

    @property
    def simulation(self) -> bool: ...
    @property
    def up(self) -> asyncio.Event: ...
    def route(self, topic_prefix: str, handler: MessageHandler) -> None: ...


class InspectionRunner:
    """One inspection at a time on this lane."""

    def __init__(self, lane: RunnerLane) -> None:
        self.lane = lane
        self.settings = lane.config.inspection
        self.records_dir = lane.config.lane.state_dir / "inspections"
        private_dir(self.records_dir)
        self.current: InspectionRecord | None = None
        self._task: asyncio.Task[None] | None = None
        self._daily_task: asyncio.Task[Any] | None = None
        self._abort = asyncio.Event()
        self._capture_done = asyncio.Event()
        self.assembler: Any = None
        self.daily_checks: Any = None
        self.requests = RequestLog(
            lane.config.lane.state_dir / "requests.sqlite3", keep_days=lane.config.lane.request_ids_keep_days
        )
        self._command_lock = asyncio.Lock()
        self._build_helpers()
        lane.route(lane.topics.root + "/cmd/", self.on_command)
        lane.route(lane.topics.pda + "/", self.on_pda)

    def _build_helpers(self) -> None:
        from laned.capture import CaptureAssembler, CaptureRequirements, PhotoStore
        from laned.capture_journal import CaptureJournal

        state_dir = self.lane.config.lane.state_dir
        self.photo_store = PhotoStore(state_dir / "photos")
        self.assembler = CaptureAssembler(CaptureRequirements.load(), self.photo_store,
                                          journal=CaptureJournal(state_dir / "captures"))
        try:
            from laned.daily_checks import DailyChecks

            self.daily_checks = DailyChecks(self.lane.config.lane.state_dir / "daily-checks.json")
        except ImportError:  # pragma: no cover - during development of the emissions procedures
            self.daily_checks = None

    # ----- commands ------------------------------------------------------------------

    async def on_command(self, topic: str, payload: bytes) -> None:
        """Answer one command: a reply on `…/reply/{request_id}`, or a warning event when it has no
        usable request_id. One command at a time: a repeat that arrives while its first is being
        handled waits for it, then finds the first reply in the request log."""
        async with self._command_lock:
            await self._on_command(topic, payload)

    async def _on_command(self, topic: str, payload: bytes) -> None:
        name = _shorten(topic.rsplit("/", 1)[-1], 64)
        document, problem = parse_command_document(payload)
        request_id = document.get("request_id") if isinstance(document, dict) else None
        if isinstance(request_id, str) and _REQUEST_ID_RE.match(request_id) and len(request_id) <= REQUEST_ID_MAX:
            first = self.requests.get(request_id)
            if first is not None:
                self._repeat(first, name, payload)
                return
        if problem is not None:
            if isinstance(document, dict):
                self._reply(request_id, name, [problem], payload=payload)
            else:
                self._refuse_unparsable(name, problem)
            return
        if name not in COMMANDS:
            self._reply(request_id, name, [f"unknown command {name!r} (known: {', '.join(COMMANDS)})"],
                        payload=payload)
            return
        try:  # strictly, from the JSON itself: "no" is not a boolean, 7 is not a plate
            command: Any = COMMANDS[name].model_validate_json(payload, strict=True)
        except ValidationError as exc:
            self._reply(request_id, name, describe_validation(exc), payload=payload)
            return
        if isinstance(command, StartCommand):
            await self._start(command, payload)
        elif isinstance(command, AbortCommand):
            self._abort_command(command, payload)
        elif isinstance(command, DailyCheckCommand):
            await self._daily_check(command, payload)

    def _repeat(self, first: FirstReply, name: str, payload: bytes) -> None:
        """A request_id seen before: its first reply again, byte for byte, and nothing else."""
        same = hashlib.sha256(payload).hexdigest() == first.payload_sha256
        (log.info if same else log.warning)(
            "command_repeated", request_id=first.request_id, command=name, first_command=first.command,
            same_payload=same,
        )
        self.lane.mqtt.enqueue_payload(first.topic, first.reply, kind="reply")

    def _refuse_unparsable(self, name: str, reason: str) -> None:
        log.warning("command_refused", command=name, reasons=[reason])
        self.lane.publish_event_model(type="warning", text=f"command {name} refused: {reason}")

    def _reply(
        self,
        request_id: Any,
        command: str,
        reasons: list[str],
        inspection_no: str | None = None,
        *,
        payload: bytes = b"",
    ) -> None:
        """The reply to a command. One with a well-formed request_id is logged first (request log),
        so that a repeat of the command gets these very bytes again; `payload` is the command's."""
        if request_id is None or not isinstance(request_id, str) or not request_id.strip():
            log.warning("command_refused_without_request_id", command=command, reasons=reasons)
            self.lane.publish_event_model(
                type="warning", text=f"command {command} without a request_id: " + "; ".join(reasons)
            )
            return
        well_formed = len(request_id) <= REQUEST_ID_MAX and _REQUEST_ID_RE.match(request_id) is not None
        safe_id = "".join(c if c.isalnum() or c in "_.:-" else "_" for c in request_id[:REQUEST_ID_MAX])
        reply = Reply(
            request_id=request_id if well_formed else safe_id,
            command=command,
            accepted=not reasons,
            reasons=reasons,
            inspection_no=inspection_no,
            lane_time=utc_now(),
        )
        topic, body = self.lane.topics.reply(safe_id), dumps(dump(reply))
        if well_formed:
            self.requests.put(request_id, command, topic, body, hashlib.sha256(payload).hexdigest())
        self.lane.mqtt.enqueue_payload(topic, body, kind="reply")
        (log.info if not reasons else log.warning)(
            "command_reply", command=command, request_id=safe_id, accepted=not reasons, reasons=reasons
        )

    def refusal_reasons(self, command: StartCommand) -> list[str]:
        reasons = []
        if self.current is not None:
            reasons.append(f"lane busy with inspection {self.current.inspection_no}")
        needs = self.devices_needed(command)
        for kind in needs:
            drivers = [d for d in self.lane.drivers.values() if d.kind == kind]
            if not drivers:
                reasons.append(f"this lane has no {kind.replace('_', ' ')} configured")
            for driver in drivers:
                if not driver.is_connected:
                    reasons.append(
                        f"{driver.name} is {driver.health.state}"
                        + (f" ({driver.health.last_error})" if driver.health.last_error else "")
                    )
        method = command.items.emissions
        if method in ("two_speed_idle", "asm", "lug_down") and self.daily_checks is not None:
            reasons.extend(self.daily_checks.missing_reasons())
        if method in LOADED_METHODS:
            reasons.extend(self._loaded_refusals(method))
        try:
            self.limits_for(command)
        except ConfigError as exc:  # one reason per problem, each with its key
            where = "limit_overrides" if exc.source == "limit overrides" else f"the lane's limits ({exc.source})"
            reasons.extend(f"{where}: {problem}" for problem in exc.problems)
        except ValueError as exc:
            reasons.append(f"limit_overrides: {exc}")
        return reasons

    def _loaded_refusals(self, method: str) -> list[str]:
        """What a loaded method (ASM, lug-down) needs beyond its devices being connected: today's
        loaded coast-down of the dynamometer, and for lug-down an analyzer that reads NOx."""
        reasons = []
        if self.daily_checks is not None and self.daily_checks.status().get("dynamometer_ready") is not True:
            reasons.append("the dynamometer's loaded coast-down has not passed today (daily-check)")
        if method == "lug_down":
            for driver in self.lane.drivers.values():
                if driver.kind == "gas_analyzer" and driver.is_connected and not getattr(driver, "is_ga5n", False):
                    model = driver.health.identity.get("model") or "GA-5"
                    reasons.append(f"{driver.name}: lug-down measures NOx at 80 %: a {model} without NOx "
                                   "cannot (a GA-5N is needed)")
        return reasons

    @staticmethod
    def devices_needed(command: StartCommand) -> list[str]:
        kinds = []
        if command.items.brake_axles or command.items.parking_brake:
            kinds.append("brake_tester")
        if command.items.emissions == "two_speed_idle":
            kinds.append("gas_analyzer")
        if command.items.emissions == "free_acceleration":
            kinds.append("opacimeter")
        if command.items.emissions == "asm":
            kinds += ["dynamometer", "gas_analyzer"]
        if command.items.emissions == "lug_down":
            kinds += ["dynamometer", "opacimeter", "gas_analyzer"]
        return kinds

    def limits_for(self, command: StartCommand) -> Any:
        from laned.judging.limits import apply_overrides, load_limits

        limits = load_limits(self.lane.config.lane.limits_dir)
        return apply_overrides(limits, command.limit_overrides) if command.limit_overrides else limits

    async def _start(self, command: StartCommand, payload: bytes) -> None:
        reasons = self.refusal_reasons(command)
        if reasons:
            self._reply(command.request_id, "start", reasons, command.inspection_no, payload=payload)
            return
        record = InspectionRecord.new(command)
        self._mark_run(record)
        self.current = record
        self._abort.clear()
        self._capture_done.clear()
        self._save(record)
        self._reply(command.request_id, "start", [], command.inspection_no, payload=payload)
        self._begin_capture(record)
        self._task = asyncio.create_task(self._run(record), name=f"inspection-{record.inspection_no}")

    def _abort_command(self, command: AbortCommand, payload: bytes) -> None:
        current = self.current
        if current is None or current.inspection_no != command.inspection_no:
            running = f"inspection {current.inspection_no} is running" if current else "no inspection is running"
            self._reply(command.request_id, "abort", [f"{running}, not {command.inspection_no}"], command.inspection_no,
                        payload=payload)
            return
        current.abort_reason = command.reason or "aborted by the station"
        self._abort.set()
        self._reply(command.request_id, "abort", [], command.inspection_no, payload=payload)

    async def _daily_check(self, command: DailyCheckCommand, payload: bytes) -> None:
        if self.daily_checks is None:
            self._reply(command.request_id, "daily-check", ["daily checks are not available on this lane"],
                        payload=payload)
            return
        if self.current is not None:
            self._reply(command.request_id, "daily-check", [f"lane busy with inspection {self.current.inspection_no}"],
                        payload=payload)
            return
        if self._daily_task is not None and not self._daily_task.done():  # one run at a time on the analyzer
            self._reply(command.request_id, "daily-check", ["the gas analyzer's daily checks are running now: "
                                                            "start again when they have finished"], payload=payload)
            return
        from laned.daily_checks import run_daily_checks

        self._reply(command.request_id, "daily-check", [], payload=payload)
        self._daily_task = asyncio.create_task(run_daily_checks(self.lane, self.daily_checks, command.checks))

    # ----- the PDA -----------------------------------------------------------------------

    def _begin_capture(self, record: InspectionRecord) -> None:
        from laned.capture import CaptureInspection

        if not record.command.items.exterior:
            self._capture_done.set()
            return
        vehicle = record.command.vehicle
        self.assembler.begin(
            CaptureInspection(
                inspection_no=record.inspection_no,
                plate=vehicle.plate,
                plate_type=vehicle.plate_type,
                vin=vehicle.vin,
                vehicle_class=vehicle.vehicle_class,
                fuel=vehicle.fuel,
                has_obd=vehicle.has_obd,
            )
        )
        if record.capture is not None:
            self._capture_done.set()

    async def on_pda(self, topic: str, payload: bytes) -> None:
        base = self.lane.topics.pda + "/"
        rest = topic[len(base) :].split("/")
        received_at = utc_now()
        if rest == ["capture"]:
            acks = self.assembler.on_document(payload, received_at)
            if not acks:  # no capture_id to answer on: the technician is told instead
                self.lane.publish_event_model(
                    type="warning", text="PDA capture refused: no usable capture_id, so no ack can be sent",
                    data={"topic": topic, "bytes": len(payload)},
                )
        elif len(rest) == 3 and rest[0] == "photo" and not payload.startswith(JPEG_START):
            acks = self._refuse_photo(rest[1], rest[2], payload)
        elif len(rest) == 3 and rest[0] == "photo":
            acks = self.assembler.on_photo(rest[1], rest[2], payload, received_at)
        elif rest and rest[0] == "ack":
            return  # our own acks, if the broker echoes them to a wildcard subscription
        else:
            log.warning("pda_unknown_topic", topic=topic)
            return
        self._publish_acks(acks)

    def _publish_acks(self, acks: list[Any]) -> None:
        """The acks in the manual's shapes (an accepted one with `errors` too when a photo was
        refused); then, if the capture is now complete, the inspection has it."""
        for ack in acks:
            self.lane.mqtt.enqueue(f"{self.lane.topics.pda}/ack/{ack.capture_id}",
                                   json.loads(ack.to_json_bytes()), kind="ack")
        completed = self.assembler.completed
        record = self.current
        if completed is not None and record is not None and record.capture is None:
            record.capture = completed
            self._save(record)
            self.lane.publish_event_model(
                type="capture",
                inspection_no=record.inspection_no,
                text=f"exterior capture {completed.capture_id} complete",
                data={"capture_id": completed.capture_id, "pda_clock_offset_s": completed.pda_clock_offset_s},
            )
            self._capture_done.set()

    def _refuse_photo(self, capture_id: str, photo: str, payload: bytes) -> list[Any]:
        """A photo that is not a JPEG is not taken, whatever its hash: the technician is told, and
        the PDA gets its capture's current ack (the photo still missing) if the capture is known."""
        log.warning("pda_photo_rejected", capture_id=capture_id[:64], photo=photo[:64], reason="not a JPEG",
                    found_start=payload[:4].hex())
        self.lane.publish_event_model(
            type="warning", text=f"PDA photo {photo[:64]} of capture {capture_id[:64]} refused: not a JPEG",
            data={"capture_id": capture_id[:64], "photo": photo[:64], "bytes": len(payload)},
        )
        ack = self.assembler.current_ack(capture_id)
        if ack is None:
            return []
        if ack.accepted and photo in ack.missing_photos:  # the PDA is told why, as for a wrong hash
            why = FieldError(field="photos", error=f"photo {photo[:64]!r} is not a JPEG (it starts with "
                                                   f"{payload[:4].hex() or 'nothing'}, not ffd8ff); send the JPEG")
            ack = ack.model_copy(update={"errors": [*ack.errors, why]})
        return [ack]

    # ----- running ------------------------------------------------------------------------

    def _context(self, record: InspectionRecord) -> InspectionContext:
        def publish(**fields: Any) -> None:
            self.lane.publish_event_model(inspection_no=record.inspection_no, **fields)

        def set_step(step: str | None) -> None:
            record.step = step
            self.lane.inspection = record.status()
            self.lane.publish_status()

        return InspectionContext(
            inspection_no=record.inspection_no,
            command=record.command,
            drivers=self.lane.drivers,
            limits=self.limits_for(record.command),
            settings=self.settings,
            publish_event=publish,
            set_step=set_step,
            abort=self._abort,
            state_dir=self.lane.config.lane.state_dir,
            daily_checks=self.daily_checks,
        )

    def procedures_for(self, command: StartCommand) -> list[tuple[str, Any]]:
        plan: list[tuple[str, Any]] = []
        if command.items.brake_axles or command.items.parking_brake:
            from laned.procedures.brake import run_brake_test

            plan.append(("brake", run_brake_test))
        if command.items.emissions == "two_speed_idle":
            from laned.procedures.two_speed_idle import run_two_speed_idle

            plan.append(("two_speed_idle", run_two_speed_idle))
        elif command.items.emissions == "free_acceleration":
            from laned.procedures.free_acceleration import run_free_acceleration

            plan.append(("free_acceleration", run_free_acceleration))
        elif command.items.emissions == "asm":
            from laned.procedures.asm import run_asm

            plan.append(("asm", run_asm))
        elif command.items.emissions == "lug_down":
            from laned.procedures.lug_down import run_lug_down

            plan.append(("lug_down", run_lug_down))
        return plan

    async def _run(self, record: InspectionRecord) -> None:
        ctx = self._context(record)
        self.lane.inspection = record.status()
        self.lane.publish_status()
        ctx._publish_event(type="inspection_started", text=f"inspection {record.inspection_no} started")
        try:
            for name, procedure in self.procedures_for(record.command):
                if name in record.outcomes or name in record.not_completed:
                    continue  # done before a restart
                await self._run_item(ctx, record, name, procedure)
                if name in record.not_completed and self.settings.on_item_failure == "abort":
                    raise InspectionAborted(f"{name} failed: {record.not_completed[name]}")
            ctx.step("capture", "waiting for the PDA's exterior capture")
            await self._wait_capture(ctx)
            self.publish_results(record)
            ctx._publish_event(type="inspection_finished", text=f"inspection {record.inspection_no} finished")
        except InspectionAborted as exc:
            reason = record.abort_reason or str(exc)
            record.abort_reason = reason
            await self._safe_stop_devices()
            self.publish_results(record)
            ctx._publish_event(type="inspection_aborted", text=reason)
        except Exception as exc:  # a procedure's bug: devices safe, measured results still published
            log.exception("inspection_crashed", inspection_no=record.inspection_no)
            await self._safe_stop_devices()
            record.abort_reason = f"internal error: {exc!r}"
            self.publish_results(record)
        finally:
            self._finish(record)

    async def _run_item(self, ctx: InspectionContext, record: InspectionRecord, name: str, procedure: Any) -> None:
        watch = None
        if name == "brake":
            watch = asyncio.create_task(self._halt_on_broker_loss(ctx), name="brake-broker-watch")
        record.running = name
        self._save(record)  # after a crash the record names the item that was interrupted
        cancelled = False
        try:
            outcome: ItemOutcome = await procedure(ctx)
            record.outcomes[name] = outcome
            stopped = stopped_partway(outcome)
            if stopped is not None:  # measured items kept; the result's not_completed names the procedure
                record.not_completed[name] = stopped
        except ProcedureError as exc:
            await self._safe_stop_devices()
            record.not_completed[name] = exc.reason
            ctx.warn(f"{name} not completed: {exc.reason}", item=name)
            log.warning("item_not_completed", inspection_no=record.inspection_no, item=name, reason=exc.reason)
        except asyncio.CancelledError:  # the lane stops: the item was interrupted, it runs again after the restart
            cancelled = True
            raise
        finally:
            if watch is not None:
                watch.cancel()
            ctx.release_devices()
            ctx.resume(aborted=record.abort_reason is not None)
            if not cancelled:
                record.running = None
            self._save(record)

    async def _halt_on_broker_loss(self, ctx: InspectionContext) -> None:
        """A brake test stops when the broker goes: the driver's prompts (brake now, release, drive
        off) travel over it, and rollers must not turn under a driver who cannot see them."""
        while self.lane.mqtt.connected:
            await asyncio.sleep(BROKER_WATCH_S)
        log.warning("brake_test_halted_broker_lost", inspection_no=ctx.inspection_no)
        ctx.halt("the broker connection was lost: the driver could no longer see the lane's prompts, "
                 "so the rollers were stopped")

    async def _wait_capture(self, ctx: InspectionContext) -> None:
        if self._capture_done.is_set():
            return
        waiter = asyncio.create_task(self._capture_done.wait())
        aborter = asyncio.create_task(self._abort.wait())
        try:
            done, _ = await asyncio.wait(
                {waiter, aborter},
                timeout=self.settings.capture_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            waiter.cancel()
            aborter.cancel()
        if aborter in done:
            raise InspectionAborted("inspection aborted while waiting for the capture")
        if not done:
            assert self.current is not None
            self.current.not_completed["exterior"] = (
                f"no complete PDA capture within {self.settings.capture_timeout_s:g} s"
            )

    async def _safe_stop_devices(self) -> None:
        await asyncio.gather(*(driver.safe_stop() for driver in self.lane.drivers.values()))

    def publish_results(self, record: InspectionRecord) -> None:
        """Build both results, put them in the outbox (durable), and mark the record published."""
        from laned.results import build_results

        if record.published:
            return
        for kind, document in build_results(record, self.lane.config.lane).items():
            self.lane.mqtt.enqueue(self.lane.topics.result(kind), document, kind="result")
            log.info(
                "result_queued",
                inspection_no=record.inspection_no,
                result=kind,
                result_id=document["result_id"],
                verdict=document.get("verdict"),
            )
        record.published = True
        self._save(record)

    def _finish(self, record: InspectionRecord) -> None:
        self.assembler.end(keep_journal=not record.published)  # unpublished: it resumes after a restart
        self.current = None
        self.lane.inspection = None
        self.lane.publish_status()
        with contextlib.suppress(FileNotFoundError):
            if record.published:
                self._record_path(record.inspection_no).rename(self.records_dir / f"{record.inspection_no}.done.json")

    # ----- persistence --------------------------------------------------------------------

    def _record_path(self, inspection_no: str) -> Path:
        return self.records_dir / f"{inspection_no}.json"

    def _save(self, record: InspectionRecord) -> None:
        text = json.dumps(record.to_json(), ensure_ascii=False, default=str)
        write_private(self._record_path(record.inspection_no), text.encode("utf-8"))

    def _mark_run(self, record: InspectionRecord) -> None:
        """The record takes the lane's run mode and procedure timings (results report them)."""
        record.mark_run(simulation=self.lane.simulation, timings=self.lane.config.inspection.standard_timings())

    def resume(self) -> None:
        """After a restart: an unfinished inspection continues once the lane is up (`Lane.up`: its
        devices answered or the grace period ended, and the broker is connected); measured items are
        not run again, the item that was interrupted runs again from its start, and the station is
        told (`lane_restarted` event)."""
        for path in sorted(self.records_dir.glob("*.json")):
            if path.name.endswith(".done.json"):
                continue
            try:
                record = InspectionRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
            except Exception as exc:
                log.error("inspection_record_unreadable", path=str(path), error=str(exc))
                continue
            if record.published:
                path.rename(path.with_name(f"{record.inspection_no}.done.json"))
                continue
            log.warning(
                "inspection_resumed",
                inspection_no=record.inspection_no,
                measured=sorted(record.outcomes),
                interrupted_item=record.running,
                capture=record.capture is not None,
            )
            self._mark_run(record)
            self._save(record)
            self.current = record
            self._abort.clear()
            self._capture_done.clear()
            self._begin_capture(record)
            if record.command.items.exterior:
                # what the PDA had sent before the restart, and an ack naming what is still missing
                self._publish_acks(self.assembler.restore())
            self.lane.inspection = record.status()
            self._task = asyncio.create_task(self._resume(record), name=f"inspection-{record.inspection_no}")
            return

    async def _resume(self, record: InspectionRecord) -> None:
        """Wait for the lane to be up, tell the station the lane restarted and what was interrupted,
        then run the inspection on (`_run` skips what was measured before the restart)."""
        await self.lane.up.wait()
        interrupted = record.running
        if interrupted is not None:
            text = (f"the lane restarted during inspection {record.inspection_no}: item {interrupted} was "
                    "interrupted and runs again from its start")
        else:
            text = f"the lane restarted during inspection {record.inspection_no}; it continues"
        log.warning("lane_restarted", inspection_no=record.inspection_no, interrupted_item=interrupted)
        self.lane.publish_event_model(
            type="lane_restarted",
            inspection_no=record.inspection_no,
            text=text,
            data={"interrupted_item": interrupted, "measured": sorted(record.outcomes),
                  "not_completed": sorted(record.not_completed)},
        )
        await self._run(record)

    def cancel(self) -> None:
        """On shutdown: end a running inspection's device work at once. The record stays on disk
        unpublished, and the inspection resumes when the lane starts again."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def wait_stopped(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


def stopped_partway(outcome: ItemOutcome) -> str | None:
    """Why a procedure that returned its items could not complete them all: the reason of its first
    `not_completed` item (a brake test stopped at axle 2 keeps B1 and says why B2 is missing); None
    when every item was completed (or not asked for)."""
    for item in outcome.items:
        if item.get("verdict") == "not_completed":
            return str(item.get("reason") or f"{outcome.procedure} not completed")
    return None


def new_event_id() -> str:
    return uuid.uuid4().hex


def event_document(**fields: Any) -> dict[str, Any]:
    return dump(Event(event_id=new_event_id(), lane_time=fields.pop("lane_time", None) or utc_now(), **fields))


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
