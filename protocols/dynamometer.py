"""CD-1 chassis dynamometer: the Modbus register map as data, typed decoding, interlocks, per-second data.

Pure code (no I/O), followed to the byte from spec/devices/dynamometer.md. The
driver decodes what it reads with it; the simulator fills its registers and
applies the manual's value ranges (exception 03) and interlocks (exception 06)
through the same functions (`check_write`); the procedures turn ring samples
into the per-second records ASM and lug-down judge (`PerSecondAggregator`).

The sample ring is protocols/ring.py's, 3 registers a sample from 1000
(SPEED uint16 0.01 km/h, then FORCE int32 N), at 10 Hz, 512 samples.
Per-second means are exact (`Fraction`): speed in km/h, force in N, power in
kW as the mean of the ten per-sample products FORCE × SPEED / 3.6.

Like protocols/brake_tester.py the module is longer than most: the task gives the
dynamometer one protocol module (the map, typed readings, the interlocks, the
ring and the per-second records); its parts are marked below.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from fractions import Fraction
from typing import ClassVar, TypeVar

from protocols import ring
from protocols.brake_tester import (
    Point,
    Table,
    int32_to_registers,
    register_to_int16,
    registers_to_int32,
    round_half_away,
)
from protocols.errors import ProtocolError
from protocols.ring import INDEX_MODULUS, MAX_READ_REGISTERS

E = TypeVar("E", bound=IntEnum)

RING_BASE = 1000
SAMPLE_REGISTERS = 3
DEFAULT_RING_SIZE = 512
DEFAULT_SAMPLE_RATE_HZ = 10
SNAPSHOT_ADDRESS = 0
#: input registers 0..19: the live values, the ring's newest index and the build's ratings
SNAPSHOT_COUNT = 20
#: samples in one full FC04 read of the ring (123 of the 125 registers)
SAMPLES_PER_READ = MAX_READ_REGISTERS // SAMPLE_REGISTERS
#: samples in one per-second record
SAMPLES_PER_SECOND = 10
#: the roller brake may not be applied above this speed (0.01 km/h)
BRAKE_MAX_SPEED_RAW = 1000


# ----- the register map --------------------------------------------------------------------


class Coil(IntEnum):
    LIFT = 0
    ROLLER_BRAKE = 1
    PAU_ENABLE = 2
    MOTOR = 3
    FAN = 4
    TARE = 5


class DiscreteInput(IntEnum):
    IN_POSITION = 0
    LIFT_UP = 1
    LIFT_DOWN = 2
    ROLLERS_STOPPED = 3
    ROLLER_BRAKE_ON = 4
    PAU_READY = 5
    MOTOR_RUNNING = 6
    FAULT = 7


class InputRegister(IntEnum):
    SPEED = 0
    FORCE = 1
    PAU_FORCE = 3
    POWER = 5
    PARASITIC_POWER = 6
    DISTANCE = 7
    ROLLER_TEMP = 9
    PAU_TEMP = 10
    STATE = 11
    FAULT_CODE = 12
    SAMPLE_INDEX = 13
    SAMPLE_RATE = 14
    RING_SIZE = 15
    ACCEL = 16
    RATED_POWER = 17
    RATED_FORCE = 18
    TOP_SPEED = 19


class HoldingRegister(IntEnum):
    CONTROL_MODE = 0
    POWER_TARGET = 1
    FORCE_TARGET = 2
    SPEED_TARGET = 3
    SPEED_RAMP = 4
    BASE_INERTIA = 5
    INERTIA_SIM = 6
    PL_A = 7
    PL_B = 8
    PL_C = 9
    MOTOR_SPEED = 10
    WATCHDOG = 11


class DynoState(IntEnum):
    IDLE = 0
    LOADED = 1
    MOTORING = 2
    BRAKING = 3
    FAULT = 4


class FaultCode(IntEnum):
    NONE = 0
    PAU_OVER_TEMPERATURE = 1
    FORCE_SENSOR = 2
    SPEED_SENSOR = 3
    MOTOR_OVERLOAD = 4
    LIFT = 5
    EMERGENCY_STOP = 6
    OVER_SPEED = 7
    HOST_WATCHDOG = 8


class ControlMode(IntEnum):
    IDLE = 0
    CONSTANT_POWER = 1
    CONSTANT_FORCE = 2
    CONSTANT_SPEED = 3


class ExceptionCode(IntEnum):
    """Modbus exception codes the dynamometer answers, with what each means there."""

    ILLEGAL_FUNCTION = 1
    ILLEGAL_ADDRESS = 2
    ILLEGAL_VALUE = 3
    DEVICE_FAILURE = 4
    DEVICE_BUSY = 6

    @property
    def meaning(self) -> str:
        return _EXCEPTION_MEANINGS[self]


_EXCEPTION_MEANINGS = {
    ExceptionCode.ILLEGAL_FUNCTION: "illegal function (the dynamometer does not offer this function code)",
    ExceptionCode.ILLEGAL_ADDRESS: "illegal data address (outside the dynamometer's register map)",
    ExceptionCode.ILLEGAL_VALUE: "value out of range",
    ExceptionCode.DEVICE_FAILURE: "device failure (the dynamometer could not carry out the request)",
    ExceptionCode.DEVICE_BUSY: "device busy (not allowed in the present state: interlock)",
}

_C, _D, _I, _H = Table.COIL, Table.DISCRETE_INPUT, Table.INPUT_REGISTER, Table.HOLDING_REGISTER
COILS: tuple[Point, ...] = (
    Point(_C, 0, "LIFT", "bit", meaning="1 raises the lift (drive on / off), 0 lowers it for a test"),
    Point(_C, 1, "ROLLER_BRAKE", "bit", meaning="1 applies the roller brake"),
    Point(_C, 2, "PAU_ENABLE", "bit", meaning="1 switches the PAU's power stage on; 0 off (and CONTROL_MODE 0)"),
    Point(_C, 3, "MOTOR", "bit", meaning="1 runs the drive motor to MOTOR_SPEED (coast-downs, never a vehicle)"),
    Point(_C, 4, "FAN", "bit", meaning="1 runs the cooling fan"),
    Point(_C, 5, "TARE", "bit", meaning="write 1 to zero the force channel; reads 0 when done"),
)
DISCRETE_INPUTS: tuple[Point, ...] = tuple(Point(_D, int(d), d.name, "bit") for d in DiscreteInput)
INPUT_REGISTERS: tuple[Point, ...] = (
    Point(_I, 0, "SPEED", "uint16", "km/h", 0.01, meaning="roller surface speed"),
    Point(_I, 1, "FORCE", "int32", "N", meaning="tractive force: PAU + parasitic + base inertia"),
    Point(_I, 3, "PAU_FORCE", "int32", "N", meaning="the load cell's force at the roller surface"),
    Point(_I, 5, "POWER", "int16", "kW", 0.01, meaning="FORCE × SPEED, for display"),
    Point(_I, 6, "PARASITIC_POWER", "uint16", "kW", 0.01, meaning="parasitic loss at the present speed"),
    Point(_I, 7, "DISTANCE", "uint32", "m", meaning="rolled since power-up; wraps"),
    Point(_I, 9, "ROLLER_TEMP", "int16", "°C", 0.1),
    Point(_I, 10, "PAU_TEMP", "int16", "°C", 0.1),
    Point(_I, 11, "STATE", "uint16", meaning="DynoState"),
    Point(_I, 12, "FAULT_CODE", "uint16", meaning="FaultCode"),
    Point(_I, 13, "SAMPLE_INDEX", "uint16", meaning="newest sample in the ring, mod 65536"),
    Point(_I, 14, "SAMPLE_RATE", "uint16", "Hz", default=DEFAULT_SAMPLE_RATE_HZ),
    Point(_I, 15, "RING_SIZE", "uint16", "samples", default=DEFAULT_RING_SIZE),
    Point(_I, 16, "ACCEL", "int16", "m/s²", 0.01, meaning="roller acceleration (filtered)"),
    Point(_I, 17, "RATED_POWER", "uint16", "kW", 0.1),
    Point(_I, 18, "RATED_FORCE", "uint16", "N"),
    Point(_I, 19, "TOP_SPEED", "uint16", "km/h", 0.01),
)
#: ranges of POWER_TARGET, FORCE_TARGET, SPEED_TARGET and INERTIA_SIM depend on the build and on
#: BASE_INERTIA: `holding_range` gives them; the tables' minimum/maximum hold the fixed ones
HOLDING_REGISTERS: tuple[Point, ...] = (
    Point(_H, 0, "CONTROL_MODE", "uint16", minimum=0, maximum=3, default=0, meaning="ControlMode"),
    Point(_H, 1, "POWER_TARGET", "uint16", "kW", 0.01, minimum=0, default=0, meaning="0 … RATED_POWER × 10"),
    Point(_H, 2, "FORCE_TARGET", "uint16", "N", minimum=0, default=0, meaning="0 … RATED_FORCE"),
    Point(_H, 3, "SPEED_TARGET", "uint16", "km/h", 0.01, minimum=0, default=0, meaning="0 … TOP_SPEED"),
    Point(_H, 4, "SPEED_RAMP", "uint16", "km/h/s", 0.01, minimum=0, maximum=2000, default=0),
    Point(_H, 5, "BASE_INERTIA", "uint16", "kg", minimum=500, maximum=5000, default=910),
    Point(_H, 6, "INERTIA_SIM", "uint16", "kg", minimum=0, maximum=5500, default=0,
          meaning="0 (off) or BASE_INERTIA … 5500"),
    Point(_H, 7, "PL_A", "uint16", "N", 0.1, minimum=0, maximum=5000, default=500),
    Point(_H, 8, "PL_B", "uint16", "N/(km/h)", 0.001, minimum=0, maximum=20000, default=1200),
    Point(_H, 9, "PL_C", "uint16", "N/(km/h)²", 0.0001, minimum=0, maximum=5000, default=120),
    Point(_H, 10, "MOTOR_SPEED", "uint16", "km/h", 0.01, minimum=1000, maximum=8000, default=6000),
    Point(_H, 11, "WATCHDOG", "uint16", "s", 0.1, minimum=0, maximum=600, default=20),
)
RING = Point(_I, RING_BASE, "RING", "uint16,int32", meaning="sample i: SPEED, FORCE at 1000 + 3·(i mod RING_SIZE)")
REGISTER_MAP: dict[Table, tuple[Point, ...]] = {
    Table.COIL: COILS,
    Table.DISCRETE_INPUT: DISCRETE_INPUTS,
    Table.INPUT_REGISTER: (*INPUT_REGISTERS, RING),
    Table.HOLDING_REGISTER: HOLDING_REGISTERS,
}


@dataclass(frozen=True)
class Build:
    """One of the two builds (input registers 17–19 tell them apart), with its power-up defaults."""

    name: str
    rated_power_raw: int  # 0.1 kW
    rated_force_n: int
    top_speed_raw: int  # 0.01 km/h
    base_inertia_kg: int

    @property
    def rated_power_kw(self) -> float:
        return self.rated_power_raw / 10


CD1L = Build("CD-1L", 1500, 8000, 13000, 910)
CD1H = Build("CD-1H", 3000, 24000, 13000, 1800)
BUILDS = {b.name: b for b in (CD1L, CD1H)}


def build_from_rated(rated_power_raw: int, rated_force_n: int) -> Build | None:
    """The build whose ratings these are (input registers 17 and 18), or None for an unknown one."""
    return next((b for b in BUILDS.values()
                 if (b.rated_power_raw, b.rated_force_n) == (rated_power_raw, rated_force_n)), None)


def map_ranges(table: Table, ring_size: int = DEFAULT_RING_SIZE) -> tuple[range, ...]:
    """The address ranges that exist in `table` (everything else answers exception 02)."""
    if table == Table.INPUT_REGISTER:
        return (range(0, SNAPSHOT_COUNT), range(RING_BASE, RING_BASE + SAMPLE_REGISTERS * ring_size))
    return (range(0, len(REGISTER_MAP[table])),)


def in_map(table: Table, address: int, count: int, ring_size: int = DEFAULT_RING_SIZE) -> bool:
    """True if addresses address … address+count-1 all lie inside one range of the map."""
    if count < 1:
        return False
    return any(address in span and address + count - 1 in span for span in map_ranges(table, ring_size))


# ----- value ranges and interlocks (pure: the simulator applies them, tests pin them) ------------


@dataclass(frozen=True)
class DeviceStatus:
    """What the interlocks look at: the discrete inputs, the coils as written, CONTROL_MODE and SPEED."""

    in_position: bool = False
    lift_down: bool = True
    rollers_stopped: bool = True
    roller_brake_on: bool = False
    pau_ready: bool = False
    motor_running: bool = False
    fault: bool = False
    control_mode: int = 0
    speed_raw: int = 0  # 0.01 km/h
    coils: tuple[bool, ...] = (False,) * len(COILS)


def holding_range(address: int, build: Build, base_inertia_kg: int) -> tuple[int, int]:
    """The raw range a holding register accepts on this build (INERTIA_SIM: 0 or the returned range)."""
    point = HOLDING_REGISTERS[address]
    if address == HoldingRegister.POWER_TARGET:
        return 0, build.rated_power_raw * 10
    if address == HoldingRegister.FORCE_TARGET:
        return 0, build.rated_force_n
    if address == HoldingRegister.SPEED_TARGET:
        return 0, build.top_speed_raw
    if address == HoldingRegister.INERTIA_SIM:
        return base_inertia_kg, 5500
    assert point.minimum is not None and point.maximum is not None
    return point.minimum, point.maximum


#: the manual's interlocks, as the driver names them in a refusal (exception 06)
INTERLOCKS: dict[tuple[Table, int], str] = {
    (Table.HOLDING_REGISTER, HoldingRegister.CONTROL_MODE):
        "CONTROL_MODE ≠ 0 needs LIFT_DOWN, ROLLER_BRAKE_ON 0, MOTOR_RUNNING 0, PAU_READY and no FAULT",
    (Table.COIL, Coil.LIFT): "LIFT = 1 needs ROLLERS_STOPPED, CONTROL_MODE 0 and MOTOR_RUNNING 0",
    (Table.COIL, Coil.MOTOR):
        "MOTOR = 1 needs no vehicle (IN_POSITION 0), LIFT_DOWN, ROLLER_BRAKE_ON 0, CONTROL_MODE 0 and no FAULT",
    (Table.COIL, Coil.ROLLER_BRAKE):
        "ROLLER_BRAKE = 1 is refused in a control mode, with the motor running or above 10.00 km/h",
    (Table.COIL, Coil.TARE): "TARE needs ROLLERS_STOPPED and CONTROL_MODE 0",
    (Table.HOLDING_REGISTER, HoldingRegister.BASE_INERTIA):
        "BASE_INERTIA and PL_A…PL_C may be written only with ROLLERS_STOPPED and CONTROL_MODE 0",
    (Table.COIL, Coil.PAU_ENABLE): "PAU_ENABLE = 1 is refused while FAULT = 1",
}
_CALIBRATION = frozenset({HoldingRegister.BASE_INERTIA, HoldingRegister.PL_A, HoldingRegister.PL_B,
                          HoldingRegister.PL_C})


def interlock_rule(table: Table, address: int) -> str:
    """The interlock a refused write to `address` ran into, in words (for a DeviceRefused)."""
    if table == Table.HOLDING_REGISTER and address in _CALIBRATION:
        address = HoldingRegister.BASE_INERTIA
    return INTERLOCKS.get((table, address), "not allowed in the present state")


def coil_refusal(coil: int, value: bool, s: DeviceStatus) -> ExceptionCode | None:
    """Exception 06 if writing `coil` = `value` is not allowed now, else None (the manual's interlocks)."""
    if s.coils[coil] == value and coil != Coil.TARE:
        return None  # writing the value it already has is accepted and changes nothing
    busy = ExceptionCode.DEVICE_BUSY
    if not value:
        return None  # LIFT, ROLLER_BRAKE, PAU_ENABLE, MOTOR = 0, FAN, TARE 0: always accepted
    if coil == Coil.LIFT:
        ok = s.rollers_stopped and s.control_mode == 0 and not s.motor_running
    elif coil == Coil.ROLLER_BRAKE:
        ok = s.control_mode == 0 and not s.motor_running and s.speed_raw <= BRAKE_MAX_SPEED_RAW
    elif coil == Coil.PAU_ENABLE:
        ok = not s.fault
    elif coil == Coil.MOTOR:
        ok = (not s.in_position and s.lift_down and not s.roller_brake_on and s.control_mode == 0
              and not s.fault)
    elif coil == Coil.TARE:
        ok = s.rollers_stopped and s.control_mode == 0
    else:
        ok = True  # FAN
    return None if ok else busy


def holding_refusal(address: int, values: Sequence[int], s: DeviceStatus, build: Build,
                    base_inertia_kg: int) -> ExceptionCode | None:
    """Exception 03 or 06 for an FC06/FC16 write of `values` from `address`, else None. Ranges are
    checked first, over the whole write (03), then the interlocks (06): the manual's order."""
    base = base_inertia_kg
    if HoldingRegister.BASE_INERTIA in range(address, address + len(values)):
        base = values[HoldingRegister.BASE_INERTIA - address]
    for offset, value in enumerate(values):
        a = address + offset
        low, high = holding_range(a, build, base)
        if a == HoldingRegister.INERTIA_SIM and value == 0:
            continue
        if not low <= value <= high:
            return ExceptionCode.ILLEGAL_VALUE
    for offset, value in enumerate(values):
        a = address + offset
        mode_ready = s.lift_down and not s.roller_brake_on and not s.motor_running and s.pau_ready and not s.fault
        if a == HoldingRegister.CONTROL_MODE and value not in (0, s.control_mode) and not mode_ready:
            return ExceptionCode.DEVICE_BUSY
        if a in _CALIBRATION and not (s.rollers_stopped and s.control_mode == 0):
            return ExceptionCode.DEVICE_BUSY
    return None


def check_write(table: Table, address: int, values: Sequence[int] | Sequence[bool], s: DeviceStatus,
                build: Build, base_inertia_kg: int) -> ExceptionCode | None:
    """The exception code a write answers (02 outside the map, 03, 06), or None when accepted.
    An FC15 write of several coils is checked coil by coil in address order; the first refused coil
    refuses the whole write."""
    if table not in (Table.COIL, Table.HOLDING_REGISTER) or not in_map(table, address, len(values)):
        return ExceptionCode.ILLEGAL_ADDRESS
    if table == Table.COIL:
        for offset, value in enumerate(values):
            if (code := coil_refusal(address + offset, bool(value), s)) is not None:
                return code
        return None
    return holding_refusal(address, [int(v) for v in values], s, build, base_inertia_kg)


# ----- typed readings ------------------------------------------------------------------------------


def _check_registers(registers: Sequence[int]) -> None:
    if registers and (min(registers) < 0 or max(registers) > 0xFFFF):
        bad = next(v for v in registers if not 0 <= v <= 0xFFFF)
        raise ProtocolError(f"register value {bad} is not 0–65535")


def _enum(kind: type[E], raw: int, name: str) -> E:
    try:
        return kind(raw)
    except ValueError:
        known = ", ".join(f"{m.value} {m.name}" for m in kind)
        raise ProtocolError(f"{name} = {raw} is not a known value ({known})") from None


@dataclass(frozen=True)
class DynoSnapshot:
    """Input registers 0..19: the newest sample's live values, state, ring index and ratings."""

    speed_kmh: float
    force_n: int
    pau_force_n: int
    power_kw: float
    parasitic_power_kw: float
    distance_m: int
    roller_temp_c: float
    pau_temp_c: float
    state: DynoState
    fault_code: FaultCode
    sample_index: int
    sample_rate_hz: int
    ring_size: int
    accel_ms2: float
    rated_power_kw: float
    rated_force_n: int
    top_speed_kmh: float

    @property
    def build(self) -> Build | None:
        return build_from_rated(round_half_away(self.rated_power_kw * 10), self.rated_force_n)


@dataclass(frozen=True)
class RingSample:
    """One ring sample: its index (mod 65536), SPEED as the ring holds it (0.01 km/h) and FORCE (N)."""

    index: int
    speed_raw: int
    force_n: int

    @property
    def speed_kmh(self) -> float:
        return self.speed_raw / 100


@dataclass(frozen=True)
class FollowedSnapshot(DynoSnapshot):
    """A snapshot plus the ring samples the device made since the previous one: `first_sample_index`
    is the index of the first of `speeds_kmh` / `forces_n` (None when there are none)."""

    first_sample_index: int | None = None
    speeds_kmh: tuple[float, ...] = ()
    forces_n: tuple[int, ...] = ()

    live_reading: ClassVar[str] = "DynoSnapshot"

    @property
    def samples(self) -> list[RingSample]:
        if self.first_sample_index is None:
            return []
        return [RingSample((self.first_sample_index + k) % INDEX_MODULUS, round_half_away(v * 100), f)
                for k, (v, f) in enumerate(zip(self.speeds_kmh, self.forces_n, strict=True))]


def decode_snapshot(registers: Sequence[int]) -> DynoSnapshot:
    """Input registers 0..19 (20 values) as a DynoSnapshot."""
    if len(registers) != SNAPSHOT_COUNT:
        raise ProtocolError(f"snapshot needs input registers 0..19 (20 values), got {len(registers)}")
    _check_registers(registers)
    r = registers
    ring_size = r[InputRegister.RING_SIZE]
    if not 1 <= ring_size <= ring.HALF_INDEX:
        raise ProtocolError(f"RING_SIZE = {ring_size} is not 1–{ring.HALF_INDEX}")
    return DynoSnapshot(
        speed_kmh=r[0] / 100,
        force_n=registers_to_int32(r[1], r[2]),
        pau_force_n=registers_to_int32(r[3], r[4]),
        power_kw=register_to_int16(r[5]) / 100,
        parasitic_power_kw=r[6] / 100,
        distance_m=(r[7] << 16) | r[8],
        roller_temp_c=register_to_int16(r[9]) / 10,
        pau_temp_c=register_to_int16(r[10]) / 10,
        state=_enum(DynoState, r[11], "STATE"),
        fault_code=_enum(FaultCode, r[12], "FAULT_CODE"),
        sample_index=r[13],
        sample_rate_hz=r[14],
        ring_size=ring_size,
        accel_ms2=register_to_int16(r[16]) / 100,
        rated_power_kw=r[17] / 10,
        rated_force_n=r[18],
        top_speed_kmh=r[19] / 100,
    )


def _scaled(value: float, per_unit: int, signed: bool = False) -> int:
    raw = round_half_away(value * per_unit)
    if signed:
        return int16(raw)
    if not 0 <= raw <= 0xFFFF:
        raise ProtocolError(f"{value} does not fit an unsigned register at ×{per_unit}")
    return raw


def int16(value: int) -> int:
    """A signed value as one register, clamped to the int16 range (a display value never wraps)."""
    return max(-32768, min(32767, value)) & 0xFFFF


def encode_snapshot(s: DynoSnapshot) -> list[int]:
    """The 20 input registers that decode to `s`."""
    distance = s.distance_m % 2**32
    return [
        _scaled(s.speed_kmh, 100),
        *int32_to_registers(s.force_n),
        *int32_to_registers(s.pau_force_n),
        _scaled(s.power_kw, 100, signed=True),
        _scaled(s.parasitic_power_kw, 100),
        distance >> 16, distance & 0xFFFF,
        _scaled(s.roller_temp_c, 10, signed=True),
        _scaled(s.pau_temp_c, 10, signed=True),
        int(s.state), int(s.fault_code), s.sample_index % INDEX_MODULUS, s.sample_rate_hz, s.ring_size,
        _scaled(s.accel_ms2, 100, signed=True),
        _scaled(s.rated_power_kw, 10), s.rated_force_n, _scaled(s.top_speed_kmh, 100),
    ]


@dataclass(frozen=True)
class DynoInputs:
    """Discrete inputs 0..7."""

    in_position: bool
    lift_up: bool
    lift_down: bool
    rollers_stopped: bool
    roller_brake_on: bool
    pau_ready: bool
    motor_running: bool
    fault: bool


@dataclass(frozen=True)
class DynoCoils:
    """Coils 0..5 as written (TARE reads 1 until the zeroing is done)."""

    lift: bool
    roller_brake: bool
    pau_enable: bool
    motor: bool
    fan: bool
    tare: bool


def decode_inputs(bits: Sequence[bool]) -> DynoInputs:
    """Discrete inputs 0..7 (extra padding bits are ignored)."""
    if len(bits) < len(DISCRETE_INPUTS):
        raise ProtocolError(f"discrete inputs need 8 bits, got {len(bits)}")
    return DynoInputs(*(bool(b) for b in bits[: len(DISCRETE_INPUTS)]))


def encode_inputs(inputs: DynoInputs) -> list[bool]:
    return [inputs.in_position, inputs.lift_up, inputs.lift_down, inputs.rollers_stopped, inputs.roller_brake_on,
            inputs.pau_ready, inputs.motor_running, inputs.fault]


def decode_coils(bits: Sequence[bool]) -> DynoCoils:
    if len(bits) < len(COILS):
        raise ProtocolError(f"coils need 6 bits, got {len(bits)}")
    return DynoCoils(*(bool(b) for b in bits[: len(COILS)]))


def encode_coils(coils: DynoCoils) -> list[bool]:
    return [coils.lift, coils.roller_brake, coils.pau_enable, coils.motor, coils.fan, coils.tare]


@dataclass(frozen=True)
class DynoHolding:
    """Holding registers 0..11 in their units (see HOLDING_REGISTERS for the scalings)."""

    control_mode: ControlMode = ControlMode.IDLE
    power_target_kw: float = 0.0
    force_target_n: int = 0
    speed_target_kmh: float = 0.0
    speed_ramp_kmh_s: float = 0.0
    base_inertia_kg: int = 910
    inertia_sim_kg: int = 0
    pl_a_n: float = 50.0
    pl_b_n_per_kmh: float = 1.2
    pl_c_n_per_kmh2: float = 0.012
    motor_speed_kmh: float = 60.0
    watchdog_s: float = 2.0


_HOLDING_PER_UNIT = (1, 100, 1, 100, 100, 1, 1, 10, 1000, 10000, 100, 10)


def decode_holding(registers: Sequence[int]) -> DynoHolding:
    if len(registers) != len(HOLDING_REGISTERS):
        raise ProtocolError(f"holding registers 0..11 are 12 values, got {len(registers)}")
    _check_registers(registers)
    r = registers
    return DynoHolding(_enum(ControlMode, r[0], "CONTROL_MODE"), r[1] / 100, r[2], r[3] / 100, r[4] / 100, r[5],
                       r[6], r[7] / 10, r[8] / 1000, r[9] / 10000, r[10] / 100, r[11] / 10)


def encode_holding(h: DynoHolding) -> list[int]:
    values = (int(h.control_mode), h.power_target_kw, h.force_target_n, h.speed_target_kmh, h.speed_ramp_kmh_s,
              h.base_inertia_kg, h.inertia_sim_kg, h.pl_a_n, h.pl_b_n_per_kmh, h.pl_c_n_per_kmh2,
              h.motor_speed_kmh, h.watchdog_s)
    return [_scaled(float(v), k) for v, k in zip(values, _HOLDING_PER_UNIT, strict=True)]


def parasitic_force_n(speed_kmh: float, pl_a_n: float, pl_b: float, pl_c: float) -> float:
    """F_pl(v) = A + B·v + C·v² (N, v in km/h)."""
    return pl_a_n + pl_b * speed_kmh + pl_c * speed_kmh * speed_kmh


# ----- the sample ring --------------------------------------------------------------------------


class RingRead(ring.RingRead):
    """One FC04 read of the sample ring (3 registers a sample)."""

    __slots__ = ()

    @property
    def samples(self) -> int:
        return self.register_count // SAMPLE_REGISTERS


def ring_address(index: int, ring_size: int = DEFAULT_RING_SIZE) -> int:
    """Input register holding sample `index`'s SPEED (FORCE follows): 1000 + 3·(index mod RING_SIZE)."""
    return ring.slot_address(index, ring_size, RING_BASE, SAMPLE_REGISTERS)


def plan_ring_reads(next_index: int, newest_index: int, ring_size: int = DEFAULT_RING_SIZE) -> list[RingRead]:
    """The reads (41 samples at most each) that fetch every sample still in the ring from `next_index`
    through `newest_index`, oldest first."""
    return [RingRead(*r) for r in ring.plan_reads(next_index, newest_index, ring_size=ring_size, base=RING_BASE,
                                                   sample_registers=SAMPLE_REGISTERS)]


def encode_ring_sample(speed_raw: int, force_n: int) -> tuple[int, int, int]:
    """The three ring registers of one sample."""
    if not 0 <= speed_raw <= 0xFFFF:
        raise ProtocolError(f"speed {speed_raw} (0.01 km/h) does not fit a uint16")
    return (speed_raw, *int32_to_registers(force_n))


def decode_ring_samples(first_index: int, registers: Sequence[int]) -> list[RingSample]:
    """Ring registers (SPEED, FORCE high, FORCE low per sample) as samples."""
    if len(registers) % SAMPLE_REGISTERS:
        raise ProtocolError(f"ring read of {len(registers)} registers is not whole samples (3 registers each)")
    _check_registers(registers)
    r = registers
    return [RingSample((first_index + k) % INDEX_MODULUS, r[3 * k], registers_to_int32(r[3 * k + 1], r[3 * k + 2]))
            for k in range(len(r) // SAMPLE_REGISTERS)]


@dataclass
class SampleCursor(ring.RingCursor):
    """A reader's place in the dynamometer's ring: every valid sample once, in order; losses counted."""

    base: ClassVar[int] = RING_BASE
    sample_registers: ClassVar[int] = SAMPLE_REGISTERS

    def plan(self, newest_index: int) -> list[RingRead]:  # type: ignore[override]  # the dyno's RingRead
        return [RingRead(*r) for r in super().plan(newest_index)]

    def accept(self, read: ring.RingRead, registers: Sequence[int], sample_index_after: int) -> list[RingSample]:
        """The valid samples of one planned ring read, given the SAMPLE_INDEX read after it."""
        if len(registers) == read.register_count:
            decode_ring_samples(read.first_sample, registers)  # bad values are an error before the cursor moves
        first, valid = self.accept_registers(read, registers, sample_index_after)
        return decode_ring_samples(first, valid)


# ----- per-second process data ----------------------------------------------------------------------


@dataclass(frozen=True)
class SecondRecord:
    """Second `k` of a test: samples i0 + 10k … i0 + 10k + 9. Means are exact: speed (km/h), force
    (N), and power (kW) as the mean of the per-sample products FORCE × SPEED / 3.6. `samples` is 10
    unless samples were lost (then the means are over those present). `ring_samples` are the
    samples themselves, for what else is computed per second (protocols/dyno_power.py)."""

    k: int
    first_index: int
    speed_kmh: Fraction
    force_n: Fraction
    power_kw: Fraction
    samples: int = SAMPLES_PER_SECOND
    ring_samples: tuple[RingSample, ...] = field(default=(), compare=False, repr=False)


def second_record(k: int, first_index: int, samples: Sequence[RingSample]) -> SecondRecord:
    """The record of one second from its samples (normally ten)."""
    n = len(samples)
    if n == 0:
        raise ProtocolError(f"second {k} has no samples")
    speed_sum = sum(s.speed_raw for s in samples)
    force_sum = sum(s.force_n for s in samples)
    product_sum = sum(s.speed_raw * s.force_n for s in samples)
    # speed_raw is 0.01 km/h: F·v/3.6 W = F·raw/360 W = F·raw/360 000 kW
    return SecondRecord(k, first_index % INDEX_MODULUS, Fraction(speed_sum, 100 * n), Fraction(force_sum, n),
                        Fraction(product_sum, 360_000 * n), n, tuple(samples))


class PerSecondAggregator:
    """Ring samples from index `i0` on → per-second records, as they complete.

    `feed(samples)` takes samples in order (a cursor's output; samples before i0 are ignored) and
    returns the seconds completed by them. Indices are followed across the 65536 wrap. A second with
    lost samples (a gap in the indices) is still recorded, over the samples it has."""

    def __init__(self, i0: int) -> None:
        self.i0 = i0 % INDEX_MODULUS
        self._offset = 0  # unwrapped offset of the next expected sample from i0
        self._started = False
        self._current: list[RingSample] = []
        self._k = 0

    def feed(self, samples: Iterable[RingSample]) -> list[SecondRecord]:
        done: list[SecondRecord] = []
        for sample in samples:
            delta = (sample.index - self.i0 - self._offset) % INDEX_MODULUS
            if not self._started:
                if (sample.index - self.i0) % INDEX_MODULUS >= ring.HALF_INDEX:
                    continue  # before i0
                self._started = True
            elif delta >= ring.HALF_INDEX:
                raise ProtocolError(f"sample {sample.index} is older than the next expected one: fed twice?")
            offset = self._offset + delta
            while offset >= (self._k + 1) * SAMPLES_PER_SECOND:
                if self._current:
                    done.append(self._close())
                else:
                    self._k += 1
            self._current.append(sample)
            self._offset = offset + 1
            if self._offset == (self._k + 1) * SAMPLES_PER_SECOND:
                done.append(self._close())
        return done

    def _close(self) -> SecondRecord:
        record = second_record(self._k, self.i0 + SAMPLES_PER_SECOND * self._k, self._current)
        self._current = []
        self._k += 1
        return record


def per_second(samples: Iterable[RingSample], i0: int) -> list[SecondRecord]:
    """Every complete second of `samples` from index i0 on (a pure one-shot of `PerSecondAggregator`)."""
    return PerSecondAggregator(i0).feed(samples)
