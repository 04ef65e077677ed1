"""The tester's Modbus slave: pymodbus 3.16's own server over the four tables of the map.

The register image is a pymodbus `SimDevice` with four separate tables (coils,
discrete inputs, holding registers, input registers), each from address 0.
Its `action` hook is where the tester lives: before a read it copies the live
values (the model advanced to "now") into the image, and a write goes to the
model first, which applies the manual's interlocks and answers 03 or 06.

`TesterDatastore` wraps pymodbus's `SimCore` (the datastore the server builds
from a SimDevice) for the two things SimDevice cannot say:
  * the exact extent of the bit tables: SimDevice pads coils and discrete
    inputs to 16 bits and its hook sees only whole 16-bit words, but a read of
    coil 3 must answer exception 02;
  * answering only its own unit id over RTU: SimCore sends a fallback
    exception for an unknown id; here it raises NoSuchIdException, which the
    server (ignore_missing_devices=True) answers with silence, as on RS-485.
It also answers every request with an injected exception code when asked to.
The dynamometer simulator reuses it over its own map (`map_check`) and host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simcore import SimCore
from pymodbus.simulator.simutils import SimUtils

from protocols.brake_tester import (
    COILS,
    DISCRETE_INPUTS,
    MAX_READ_REGISTERS,
    RING_BASE,
    SNAPSHOT_COUNT,
    Coil,
    ExceptionCode,
    Table,
    in_map,
)
from simulators.brake.physics import TesterModel

#: function code → the table it addresses
FC_TABLE = {
    1: Table.COIL, 5: Table.COIL, 15: Table.COIL,
    2: Table.DISCRETE_INPUT,
    3: Table.HOLDING_REGISTER, 6: Table.HOLDING_REGISTER, 16: Table.HOLDING_REGISTER,
    4: Table.INPUT_REGISTER,
}
WRITE_FCS = frozenset({5, 15, 6, 16})
MAX_READ_BITS = 2000


class _RingModel(Protocol):
    ring_size: int


class TesterHost(Protocol):
    """What the datastore needs from the simulator around it (the brake tester's or the dynamometer's)."""

    @property
    def model(self) -> _RingModel: ...

    def sync(self) -> None:
        """Advance the model to now (faults, link state, samples)."""

    def forced_exception(self) -> int | None:
        """An exception code to answer every request with (the `exception` fault), or None."""


def build_device(model: TesterModel, unit_id: int, action: Callable[..., Any]) -> SimDevice:
    """The four tables of the map as a pymodbus SimDevice (unit 0: any id, as over TCP)."""
    ring_registers = 2 * model.ring_size
    return SimDevice(
        unit_id,
        simdata=(
            [SimData(0, values=[False] * len(COILS), datatype=DataType.BITS)],
            [SimData(0, values=[False] * len(DISCRETE_INPUTS), datatype=DataType.BITS)],
            [SimData(0, values=[25, 100, 60], datatype=DataType.REGISTERS)],
            [
                SimData(0, values=[0] * SNAPSHOT_COUNT, datatype=DataType.REGISTERS),
                SimData(RING_BASE, values=[0] * ring_registers, datatype=DataType.REGISTERS),
            ],
        ),
        action=action,
    )


def _pack_bits(bits: list[bool]) -> int:
    return SimUtils.bitsToRegisters([*bits, *([False] * (16 - len(bits)))])[0]


class _TesterHost(Protocol):
    model: TesterModel


class TesterImage:
    """The SimDevice `action`: live values into the image before reads, writes through the model."""

    def __init__(self, host: _TesterHost) -> None:
        self.host = host

    async def action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        model = self.host.model
        if set_values is not None and function_code in WRITE_FCS:
            code = self._write(model, function_code, address, list(set_values))
            return ExcCodes(int(code)) if code is not None else None
        table = FC_TABLE.get(function_code)
        if table == Table.COIL:
            c = model.coils()
            registers[0] = _pack_bits([c.motors, c.lift, c.tare])
        elif table == Table.DISCRETE_INPUT:
            registers[0] = _pack_bits(model.input_bits())
        elif table == Table.HOLDING_REGISTER:
            s = model.settings
            registers[0:3] = [s.slip_threshold_pct, s.sample_rate_set_hz, s.auto_stop_s]
        elif table == Table.INPUT_REGISTER:
            if address < SNAPSHOT_COUNT:
                registers[0:SNAPSHOT_COUNT] = model.snapshot_registers()
            else:
                first = address - RING_BASE
                registers[address - start_address : address - start_address + count] = model.ring[
                    first : first + count
                ]
        return None

    @staticmethod
    def _write(model: TesterModel, fc: int, address: int, values: list[Any]) -> ExceptionCode | None:
        if fc in (6, 16):
            return model.write_holding(address, [int(v) for v in values])
        coils = [(Coil(address + offset), bool(value)) for offset, value in enumerate(values)]
        # FC15 over several coils: the lot is refused if any one of them is refused now
        for coil, value in coils:
            if (code := model.coil_refusal(coil, value)) is not None:
                return code
        for coil, value in coils:
            model.write_coil(coil, value)
        return None


class TesterDatastore(SimCore):
    """pymodbus's SimCore, with the map's exact extent, unit-id filtering and injected exceptions."""

    def __init__(
        self,
        device: SimDevice,
        host: TesterHost,
        *,
        own_unit_only: int | None = None,
        map_check: Callable[[Table, int, int, int], bool] = in_map,
    ) -> None:
        super().__init__(device)
        self.host = host
        self.own_unit_only = own_unit_only
        self.map_check = map_check  # the device's map: (table, address, count, ring size) -> inside

    def _check(self, device_id: int, func_code: int, address: int, count: int) -> ExcCodes | None:
        if self.own_unit_only is not None and device_id != self.own_unit_only:
            raise NoSuchIdException(f"unit {device_id} is not this tester ({self.own_unit_only})")
        self.host.sync()
        forced = self.host.forced_exception()
        if forced is not None:
            return ExcCodes(forced)
        table = FC_TABLE.get(func_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        limit = MAX_READ_BITS if table in (Table.COIL, Table.DISCRETE_INPUT) else MAX_READ_REGISTERS
        if not 1 <= count <= limit:
            return ExcCodes.ILLEGAL_VALUE
        if not self.map_check(table, address, count, self.host.model.ring_size):
            return ExcCodes.ILLEGAL_ADDRESS
        return None

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        if (refused := self._check(device_id, func_code, address, count)) is not None:
            return refused
        return await super().async_getValues(device_id, func_code, address, count)

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: list[int] | list[bool]
    ) -> ExcCodes | None:
        if (refused := self._check(device_id, func_code, address, len(values))) is not None:
            return refused
        return await super().async_setValues(device_id, func_code, address, values)

