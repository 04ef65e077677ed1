"""Driver of the CD-1 chassis dynamometer (Modbus TCP or RTU 19200 8E1) on the common life cycle.

The requests go through drivers/modbus_device.py (pymodbus, shared with the
brake tester); protocols/dynamometer.py says what the registers mean. A
refused write is a `DeviceRefused` that names the interlock (exception 06) or
says "value out of range" (03).

Following the ring: every poll reads the ring from where the last one left
off (protocols/ring.py's planner and cursor, 41 samples a read at most), then
the snapshot (input registers 0..19), whose SAMPLE_INDEX validates the blocks
read before it and gives the next poll its newest index. The poll publishes a
`FollowedSnapshot` carrying the new samples, and keeps them in a log that
`samples_since(i0)` serves the per-second data from (reading the ring itself
for what the log does not hold). Lost samples are counted and logged.

Host watchdog: while CONTROL_MODE ≠ 0 or MOTOR = 1 the device faults (FAULT_CODE
8) when no valid request came for WATCHDOG. The poll (at least 2 Hz) feeds it;
a keep-alive task reads SAMPLE_INDEX whenever the line has been quiet for a
quarter of WATCHDOG (at most 0.5 s), so a long command or a slow poll never
starves it.

Safe state (on every (re)connect unless a procedure of ours owns the
dynamometer, on shutdown, after a failed procedure): CONTROL_MODE 0, PAU_ENABLE
0, MOTOR 0 — writes the device always accepts — each confirmed by reading it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymodbus.pdu import ModbusPDU

from drivers.base import Backoff
from drivers.errors import DeviceError, DeviceRefused, DeviceTimeout
from drivers.modbus_device import ModbusClient, ModbusLink, ModbusRefused, ModbusRequests
from protocols import dynamometer as dy
from protocols.brake_tester import Table, round_half_away
from protocols.errors import ProtocolError
from protocols.ring import HALF_INDEX, INDEX_MODULUS

T = TypeVar("T")

TARE_LIMIT_S = 1.0  # the manual: under 500 ms; twice that before giving up
#: the follower's sample log: what `samples_since` serves without touching the bus (6.8 min at 10 Hz)
SAMPLE_LOG_SIZE = 4096
#: the slowest poll the driver accepts: the watchdog (default 2 s) needs requests well within it
MIN_POLL_HZ = 2.0
KEEPALIVE_MAX_S = 0.5


class DynamometerDriver(ModbusRequests):
    kind = "dynamometer"
    device_noun = "dynamometer"
    safe_state_action = "CONTROL_MODE 0, PAU off, motor off"

    def __init__(
        self,
        name: str,
        link: ModbusLink,
        *,
        retries: int = 2,
        poll_hz: float = 5.0,
        stale_after_s: float = 1.0,
        backoff: Backoff | None = None,
        errors_to_disconnect: int = 3,
    ) -> None:
        if poll_hz < MIN_POLL_HZ:
            raise ValueError(f"poll_hz {poll_hz:g}: the dynamometer's watchdog needs at least {MIN_POLL_HZ:g} Hz")
        super().__init__(name, port=link.where, poll_interval_s=1.0 / poll_hz, backoff=backoff,
                         errors_to_disconnect=errors_to_disconnect)
        self.link = link
        self.retries = retries
        self.stale_after_s = stale_after_s
        self._client = None
        self._line_free = asyncio.Event()
        self._line_free.set()
        self.last_snapshot: dy.DynoSnapshot | None = None
        self.build: dy.Build | None = None
        self.watchdog_s = 2.0
        self.cursor: dy.SampleCursor | None = None
        self.samples: deque[dy.RingSample] = deque(maxlen=SAMPLE_LOG_SIZE)
        self._last_index: int | None = None
        self._index_since = 0.0
        self._last_exchange = 0.0
        self._keepalive: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, name: str, config: Any, **kwargs: Any) -> DynamometerDriver:
        """From the daemon's device table (read by attribute: drivers never import laned/)."""
        link = ModbusLink.from_device_config(f"dynamometer {name}", config)
        return cls(name, link, retries=config.retries, poll_hz=config.poll_hz, **kwargs)

    def _exception_meaning(self, raw: int) -> str:
        try:
            return dy.ExceptionCode(raw).meaning
        except ValueError:
            return "unknown exception"

    # ----- life cycle ------------------------------------------------------------------------

    def good_read(self) -> None:
        self._last_exchange = time.monotonic()
        super().good_read()

    async def _hello(self) -> None:
        snapshot = await self._read_snapshot()
        holding = await self.read_holding()
        self.watchdog_s = holding.watchdog_s
        self.build = snapshot.build
        self._last_index = None
        self.cursor = dy.SampleCursor((snapshot.sample_index + 1) % INDEX_MODULUS, snapshot.ring_size)
        self.samples.clear()
        self.health.identity = {
            "transport": self.link.transport,
            "address": self.link.where,
            "unit_id": str(self.link.unit_id),
            "build": self.build.name if self.build else "unknown",
            "rated_power_kw": f"{snapshot.rated_power_kw:g}",
            "rated_force_n": str(snapshot.rated_force_n),
            "top_speed_kmh": f"{snapshot.top_speed_kmh:g}",
            "ring_size": str(snapshot.ring_size),
            "sample_rate_hz": str(snapshot.sample_rate_hz),
        }
        if self._keepalive is None or self._keepalive.done():
            self._keepalive = asyncio.create_task(self._keep_alive(), name=f"{self.name}-keepalive")

    async def _close(self) -> None:
        task, self._keepalive = self._keepalive, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await super()._close()

    async def _keep_alive(self) -> None:
        """Feed the host watchdog whenever the line has been quiet for a quarter of WATCHDOG."""
        while True:
            interval = max(0.05, min(KEEPALIVE_MAX_S, self.watchdog_s / 4 if self.watchdog_s else KEEPALIVE_MAX_S))
            await asyncio.sleep(interval / 2)
            if time.monotonic() - self._last_exchange < interval or not self._open_now:
                continue
            try:
                await self._read_registers(4, dy.InputRegister.SAMPLE_INDEX, 1, "keep-alive (FC04 SAMPLE_INDEX)",
                                           repeat=False)
            except DeviceError:
                pass  # counted by exchange(); the poll loop decides about the link

    async def _poll(self) -> None:
        snapshot = await self._follow()
        self._check_stale(snapshot.sample_index)

    async def _follow(self) -> dy.DynoSnapshot:
        """One poll: the ring from the cursor up to the newest index the last snapshot saw, then the
        snapshot that validates those blocks; published as one FollowedSnapshot."""
        cursor, newest = self.cursor, self.last_snapshot
        if cursor is None or newest is None or newest.ring_size != cursor.ring_size:
            snapshot = await self._read_snapshot()
            self.cursor = dy.SampleCursor((snapshot.sample_index + 1) % INDEX_MODULUS, snapshot.ring_size)
            self.readings.publish(snapshot)
            return snapshot
        reads = cursor.plan(newest.sample_index)
        blocks = [(read, await self._read_ring(read)) for read in reads]
        after = await self._read_snapshot()
        got: list[dy.RingSample] = []
        lost = cursor.lost
        try:
            for read, registers in blocks:
                got.extend(cursor.accept(read, registers, after.sample_index))
        except (ProtocolError, ValueError) as exc:  # the index went back: the dynamometer restarted
            self.log.warning("ring_follow_restarted", reason=str(exc))
            self.cursor = dy.SampleCursor((after.sample_index + 1) % INDEX_MODULUS, after.ring_size)
            self.samples.clear()
            self.readings.publish(after)
            return after
        if cursor.lost != lost:
            self.log.warning("ring_samples_lost", count=cursor.lost - lost, lost_total=cursor.lost)
        self.samples.extend(got)
        followed = dy.FollowedSnapshot(
            **after.__dict__,
            first_sample_index=got[0].index if got else None,
            speeds_kmh=tuple(s.speed_kmh for s in got),
            forces_n=tuple(s.force_n for s in got),
        )
        self.readings.publish(followed)
        return followed

    async def _safe_state(self) -> None:
        """CONTROL_MODE 0, PAU_ENABLE 0, MOTOR 0, each confirmed by a read (the caller holds the line)."""
        unit = self.link.unit_id
        for attempt in range(2):
            try:
                await self._checked(self._once("write CONTROL_MODE = 0 (FC06 holding 0)",
                                               lambda c: c.write_register(0, 0, device_id=unit), _no_check))
                await self._checked(self._once("write PAU_ENABLE = 0 (FC05 coil 2)",
                                               lambda c: c.write_coil(int(dy.Coil.PAU_ENABLE), False,
                                                                      device_id=unit), _no_check))
                await self._checked(self._once("write MOTOR = 0 (FC05 coil 3)",
                                               lambda c: c.write_coil(int(dy.Coil.MOTOR), False, device_id=unit),
                                               _no_check))
                mode = await self._checked(self._once("read CONTROL_MODE (FC03)",
                                                      lambda c: c.read_holding_registers(0, count=1, device_id=unit),
                                                      lambda r: list(r.registers)))
                bits = await self._checked(self._once("read coils 0..5 (FC01)",
                                                      lambda c: c.read_coils(0, count=6, device_id=unit),
                                                      lambda r: list(r.bits[:6])))
            except DeviceTimeout:
                if attempt:
                    raise
                continue
            if mode == [0] and not bits[dy.Coil.PAU_ENABLE] and not bits[dy.Coil.MOTOR]:
                return
        raise DeviceError(self.name, "safe state not confirmed: CONTROL_MODE, PAU_ENABLE or MOTOR still on",
                          port=self.port)

    @staticmethod
    async def _checked(result: Awaitable[T | DeviceRefused]) -> T:
        value = await result
        if isinstance(value, DeviceRefused):
            raise value
        return value

    # ----- reads -------------------------------------------------------------------------------------

    async def snapshot(self) -> dy.DynoSnapshot:
        """Input registers 0..19; also published to `readings` and kept as `last_snapshot`."""
        snapshot = await self._read_snapshot()
        self.readings.publish(snapshot)
        return snapshot

    async def _read_snapshot(self) -> dy.DynoSnapshot:
        registers = await self._read_registers(4, dy.SNAPSHOT_ADDRESS, dy.SNAPSHOT_COUNT,
                                               "read input registers 0..19 (FC04)")
        try:
            snapshot = dy.decode_snapshot(registers)
        except ProtocolError as exc:
            raise DeviceError(self.name, f"input registers 0..19: {exc}", port=self.port) from None
        self.last_snapshot = snapshot
        return snapshot

    async def _read_ring(self, read: dy.RingRead) -> list[int]:
        return await self._read_registers(
            4, read.address, read.register_count,
            f"read ring samples from {read.first_sample} (FC04 {read.address}+{read.register_count})")

    async def inputs(self) -> dy.DynoInputs:
        return dy.decode_inputs(await self._read_bits(2, len(dy.DISCRETE_INPUTS), "read discrete inputs 0..7 (FC02)"))

    async def coils(self) -> dy.DynoCoils:
        return dy.decode_coils(await self._read_bits(1, len(dy.COILS), "read coils 0..5 (FC01)"))

    async def read_holding(self) -> dy.DynoHolding:
        registers = await self._read_registers(3, 0, len(dy.HOLDING_REGISTERS), "read holding registers 0..11 (FC03)")
        try:
            return dy.decode_holding(registers)
        except ProtocolError as exc:
            raise DeviceError(self.name, f"holding registers 0..11: {exc}", port=self.port) from None

    async def samples_since(self, i0: int) -> list[dy.RingSample]:
        """Every ring sample from index `i0` through the newest one known, in order: from the
        follower's log where it reaches back to i0, else read from the ring (samples the ring no
        longer holds are missing, counted and logged)."""
        newest = self.last_snapshot or await self._read_snapshot()
        log = list(self.samples)
        if log and _behind(log[0].index, i0) <= 0 and _behind(i0, (log[-1].index + 1) % INDEX_MODULUS) <= 0:
            start = (i0 - log[0].index) % INDEX_MODULUS
            return [s for s in log if (s.index - log[0].index) % INDEX_MODULUS >= start]
        cursor = dy.SampleCursor(i0, newest.ring_size)
        out: list[dy.RingSample] = []
        reads = cursor.plan(newest.sample_index)
        blocks = [(read, await self._read_ring(read)) for read in reads]
        after = await self._read_snapshot()
        for read, registers in blocks:
            out.extend(cursor.accept(read, registers, after.sample_index))
        if cursor.lost:
            self.log.warning("ring_samples_lost", count=cursor.lost, since=i0)
        return out

    async def wait_snapshot(self, predicate: Callable[[dy.DynoSnapshot], bool], timeout_s: float,
                            *, interval_s: float = 0.1, what: str = "the expected state") -> dy.DynoSnapshot:
        """Read snapshots until `predicate` holds; DeviceTimeout naming `what` after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            snapshot = await self.snapshot()
            if predicate(snapshot):
                return snapshot
            if time.monotonic() > deadline:
                raise DeviceTimeout(self.name, f"no {what} within {timeout_s:g} s (state {snapshot.state.name}, "
                                    f"{snapshot.speed_kmh:.2f} km/h)", port=self.port)
            await asyncio.sleep(interval_s)

    # ----- writes ------------------------------------------------------------------------------------

    async def _write(self, table: Table, address: int, values: list[int] | list[bool], what: str) -> None:
        unit = self.link.unit_id

        def call(c: ModbusClient) -> Awaitable[ModbusPDU]:
            if table == Table.COIL:
                return c.write_coil(address, bool(values[0]), device_id=unit) if len(values) == 1 else c.write_coils(
                    address, [bool(v) for v in values], device_id=unit)
            if len(values) == 1:
                return c.write_register(address, int(values[0]), device_id=unit)
            return c.write_registers(address, [int(v) for v in values], device_id=unit)

        try:
            await self._request(what, call, _no_check, repeat=False)
        except ModbusRefused as exc:
            if exc.exception_code == dy.ExceptionCode.DEVICE_BUSY:
                raise DeviceRefused(self.name, f"{what} refused by an interlock (exception 06): "
                                    f"{dy.interlock_rule(table, address)}", port=self.port) from None
            if exc.exception_code == dy.ExceptionCode.ILLEGAL_VALUE:
                raise DeviceRefused(self.name, f"{what}: value out of range (exception 03)", port=self.port) from None
            raise

    async def _write_coil_named(self, coil: dy.Coil, on: bool) -> None:
        await self._write(Table.COIL, int(coil), [on], f"write {coil.name} = {int(on)} (FC05 coil {int(coil)})")

    async def write_holding(self, register: dy.HoldingRegister, values: list[int]) -> None:
        """Raw holding registers from `register` (FC06 for one, FC16 for several)."""
        names = "…".join(dy.HOLDING_REGISTERS[register + k].name for k in (0, len(values) - 1)) if len(
            values) > 1 else register.name
        fc = "FC16" if len(values) > 1 else "FC06"
        await self._write(Table.HOLDING_REGISTER, int(register), values,
                          f"write {names} = {', '.join(map(str, values))} ({fc} holding {int(register)})")
        if register <= dy.HoldingRegister.WATCHDOG < register + len(values):
            self.watchdog_s = values[dy.HoldingRegister.WATCHDOG - register] / 10

    async def set_lift(self, up: bool, *, wait_s: float | None = None) -> None:
        """LIFT = 1 raises it (refused while the rollers turn); with `wait_s`, wait for the end switch."""
        await self._write_coil_named(dy.Coil.LIFT, up)
        if wait_s is not None:
            deadline = time.monotonic() + wait_s
            while True:
                i = await self.inputs()
                if (i.lift_up if up else i.lift_down):
                    return
                if time.monotonic() > deadline:
                    raise DeviceTimeout(self.name, f"lift not {'up' if up else 'down'} {wait_s:g} s after "
                                        f"LIFT = {int(up)}", port=self.port)
                await asyncio.sleep(0.05)

    async def set_roller_brake(self, on: bool) -> None:
        await self._write_coil_named(dy.Coil.ROLLER_BRAKE, on)

    async def set_pau_enable(self, on: bool) -> None:
        """PAU_ENABLE = 0 also drops the mode and clears a fault whose cause is gone."""
        await self._write_coil_named(dy.Coil.PAU_ENABLE, on)

    async def set_motor(self, on: bool) -> None:
        await self._write_coil_named(dy.Coil.MOTOR, on)

    async def set_fan(self, on: bool) -> None:
        await self._write_coil_named(dy.Coil.FAN, on)

    async def tare(self) -> None:
        """Zero the force channel: TARE = 1, then wait until the dynamometer writes it back to 0."""
        await self._write_coil_named(dy.Coil.TARE, True)
        deadline = time.monotonic() + TARE_LIMIT_S
        while (await self.coils()).tare:
            if time.monotonic() > deadline:
                raise DeviceTimeout(self.name, f"TARE still 1 after {TARE_LIMIT_S:g} s (the manual: under 0.5 s)",
                                    port=self.port)
            await asyncio.sleep(0.05)

    async def set_control_mode(self, mode: dy.ControlMode | int) -> int:
        """Write CONTROL_MODE; returns SAMPLE_INDEX as read right after the reply (the lane's
        reference for "the first sample after the mode began")."""
        await self.write_holding(dy.HoldingRegister.CONTROL_MODE, [int(mode)])
        index = await self._read_registers(4, dy.InputRegister.SAMPLE_INDEX, 1, "read SAMPLE_INDEX (FC04 13)")
        return index[0]

    async def set_power_target_kw(self, power_kw: float) -> None:
        await self.write_holding(dy.HoldingRegister.POWER_TARGET, [_raw(power_kw, 100)])

    async def set_force_target_n(self, force_n: float) -> None:
        await self.write_holding(dy.HoldingRegister.FORCE_TARGET, [_raw(force_n, 1)])

    async def set_power_and_force_targets(self, power_kw: float, force_n: float) -> None:
        """POWER_TARGET and FORCE_TARGET in one FC16 (the manual's ASM example)."""
        await self.write_holding(dy.HoldingRegister.POWER_TARGET, [_raw(power_kw, 100), _raw(force_n, 1)])

    async def set_speed_target_kmh(self, speed_kmh: float) -> None:
        await self.write_holding(dy.HoldingRegister.SPEED_TARGET, [_raw(speed_kmh, 100)])

    async def set_speed_ramp(self, kmh_per_s: float) -> None:
        await self.write_holding(dy.HoldingRegister.SPEED_RAMP, [_raw(kmh_per_s, 100)])

    async def set_speed_target_and_ramp(self, speed_kmh: float, kmh_per_s: float) -> None:
        """SPEED_TARGET and SPEED_RAMP in one FC16 (the manual's lug-down example)."""
        await self.write_holding(dy.HoldingRegister.SPEED_TARGET, [_raw(speed_kmh, 100), _raw(kmh_per_s, 100)])

    async def set_motor_speed_kmh(self, speed_kmh: float) -> None:
        await self.write_holding(dy.HoldingRegister.MOTOR_SPEED, [_raw(speed_kmh, 100)])

    async def set_base_inertia_kg(self, mass_kg: int) -> None:
        await self.write_holding(dy.HoldingRegister.BASE_INERTIA, [int(mass_kg)])

    async def set_watchdog_s(self, seconds: float) -> None:
        await self.write_holding(dy.HoldingRegister.WATCHDOG, [_raw(seconds, 10)])

    async def write_parasitic_coefficients(self, pl_a_n: float, pl_b: float, pl_c: float) -> None:
        """PL_A (N), PL_B (N per km/h), PL_C (N per (km/h)²) in one FC16 (after a coast-down fit)."""
        await self.write_holding(dy.HoldingRegister.PL_A, [_raw(pl_a_n, 10), _raw(pl_b, 1000), _raw(pl_c, 10000)])

    async def emergency_stop(self, *, timeout_s: float = 2.0) -> bool:
        """The safe state as the next request on the line; never raises; True once confirmed."""
        self._line_free.clear()
        try:
            async with asyncio.timeout(timeout_s), self._line:
                await self._safe_state()
        except Exception as exc:  # the caller is already handling a failure: report, never raise
            self.log.error("dyno_emergency_stop_failed", error=repr(exc))
            return False
        finally:
            self._line_free.set()
        self.log.warning("dyno_emergency_stop", confirmed=True)
        return True


def _no_check(response: ModbusPDU) -> None:
    return None


def _raw(value: float, per_unit: int) -> int:
    """A value in its unit as the register's raw integer, rounded half away from zero."""
    return round_half_away(value * per_unit)


def _behind(a: int, b: int) -> int:
    """How many samples index `a` lies after `b` (negative: before), within half the index space."""
    d = (a - b) % INDEX_MODULUS
    return d - INDEX_MODULUS if d >= HALF_INDEX else d
