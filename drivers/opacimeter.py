"""Driver of the OP-1 opacimeter (serial, 9600 8N1), on the common driver life cycle.

One request at a time; each flushes the input first and waits at most the
manual's 300 ms (5 s for ZERO, whose reply comes when the zero is done). Reads
and CLEAR_PEAK are repeated once after a lost reply; ZERO never blindly: the
driver reads STATUS first and never sends a second ZERO into a running zero.
An error reply raises DeviceRefused with the code's meaning.

The protocol has no identity command, so health.identity records the model and
the port. The background poll reads REALTIME at 20 Hz and publishes each new
measurement (a new SEQ) on `readings`; while the meter says it is warming up or
zeroing, it reads STATUS instead, so a warming meter is a connected meter that
is not ready yet (`meter_state`), not a failing link. A SEQ that stays the same
over one second of good replies means frozen firmware: DeviceStale, and the
link is dropped and reopened.

No safe state: the OP-1 has nothing the lane switches on and could leave running (no
pump, no motor; its commands read, zero and clear the peak), so it is left alone on
connect and on stop (`safe_state_action` stays None).
"""

from __future__ import annotations

import asyncio
import time
from typing import TypeVar

from drivers.base import Backoff, Driver
from drivers.errors import DeviceError, DeviceRefused, DeviceStale, DeviceTimeout
from drivers.serial_link import SerialLink
from protocols import opacimeter as op

T = TypeVar("T")

MODEL = "OP-1"
STALE_AFTER_S = 1.0

#: commands that change nothing when repeated after a lost reply
SAFE_TO_REPEAT = frozenset(
    {op.Command.STATUS, op.Command.REALTIME, op.Command.PEAK, op.Command.ENV, op.Command.CLEAR_PEAK}
)

REPLY_NAMES = {
    op.Command.STATUS: "STATUS reply (3 bytes)",
    op.Command.ZERO: "ZERO reply (3 bytes, sent when the zero is done)",
    op.Command.REALTIME: "REALTIME reply (12 bytes)",
    op.Command.PEAK: "PEAK reply (8 bytes)",
    op.Command.CLEAR_PEAK: "CLEAR_PEAK reply (2 bytes)",
    op.Command.ENV: "ENV reply (8 bytes)",
}

#: what an error reply tells about the meter's state
_STATE_AFTER_ERROR = {op.ErrorCode.NOT_READY: op.MeterState.WARMING_UP, op.ErrorCode.BUSY: op.MeterState.ZEROING}


class OpacimeterDriver(Driver):
    kind = "opacimeter"

    def __init__(
        self,
        name: str,
        *,
        port: str,
        baudrate: int = 9600,
        timeout_s: float = 0.3,
        zero_timeout_s: float = 5.0,
        retries: int = 1,
        poll_hz: float = 20.0,
        stale_after_s: float = STALE_AFTER_S,
        backoff: Backoff | None = None,
        errors_to_disconnect: int = 3,
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
        self.zero_timeout_s = zero_timeout_s
        self.retries = retries
        self.stale_after_s = stale_after_s
        self.meter_state: op.MeterState | None = None
        self.health.identity = self.identity
        self._last_seq: int | None = None
        self._seq_since = 0.0

    @property
    def identity(self) -> dict[str, str]:
        """The OP-1 cannot say who it is: the model and the port it answers on."""
        return {"model": MODEL, "port": self.port}

    @property
    def frame_errors(self) -> int:
        """Bad frames (bad sum, undefined field) seen and skipped on this link."""
        return self.link.frame_errors

    # ----- life cycle ------------------------------------------------------------

    async def _open(self) -> None:
        self._last_seq = None
        await self.link.open()

    async def _close(self) -> None:
        await self.link.close()

    async def _hello(self) -> None:
        await self.status()
        self.health.identity = self.identity

    async def _poll(self) -> None:
        if self.meter_state not in (None, op.MeterState.READY):
            await self.status()  # answered while warming up and zeroing; REALTIME is refused
            return
        reading = await self.realtime()
        if self._fresh(reading.seq):
            self.readings.publish(reading)

    def _fresh(self, seq: int) -> bool:
        """Whether `seq` is a new measurement; raise DeviceStale if SEQ stands still too long."""
        now = time.monotonic()
        if seq != self._last_seq:
            self._last_seq, self._seq_since = seq, now
            return True
        if now - self._seq_since > self.stale_after_s:
            raise DeviceStale(
                self.name,
                f"REALTIME SEQ stuck at {seq} for {now - self._seq_since:.1f} s of good replies "
                "(frozen meter firmware?); reopening the port",
                port=self.port,
            )
        return False

    def _note_state(self, state: op.MeterState) -> None:
        if state != self.meter_state:
            self.log.info("opacimeter_state", meter_state=state.name.lower())
            self.meter_state = state

    # ----- one request -----------------------------------------------------------

    async def _transact(self, command: op.Command, timeout_s: float) -> op.Reply:
        """Send one request and return its reply; an error reply raises DeviceRefused."""
        reply: op.Reply = await self.link.request(
            op.encode_request(command), op.ReplyDecoder(command), timeout_s, expected=REPLY_NAMES[command]
        )
        if isinstance(reply, op.ErrorReply):
            if reply.code in _STATE_AFTER_ERROR:
                self._note_state(_STATE_AFTER_ERROR[reply.code])
            raise DeviceRefused(
                self.name,
                f"{command.name} refused with error {reply.code:02d}: {reply.code.meaning}",
                port=self.port,
            )
        if isinstance(reply, op.StatusReply):
            self._note_state(reply.state)
        elif command in (op.Command.REALTIME, op.Command.PEAK, op.Command.CLEAR_PEAK, op.Command.ZERO):
            self._note_state(op.MeterState.READY)  # only a ready meter answers these
        return reply

    async def _request(self, command: op.Command, kind: type[T], timeout_s: float | None = None) -> T:
        attempts = 1 + (self.retries if command in SAFE_TO_REPEAT else 0)
        last: DeviceError | None = None
        for _ in range(attempts):
            try:
                reply = await self.exchange(lambda: self._transact(command, timeout_s or self.timeout_s))
            except DeviceTimeout as exc:
                last = exc
                continue
            if not isinstance(reply, kind):  # the decoder only yields this command's reply type
                raise DeviceRefused(self.name, f"{command.name}: unexpected reply {reply!r}", port=self.port)
            return reply
        assert last is not None
        raise last

    # ----- typed API -------------------------------------------------------------

    async def status(self) -> op.MeterState:
        return (await self._request(op.Command.STATUS, op.StatusReply)).state

    async def realtime(self) -> op.RealtimeReading:
        return await self._request(op.Command.REALTIME, op.RealtimeReading)

    async def peak(self) -> op.PeakReading:
        """The largest K since CLEAR_PEAK, with N and RPM at that instant."""
        return await self._request(op.Command.PEAK, op.PeakReading)

    async def clear_peak(self) -> None:
        await self._request(op.Command.CLEAR_PEAK, op.Ack)

    async def env(self) -> op.EnvReading:
        return await self._request(op.Command.ENV, op.EnvReading)

    async def zero(self) -> bool:
        """Zero the meter: True if it passed. Checks STATUS first and waits out a zero already
        running (its result is not ours to know); never repeats ZERO after a lost reply."""
        state = await self.status()
        waited_until = time.monotonic() + self.zero_timeout_s
        while state == op.MeterState.ZEROING:
            if time.monotonic() > waited_until:
                raise DeviceRefused(
                    self.name, f"still zeroing after {self.zero_timeout_s:g} s; check the meter", port=self.port
                )
            await asyncio.sleep(0.2)
            state = await self.status()
        if state != op.MeterState.READY:
            raise DeviceRefused(self.name, f"cannot zero: the meter is {state.name.lower()}", port=self.port)
        try:
            reply = await self._request(op.Command.ZERO, op.ZeroReply, self.zero_timeout_s)
        except DeviceTimeout as exc:
            raise DeviceTimeout(
                self.name,
                f"{exc.detail}; whether the zero ran is unknown: check STATUS and zero again",
                port=self.port,
            ) from None
        (self.log.info if reply.passed else self.log.warning)("opacimeter_zero", passed=reply.passed)
        return reply.passed
