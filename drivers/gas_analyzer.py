"""Driver of the GA-5 / GA-5N exhaust analyzer (serial, 9600 8N1), on the common driver life cycle.

One request at a time; every request flushes the input first, waits at most
the manual's 300 ms, and is repeated once where the command is safe to repeat
(reads, PUMP_*, and a process command whose own process is already running:
the analyzer ACKs a repeat without restarting). A frozen SEQ over one second
of good replies means frozen firmware: the link is dropped and reopened.

On a GA-5N (IDENTIFY names the model) every poll reads READ_NOX and READ_MAIN and
publishes the main reading with its `no2_ppm` / `nox_ppm` filled (None on a GA-5, and
while a zero, leak check or calibration runs: the analyzer NAKs READ_NOX then). The
NOx frame's NO equals the main frame's NO of the same 10 Hz update; when they differ an
update fell between the two reads and READ_NOX is read once more. The line has room:
1 + 8, 1 + 24 and 1 + 8 bytes at 9600 baud, with the analyzer's think time, take at
most about 80 ms of each 100 ms.

Safe state: the pump stopped (PUMP_STOP), on every (re)connect unless a procedure of
ours owns the analyzer, and on stop or a failed procedure (drivers/base.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import TypeVar

from drivers.base import READ_REPLY_AT, Backoff, Driver
from drivers.errors import DeviceError, DeviceRefused, DeviceStale, DeviceTimeout, DeviceUnavailable
from drivers.serial_link import SerialLink
from protocols import gas_analyzer as ga

T = TypeVar("T")

#: commands that change nothing when repeated after a lost reply
SAFE_TO_REPEAT = frozenset(
    {
        ga.Command.READ_MAIN,
        ga.Command.READ_ENV,
        ga.Command.READ_STATUS,
        ga.Command.READ_NOX,
        ga.Command.PROCESS_RESULT,
        ga.Command.IDENTIFY,
        ga.Command.PUMP_AMBIENT,
        ga.Command.PUMP_SAMPLE,
        ga.Command.PUMP_STOP,
        # a repeated ZERO/LEAK_CHECK/CALIBRATE during its own process is ACKed and changes nothing
        ga.Command.ZERO,
        ga.Command.LEAK_CHECK,
        ga.Command.CALIBRATE,
    }
)

NOMINAL_PROCESS_S = {ga.Command.ZERO: 5.0, ga.Command.LEAK_CHECK: 10.0, ga.Command.CALIBRATE: 8.0}
STALE_AFTER_S = 1.0

REPLY_NAMES = {
    ga.Command.READ_MAIN: "main data frame (24 bytes)",
    ga.Command.READ_ENV: "environment frame (8 bytes)",
    ga.Command.READ_STATUS: "status frame (5 bytes)",
    ga.Command.READ_NOX: "NOx frame (8 bytes)",
    ga.Command.PROCESS_RESULT: "process frame (3 bytes)",
    ga.Command.IDENTIFY: "identity frame",
}


class GasAnalyzerDriver(Driver):
    kind = "gas_analyzer"
    safe_state_action = "PUMP_STOP (pump off)"

    def __init__(
        self,
        name: str,
        *,
        port: str,
        baudrate: int = 9600,
        timeout_s: float = 0.3,
        retries: int = 1,
        poll_hz: float = 10.0,
        backoff: Backoff | None = None,
        errors_to_disconnect: int = 3,
        process_time_scale: float = 1.0,
    ) -> None:
        super().__init__(
            name,
            port=port,
            poll_interval_s=1.0 / poll_hz,
            backoff=backoff,
            errors_to_disconnect=errors_to_disconnect,
        )
        self.link = SerialLink(name, port, baudrate=baudrate)
        self.timeout_s = timeout_s
        self.retries = retries
        self.process_time_scale = process_time_scale
        self.identity: ga.Identity | None = None
        self._last_seq: int | None = None
        self._seq_since = 0.0
        self._processes_running = 0

    # ----- life cycle ------------------------------------------------------------

    async def _open(self) -> None:
        await self.link.open()

    async def _close(self) -> None:
        await self.link.close()

    async def _hello(self) -> None:
        self.identity = await self.identify()
        self.health.identity = {
            "model": self.identity.model,
            "serial": self.identity.serial,
            "firmware": self.identity.firmware,
        }
        self._last_seq = None

    @property
    def is_ga5n(self) -> bool:
        """Whether the connected analyzer identified as a GA-5N (answers READ_NOX); False before
        the first IDENTIFY."""
        return self.identity is not None and self.identity.has_nox

    async def _poll(self) -> None:
        if not self.is_ga5n or self._processes_running:  # a process NAKs READ_NOX (the manual)
            reading = await self.read_main()
            self._check_stale(reading.seq)
            self.readings.publish(reading)
            return
        # Both frames of one update: read as they come, not left in the port until the next tick
        # (drivers/serial_link.py), else the second would be an update later.
        token = READ_REPLY_AT.set(None)
        try:
            await self._poll_with_nox()
        finally:
            READ_REPLY_AT.reset(token)

    async def _poll_with_nox(self) -> None:
        """READ_NOX, READ_MAIN, and READ_NOX again when an update fell between them (their NO
        differ): the main reading is published with NO2 and NOX of its own update."""
        nox = await self.read_nox()
        reading = await self.read_main()
        self._check_stale(reading.seq)
        if nox.no_ppm != reading.no_ppm:
            try:
                nox = await self.read_nox()
            except DeviceError:
                self.readings.publish(reading)  # the main reading stands without its NOx
                raise
            if nox.no_ppm != reading.no_ppm:
                self.log.debug("nox_update_mismatch", main_no_ppm=reading.no_ppm, nox_no_ppm=nox.no_ppm)
        self.readings.publish(dataclasses.replace(reading, no2_ppm=nox.no2_ppm, nox_ppm=nox.nox_ppm))

    async def _safe_state(self) -> None:
        await self._transact(ga.Command.PUMP_STOP)

    def _check_stale(self, seq: int) -> None:
        now = time.monotonic()
        if seq != self._last_seq:
            self._last_seq, self._seq_since = seq, now
        elif now - self._seq_since > STALE_AFTER_S:
            raise DeviceStale(
                self.name,
                f"SEQ stuck at {seq} for {now - self._seq_since:.1f} s of good replies (frozen firmware?)",
                port=self.port,
            )

    # ----- one request -----------------------------------------------------------

    async def _transact(self, command: ga.Command, span: ga.SpanGas | None = None) -> ga.Reply:
        """Send one request, return its decoded reply; raise DeviceRefused on NAK. No lock, no retry."""
        decoder = ga.ReplyDecoder(command)
        reply: ga.Reply = await self.link.request(
            ga.encode_request(command, span),
            decoder,
            self.timeout_s,
            expected=REPLY_NAMES.get(command, "ACK"),
        )
        if isinstance(reply, ga.Nak):
            raise DeviceRefused(
                self.name, f"NAK to {command.name} (unknown, bad value or not allowed now)", port=self.port
            )
        return reply

    async def _request(self, command: ga.Command, span: ga.SpanGas | None = None) -> ga.Reply:
        attempts = 1 + (self.retries if command in SAFE_TO_REPEAT else 0)
        last: DeviceError | None = None
        for _ in range(attempts):
            try:
                return await self.exchange(lambda: self._transact(command, span))
            except DeviceTimeout as exc:
                last = exc
            except DeviceUnavailable:
                raise
        assert last is not None
        raise last

    async def _typed(self, command: ga.Command, kind: type[T]) -> T:
        reply = await self._request(command)
        if not isinstance(reply, kind):
            raise DeviceRefused(self.name, f"{command.name}: expected {kind.__name__}, got {reply!r}", port=self.port)
        return reply

    # ----- typed API -------------------------------------------------------------

    async def read_main(self) -> ga.MainReading:
        return await self._typed(ga.Command.READ_MAIN, ga.MainReading)

    async def read_nox(self) -> ga.NoxReading:
        """NO, NO2 and NOX of the latest update (GA-5N); DeviceRefused on a plain GA-5."""
        try:
            return await self._typed(ga.Command.READ_NOX, ga.NoxReading)
        except DeviceRefused as exc:
            if "NAK" not in exc.detail or self.is_ga5n:  # a GA-5N refusing now: busy, not NOx-less
                raise
            model = self.identity.model if self.identity else ga.MODEL_GA5
            raise DeviceRefused(
                self.name, f"the analyzer is a {model} without NOx (READ_NOX answered NAK)", port=self.port
            ) from None

    async def read_env(self) -> ga.EnvReading:
        return await self._typed(ga.Command.READ_ENV, ga.EnvReading)

    async def status(self) -> ga.StatusReading:
        return await self._typed(ga.Command.READ_STATUS, ga.StatusReading)

    async def identify(self) -> ga.Identity:
        return await self._typed(ga.Command.IDENTIFY, ga.Identity)

    async def process_result(self) -> ga.ProcessResult:
        return (await self._typed(ga.Command.PROCESS_RESULT, ga.ProcessReply)).result

    async def pump(self, mode: str) -> None:
        """`sample` (probe), `ambient` (room air), `stop`, or `backflush`."""
        commands = {
            "sample": ga.Command.PUMP_SAMPLE,
            "ambient": ga.Command.PUMP_AMBIENT,
            "stop": ga.Command.PUMP_STOP,
            "backflush": ga.Command.BACKFLUSH,
        }
        if mode not in commands:
            raise ValueError(f"pump mode {mode!r}: use one of {', '.join(commands)}")
        await self._typed(commands[mode], ga.Ack)

    async def write_span(self, span: ga.SpanGas) -> None:
        await self._typed_span(span)

    async def _typed_span(self, span: ga.SpanGas) -> None:
        reply = await self._request(ga.Command.WRITE_SPAN, span)
        if not isinstance(reply, ga.Ack):
            raise DeviceRefused(self.name, f"WRITE_SPAN: expected ACK, got {reply!r}", port=self.port)

    async def zero(self, on_progress: Callable[[float], None] | None = None) -> bool:
        return await self._run_process(ga.Command.ZERO, on_progress)

    async def leak_check(self, on_progress: Callable[[float], None] | None = None) -> bool:
        return await self._run_process(ga.Command.LEAK_CHECK, on_progress)

    async def calibrate(self, on_progress: Callable[[float], None] | None = None) -> bool:
        return await self._run_process(ga.Command.CALIBRATE, on_progress)

    async def _run_process(self, command: ga.Command, on_progress: Callable[[float], None] | None) -> bool:
        """Start ZERO / LEAK_CHECK / CALIBRATE and wait for its result: True passed, False failed.

        A process still reporting RUNNING after twice its nominal time has failed (the manual)."""
        self._processes_running += 1
        try:
            return await self._await_process(command, on_progress)
        finally:
            self._processes_running -= 1

    async def _await_process(self, command: ga.Command, on_progress: Callable[[float], None] | None) -> bool:
        await self._typed(command, ga.Ack)
        started = time.monotonic()
        limit_s = 2 * NOMINAL_PROCESS_S[command] * self.process_time_scale
        while True:
            result = await self.process_result()
            elapsed = time.monotonic() - started
            if result == ga.ProcessResult.PASSED:
                self.log.info("analyzer_process", process=command.name, result="passed", elapsed_s=round(elapsed, 1))
                return True
            if result == ga.ProcessResult.FAILED:
                self.log.warning("analyzer_process", process=command.name, result="failed", elapsed_s=round(elapsed, 1))
                return False
            if result != ga.ProcessResult.RUNNING:
                raise DeviceRefused(
                    self.name, f"{command.name}: analyzer reports {result.name} after ACK", port=self.port
                )
            if elapsed > limit_s:
                self.log.warning(
                    "analyzer_process", process=command.name, result="timed_out", elapsed_s=round(elapsed, 1)
                )
                return False
            if on_progress:
                on_progress(min(1.0, elapsed / (NOMINAL_PROCESS_S[command] * self.process_time_scale)))
            await asyncio.sleep(0.2 * self.process_time_scale)
