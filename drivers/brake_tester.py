"""Driver of the RB-2 roller brake tester (Modbus TCP or RTU 19200 8E1) on the common life cycle.

pymodbus 3.16's async clients carry the frames (the request layer is
drivers/modbus_device.py, shared with the dynamometer); protocols/brake_tester.py
says what the registers mean. One request at a time on the line (`Driver.exchange`);
reads are repeated after a timeout (reading never changes the tester), writes
are not. Exception replies become `DeviceRefused` naming the exception: 02
outside the map, 03 bad value, 06 busy (an interlock). A refusal proves the
tester answers, so it does not count against the link's health; exception 04
(device failure) does.

The curve ring is read losslessly by `CurveCapture`: block reads from where
it left off (the protocols' planner and cursor), each block checked against a
SAMPLE_INDEX read taken after it, every sample delivered once in order with
its index, and every gap counted and logged, never silent.

Safety: `emergency_stop()` writes MOTORS = 0 ahead of every request not yet on
the line and never raises. The safe state (`_safe_state`: on every (re)connect
unless a procedure of ours owns the tester, on daemon shutdown, after a failed
procedure) is MOTORS = 0, confirmed by its own echo, then LIFT = 1: the lift up is
the tester at rest (the vehicle can drive off, and MOTORS = 1 is refused while the
lift is up). LIFT is written only once the motors are confirmed stopped: the tester
refuses it with 06 while they run.

This module is over 400 lines because the capture belongs with the requests it
makes; it has no other reason to grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from drivers.base import Backoff
from drivers.errors import DeviceError, DeviceRefused, DeviceTimeout
from drivers.modbus_device import RTU_QUIET_S as RTU_QUIET_S
from drivers.modbus_device import ModbusLink as ModbusLink
from drivers.modbus_device import ModbusRequests
from protocols import brake_tester as bt
from protocols.errors import ProtocolError

#: exception replies that mean "the tester is fine, the request was not": they keep health good
REQUEST_EXCEPTIONS = frozenset({bt.ExceptionCode.ILLEGAL_ADDRESS, bt.ExceptionCode.ILLEGAL_VALUE,
                                bt.ExceptionCode.DEVICE_BUSY})
SETTING_NAMES = {p.name: p.address for p in bt.HOLDING_REGISTERS}
TARE_LIMIT_S = 1.0  # the manual: under 500 ms; twice that before giving up
#: a driver following the curve for live messages reads the ring at most this often (a poll rate
#: above 10 Hz adds snapshots, not ring reads: the bus and the CPU stay as at 10 Hz)
FOLLOW_INTERVAL_S = 0.1


def _echoes_motors_off(response: ModbusPDU) -> bool:
    """Whether `response` is the FC05 echo of MOTORS (coil 0) = 0, the only confirmation of a stop."""
    return (not response.isError() and response.function_code == 5
            and getattr(response, "address", None) == int(bt.Coil.MOTORS)
            and list(getattr(response, "bits", [True])[:1]) == [False])


def _cannot_follow(cursor: bt.CurveCursor, snapshot: bt.TesterSnapshot) -> str | None:
    """Why the live follower's `cursor` cannot go on against `snapshot`: the ring changed size, or
    SAMPLE_INDEX is behind the last sample followed (the tester restarted). None if it can."""
    if snapshot.ring_size != cursor.ring_size:
        return f"RING_SIZE changed from {cursor.ring_size} to {snapshot.ring_size}"
    last = (cursor.next_index - 1) % bt.INDEX_MODULUS
    if 0 < (last - snapshot.sample_index) % bt.INDEX_MODULUS < bt.HALF_INDEX:
        return f"SAMPLE_INDEX {snapshot.sample_index} is behind the last sample followed, {last}"
    return None


class BrakeTesterDriver(ModbusRequests):
    kind = "brake_tester"
    device_noun = "tester"
    request_exceptions = frozenset(int(c) for c in REQUEST_EXCEPTIONS)
    safe_state_action = "MOTORS = 0 (rollers stopped), LIFT = 1 (lift up)"

    def __init__(
        self,
        name: str,
        link: ModbusLink,
        *,
        retries: int = 2,
        poll_hz: float = 10.0,
        stale_after_s: float = 1.0,
        backoff: Backoff | None = None,
        errors_to_disconnect: int = 3,
        follow_curve: bool = False,
    ) -> None:
        super().__init__(name, port=link.where, poll_interval_s=1.0 / poll_hz, backoff=backoff,
                         errors_to_disconnect=errors_to_disconnect)
        self.link = link
        self.retries = retries
        self.stale_after_s = stale_after_s
        self.last_snapshot: bt.TesterSnapshot | None = None
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._last_index: int | None = None
        self._index_since = 0.0
        self._line_free = asyncio.Event()  # cleared while an emergency stop waits for the line
        self._line_free.set()
        #: follow the curve ring at the poll rate: each poll publishes a FollowedSnapshot with the
        #: samples made since the last one (one ring read and one snapshot per poll, not a
        #: snapshot per sample); paused while a recording (record_curve) reads the ring itself
        self.follow_curve = follow_curve
        self._follow: bt.CurveCursor | None = None
        self._followed_at = 0.0
        self._recordings = 0

    @classmethod
    def from_config(cls, name: str, config: Any, **kwargs: Any) -> BrakeTesterDriver:
        """From the daemon's device table (read by attribute: drivers never import laned/):
        `transport.type` "tcp" (host, port) or "rtu" (port, baudrate, parity, stopbits), `unit_id`,
        `timeout_ms`, `retries`, `poll_hz`; `kwargs` (backoff, errors_to_disconnect, follow_curve) go to
        the driver."""
        link = ModbusLink.from_device_config(f"brake tester {name}", config)
        return cls(name, link, retries=config.retries, poll_hz=config.poll_hz, **kwargs)

    # ----- life cycle (_open, _close and the requests: drivers/modbus_device.py) ----------------

    def _exception_meaning(self, raw: int) -> str:
        try:
            return bt.ExceptionCode(raw).meaning
        except ValueError:
            return "unknown exception"

    async def _hello(self) -> None:
        snapshot = await self.snapshot()
        self._last_index = None
        self._follow = None
        self.health.identity = {
            "transport": self.link.transport,
            "address": self.link.where,
            "unit_id": str(self.link.unit_id),
            "ring_size": str(snapshot.ring_size),
            "sample_rate_hz": str(snapshot.sample_rate_hz),
        }

    async def _poll(self) -> None:
        if self.follow_curve and not self._recordings:
            snapshot = await self._follow_poll()
        else:
            self._follow = None  # a recording has the ring: start afresh after it
            snapshot = await self.snapshot()
        self._check_stale(snapshot.sample_index)

    async def _follow_poll(self) -> bt.TesterSnapshot:
        """One poll following the ring: the samples from where the last poll left off up to the newest
        index it saw (block reads, each validated by the snapshot read after it), published with the
        last of those snapshots as one FollowedSnapshot. Samples the ring overwrote before they could
        be read (a long pause) are skipped and logged; the message holds only contiguous samples.
        Within FOLLOW_INTERVAL_S of the last ring read a poll is a plain snapshot."""
        cursor, newest = self._follow, self.last_snapshot
        why = None if cursor is None or newest is None else _cannot_follow(cursor, newest)
        if why is not None:
            self.log.warning("live_curve_restarted", reason=why)
        if cursor is None or newest is None or why is not None:
            snapshot = await self._read_snapshot()
            self._follow = bt.CurveCursor((snapshot.sample_index + 1) % bt.INDEX_MODULUS, snapshot.ring_size)
            self._followed_at = time.monotonic()
            self.readings.publish(snapshot)
            return snapshot
        if time.monotonic() - self._followed_at < FOLLOW_INTERVAL_S * 0.9:  # 0.9: the poll grid's jitter
            return await self.snapshot()
        self._followed_at = time.monotonic()
        left: list[int] = []
        right: list[int] = []
        first: int | None = None
        after: bt.TesterSnapshot | None = None
        for read in cursor.plan(newest.sample_index):
            try:
                registers = await self.read_ring(read)
            except DeviceRefused:  # 02 outside the map: the ring shrank since the cursor was made
                self._follow = None
                raise
            after = await self._read_snapshot()
            lost = cursor.lost
            why = _cannot_follow(cursor, after)
            if why is None:
                try:
                    first_index, forces = cursor.accept_forces(read, registers, after.sample_index)
                except (ProtocolError, ValueError) as exc:  # the index went back within the block read
                    why = str(exc)
            if why is not None:
                self.log.warning("live_curve_restarted", reason=why)
                self._follow = None
                self.readings.publish(after)
                return after
            if cursor.lost != lost:
                self.log.warning("live_curve_samples_lost", count=cursor.lost - lost, lost_total=cursor.lost)
                left.clear()
                right.clear()
                first = None
            if forces:
                if first is None:
                    first = first_index
                left.extend(forces[0::2])
                right.extend(forces[1::2])
        if after is None:
            after = await self._read_snapshot()
        followed = bt.FollowedSnapshot(**after.__dict__, first_sample_index=first,
                                       left_force_dan=tuple(left), right_force_dan=tuple(right))
        self.readings.publish(followed)
        return followed

    async def _safe_state(self) -> None:
        if not await self._stop_motors_now(attempts=2):  # the caller logs it: the rollers may still run
            raise DeviceError(self.name, "MOTORS = 0 not confirmed by the tester", port=self.port)
        await self._raise_lift_now()

    # ----- typed API ------------------------------------------------------------------------

    async def snapshot(self) -> bt.TesterSnapshot:
        """Input registers 0..15; also published to `readings` and kept as `last_snapshot`."""
        snapshot = await self._read_snapshot()
        self.readings.publish(snapshot)
        return snapshot

    async def _read_snapshot(self) -> bt.TesterSnapshot:
        """Input registers 0..15, kept as `last_snapshot` (not published)."""
        registers = await self._read_registers(4, bt.SNAPSHOT_ADDRESS, bt.SNAPSHOT_COUNT,
                                               "read input registers 0..15 (FC04)")
        try:
            snapshot = bt.decode_snapshot(registers)
        except ProtocolError as exc:
            raise DeviceError(self.name, f"input registers 0..15: {exc}", port=self.port) from None
        self.last_snapshot = snapshot
        return snapshot

    async def inputs(self) -> bt.TesterInputs:
        return bt.decode_inputs(await self._read_bits(2, len(bt.DISCRETE_INPUTS), "read discrete inputs 0..5 (FC02)"))

    async def coils(self) -> bt.TesterCoils:
        return bt.decode_coils(await self._read_bits(1, len(bt.COILS), "read coils 0..2 (FC01)"))

    async def read_settings(self) -> bt.TesterSettings:
        registers = await self._read_registers(3, 0, len(bt.HOLDING_REGISTERS), "read holding registers 0..2 (FC03)")
        return bt.decode_settings(registers)

    async def write_setting(self, setting: str | int, value: int) -> None:
        """SLIP_THRESHOLD, SAMPLE_RATE_SET or AUTO_STOP_S; the tester answers 03 to a value out of range."""
        if isinstance(setting, str):
            if setting.upper() not in SETTING_NAMES:
                raise ValueError(f"setting {setting!r}: one of {', '.join(SETTING_NAMES)}")
            address = SETTING_NAMES[setting.upper()]
        else:
            address = int(setting)
        unit = self.link.unit_id
        name = bt.HOLDING_REGISTERS[address].name if 0 <= address < len(bt.HOLDING_REGISTERS) else str(address)
        await self._request(
            f"write {name} = {value} (FC06 holding register {address})",
            lambda c: c.write_register(address, value, device_id=unit),
            lambda r: None,
            repeat=False,
        )

    async def read_ring(self, read: bt.RingRead) -> list[int]:
        """One planned ring read (FC04), repeated after a timeout: reading never changes the ring."""
        return await self._read_registers(
            4, read.address, read.register_count,
            f"read ring samples from {read.first_sample} (FC04 {read.address}+{read.register_count})",
        )

    async def set_motors(self, on: bool) -> None:
        """MOTORS = 1 is refused (06) unless an axle is in position, the lift is down and no fault."""
        await self._write_coil(bt.Coil.MOTORS, on)

    async def set_lift(self, up: bool, *, wait_s: float | None = None) -> None:
        """Raise or lower the lift (06 while the motors run); with `wait_s`, wait until LIFT_UP says so."""
        await self._write_coil(bt.Coil.LIFT, up)
        if wait_s is not None:
            deadline = time.monotonic() + wait_s
            while (await self.inputs()).lift_up != up:
                if time.monotonic() > deadline:
                    raise DeviceTimeout(self.name, f"lift still {'down' if up else 'up'} {wait_s:g} s after "
                                        f"LIFT = {int(up)}", port=self.port)
                await asyncio.sleep(0.05)

    async def tare(self) -> None:
        """Zero the force channels: write TARE = 1, wait until the tester writes it back to 0."""
        await self._write_coil(bt.Coil.TARE, True)
        deadline = time.monotonic() + TARE_LIMIT_S
        while (await self.coils()).tare:
            if time.monotonic() > deadline:
                raise DeviceTimeout(self.name, f"TARE still 1 after {TARE_LIMIT_S:g} s (the manual: under 0.5 s)",
                                    port=self.port)
            await asyncio.sleep(0.05)

    async def wait_snapshot(self, predicate: Callable[[bt.TesterSnapshot], bool], timeout_s: float,
                            *, interval_s: float = 0.05, what: str = "the expected state") -> bt.TesterSnapshot:
        """Read snapshots until `predicate` holds; DeviceTimeout naming `what` after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            snapshot = await self.snapshot()
            if predicate(snapshot):
                return snapshot
            if time.monotonic() > deadline:
                raise DeviceTimeout(self.name, f"no {what} within {timeout_s:g} s (state {snapshot.state.name})",
                                    port=self.port)
            await asyncio.sleep(interval_s)

    # ----- safety -------------------------------------------------------------------------------

    async def _stop_motors_now(self, attempts: int) -> bool:
        """MOTORS = 0 straight on the line (the caller holds it); True once the tester confirmed."""
        client = self._client
        for _ in range(attempts):
            if client is None or not client.connected:
                return False
            try:
                response = await client.write_coil(int(bt.Coil.MOTORS), False, device_id=self.link.unit_id)
            except ModbusException:
                continue
            if _echoes_motors_off(response):
                return True
            # RTU has no transaction id: another request's late reply (one cancelled on the wire)
            # is not a confirmation; the next attempt's reply may be this write's own echo
        return False

    async def _raise_lift_now(self) -> None:
        """LIFT = 1 straight on the line (the caller holds it, the motors are stopped); DeviceError
        unless the tester echoes the write (a refusal is a DeviceRefused naming the exception)."""
        unit, lift = self.link.unit_id, int(bt.Coil.LIFT)

        def echoed(r: ModbusPDU) -> None:
            bits = list(getattr(r, "bits", [])[:1])
            if r.function_code != 5 or getattr(r, "address", None) != lift or bits != [True]:
                raise ProtocolError(f"not the echo of LIFT = 1: {r}")

        result = await self._once(f"write LIFT = 1 (FC05 coil {lift})",
                                  lambda c: c.write_coil(lift, True, device_id=unit), echoed)
        if isinstance(result, DeviceRefused):
            raise result

    async def emergency_stop(self, *, attempts: int = 3, timeout_s: float = 2.0) -> bool:
        """Stop the rollers: MOTORS = 0 as the next request on the line (only a request already on the
        wire, or already queued for the line, goes first; every later one waits). Never raises; returns
        whether the tester confirmed. Use it on any error, abort or shutdown while the motors run."""
        self._line_free.clear()
        try:
            async with asyncio.timeout(timeout_s), self._line:
                stopped = await self._stop_motors_now(attempts)
        except Exception as exc:  # the caller is already handling a failure: report, never raise
            self.log.error("brake_emergency_stop_failed", error=repr(exc))
            return False
        finally:
            self._line_free.set()
        (self.log.warning if stopped else self.log.error)("brake_emergency_stop", confirmed=stopped)
        return stopped

    # ----- the curve ------------------------------------------------------------------------------

    def curve(self, *, start_index: int | None = None, back_samples: int = 0,
              interval_s: float = 0.05) -> CurveCapture:
        """A lossless reader of the curve ring from `start_index` (default: the newest sample
        `back_samples` ago when the capture starts)."""
        return CurveCapture(self, start_index=start_index, back_samples=back_samples, interval_s=interval_s)


@dataclass
class CurveCapture:
    """Reads the ring from where it left off; yields every sample once, in order; counts gaps.

    `read_available()` does one round: a snapshot for the newest index, the planned block reads,
    each followed by a snapshot whose SAMPLE_INDEX validates the block. Iterating (`async for`)
    repeats rounds every `interval_s` until the caller stops. `snapshots` (also published by the
    driver) tell the caller the state between blocks (RUNNING, STOPPED_SLIP, ...)."""

    driver: BrakeTesterDriver
    start_index: int | None = None
    back_samples: int = 0
    interval_s: float = 0.05
    cursor: bt.CurveCursor | None = None
    sample_rate_hz: int = bt.DEFAULT_SAMPLE_RATE_HZ
    last_snapshot: bt.TesterSnapshot | None = None
    reads: int = 0
    _reported_gaps: int = field(default=0, repr=False)

    @property
    def lost(self) -> int:
        return self.cursor.lost if self.cursor else 0

    @property
    def delivered(self) -> int:
        return self.cursor.delivered if self.cursor else 0

    @property
    def gaps(self) -> list[bt.Gap]:
        return list(self.cursor.gaps) if self.cursor else []

    async def start(self) -> bt.TesterSnapshot:
        snapshot = await self.driver.snapshot()
        if self.start_index is None:
            self.start_index = (snapshot.sample_index + 1 - self.back_samples) % bt.INDEX_MODULUS
        self.cursor = bt.CurveCursor(self.start_index, snapshot.ring_size)
        self.sample_rate_hz = snapshot.sample_rate_hz
        self.last_snapshot = snapshot
        return snapshot

    async def read_available(self) -> list[bt.CurveSample]:
        """Every sample produced since the last round (or reports why some could not be had)."""
        if self.cursor is None:
            newest = await self.start()
        else:
            newest = await self.driver.snapshot()
        self.last_snapshot = newest
        cursor = self.cursor
        assert cursor is not None
        out: list[bt.CurveSample] = []
        for read in cursor.plan(newest.sample_index):
            registers = await self.driver.read_ring(read)
            after = await self.driver.snapshot()
            self.reads += 1
            self.last_snapshot = after
            if after.ring_size != cursor.ring_size:
                raise DeviceError(self.driver.name, f"RING_SIZE changed from {cursor.ring_size} to "
                                  f"{after.ring_size} during a curve capture", port=self.driver.port)
            try:
                out.extend(cursor.accept(read, registers, after.sample_index))
            except ProtocolError as exc:
                raise DeviceError(self.driver.name, f"curve capture broken: {exc}", port=self.driver.port) from None
            self._report_gaps()
        return out

    def _report_gaps(self) -> None:
        assert self.cursor is not None
        for gap in self.cursor.gaps[self._reported_gaps :]:
            self.driver.log.warning("curve_samples_lost", first_index=gap.first_index, count=gap.count,
                                    first_seq=gap.first_seq, lost_total=self.cursor.lost)
        self._reported_gaps = len(self.cursor.gaps)

    async def __aiter__(self) -> AsyncIterator[bt.CurveSample]:
        while True:
            for sample in await self.read_available():
                yield sample
            await asyncio.sleep(self.interval_s)

    async def collect(self, until: Callable[[bt.TesterSnapshot], bool], timeout_s: float) -> list[bt.CurveSample]:
        """All samples from the start until a snapshot satisfies `until` (then one last round, so the
        samples up to that moment are in), or `timeout_s` runs out (DeviceTimeout)."""
        samples: list[bt.CurveSample] = []
        deadline = time.monotonic() + timeout_s
        while True:
            samples.extend(await self.read_available())
            if self.last_snapshot is not None and until(self.last_snapshot):
                samples.extend(await self.read_available())
                return samples
            if time.monotonic() > deadline:
                raise DeviceTimeout(self.driver.name, f"curve capture: condition not met within {timeout_s:g} s",
                                    port=self.driver.port)
            await asyncio.sleep(self.interval_s)


@contextlib.asynccontextmanager
async def record_curve(driver: BrakeTesterDriver, *, back_samples: int = 0,
                       interval_s: float = 0.05) -> AsyncIterator[CurveRecorder]:
    """Record the curve in the background while the body runs; on exit the recorder finishes its
    round (never cut mid-request: a reply must not outlive its request) and one last round brings
    the recording up to that moment. `recorder.error` holds a read failure that ended it early."""
    recorder = CurveRecorder(driver.curve(back_samples=back_samples, interval_s=interval_s))
    driver._recordings += 1  # the driver's live following pauses: the recording reads the ring
    try:
        await recorder.capture.start()
        task = asyncio.create_task(recorder._run(), name=f"{driver.name}-curve")
        try:
            yield recorder
        finally:
            recorder._stop.set()
            await task
            if recorder.error is None:
                try:
                    recorder.samples.extend(await recorder.capture.read_available())
                except DeviceError as exc:
                    recorder.error = exc
    finally:
        driver._recordings -= 1


@dataclass
class CurveRecorder:
    capture: CurveCapture
    samples: list[bt.CurveSample] = field(default_factory=list)
    error: DeviceError | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.extend(await self.capture.read_available())
            except DeviceError as exc:
                self.error = exc
                self.capture.driver.log.error("curve_recording_failed", error=str(exc))
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.capture.interval_s)
