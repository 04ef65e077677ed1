"""The Modbus request layer shared by the drivers of Modbus devices (RB-2 brake tester, CD-1 dynamometer).

pymodbus 3.16's async clients carry the frames. One request at a time on the
line (`Driver.exchange`); reads are repeated after a timeout (reading never
changes the device), writes are not. Exception replies become `DeviceRefused`
naming the exception; 02, 03 and 06 prove the device answers, so they do not
count against the link's health; 04 (device failure) does.

`ModbusRequests` is a mixin for a `Driver` subclass that sets `link`,
`retries`, `_client` and `_line_free` (an event cleared while an emergency
stop waits for the line) in its `__init__`.
"""

from __future__ import annotations

import asyncio
import gc
import os
import termios
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, Literal, TypeAlias, TypeVar

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from drivers.base import Driver
from drivers.errors import DeviceError, DeviceRefused, DeviceStale, DeviceTimeout, DeviceUnavailable
from drivers.port_lock import in_use_detail, lock_holder
from protocols.errors import ProtocolError

#: the pymodbus client a request runs on, and what its check makes of the reply
ModbusClient: TypeAlias = AsyncModbusTcpClient | AsyncModbusSerialClient
T = TypeVar("T")

#: after an RTU timeout, the line is left quiet this long: a late reply (no transaction id over
#: RTU) must not be taken for the answer to the next request
RTU_QUIET_S = 0.2
#: the Modbus exception codes both manuals use, with their generic meaning
EXCEPTION_MEANINGS = {
    1: "illegal function",
    2: "illegal data address (outside the register map)",
    3: "illegal data value (out of the register's range)",
    4: "device failure",
    6: "device busy (not allowed in the present state: interlock)",
}


@dataclass(frozen=True)
class ModbusLink:
    """Where a Modbus device is (the brake tester, the dynamometer): `transport` "tcp" (host,
    tcp_port) or "rtu" (serial_port, 19200 8E1)."""

    transport: Literal["tcp", "rtu"] = "tcp"
    host: str = "127.0.0.1"
    tcp_port: int = 502
    serial_port: str = ""
    baudrate: int = 19200
    parity: str = "E"
    bytesize: int = 8
    stopbits: int = 1
    unit_id: int = 1
    timeout_s: float = 0.5

    def __post_init__(self) -> None:
        if self.transport not in ("tcp", "rtu"):
            raise ValueError(f"transport {self.transport!r}: use tcp or rtu")
        if self.transport == "rtu" and not self.serial_port:
            raise ValueError("transport rtu needs serial_port (e.g. /dev/ttyUSB0)")
        if self.parity not in ("N", "E", "O"):
            raise ValueError(f"parity {self.parity!r}: use N, E or O")
        if not 0 <= self.unit_id <= 247:
            raise ValueError(f"unit_id {self.unit_id}: use 1–247 (0 only over TCP)")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ModbusLink:
        """From a config table; unknown keys are an error naming the key."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown Modbus link key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**dict(data))

    @classmethod
    def from_device_config(cls, device: str, config: Any) -> ModbusLink:
        """From a device's entry in the daemon's device table (read by attribute: drivers never import
        laned/): `transport.type` "tcp" (host, port) or "rtu" (port, baudrate, parity, stopbits),
        `unit_id`, `timeout_ms`; ValueError naming `device` (e.g. "dynamometer dyno") for another type."""
        t = config.transport
        timeout_s = config.timeout_ms / 1000
        if t.type == "tcp":
            return cls(transport="tcp", host=t.host, tcp_port=t.port, unit_id=config.unit_id, timeout_s=timeout_s)
        if t.type == "rtu":
            return cls(transport="rtu", serial_port=t.port, baudrate=t.baudrate, parity=t.parity,
                       stopbits=t.stopbits, unit_id=config.unit_id, timeout_s=timeout_s)
        raise ValueError(f"{device}: transport type {t.type!r}, use tcp or rtu")

    @property
    def where(self) -> str:
        return f"{self.host}:{self.tcp_port}" if self.transport == "tcp" else self.serial_port



class ModbusRefused(DeviceRefused):
    """A Modbus exception reply, with its code (a `DeviceRefused` like any other refusal)."""

    def __init__(self, device: str, message: str, *, exception_code: int, port: str | None = None) -> None:
        super().__init__(device, message, port=port)
        self.exception_code = exception_code


class ModbusRequests(Driver):
    """Requests over pymodbus for a Modbus device's driver (see the module docstring)."""

    #: exception replies that mean "the device is fine, the request was not": they keep health good
    request_exceptions: ClassVar[frozenset[int]] = frozenset({2, 3, 6})
    #: what the device is called in messages ("tester", "dynamometer")
    device_noun: ClassVar[str] = "device"
    link: ModbusLink
    retries: int
    _client: AsyncModbusTcpClient | AsyncModbusSerialClient | None
    _line_free: asyncio.Event
    #: a ring device (RB-2, CD-1) whose SAMPLE_INDEX stays put this long over good replies is stale
    stale_after_s: float
    _last_index: int | None
    _index_since: float

    def _check_stale(self, index: int) -> None:
        """DeviceStale when the ring's SAMPLE_INDEX has not moved over `stale_after_s` of good replies
        (the manuals' frozen firmware); any move starts the clock again."""
        now = time.monotonic()
        if index != self._last_index:
            self._last_index, self._index_since = index, now
        elif now - self._index_since > self.stale_after_s:
            raise DeviceStale(self.name, f"SAMPLE_INDEX stuck at {index} for {now - self._index_since:.1f} s of "
                              f"good replies (frozen {self.device_noun} firmware?)", port=self.port)

    async def _open(self) -> None:
        lk = self.link
        client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if lk.transport == "tcp":
            client = AsyncModbusTcpClient(lk.host, port=lk.tcp_port, timeout=lk.timeout_s, retries=0,
                                          reconnect_delay=0, name=self.name)
        else:
            client = AsyncModbusSerialClient(lk.serial_port, framer=FramerType.RTU, baudrate=lk.baudrate,
                                             parity=lk.parity, bytesize=lk.bytesize, stopbits=lk.stopbits,
                                             timeout=lk.timeout_s, retries=0, reconnect_delay=0, name=self.name)
        self._client = client
        failure = ""
        try:
            connected = await client.connect()
        except termios.error as exc:  # pyserial re-applies settings after opening; a pty refuses parity
            failure = f"cannot set {lk.baudrate} 8{lk.parity}{lk.stopbits} ({exc})"
            if os.path.realpath(lk.serial_port).startswith("/dev/pts/") and lk.parity != "N":
                failure += (f": a pseudo-terminal (simulated {self.device_noun}) cannot carry parity; "
                            "configure parity N for it")
        if failure:
            client.close()
            gc.collect()  # pyserial had opened and locked the port when pymodbus failed: release it now
            raise DeviceUnavailable(self.name, failure, port=self.port)
        if not connected:
            if lk.transport == "rtu" and lock_holder(lk.serial_port) is not None:
                # pymodbus opens the port exclusively (flock) and only logs why it could not
                raise DeviceUnavailable(self.name, in_use_detail(lk.serial_port), port=self.port)
            what = "TCP connection" if lk.transport == "tcp" else "serial port"
            raise DeviceUnavailable(
                self.name, f"cannot open the {what} (is the {self.device_noun} on and the address right?)",
                port=self.port)

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


    def _exception_meaning(self, raw: int) -> str:
        """What exception code `raw` means at this device (the device's ExceptionCode table)."""
        return EXCEPTION_MEANINGS.get(raw, "unknown exception")

    def _refusal(self, what: str, response: ModbusPDU) -> DeviceRefused:
        raw = int(getattr(response, "exception_code", 0))
        return ModbusRefused(self.name, f"{what}: Modbus exception {raw:02d} {self._exception_meaning(raw)}",
                             exception_code=raw, port=self.port)

    async def _once(self, what: str, call: Callable[[ModbusClient], Awaitable[ModbusPDU]],
                    check: Callable[[ModbusPDU], T]) -> T | DeviceRefused:
        """One request on the line (inside `exchange`): the decoded value, or a DeviceRefused to raise
        outside (02/03/06 leave health good)."""
        client = self._client
        if client is None or not client.connected:
            raise DeviceUnavailable(self.name, "link lost (connection closed or port gone)", port=self.port)
        try:
            response = await call(client)
        except ModbusIOException:
            if self.link.transport == "rtu":
                await asyncio.sleep(RTU_QUIET_S)  # let a late reply pass before the next request
            raise DeviceTimeout(self.name, f"no valid reply to {what} within {self.link.timeout_s * 1000:.0f} ms",
                                port=self.port) from None
        except ConnectionException as exc:
            raise DeviceUnavailable(self.name, f"{what}: link lost ({exc})", port=self.port) from None
        except ModbusException as exc:
            raise DeviceError(self.name, f"{what}: {exc}", port=self.port) from None
        if response.isError():
            refusal = self._refusal(what, response)
            if int(getattr(response, "exception_code", 0)) in self.request_exceptions:
                return refusal
            raise refusal
        try:
            return check(response)
        except ProtocolError as exc:
            raise DeviceError(self.name, f"{what}: bad reply: {exc}", port=self.port) from None

    async def _request(self, what: str, call: Callable[[ModbusClient], Awaitable[ModbusPDU]],
                       check: Callable[[ModbusPDU], T], *, repeat: bool) -> T:
        attempts = 1 + (self.retries if repeat else 0)
        last: DeviceTimeout | None = None
        for _ in range(attempts):
            await self._line_free.wait()  # an emergency stop goes first
            try:
                result = await self.exchange(lambda: self._once(what, call, check))
            except DeviceTimeout as exc:
                last = exc
                continue
            if isinstance(result, DeviceRefused):
                raise result
            return result
        assert last is not None
        raise last

    async def _read_registers(self, fc: int, address: int, count: int, what: str, *, repeat: bool = True) -> list[int]:
        unit = self.link.unit_id

        def call(c: ModbusClient) -> Awaitable[ModbusPDU]:
            reader = c.read_input_registers if fc == 4 else c.read_holding_registers
            return reader(address, count=count, device_id=unit)

        def check(r: ModbusPDU) -> list[int]:
            if len(r.registers) != count:
                raise ProtocolError(f"{len(r.registers)} registers in the reply, {count} asked (a late reply?)")
            return list(r.registers)

        result: list[int] = await self._request(what, call, check, repeat=repeat)
        return result

    async def _read_bits(self, fc: int, count: int, what: str) -> list[bool]:
        unit = self.link.unit_id

        def call(c: ModbusClient) -> Awaitable[ModbusPDU]:
            reader = c.read_coils if fc == 1 else c.read_discrete_inputs
            return reader(0, count=count, device_id=unit)

        def check(r: ModbusPDU) -> list[bool]:
            if len(r.bits) < count:
                raise ProtocolError(f"{len(r.bits)} bits in the reply, {count} asked")
            return list(r.bits[:count])

        result: list[bool] = await self._request(what, call, check, repeat=True)
        return result

    async def _write_coil(self, coil: IntEnum, on: bool) -> None:
        unit = self.link.unit_id
        await self._request(
            f"write {coil.name} = {int(on)} (FC05 coil {int(coil)})",
            lambda c: c.write_coil(int(coil), on, device_id=unit),
            lambda r: None,
            repeat=False,
        )
