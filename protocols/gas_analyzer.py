"""GA-5 / GA-5N exhaust analyzer: its serial protocol as bytes ⇄ typed frames, without I/O.

The manual is ../shared/spec/devices/gas-analyzer.md: one-byte commands, fixed-
length big-endian replies that start with `06`, a plain 8-bit sum checksum. The
host side is `encode_request` and the incremental `ReplyDecoder`; the analyzer
side (the simulator) is `request_length` / `decode_request` / `RequestDecoder`
and the `encode_*` functions. Values are scaled here and nowhere else, so the
driver, the simulator and the tests all see %vol, ppm, °C and kPa. The GA-5N is
the same analyzer with an NO2 cell: it answers READ_NOX, a plain GA-5 NAKs it,
and IDENTIFY names the model (`Identity.has_nox`).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import IntEnum, IntFlag
from typing import Final, TypeAlias

from protocols.errors import FrameError, ProtocolError

ACK: Final = b"\x06"
NAK: Final = b"\x15"
_ACK_BYTE: Final = 0x06
_NAK_BYTE: Final = 0x15

#: OIL_T raw value meaning "no oil probe"
OIL_T_NONE: Final = -0x8000
#: the identity text is at most this many bytes
IDENTITY_MAX_LEN: Final = 40
#: WRITE_SPAN is the only multi-byte request
WRITE_SPAN_LENGTH: Final = 10
#: the models IDENTIFY names: a GA-5N answers READ_NOX, a GA-5 NAKs it
MODEL_GA5: Final = "GA-5"
MODEL_GA5N: Final = "GA-5N"


class Command(IntEnum):
    READ_MAIN = 0x01
    READ_ENV = 0x02
    READ_STATUS = 0x03
    READ_NOX = 0x04
    PUMP_AMBIENT = 0x10
    PUMP_SAMPLE = 0x11
    BACKFLUSH = 0x12
    PUMP_STOP = 0x13
    ZERO = 0x20
    LEAK_CHECK = 0x21
    CALIBRATE = 0x22
    WRITE_SPAN = 0x23
    PROCESS_RESULT = 0x24
    IDENTIFY = 0x3F


class AnalyzerState(IntEnum):
    READY = 0
    WARMING_UP = 1
    ZEROING = 2
    LEAK_CHECK = 3
    CALIBRATING = 4
    FAULT = 5


class ProcessResult(IntEnum):
    PASSED = 0x00
    FAILED = 0x01
    RUNNING = 0x05
    NONE_SINCE_POWER_UP = 0x0F


class Flags(IntFlag):
    O2_SENSOR_AGED = 1
    NO_SENSOR_AGED = 2
    CONDENSATE_FULL = 4
    LOW_FLOW = 8
    WARMING_UP = 16
    ZERO_DUE = 32
    PUMP_SAMPLE = 64
    PUMP_AMBIENT = 128


#: the process commands and the STATE each runs in
PROCESS_STATES: Final = {
    Command.ZERO: AnalyzerState.ZEROING,
    Command.LEAK_CHECK: AnalyzerState.LEAK_CHECK,
    Command.CALIBRATE: AnalyzerState.CALIBRATING,
}

#: fixed reply length per command; None for IDENTIFY (06 LEN ... CS). ACK-only commands: 1.
REPLY_LENGTH: Final[dict[Command, int | None]] = {
    Command.READ_MAIN: 24,
    Command.READ_ENV: 8,
    Command.READ_STATUS: 5,
    Command.READ_NOX: 8,
    Command.PROCESS_RESULT: 3,
    Command.IDENTIFY: None,
    **{
        c: 1
        for c in (
            Command.PUMP_AMBIENT, Command.PUMP_SAMPLE, Command.BACKFLUSH, Command.PUMP_STOP,
            Command.ZERO, Command.LEAK_CHECK, Command.CALIBRATE, Command.WRITE_SPAN,
        )
    },
}


@dataclass(frozen=True)
class MainReading:
    """Reply to READ_MAIN. `oil_temp_c` None: no oil probe; `lambda_value` None: the frame says 0.

    `no2_ppm` and `nox_ppm` are not in the main frame: the driver's poll fills them from the
    READ_NOX of the same update on a GA-5N; None on a GA-5 (and in a decoded main frame)."""

    hc_ppm: int
    co_pct: float
    co2_pct: float
    o2_pct: float
    no_ppm: int
    rpm: int
    oil_temp_c: float | None
    lambda_value: float | None
    pef: float
    flags: Flags
    seq: int
    no2_ppm: int | None = None
    nox_ppm: int | None = None


@dataclass(frozen=True)
class NoxReading:
    """Reply to READ_NOX (GA-5N only): NO as in the main frame of the same update, NO2, and
    NOX = NO + NO2 as the analyzer computed it (saturating at 65535), all in ppm."""

    no_ppm: int
    no2_ppm: int
    nox_ppm: int


@dataclass(frozen=True)
class EnvReading:
    ambient_temp_c: float
    baro_kpa: float
    rh_pct: float


@dataclass(frozen=True)
class StatusReading:
    state: AnalyzerState
    warmup_left_s: int


@dataclass(frozen=True)
class ProcessReply:
    """Reply to PROCESS_RESULT: the outcome of the last ZERO, LEAK_CHECK or CALIBRATE."""

    result: ProcessResult


@dataclass(frozen=True)
class Identity:
    model: str
    serial: str
    firmware: str

    @property
    def has_nox(self) -> bool:
        """Whether this analyzer is a GA-5N, the model that answers READ_NOX."""
        return self.model == MODEL_GA5N


@dataclass(frozen=True)
class Ack:
    """`06` alone: the command was accepted."""


@dataclass(frozen=True)
class Nak:
    """`15` alone: unknown command, bad checksum, bad value, or not allowed now."""


@dataclass(frozen=True)
class SpanGas:
    """The span-gas bottle's concentrations, as written with WRITE_SPAN."""

    c3h8_ppm: int
    co_pct: float
    co2_pct: float
    no_ppm: int


Reply: TypeAlias = MainReading | NoxReading | EnvReading | StatusReading | ProcessReply | Identity | Ack | Nak
Request: TypeAlias = Command | tuple[Command, SpanGas]

#: span values at power-up
DEFAULT_SPAN: Final = SpanGas(c3h8_ppm=3200, co_pct=3.50, co2_pct=14.00, no_ppm=1500)
#: the largest span values the analyzer accepts (C3H8 ≤ 10000 ppm, CO ≤ 10.00 %, CO2 ≤ 20.00 %, NO ≤ 5000 ppm)
SPAN_MAX: Final = SpanGas(c3h8_ppm=10000, co_pct=10.00, co2_pct=20.00, no_ppm=5000)

# frame layouts without their trailing checksum byte
_MAIN = struct.Struct(">BhHHHHHhHHBHB")
_ENV = struct.Struct(">BhHH")
_NOX = struct.Struct(">BHHH")
_STATUS = struct.Struct(">BBH")
_SPAN = struct.Struct(">BHHHH")
_U16 = (0, 0xFFFF)
_I16 = (-0x8000, 0x7FFF)


def checksum(data: bytes) -> int:
    """CS = (sum of all preceding bytes of the frame) & 0xFF — a plain sum, not complemented."""
    return sum(data) & 0xFF


def _with_cs(body: bytes) -> bytes:
    return body + bytes([checksum(body)])


def to_units(value: float, scale: int, field: str, lo: int, hi: int) -> int:
    """`value` in the frame's units (value × scale), rounded to the nearest unit, half away from
    zero as written in decimal (0.625 % → 63 hundredths); ProtocolError naming `field` if it
    does not fit [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"GA-5 {field}: expected a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError(f"GA-5 {field}: {value} is not a finite number")
    try:
        units = int((Decimal(repr(value)) * scale).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    except InvalidOperation:
        units = hi + 1  # too large for the decimal context: certainly out of range
    if not lo <= units <= hi:
        raise ProtocolError(
            f"GA-5 {field} = {value} does not fit the frame: allowed {lo / scale:g} to {hi / scale:g}"
        )
    return units


# ----- host side: requests out ------------------------------------------------


def encode_request(command: Command, span: SpanGas | None = None) -> bytes:
    """The request bytes for `command`; WRITE_SPAN needs `span` (and only it takes one).

    Span values are checked against the frame's uint16 fields only: whether the analyzer
    accepts them (SPAN_MAX) is the analyzer's decision, answered with ACK or NAK."""
    try:
        command = Command(command)
    except ValueError:
        raise ProtocolError(f"GA-5 has no command 0x{int(command):02x}") from None
    if command is Command.WRITE_SPAN:
        if span is None:
            raise ProtocolError("GA-5 WRITE_SPAN needs the span gas values")
        body = _SPAN.pack(
            command,
            to_units(span.c3h8_ppm, 1, "span c3h8_ppm", *_U16),
            to_units(span.co_pct, 100, "span co_pct", *_U16),
            to_units(span.co2_pct, 100, "span co2_pct", *_U16),
            to_units(span.no_ppm, 1, "span no_ppm", *_U16),
        )
        return _with_cs(body)
    if span is not None:
        raise ProtocolError(f"GA-5 {command.name} takes no span gas values (only WRITE_SPAN does)")
    return bytes([command])


# ----- host side: replies in --------------------------------------------------


def _decode_body(command: Command, frame: bytes) -> Reply:
    """A checksum-verified data frame as its typed reply; FrameError for a field out of its set."""
    if command is Command.READ_MAIN:
        _, hc, co, co2, o2, no, rpm, oil, lam, pef, flags, seq, _reserved = _MAIN.unpack(frame[:-1])
        return MainReading(
            hc_ppm=hc,
            co_pct=co / 100,
            co2_pct=co2 / 100,
            o2_pct=o2 / 100,
            no_ppm=no,
            rpm=rpm,
            oil_temp_c=None if oil == OIL_T_NONE else oil / 10,
            lambda_value=None if lam == 0 else lam / 1000,
            pef=pef / 1000,
            flags=Flags(flags),
            seq=seq,
        )
    if command is Command.READ_NOX:
        _, no, no2, nox = _NOX.unpack(frame[:-1])
        return NoxReading(no_ppm=no, no2_ppm=no2, nox_ppm=nox)
    if command is Command.READ_ENV:
        _, amb, baro, rh = _ENV.unpack(frame[:-1])
        return EnvReading(ambient_temp_c=amb / 10, baro_kpa=baro / 10, rh_pct=rh / 10)
    if command is Command.READ_STATUS:
        _, state, left = _STATUS.unpack(frame[:-1])
        try:
            return StatusReading(state=AnalyzerState(state), warmup_left_s=left)
        except ValueError:
            raise FrameError(f"GA-5 status frame: unknown STATE {state}", frame) from None
    if command is Command.PROCESS_RESULT:
        try:
            return ProcessReply(result=ProcessResult(frame[1]))
        except ValueError:
            raise FrameError(f"GA-5 process frame: unknown RESULT 0x{frame[1]:02x}", frame) from None
    # IDENTIFY
    try:
        parts = frame[2:-1].decode("ascii").split(",")
    except UnicodeDecodeError:
        raise FrameError("GA-5 identity frame: text is not ASCII", frame) from None
    if len(parts) != 3:
        raise FrameError(f"GA-5 identity frame: expected 'model,serial,firmware', got {len(parts)} field(s)", frame)
    return Identity(model=parts[0], serial=parts[1], firmware=parts[2])


class ReplyDecoder:
    """Host side, incremental: bytes in, the reply to `command` (and FrameErrors) out.

    Follows the manual's "finding replies": skip to a byte that can start the reply (`06`,
    or `15` for a NAK), read the fixed length, and on a bad checksum report a FrameError
    with the raw bytes, drop that first byte and look again. Commands answered by ACK
    give Ack() or Nak(). The result never depends on how the bytes were split, and
    `feed` never raises.
    """

    def __init__(self, command: Command) -> None:
        self.command = Command(command)
        self._buffer = bytearray()

    def reset(self) -> None:
        self._buffer.clear()

    @property
    def pending(self) -> bytes:
        """Bytes held while waiting for the rest of a frame."""
        return bytes(self._buffer)

    def feed(self, data: bytes) -> list[Reply | FrameError]:
        self._buffer.extend(data)
        out: list[Reply | FrameError] = []
        while (item := self._next()) is not None:
            out.append(item)
        return out

    def _next(self) -> Reply | FrameError | None:
        buf = self._buffer
        start = next((i for i, b in enumerate(buf) if b in (_ACK_BYTE, _NAK_BYTE)), len(buf))
        del buf[:start]
        if not buf:
            return None
        if buf[0] == _NAK_BYTE:
            del buf[0]
            return Nak()
        length = REPLY_LENGTH[self.command]
        if length == 1:
            del buf[0]
            return Ack()
        if length is None:  # identity: 06 LEN text CS
            if len(buf) < 2:
                return None
            if buf[1] > IDENTITY_MAX_LEN:
                error = FrameError(f"GA-5 identity frame: LEN {buf[1]} over {IDENTITY_MAX_LEN}", bytes(buf[:2]))
                del buf[0]
                return error
            length = buf[1] + 3
        if len(buf) < length:
            return None
        frame = bytes(buf[:length])
        if checksum(frame[:-1]) != frame[-1]:
            del buf[0]
            return FrameError(
                f"GA-5 reply to {self.command.name}: checksum 0x{frame[-1]:02x}, "
                f"expected 0x{checksum(frame[:-1]):02x}",
                frame,
            )
        try:
            reply = _decode_body(self.command, frame)
        except FrameError as exc:
            del buf[0]
            return exc
        del buf[:length]
        return reply


# ----- analyzer side: requests in ---------------------------------------------


def request_length(buffer: bytes) -> int | None:
    """Bytes the request starting at buffer[0] needs (None for an empty buffer). Every byte
    starts a request: an unknown one is a one-byte request the analyzer answers with NAK."""
    if not buffer:
        return None
    return WRITE_SPAN_LENGTH if buffer[0] == Command.WRITE_SPAN else 1


def decode_request(frame: bytes) -> Request:
    """One complete request (as delimited by `request_length`); FrameError if the analyzer
    must NAK it: unknown command or bad checksum."""
    if not frame:
        raise FrameError("GA-5 request: empty")
    try:
        command = Command(frame[0])
    except ValueError:
        raise FrameError(f"GA-5 request: unknown command 0x{frame[0]:02x}", frame) from None
    if command is not Command.WRITE_SPAN:
        if len(frame) != 1:
            raise FrameError(f"GA-5 request {command.name}: one byte expected, got {len(frame)}", frame)
        return command
    if len(frame) != WRITE_SPAN_LENGTH:
        raise FrameError(f"GA-5 WRITE_SPAN: {WRITE_SPAN_LENGTH} bytes expected, got {len(frame)}", frame)
    if checksum(frame[:-1]) != frame[-1]:
        raise FrameError(
            f"GA-5 WRITE_SPAN: checksum 0x{frame[-1]:02x}, expected 0x{checksum(frame[:-1]):02x}", frame
        )
    _, c3h8, co, co2, no = _SPAN.unpack(frame[:-1])
    return command, SpanGas(c3h8_ppm=c3h8, co_pct=co / 100, co2_pct=co2 / 100, no_ppm=no)


class RequestDecoder:
    """Analyzer side, incremental: bytes in, requests (or FrameErrors to answer with NAK) out.
    The 20 ms inter-byte gap is the line's business (simulators/line.py), not this one's."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def reset(self) -> None:
        self._buffer.clear()

    def feed(self, data: bytes) -> list[Request | FrameError]:
        self._buffer.extend(data)
        out: list[Request | FrameError] = []
        while (need := request_length(bytes(self._buffer))) is not None and len(self._buffer) >= need:
            frame = bytes(self._buffer[:need])
            del self._buffer[:need]
            try:
                out.append(decode_request(frame))
            except FrameError as exc:
                out.append(exc)
        return out


def span_problem(span: SpanGas) -> str | None:
    """Why the analyzer NAKs this span (a value over SPAN_MAX), or None if it accepts it."""
    for name in ("c3h8_ppm", "co_pct", "co2_pct", "no_ppm"):
        value, limit = getattr(span, name), getattr(SPAN_MAX, name)
        if not 0 <= value <= limit:
            return f"span {name} = {value} outside 0 to {limit}"
    return None


# ----- analyzer side: replies out ---------------------------------------------


def encode_main(r: MainReading) -> bytes:
    """The 24-byte main data frame. LAMBDA saturates at 65.535 as the manual says; a lambda
    that would read 0 must be given as None (0 means "no lambda")."""
    lam = 0
    if r.lambda_value is not None:
        saturated = isinstance(r.lambda_value, int | float) and 65.535 < r.lambda_value < math.inf
        lam = 0xFFFF if saturated else to_units(r.lambda_value, 1000, "lambda_value", 1, 0xFFFF)
    oil = OIL_T_NONE if r.oil_temp_c is None else to_units(r.oil_temp_c, 10, "oil_temp_c", -0x7FFF, 0x7FFF)
    body = _MAIN.pack(
        _ACK_BYTE,
        to_units(r.hc_ppm, 1, "hc_ppm", *_I16),
        to_units(r.co_pct, 100, "co_pct", *_U16),
        to_units(r.co2_pct, 100, "co2_pct", *_U16),
        to_units(r.o2_pct, 100, "o2_pct", *_U16),
        to_units(r.no_ppm, 1, "no_ppm", *_U16),
        to_units(r.rpm, 1, "rpm", *_U16),
        oil,
        lam,
        to_units(r.pef, 1000, "pef", *_U16),
        to_units(int(r.flags), 1, "flags", 0, 0xFF),
        to_units(r.seq, 1, "seq", *_U16),
        0,
    )
    return _with_cs(body)


def encode_nox(r: NoxReading) -> bytes:
    """The 8-byte NOx frame of a GA-5N: 06 NO NO2 NOX CS (uint16 ppm each)."""
    body = _NOX.pack(
        _ACK_BYTE,
        to_units(r.no_ppm, 1, "no_ppm", *_U16),
        to_units(r.no2_ppm, 1, "no2_ppm", *_U16),
        to_units(r.nox_ppm, 1, "nox_ppm", *_U16),
    )
    return _with_cs(body)


def nox_of(no_ppm: int, no2_ppm: int) -> NoxReading:
    """The NOx frame's values as a GA-5N computes them: NOX = NO + NO2, saturating at 65535."""
    return NoxReading(no_ppm=no_ppm, no2_ppm=no2_ppm, nox_ppm=min(0xFFFF, no_ppm + no2_ppm))


def encode_env(r: EnvReading) -> bytes:
    body = _ENV.pack(
        _ACK_BYTE,
        to_units(r.ambient_temp_c, 10, "ambient_temp_c", *_I16),
        to_units(r.baro_kpa, 10, "baro_kpa", *_U16),
        to_units(r.rh_pct, 10, "rh_pct", *_U16),
    )
    return _with_cs(body)


def encode_status(r: StatusReading) -> bytes:
    try:
        state = AnalyzerState(r.state)
    except ValueError:
        raise ProtocolError(f"GA-5 status: no STATE {r.state!r}") from None
    body = _STATUS.pack(_ACK_BYTE, state, to_units(r.warmup_left_s, 1, "warmup_left_s", *_U16))
    return _with_cs(body)


def encode_process(r: ProcessReply | ProcessResult) -> bytes:
    try:
        result = ProcessResult(r.result if isinstance(r, ProcessReply) else r)
    except ValueError:
        raise ProtocolError(f"GA-5 process frame: no RESULT {r!r}") from None
    return _with_cs(bytes([_ACK_BYTE, result]))


def encode_identity(r: Identity) -> bytes:
    """06 LEN "model,serial,firmware" CS; ProtocolError for commas in a field, non-ASCII text
    or a text over 40 bytes."""
    for name in ("model", "serial", "firmware"):
        if "," in getattr(r, name):
            raise ProtocolError(f"GA-5 identity {name} {getattr(r, name)!r} contains a comma")
    try:
        text = f"{r.model},{r.serial},{r.firmware}".encode("ascii")
    except UnicodeEncodeError:
        raise ProtocolError(f"GA-5 identity {r!r} is not ASCII") from None
    if len(text) > IDENTITY_MAX_LEN:
        raise ProtocolError(f"GA-5 identity text is {len(text)} bytes, at most {IDENTITY_MAX_LEN} allowed")
    return _with_cs(bytes([_ACK_BYTE, len(text)]) + text)


# ----- the analyzer's lambda --------------------------------------------------

#: Brettschneider constants for gasoline (standards.md): H/C, O/C, hexane → C1
HCV_GASOLINE: Final = 1.7261
OCV_GASOLINE: Final = 0.0176
K1_HEXANE: Final = 6.0
#: below this CO2 (%vol) the analyzer reports LAMBDA 0
LAMBDA_MIN_CO2_PCT: Final = 0.10


def brettschneider_lambda(
    hc_ppm: float,
    co_pct: float,
    co2_pct: float,
    o2_pct: float,
    *,
    hcv: float = HCV_GASOLINE,
    ocv: float = OCV_GASOLINE,
    k1: float = K1_HEXANE,
) -> float:
    """λ by the Brettschneider formula of standards.md (CO, CO2, O2 in %vol, HC in ppm hexane).

    The analyzer's own formula; the lane recomputes it from mean gases to cross-check the
    analyzer's LAMBDA. ProtocolError when CO2 ≤ 0 (the formula divides by it)."""
    if co2_pct <= 0:
        raise ProtocolError(f"Brettschneider λ needs CO2 > 0 %vol, got {co2_pct}")
    numerator = co2_pct + co_pct / 2 + o2_pct + (
        hcv / 4 * 3.5 / (3.5 + co_pct / co2_pct) - ocv / 2
    ) * (co2_pct + co_pct)
    denominator = (1 + hcv / 4 - ocv / 2) * (co2_pct + co_pct + k1 * hc_ppm * 1e-4)
    if denominator <= 0:
        raise ProtocolError("Brettschneider λ undefined: CO2 + CO + K1·HC·1e-4 ≤ 0")
    return numerator / denominator


def analyzer_lambda(hc_ppm: float, co_pct: float, co2_pct: float, o2_pct: float) -> float | None:
    """What the GA-5 puts in LAMBDA: Brettschneider λ, or None (frame 0) when CO2 < 0.10 %vol."""
    if co2_pct < LAMBDA_MIN_CO2_PCT:
        return None
    try:
        return brettschneider_lambda(hc_ppm, co_pct, co2_pct, o2_pct)
    except ProtocolError:
        return None
