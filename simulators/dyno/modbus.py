"""The dynamometer's Modbus slave: pymodbus's server over the four tables of the CD-1 map.

The same construction as the brake tester's (simulators/brake/modbus.py, whose
`TesterDatastore` is reused with the dynamometer's map): a pymodbus SimDevice
whose `action` hook copies the live values of the model into the image before
a read and sends a write through the model, which applies the manual's ranges
and interlocks and answers 03 or 06.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simutils import SimUtils

from protocols import dynamometer as dy
from protocols.brake_tester import Table
from simulators.brake.modbus import FC_TABLE, WRITE_FCS
from simulators.dyno.physics import DynoModel


class DynoHost(Protocol):
    model: DynoModel


def build_device(model: DynoModel, unit_id: int, action: Callable[..., Any]) -> SimDevice:
    """The four tables of the CD-1 map as a pymodbus SimDevice (unit 0: any id, as over TCP)."""
    return SimDevice(
        unit_id,
        simdata=(
            [SimData(0, values=[False] * len(dy.COILS), datatype=DataType.BITS)],
            [SimData(0, values=[False] * len(dy.DISCRETE_INPUTS), datatype=DataType.BITS)],
            [SimData(0, values=list(model.holding), datatype=DataType.REGISTERS)],
            [
                SimData(0, values=[0] * dy.SNAPSHOT_COUNT, datatype=DataType.REGISTERS),
                SimData(dy.RING_BASE, values=[0] * (dy.SAMPLE_REGISTERS * model.ring_size),
                        datatype=DataType.REGISTERS),
            ],
        ),
        action=action,
    )


def _pack_bits(bits: list[bool]) -> int:
    return SimUtils.bitsToRegisters([*bits, *([False] * (16 - len(bits)))])[0]


def map_check(table: Table, address: int, count: int, ring_size: int) -> bool:
    return dy.in_map(table, address, count, ring_size)


class DynoImage:
    """The SimDevice `action`: live values into the image before reads, writes through the model."""

    def __init__(self, host: DynoHost) -> None:
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
            values = list(set_values)
            if function_code in (5, 15):
                code = model.write_coils(address, [bool(v) for v in values])
            else:
                code = model.write_holding(address, [int(v) for v in values])
            return ExcCodes(int(code)) if code is not None else None
        table = FC_TABLE.get(function_code)
        if table == Table.COIL:
            registers[0] = _pack_bits(model.coil_bits())
        elif table == Table.DISCRETE_INPUT:
            registers[0] = _pack_bits(dy.encode_inputs(model.inputs()))
        elif table == Table.HOLDING_REGISTER:
            registers[0 : len(model.holding)] = list(model.holding)
        elif table == Table.INPUT_REGISTER:
            if address < dy.SNAPSHOT_COUNT:
                registers[0 : dy.SNAPSHOT_COUNT] = model.snapshot_registers()
            else:
                first = address - dy.RING_BASE
                registers[address - start_address : address - start_address + count] = model.ring[
                    first : first + count
                ]
        return None
