"""OP-1 partial-flow opacimeter: frames and values of its serial protocol, without I/O.

The manual (spec/devices/opacimeter.md) in short: the host sends `CMD CS`, the
meter echoes the command byte with fixed-length big-endian data, or answers
`15 ERR CS`; CS is the two's complement of the sum, so every frame sums to 0
(mod 256). The host finds a reply by skipping to a byte that can start it
(the command byte or `15`), reading the fixed length, and on a bad sum dropping
the first byte and looking again.

Host side: `encode_request()` and the incremental `ReplyDecoder`. Meter side
(for the simulator): `parse_request()` and `encode_reply()`. Values carry their
units in their names; `consistent()` cross-checks opacity N against the light
absorption coefficient K through the optical path length L = 0.430 m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

from protocols.errors import FrameError, ProtocolError

#: effective optical path length of the OP-1's smoke chamber, m
OPTICAL_PATH_M = 0.430
#: the largest |N − 100·(1 − e^(−K·L))| of a consistent reading, in % opacity
CONSISTENCY_TOLERANCE_PCT = 0.5
#: first byte of every error reply
ERROR_START = 0x15
#: OIL_T when no oil temperature probe is fitted
NO_OIL_PROBE = 0xFFFF
#: every request in the manual is `CMD CS`
REQUEST_LENGTH = 2
ERROR_REPLY_LENGTH = 3


class Command(IntEnum):
    STATUS = 0xA1
    ZERO = 0xA4
    REALTIME = 0xA5
    PEAK = 0xA6
    CLEAR_PEAK = 0xA7
    ENV = 0xAF


#: length of each command's success reply, checksum included
REPLY_LENGTH: dict[Command, int] = {
    Command.STATUS: 3,
    Command.ZERO: 3,
    Command.REALTIME: 12,
    Command.PEAK: 8,
    Command.CLEAR_PEAK: 2,
    Command.ENV: 8,
}


class ErrorCode(IntEnum):
    UNKNOWN_COMMAND = 1
    BAD_CHECKSUM = 2
    NOT_READY = 3
    BUSY = 4

    @property
    def meaning(self) -> str:
        """What the code means to a lane technician."""
        return _ERROR_MEANINGS[self]


_ERROR_MEANINGS = {
    ErrorCode.UNKNOWN_COMMAND: "unknown command",
    ErrorCode.BAD_CHECKSUM: "bad checksum in the request",
    ErrorCode.NOT_READY: "not ready (warming up)",
    ErrorCode.BUSY: "busy (zeroing)",
}


class MeterState(IntEnum):
    READY = 0
    WARMING_UP = 1
    ZEROING = 2
    FAULT = 3


# ----- replies as values ------------------------------------------------------


@dataclass(frozen=True)
class RealtimeReading:
    """REALTIME: the filtered smoke now. `oil_temp_k` is None without an oil probe;
    `seq` counts the meter's 20 Hz internal updates and wraps at 65536."""

    opacity_pct: float
    k_m1: float
    rpm: int
    oil_temp_k: int | None
    seq: int


@dataclass(frozen=True)
class PeakReading:
    """PEAK: the largest K since CLEAR_PEAK, with N and RPM at that instant."""

    opacity_pct: float
    k_m1: float
    rpm: int


@dataclass(frozen=True)
class EnvReading:
    """ENV: ambient temperature (to 0.1 K), relative humidity (0.1 %), pressure (0.1 kPa)."""

    ambient_temp_k: float
    rh_pct: float
    baro_kpa: float


@dataclass(frozen=True)
class StatusReply:
    state: MeterState


@dataclass(frozen=True)
class ZeroReply:
    """The ZERO reply, sent when the zero is done; a failed zero leaves the meter READY."""

    passed: bool


@dataclass(frozen=True)
class Ack:
    """The reply to CLEAR_PEAK: the command byte echoed, no data."""


@dataclass(frozen=True)
class ErrorReply:
    code: ErrorCode


Reply = RealtimeReading | PeakReading | EnvReading | StatusReply | ZeroReply | Ack | ErrorReply

#: which command's reply each reply type is (ErrorReply answers any)
_COMMAND_OF: dict[type, Command] = {
    RealtimeReading: Command.REALTIME,
    PeakReading: Command.PEAK,
    EnvReading: Command.ENV,
    StatusReply: Command.STATUS,
    ZeroReply: Command.ZERO,
    Ack: Command.CLEAR_PEAK,
}


# ----- checksum and physics ---------------------------------------------------


def checksum(data: bytes) -> int:
    """The byte that makes `data` + CS sum to 0 mod 256: (−sum) & 0xFF."""
    return -sum(data) & 0xFF


def sums_to_zero(frame: bytes) -> bool:
    return sum(frame) & 0xFF == 0


def _with_checksum(body: bytes) -> bytes:
    return body + bytes([checksum(body)])


def opacity_from_k(k_m1: float) -> float:
    """Opacity N in % for a light absorption coefficient K in m⁻¹: N = 100·(1 − e^(−K·L))."""
    return 100.0 * (1.0 - math.exp(-k_m1 * OPTICAL_PATH_M))


def consistent(opacity_pct: float, k_m1: float) -> bool:
    """Whether N and K describe the same smoke, within the manual's 0.5 % of opacity."""
    return abs(opacity_pct - opacity_from_k(k_m1)) <= CONSISTENCY_TOLERANCE_PCT + 1e-9


# ----- fields -----------------------------------------------------------------


def _u16(value: float, per_unit: int, field: str) -> bytes:
    raw = math.floor(value * per_unit + 0.5) if math.isfinite(value) else -1
    if not 0 <= raw <= 0xFFFF:
        top = 0xFFFF / per_unit
        raise ProtocolError(f"OP-1 {field} = {value} does not fit its field (0 to {top:g})")
    return raw.to_bytes(2, "big")


def _u8(value: int, field: str) -> bytes:
    if not 0 <= value <= 0xFF:
        raise ProtocolError(f"OP-1 {field} = {value} does not fit one byte")
    return bytes([value])


def _get_u16(frame: bytes, offset: int) -> int:
    return int.from_bytes(frame[offset : offset + 2], "big")


# ----- host side ----------------------------------------------------------------


def encode_request(command: Command) -> bytes:
    """The two request bytes `CMD CS`, e.g. STATUS -> a1 5f."""
    return _with_checksum(bytes([Command(command)]))


def decode_reply(command: Command, frame: bytes) -> Reply:
    """One complete reply frame to `command` (its success reply or an error reply) as a value.

    Raises FrameError (with the bytes) on a wrong length, a bad sum, a start byte that
    answers another command, or a STATE / RESULT / ERR the manual does not define.
    """
    if not frame:
        raise FrameError(f"empty OP-1 reply to {command.name}")
    start = frame[0]
    if start not in (ERROR_START, command):
        raise FrameError(f"OP-1 reply to {command.name} must start with {command:02x} or 15", frame)
    want = ERROR_REPLY_LENGTH if start == ERROR_START else REPLY_LENGTH[command]
    if len(frame) != want:
        raise FrameError(
            f"OP-1 reply to {command.name} must be {want} bytes, got {len(frame)}", frame
        )
    if not sums_to_zero(frame):
        raise FrameError(f"OP-1 reply to {command.name} with a bad checksum", frame)
    if start == ERROR_START:
        try:
            return ErrorReply(ErrorCode(frame[1]))
        except ValueError:
            raise FrameError(f"OP-1 error reply with unknown ERR {frame[1]:02x}", frame) from None
    if command == Command.STATUS:
        try:
            return StatusReply(MeterState(frame[1]))
        except ValueError:
            msg = f"OP-1 STATUS reply with unknown STATE {frame[1]:02x}"
            raise FrameError(msg, frame) from None
    if command == Command.ZERO:
        if frame[1] not in (0, 1):
            raise FrameError(f"OP-1 ZERO reply with unknown RESULT {frame[1]:02x}", frame)
        return ZeroReply(passed=frame[1] == 0)
    if command == Command.REALTIME:
        oil = _get_u16(frame, 7)
        return RealtimeReading(
            opacity_pct=_get_u16(frame, 1) / 10,
            k_m1=_get_u16(frame, 3) / 100,
            rpm=_get_u16(frame, 5),
            oil_temp_k=None if oil == NO_OIL_PROBE else oil,
            seq=_get_u16(frame, 9),
        )
    if command == Command.PEAK:
        return PeakReading(
            opacity_pct=_get_u16(frame, 1) / 10,
            k_m1=_get_u16(frame, 3) / 100,
            rpm=_get_u16(frame, 5),
        )
    if command == Command.ENV:
        return EnvReading(
            ambient_temp_k=_get_u16(frame, 1) / 10,
            rh_pct=_get_u16(frame, 3) / 10,
            baro_kpa=_get_u16(frame, 5) / 10,
        )
    return Ack()  # CLEAR_PEAK


class ReplyDecoder:
    """Incremental decoder of the reply to one command: bytes in, replies and FrameErrors out.

    It skips bytes that cannot start the expected reply (counted in `skipped_bytes`),
    waits for the fixed length, and on a bad frame yields a FrameError with its bytes and
    resumes one byte further on, as the manual tells the host to. It never raises.
    """

    def __init__(self, command: Command) -> None:
        self.command = Command(command)
        self._buffer = bytearray()
        self.skipped_bytes = 0

    def feed(self, data: bytes) -> list[Reply | FrameError]:
        self._buffer.extend(data)
        out: list[Reply | FrameError] = []
        while self._buffer:
            start = self._buffer[0]
            if start == ERROR_START:
                need = ERROR_REPLY_LENGTH
            elif start == self.command:
                need = REPLY_LENGTH[self.command]
            else:
                del self._buffer[0]
                self.skipped_bytes += 1
                continue
            if len(self._buffer) < need:
                break
            frame = bytes(self._buffer[:need])
            try:
                reply = decode_reply(self.command, frame)
            except FrameError as exc:
                out.append(exc)
                del self._buffer[0]
                continue
            del self._buffer[:need]
            out.append(reply)
        return out


# ----- meter side -------------------------------------------------------------


def parse_request(frame: bytes) -> Command | ErrorCode:
    """A complete two-byte request as the meter sees it: the command, or the error code to
    answer with (BAD_CHECKSUM if the sum is wrong, else UNKNOWN_COMMAND for a code the
    manual does not define)."""
    if len(frame) != REQUEST_LENGTH:
        raise ProtocolError(f"an OP-1 request is {REQUEST_LENGTH} bytes, got {len(frame)}")
    if not sums_to_zero(frame):
        return ErrorCode.BAD_CHECKSUM
    try:
        return Command(frame[0])
    except ValueError:
        return ErrorCode.UNKNOWN_COMMAND


def encode_reply(reply: Reply) -> bytes:
    """The bytes the meter sends for `reply`, checksum included.

    Raises ProtocolError for a value that does not fit its field (e.g. a negative K).
    """
    if isinstance(reply, ErrorReply):
        return _with_checksum(bytes([ERROR_START, ErrorCode(reply.code)]))
    command = bytes([_COMMAND_OF[type(reply)]])
    if isinstance(reply, StatusReply):
        body = command + _u8(MeterState(reply.state), "STATE")
    elif isinstance(reply, ZeroReply):
        body = command + bytes([0 if reply.passed else 1])
    elif isinstance(reply, RealtimeReading):
        if reply.oil_temp_k is None:
            oil = NO_OIL_PROBE.to_bytes(2, "big")
        elif 0 <= reply.oil_temp_k < NO_OIL_PROBE:
            oil = _u16(reply.oil_temp_k, 1, "OIL_T (K)")
        else:
            raise ProtocolError(
                f"OP-1 OIL_T = {reply.oil_temp_k} K does not fit (0 to 65534; None = no probe)"
            )
        body = (
            command
            + _u16(reply.opacity_pct, 10, "N (%)")
            + _u16(reply.k_m1, 100, "K (1/m)")
            + _u16(reply.rpm, 1, "RPM (r/min)")
            + oil
            + _u16(reply.seq, 1, "SEQ")
        )
    elif isinstance(reply, PeakReading):
        body = (
            command
            + _u16(reply.opacity_pct, 10, "N_PEAK (%)")
            + _u16(reply.k_m1, 100, "K_PEAK (1/m)")
            + _u16(reply.rpm, 1, "RPM_AT_PEAK (r/min)")
        )
    elif isinstance(reply, EnvReading):
        body = (
            command
            + _u16(reply.ambient_temp_k, 10, "T (K)")
            + _u16(reply.rh_pct, 10, "RH (%)")
            + _u16(reply.baro_kpa, 10, "P (kPa)")
        )
    else:  # Ack
        body = command
    return _with_checksum(body)
