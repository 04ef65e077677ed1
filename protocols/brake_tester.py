"""RB-2 roller brake tester: the Modbus register map as data, typed decoding, curve-ring arithmetic.

Pure code (no I/O): pymodbus frames the requests on the wire; this module says
what the registers mean (spec/devices/brake-tester.md, followed to the byte).
The driver uses it to decode what it reads and to read the 100 Hz curve ring
without losing or repeating a sample; the simulator uses the same map and the
encoding helpers to fill its registers.

Index arithmetic is modulo 65536 everywhere (SAMPLE_INDEX wraps there). Ring
sample i lives at input register 1000 + 2·(i mod RING_SIZE), left then right
force as int16 daN. A sample read in a block is valid only if a SAMPLE_INDEX
read taken after the block is less than RING_SIZE samples ahead of it.

The module is longer than most (the map as data, typed readings, and the ring
arithmetic with its cursor) because the task gives the tester one protocol
module; its three parts are marked below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import IntEnum, StrEnum
from typing import ClassVar, TypeVar

from protocols import ring
from protocols.errors import ProtocolError
from protocols.ring import HALF_INDEX as HALF_INDEX
from protocols.ring import INDEX_MODULUS as INDEX_MODULUS
from protocols.ring import MAX_READ_REGISTERS as MAX_READ_REGISTERS
from protocols.ring import BlockCheck as BlockCheck
from protocols.ring import Gap as Gap
from protocols.ring import pending_samples as pending_samples
from protocols.ring import validate_block as validate_block

E = TypeVar("E", bound=IntEnum)

RING_BASE = 1000
DEFAULT_RING_SIZE = 512
DEFAULT_SAMPLE_RATE_HZ = 100
SNAPSHOT_ADDRESS = 0
SNAPSHOT_COUNT = 16
SAMPLE_REGISTERS = 2
INT16_MIN, INT16_MAX = -32768, 32767
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
SPEED_SCALE_KMH = 0.01
DAN_N = 10


# ----- the register map ------------------------------------------------------------


class Table(StrEnum):
    """The four Modbus tables; each starts at address 0."""

    COIL = "coil"
    DISCRETE_INPUT = "discrete_input"
    INPUT_REGISTER = "input_register"
    HOLDING_REGISTER = "holding_register"


class Coil(IntEnum):
    MOTORS = 0
    LIFT = 1
    TARE = 2


class DiscreteInput(IntEnum):
    IN_POSITION = 0
    LEFT_SLIP = 1
    RIGHT_SLIP = 2
    MOTORS_RUNNING = 3
    LIFT_UP = 4
    FAULT = 5


class InputRegister(IntEnum):
    LEFT_FORCE = 0
    RIGHT_FORCE = 2
    LEFT_LOAD = 4
    RIGHT_LOAD = 6
    LEFT_SPEED = 8
    RIGHT_SPEED = 9
    STATE = 10
    FAULT_CODE = 11
    SAMPLE_INDEX = 12
    SAMPLE_RATE = 13
    RING_SIZE = 14
    RESERVED = 15


class HoldingRegister(IntEnum):
    SLIP_THRESHOLD = 0
    SAMPLE_RATE_SET = 1
    AUTO_STOP_S = 2


class TesterState(IntEnum):
    IDLE = 0
    STARTING = 1
    RUNNING = 2
    STOPPED_SLIP = 3
    STOPPED = 4
    FAULT = 5


class FaultCode(IntEnum):
    NONE = 0
    LEFT_MOTOR_OVERLOAD = 1
    RIGHT_MOTOR_OVERLOAD = 2
    LEFT_FORCE_SENSOR = 3
    RIGHT_FORCE_SENSOR = 4
    LOAD_CELL = 5
    EMERGENCY_STOP = 6


class ExceptionCode(IntEnum):
    """Modbus exception codes the tester answers, with what each means at this tester."""

    ILLEGAL_FUNCTION = 1
    ILLEGAL_ADDRESS = 2
    ILLEGAL_VALUE = 3
    DEVICE_FAILURE = 4
    DEVICE_BUSY = 6

    @property
    def meaning(self) -> str:
        return _EXCEPTION_MEANINGS[self]


_EXCEPTION_MEANINGS = {
    ExceptionCode.ILLEGAL_FUNCTION: "illegal function (the tester does not offer this function code)",
    ExceptionCode.ILLEGAL_ADDRESS: "illegal data address (outside the tester's register map)",
    ExceptionCode.ILLEGAL_VALUE: "illegal data value (out of the register's range)",
    ExceptionCode.DEVICE_FAILURE: "device failure (the tester could not carry out the request)",
    ExceptionCode.DEVICE_BUSY: "device busy (not allowed in the present state: interlock)",
}

#: the motor states: "the motors run" means STARTING or RUNNING
MOTORS_RUN_STATES = frozenset({TesterState.STARTING, TesterState.RUNNING})
#: states from which MOTORS = 1 may start the rollers
STARTABLE_STATES = frozenset({TesterState.IDLE, TesterState.STOPPED, TesterState.STOPPED_SLIP})


@dataclass(frozen=True)
class Point:
    """One named item of the map: where it is, how it is coded, what range it takes."""

    table: Table
    address: int
    name: str
    kind: str  # "bit", "uint16", "int16", "int32"
    unit: str = ""
    scale: float = 1.0  # value in `unit` = raw × scale
    minimum: int | None = None
    maximum: int | None = None
    default: int | None = None
    meaning: str = ""

    @property
    def words(self) -> int:
        return 2 if self.kind == "int32" else 1


COILS: tuple[Point, ...] = (
    Point(Table.COIL, 0, "MOTORS", "bit", meaning="1 runs both roller motors, 0 stops them"),
    Point(Table.COIL, 1, "LIFT", "bit", meaning="1 raises the lift (drive off), 0 lowers it (test)"),
    Point(Table.COIL, 2, "TARE", "bit", meaning="write 1 to zero the force channels; reads 0 when done"),
)
DISCRETE_INPUTS: tuple[Point, ...] = (
    Point(Table.DISCRETE_INPUT, 0, "IN_POSITION", "bit", meaning="both wheels of an axle on the rollers"),
    Point(Table.DISCRETE_INPUT, 1, "LEFT_SLIP", "bit", meaning="left third roller saw slip (latched)"),
    Point(Table.DISCRETE_INPUT, 2, "RIGHT_SLIP", "bit", meaning="right third roller saw slip (latched)"),
    Point(Table.DISCRETE_INPUT, 3, "MOTORS_RUNNING", "bit", meaning="rollers at test speed"),
    Point(Table.DISCRETE_INPUT, 4, "LIFT_UP", "bit", meaning="the lift is up"),
    Point(Table.DISCRETE_INPUT, 5, "FAULT", "bit", meaning="see FAULT_CODE"),
)
INPUT_REGISTERS: tuple[Point, ...] = (
    Point(Table.INPUT_REGISTER, 0, "LEFT_FORCE", "int32", "N", meaning="instantaneous left brake force"),
    Point(Table.INPUT_REGISTER, 2, "RIGHT_FORCE", "int32", "N", meaning="instantaneous right brake force"),
    Point(Table.INPUT_REGISTER, 4, "LEFT_LOAD", "int32", "N", meaning="static left wheel load"),
    Point(Table.INPUT_REGISTER, 6, "RIGHT_LOAD", "int32", "N", meaning="static right wheel load"),
    Point(Table.INPUT_REGISTER, 8, "LEFT_SPEED", "uint16", "km/h", SPEED_SCALE_KMH, meaning="left roller speed"),
    Point(Table.INPUT_REGISTER, 9, "RIGHT_SPEED", "uint16", "km/h", SPEED_SCALE_KMH, meaning="right roller speed"),
    Point(Table.INPUT_REGISTER, 10, "STATE", "uint16", meaning="TesterState"),
    Point(Table.INPUT_REGISTER, 11, "FAULT_CODE", "uint16", meaning="FaultCode"),
    Point(Table.INPUT_REGISTER, 12, "SAMPLE_INDEX", "uint16", meaning="newest sample in the ring, mod 65536"),
    Point(Table.INPUT_REGISTER, 13, "SAMPLE_RATE", "uint16", "Hz", default=DEFAULT_SAMPLE_RATE_HZ),
    Point(Table.INPUT_REGISTER, 14, "RING_SIZE", "uint16", "samples", default=DEFAULT_RING_SIZE),
    Point(Table.INPUT_REGISTER, 15, "RESERVED", "uint16", default=0),
)
HOLDING_REGISTERS: tuple[Point, ...] = (
    Point(Table.HOLDING_REGISTER, 0, "SLIP_THRESHOLD", "uint16", "%", minimum=5, maximum=60, default=25,
          meaning="slip at which the tester stops the motors"),
    Point(Table.HOLDING_REGISTER, 1, "SAMPLE_RATE_SET", "uint16", "Hz", minimum=10, maximum=200, default=100,
          meaning="samples per second into the ring"),
    Point(Table.HOLDING_REGISTER, 2, "AUTO_STOP_S", "uint16", "s", minimum=5, maximum=300, default=60,
          meaning="seconds the motors may run before the tester stops them"),
)
#: the curve ring, as one item of the input-register table (RING_SIZE int16 pairs from 1000)
RING = Point(Table.INPUT_REGISTER, RING_BASE, "RING", "int16", "daN", float(DAN_N),
             meaning="sample i: left, right force at 1000 + 2·(i mod RING_SIZE)")

REGISTER_MAP: dict[Table, tuple[Point, ...]] = {
    Table.COIL: COILS,
    Table.DISCRETE_INPUT: DISCRETE_INPUTS,
    Table.INPUT_REGISTER: (*INPUT_REGISTERS, RING),
    Table.HOLDING_REGISTER: HOLDING_REGISTERS,
}


def map_ranges(table: Table, ring_size: int = DEFAULT_RING_SIZE) -> tuple[range, ...]:
    """The address ranges that exist in `table` (everything else answers exception 02)."""
    if table == Table.COIL:
        return (range(0, len(COILS)),)
    if table == Table.DISCRETE_INPUT:
        return (range(0, len(DISCRETE_INPUTS)),)
    if table == Table.HOLDING_REGISTER:
        return (range(0, len(HOLDING_REGISTERS)),)
    return (range(0, SNAPSHOT_COUNT), range(RING_BASE, RING_BASE + SAMPLE_REGISTERS * ring_size))


def in_map(table: Table, address: int, count: int, ring_size: int = DEFAULT_RING_SIZE) -> bool:
    """True if addresses address … address+count-1 all lie inside one range of the map."""
    if count < 1:
        return False
    return any(address in span and address + count - 1 in span for span in map_ranges(table, ring_size))


def check_holding_value(address: int, value: int) -> None:
    """Raise ProtocolError naming the register and its range if `value` may not be written there."""
    if not 0 <= address < len(HOLDING_REGISTERS):
        raise ProtocolError(f"holding register {address} is not in the map (0–{len(HOLDING_REGISTERS) - 1})")
    point = HOLDING_REGISTERS[address]
    assert point.minimum is not None and point.maximum is not None
    if not point.minimum <= value <= point.maximum:
        raise ProtocolError(
            f"{point.name} = {value} {point.unit} is out of range ({point.minimum}–{point.maximum} {point.unit})"
        )


# ----- word coding -------------------------------------------------------------------


def _check_register(value: int) -> int:
    if not 0 <= value <= 0xFFFF:
        raise ProtocolError(f"register value {value} is not 0–65535")
    return value


def int32_to_registers(value: int) -> tuple[int, int]:
    """A signed 32-bit value as two registers, high word first (two's complement)."""
    if not INT32_MIN <= value <= INT32_MAX:
        raise ProtocolError(f"{value} does not fit an int32 register pair")
    raw = value & 0xFFFFFFFF
    return raw >> 16, raw & 0xFFFF


def registers_to_int32(high: int, low: int) -> int:
    """Two registers, high word first, as a signed 32-bit value."""
    return _int32(_check_register(high), _check_register(low))


def _int32(high: int, low: int) -> int:
    """`registers_to_int32` of two registers already checked."""
    raw = (high << 16) | low
    return raw - 0x100000000 if raw & 0x80000000 else raw


def int16_to_register(value: int) -> int:
    if not INT16_MIN <= value <= INT16_MAX:
        raise ProtocolError(f"{value} does not fit an int16 register")
    return value & 0xFFFF


def register_to_int16(register: int) -> int:
    raw = _check_register(register)
    return raw - 0x10000 if raw & 0x8000 else raw


def round_half_away(value: float | int | Decimal) -> int:
    """To the nearest integer, halves away from zero (2.5 → 3, −2.5 → −3), exact on the decimal value."""
    if isinstance(value, Decimal):
        exact = value
    else:
        exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def n_to_dan(force_n: float | int) -> int:
    """A force in N as the ring stores it: daN, N / 10 rounded half away from zero."""
    exact = Decimal(repr(force_n)) if isinstance(force_n, float) else Decimal(force_n)
    return round_half_away(exact / DAN_N)


def registers_from_bytes(data: bytes) -> list[int]:
    """Register values from a reply's data bytes (each register high byte first)."""
    if len(data) % 2:
        raise ProtocolError(f"{len(data)} data bytes cannot be whole registers", )
    return [int.from_bytes(data[k : k + 2], "big") for k in range(0, len(data), 2)]


# ----- typed readings --------------------------------------------------------------------


@dataclass(frozen=True)
class TesterSnapshot:
    """Input registers 0..15: live forces, loads, speeds, state and the ring's newest index."""

    left_force_n: int
    right_force_n: int
    left_load_n: int
    right_load_n: int
    left_speed_kmh: float
    right_speed_kmh: float
    state: TesterState
    fault_code: FaultCode
    sample_index: int
    sample_rate_hz: int
    ring_size: int

    @property
    def motors_run(self) -> bool:
        """True while STARTING or RUNNING (the manual's "the motors run")."""
        return self.state in MOTORS_RUN_STATES


@dataclass(frozen=True)
class FollowedSnapshot(TesterSnapshot):
    """A snapshot plus the curve samples the tester made since the previous one (a lane following
    the 100 Hz ring at its poll rate): `first_sample_index` is the ring index of the first sample in
    `left_force_dan` / `right_force_dan` (daN, as the ring holds them), None when there are none.
    Its live message is still a `TesterSnapshot` with these three fields added."""

    first_sample_index: int | None = None
    left_force_dan: tuple[int, ...] = ()
    right_force_dan: tuple[int, ...] = ()

    live_reading: ClassVar[str] = "TesterSnapshot"  # the name its live message carries


@dataclass(frozen=True)
class TesterInputs:
    """Discrete inputs 0..5."""

    in_position: bool
    left_slip: bool
    right_slip: bool
    motors_running: bool
    lift_up: bool
    fault: bool


@dataclass(frozen=True)
class TesterCoils:
    motors: bool
    lift: bool
    tare: bool


@dataclass(frozen=True)
class TesterSettings:
    """Holding registers 0..2."""

    slip_threshold_pct: int = 25
    sample_rate_set_hz: int = 100
    auto_stop_s: int = 60


def _check_registers(registers: Sequence[int]) -> None:
    """Every value a register holds (0–65535); one pass for a whole reply."""
    if registers and (min(registers) < 0 or max(registers) > 0xFFFF):
        bad = next(v for v in registers if not 0 <= v <= 0xFFFF)
        raise ProtocolError(f"register value {bad} is not 0–65535")


#: STATE and FAULT_CODE members by value: the snapshot is decoded at every poll, and calling an
#: IntEnum is a Python-level lookup (docs/performance.md)
_MEMBERS: dict[type[IntEnum], dict[int, IntEnum]] = {
    kind: {int(m): m for m in kind} for kind in (TesterState, FaultCode)
}


def _enum(kind: type[E], raw: int, name: str) -> E:
    member = _MEMBERS[kind].get(raw)
    if member is None:
        known = ", ".join(f"{m.value} {m.name}" for m in kind)
        raise ProtocolError(f"{name} = {raw} is not a known value ({known})")
    return member  # type: ignore[return-value]  # _MEMBERS[kind] holds members of kind


def decode_snapshot(registers: Sequence[int]) -> TesterSnapshot:
    """Input registers 0..15 (16 values) as a TesterSnapshot."""
    if len(registers) != SNAPSHOT_COUNT:
        raise ProtocolError(f"snapshot needs input registers 0..15 (16 values), got {len(registers)}")
    _check_registers(registers)
    r = registers
    ring_size = r[InputRegister.RING_SIZE]
    if not 1 <= ring_size <= HALF_INDEX:
        raise ProtocolError(f"RING_SIZE = {ring_size} is not 1–{HALF_INDEX}")
    return TesterSnapshot(
        left_force_n=_int32(r[0], r[1]),
        right_force_n=_int32(r[2], r[3]),
        left_load_n=_int32(r[4], r[5]),
        right_load_n=_int32(r[6], r[7]),
        left_speed_kmh=round(r[InputRegister.LEFT_SPEED] * SPEED_SCALE_KMH, 2),
        right_speed_kmh=round(r[InputRegister.RIGHT_SPEED] * SPEED_SCALE_KMH, 2),
        state=_enum(TesterState, r[InputRegister.STATE], "STATE"),
        fault_code=_enum(FaultCode, r[InputRegister.FAULT_CODE], "FAULT_CODE"),
        sample_index=r[InputRegister.SAMPLE_INDEX],
        sample_rate_hz=r[InputRegister.SAMPLE_RATE],
        ring_size=ring_size,
    )


def encode_snapshot(s: TesterSnapshot) -> list[int]:
    """The 16 input registers that decode to `s` (speeds to the nearest 0.01 km/h)."""
    speeds = [round_half_away(Decimal(repr(float(v))) * 100) for v in (s.left_speed_kmh, s.right_speed_kmh)]
    for v in speeds:
        _check_register(v)
    return [
        *int32_to_registers(s.left_force_n),
        *int32_to_registers(s.right_force_n),
        *int32_to_registers(s.left_load_n),
        *int32_to_registers(s.right_load_n),
        *speeds,
        int(s.state),
        int(s.fault_code),
        s.sample_index % INDEX_MODULUS,
        _check_register(s.sample_rate_hz),
        _check_register(s.ring_size),
        0,
    ]


def decode_inputs(bits: Sequence[bool]) -> TesterInputs:
    """Discrete inputs 0..5 (pymodbus pads a bit read to whole bytes: extra bits are ignored)."""
    if len(bits) < len(DISCRETE_INPUTS):
        raise ProtocolError(f"discrete inputs need 6 bits, got {len(bits)}")
    return TesterInputs(*(bool(b) for b in bits[: len(DISCRETE_INPUTS)]))


def encode_inputs(inputs: TesterInputs) -> list[bool]:
    return [inputs.in_position, inputs.left_slip, inputs.right_slip, inputs.motors_running, inputs.lift_up,
            inputs.fault]


def decode_coils(bits: Sequence[bool]) -> TesterCoils:
    if len(bits) < len(COILS):
        raise ProtocolError(f"coils need 3 bits, got {len(bits)}")
    return TesterCoils(*(bool(b) for b in bits[: len(COILS)]))


def decode_settings(registers: Sequence[int]) -> TesterSettings:
    if len(registers) != len(HOLDING_REGISTERS):
        raise ProtocolError(f"settings need holding registers 0..2 (3 values), got {len(registers)}")
    return TesterSettings(*(_check_register(v) for v in registers))


def encode_settings(settings: TesterSettings) -> list[int]:
    values = [settings.slip_threshold_pct, settings.sample_rate_set_hz, settings.auto_stop_s]
    for address, value in enumerate(values):
        check_holding_value(address, value)
    return values


# ----- the curve ring (the generic logic is protocols/ring.py) ---------------------------------


@dataclass(frozen=True)
class CurveSample:
    """One ring sample: its tester index (mod 65536), both forces in N, and `seq`, its position
    counted from the start of a capture (unwrapped; lost samples keep their place)."""

    index: int
    left_force_n: int
    right_force_n: int
    seq: int = 0


class RingRead(ring.RingRead):
    """One FC04 read of the curve ring: `count` registers from `address`, holding samples from `first_sample`."""

    __slots__ = ()

    @property
    def samples(self) -> int:
        return self.register_count // SAMPLE_REGISTERS


def _check_ring_size(ring_size: int) -> None:
    ring.check_ring_size(ring_size)


def ring_address(index: int, ring_size: int = DEFAULT_RING_SIZE) -> int:
    """Input register holding sample `index` (its left force; the right force follows)."""
    return ring.slot_address(index, ring_size, RING_BASE, SAMPLE_REGISTERS)


def plan_ring_reads(
    next_index: int, newest_index: int, ring_size: int = DEFAULT_RING_SIZE, max_regs: int = MAX_READ_REGISTERS
) -> list[RingRead]:
    """The reads that fetch every sample still in the ring from `next_index` through `newest_index`,
    oldest first: at most `max_regs` registers each (62 samples at 125), split where the ring ends.
    Samples older than the ring's oldest are skipped (the caller counts them as lost)."""
    return [RingRead(*r) for r in ring.plan_reads(next_index, newest_index, ring_size=ring_size, base=RING_BASE,
                                                   sample_registers=SAMPLE_REGISTERS, max_regs=max_regs)]


def ring_forces_dan(registers: Sequence[int]) -> list[int]:
    """Ring registers as the signed forces they hold, in daN: left, right, left, right, …"""
    if len(registers) % SAMPLE_REGISTERS:
        raise ProtocolError(f"ring read of {len(registers)} registers is not whole samples (2 registers each)")
    _check_registers(registers)
    return [v - 0x10000 if v & 0x8000 else v for v in registers]


def decode_ring_samples(first_index: int, registers: Sequence[int], first_seq: int = 0) -> list[CurveSample]:
    """Ring registers (int16 daN pairs, left then right) as samples in N."""
    return _samples(first_index, ring_forces_dan(registers), first_seq)


def _samples(first_index: int, forces: list[int], first_seq: int) -> list[CurveSample]:
    return [
        CurveSample((first_index + k) % INDEX_MODULUS, forces[2 * k] * DAN_N, forces[2 * k + 1] * DAN_N, first_seq + k)
        for k in range(len(forces) // SAMPLE_REGISTERS)
    ]


def encode_ring_sample(left_force_n: float | int, right_force_n: float | int) -> tuple[int, int]:
    """The two ring registers of one sample (forces in N → int16 daN, half away from zero)."""
    return int16_to_register(n_to_dan(left_force_n)), int16_to_register(n_to_dan(right_force_n))


@dataclass
class CurveCursor(ring.RingCursor):
    """A reader's place in the curve ring (protocols/ring.py's cursor, 2 registers a sample from
    1000): hands out every valid sample exactly once, in order; counts what it lost."""

    base: ClassVar[int] = RING_BASE
    sample_registers: ClassVar[int] = SAMPLE_REGISTERS

    def plan(self, newest_index: int) -> list[RingRead]:  # type: ignore[override]  # the tester's RingRead
        return [RingRead(*r) for r in super().plan(newest_index)]

    def accept(self, read: ring.RingRead, registers: Sequence[int], sample_index_after: int) -> list[CurveSample]:
        """The valid samples of one ring read, given the SAMPLE_INDEX read after it.

        `read` must start at or after the cursor (a planned read); samples it skipped and samples
        overwritten during the read are counted as lost."""
        first, forces = self.accept_forces(read, registers, sample_index_after)
        count = len(forces) // SAMPLE_REGISTERS
        return _samples(first, forces, self.next_seq - count)

    def accept_forces(self, read: ring.RingRead, registers: Sequence[int],
                      sample_index_after: int) -> tuple[int, list[int]]:
        """`accept` for a reader that wants the ring's own values (a live message): the index of the
        first valid sample and their forces in daN, left and right alternating (`ring_forces_dan`)."""
        if len(registers) == read.register_count:
            ring_forces_dan(registers)  # bad register values are an error before the cursor moves
        first, valid = self.accept_registers(read, registers, sample_index_after)
        return first, ring_forces_dan(valid)
