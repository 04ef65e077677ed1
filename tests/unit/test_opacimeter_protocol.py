"""OP-1 opacimeter protocol: the manual's byte examples, both ways, and the host's resync.

Every expected byte string and value here is copied by hand from
spec/devices/opacimeter.md, or worked out by hand with its rule
CS = (−sum) & 0xFF (the arithmetic is in the comments).
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.errors import FrameError, ProtocolError
from protocols.opacimeter import (
    Ack,
    Command,
    EnvReading,
    ErrorCode,
    ErrorReply,
    MeterState,
    PeakReading,
    RealtimeReading,
    ReplyDecoder,
    StatusReply,
    ZeroReply,
    consistent,
    decode_reply,
    encode_reply,
    encode_request,
    opacity_from_k,
    parse_request,
)

H = bytes.fromhex

# the manual's examples
REALTIME_EXAMPLE = H("a5 00 ea 00 3e 09 2e ff ff 00 4d b1")
PEAK_EXAMPLE = H("a6 01 9b 00 7b 09 6a d0")
ENV_EXAMPLE = H("af 0b 82 02 29 03 f0 a6")
ZERO_OK_EXAMPLE = H("a4 00 5c")
NOT_READY_EXAMPLE = H("15 03 e8")


# ----- requests ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "wire"),
    [
        (Command.STATUS, "a1 5f"),
        (Command.ZERO, "a4 5c"),
        (Command.REALTIME, "a5 5b"),
        (Command.PEAK, "a6 5a"),
        (Command.CLEAR_PEAK, "a7 59"),
        (Command.ENV, "af 51"),
    ],
)
def test_request_bytes_are_the_manuals(command: Command, wire: str) -> None:
    assert encode_request(command) == H(wire)
    assert parse_request(H(wire)) == command


def test_meter_answers_a_request_with_a_bad_sum_with_error_02() -> None:
    assert parse_request(H("a1 5e")) == ErrorCode.BAD_CHECKSUM


def test_meter_answers_an_unknown_command_with_error_01() -> None:
    # b0 + 50 = 0x100: a good sum, but B0 is no command of the manual
    assert parse_request(H("b0 50")) == ErrorCode.UNKNOWN_COMMAND


def test_bad_sum_wins_over_unknown_command() -> None:
    assert parse_request(H("b0 51")) == ErrorCode.BAD_CHECKSUM


def test_parse_request_refuses_a_frame_that_is_not_two_bytes() -> None:
    with pytest.raises(ProtocolError):
        parse_request(H("a1"))


# ----- the manual's reply examples, decoded and encoded back ----------------------

EXAMPLES = [
    # REALTIME: N 23.4 %, K 0.62 1/m, 2350 r/min, no oil probe, SEQ 77
    (Command.REALTIME, REALTIME_EXAMPLE, RealtimeReading(23.4, 0.62, 2350, None, 77)),
    # PEAK: N 41.1 %, K 1.23 1/m, 2410 r/min
    (Command.PEAK, PEAK_EXAMPLE, PeakReading(41.1, 1.23, 2410)),
    # ENV: 294.6 K, 55.3 %, 100.8 kPa
    (Command.ENV, ENV_EXAMPLE, EnvReading(294.6, 55.3, 100.8)),
    # ZERO ok
    (Command.ZERO, ZERO_OK_EXAMPLE, ZeroReply(passed=True)),
    # error 03 (not ready), here as the answer to REALTIME
    (Command.REALTIME, NOT_READY_EXAMPLE, ErrorReply(ErrorCode.NOT_READY)),
]


@pytest.mark.parametrize(("command", "wire", "value"), EXAMPLES)
def test_manual_example_decodes_to_the_manuals_values(command: Command, wire: bytes, value: object) -> None:
    assert decode_reply(command, wire) == value
    assert ReplyDecoder(command).feed(wire) == [value]


@pytest.mark.parametrize(("command", "wire", "value"), EXAMPLES)
def test_manual_example_encodes_back_byte_for_byte(command: Command, wire: bytes, value: object) -> None:
    assert encode_reply(value) == wire  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("command", "wire", "value"),
    [
        # a1 + 00 = a1 = 161; 256 − 161 = 95 = 5f
        (Command.STATUS, "a1 00 5f", StatusReply(MeterState.READY)),
        # a1 + 01 = 162; 256 − 162 = 94 = 5e
        (Command.STATUS, "a1 01 5e", StatusReply(MeterState.WARMING_UP)),
        # a1 + 02 = 163; 256 − 163 = 93 = 5d
        (Command.STATUS, "a1 02 5d", StatusReply(MeterState.ZEROING)),
        # a4 + 01 = 165; 256 − 165 = 91 = 5b: a failed zero
        (Command.ZERO, "a4 01 5b", ZeroReply(passed=False)),
        # CLEAR_PEAK's reply is the command echoed: a7 + 59 = 0x100
        (Command.CLEAR_PEAK, "a7 59", Ack()),
        # 15 + 04 = 25; 256 − 25 = 231 = e7: busy
        (Command.PEAK, "15 04 e7", ErrorReply(ErrorCode.BUSY)),
        # 15 + 01 = 22; 256 − 22 = 234 = ea: unknown command
        (Command.ENV, "15 01 ea", ErrorReply(ErrorCode.UNKNOWN_COMMAND)),
        # 15 + 02 = 23; 256 − 23 = 233 = e9: bad checksum
        (Command.STATUS, "15 02 e9", ErrorReply(ErrorCode.BAD_CHECKSUM)),
    ],
)
def test_other_replies_round_trip(command: Command, wire: str, value: object) -> None:
    assert decode_reply(command, H(wire)) == value
    assert encode_reply(value) == H(wire)  # type: ignore[arg-type]


def test_realtime_with_an_oil_probe_carries_whole_kelvin() -> None:
    # the manual's example with OIL_T 353 K = 01 61 instead of ff ff:
    # sum of the first 11 bytes 1103 − 255 − 255 + 1 + 97 = 691; 691 mod 256 = 179; 256 − 179 = 77 = 4d
    wire = H("a5 00 ea 00 3e 09 2e 01 61 00 4d 4d")
    value = RealtimeReading(23.4, 0.62, 2350, 353, 77)
    assert decode_reply(Command.REALTIME, wire) == value
    assert encode_reply(value) == wire


def test_error_code_says_what_it_means() -> None:
    assert "warming up" in ErrorCode.NOT_READY.meaning
    assert "busy" in ErrorCode.BUSY.meaning


@pytest.mark.parametrize(
    "bad",
    [
        RealtimeReading(-0.1, 0.62, 2350, None, 77),
        RealtimeReading(23.4, 655.36, 2350, None, 77),
        RealtimeReading(23.4, 0.62, 70000, None, 77),
        RealtimeReading(23.4, 0.62, 2350, 65535, 77),
        RealtimeReading(23.4, 0.62, 2350, None, 65536),
        RealtimeReading(float("nan"), 0.62, 2350, None, 77),
    ],
)
def test_encoding_a_value_that_does_not_fit_its_field_raises(bad: RealtimeReading) -> None:
    with pytest.raises(ProtocolError):
        encode_reply(bad)


# ----- decode_reply refuses malformed frames ----------------------------------------


@pytest.mark.parametrize(
    ("command", "wire"),
    [
        (Command.REALTIME, "a5 00 ea 00 3e 09 2e ff ff 00 4d b2"),  # sum off by one
        (Command.REALTIME, "a5 00 ea 00 3e 09 2e ff ff 00 4d"),  # one byte short
        (Command.PEAK, "a5 00 ea 00 3e 09 2e ff ff 00 4d b1"),  # a REALTIME frame is no PEAK reply
        (Command.STATUS, "a1 07 58"),  # a1 + 07 = 168, cs 88 = 58: STATE 7 does not exist
        (Command.ZERO, "a4 02 5a"),  # a4 + 02 = 166, cs 90 = 5a: RESULT 2 does not exist
        (Command.ENV, "15 09 e2"),  # 15 + 09 = 30, cs 226 = e2: ERR 9 does not exist
    ],
)
def test_decode_reply_raises_frame_error_with_the_bytes(command: Command, wire: str) -> None:
    with pytest.raises(FrameError) as caught:
        decode_reply(command, H(wire))
    assert caught.value.raw == H(wire)


def test_decoder_yields_frame_error_for_an_undefined_state_and_resyncs() -> None:
    out = ReplyDecoder(Command.STATUS).feed(H("a1 07 58 a1 00 5f"))
    assert isinstance(out[0], FrameError)
    assert out[-1] == StatusReply(MeterState.READY)


# ----- N and K ----------------------------------------------------------------------


def test_manual_examples_are_consistent_through_the_optical_path() -> None:
    assert consistent(23.4, 0.62)
    assert consistent(41.1, 1.23)


def test_opacity_far_from_k_is_inconsistent() -> None:
    # K 0.62 1/m means about 23.4 %; 24.0 % is 0.6 % away, beyond the 0.5 % tolerance
    assert not consistent(24.0, 0.62)
    assert consistent(23.8, 0.62)


def test_opacity_from_k_uses_l_0_430_m() -> None:
    assert opacity_from_k(0.0) == 0.0
    # e^(−0.43) = 0.650509 -> 34.949 %
    assert opacity_from_k(1.0) == pytest.approx(34.949, abs=0.001)


# ----- the host's incremental decoder: resync ----------------------------------------


def test_decoder_skips_garbage_before_the_frame() -> None:
    decoder = ReplyDecoder(Command.REALTIME)
    assert decoder.feed(H("00 ff 3e") + REALTIME_EXAMPLE) == [RealtimeReading(23.4, 0.62, 2350, None, 77)]
    assert decoder.skipped_bytes == 3


def test_decoder_waits_for_the_fixed_length() -> None:
    decoder = ReplyDecoder(Command.PEAK)
    assert decoder.feed(PEAK_EXAMPLE[:5]) == []
    assert decoder.feed(PEAK_EXAMPLE[5:]) == [PeakReading(41.1, 1.23, 2410)]


def test_bad_sum_yields_frame_error_then_the_next_good_frame() -> None:
    decoder = ReplyDecoder(Command.REALTIME)
    corrupted = REALTIME_EXAMPLE[:-1] + H("b2")
    out = decoder.feed(corrupted + REALTIME_EXAMPLE)
    assert isinstance(out[0], FrameError)
    assert out[0].raw == corrupted
    assert out[-1] == RealtimeReading(23.4, 0.62, 2350, None, 77)
    assert all(isinstance(item, FrameError) for item in out[:-1])


def test_a_stray_start_byte_drops_one_byte_and_finds_the_frame() -> None:
    # a5 a5 00 ea ...: the 12 bytes from the first a5 do not sum to 0, so that a5 is dropped
    out = ReplyDecoder(Command.REALTIME).feed(H("a5") + REALTIME_EXAMPLE)
    assert isinstance(out[0], FrameError)
    assert out[-1] == RealtimeReading(23.4, 0.62, 2350, None, 77)


def test_a_stray_15_before_the_frame_is_not_taken_for_an_error_reply() -> None:
    # 15 a5 00: 0x15 + 0xa5 + 0 = 0xba, not 0 mod 256
    out = ReplyDecoder(Command.REALTIME).feed(H("15") + REALTIME_EXAMPLE)
    assert out[-1] == RealtimeReading(23.4, 0.62, 2350, None, 77)


def test_decoder_skips_a_reply_to_another_command() -> None:
    out = ReplyDecoder(Command.REALTIME).feed(PEAK_EXAMPLE + REALTIME_EXAMPLE)
    assert out[-1] == RealtimeReading(23.4, 0.62, 2350, None, 77)


def test_decoder_returns_an_error_reply_while_waiting_for_data() -> None:
    assert ReplyDecoder(Command.ZERO).feed(H("15 04 e7")) == [ErrorReply(ErrorCode.BUSY)]


# ----- fuzz ----------------------------------------------------------------------------

COMMANDS = st.sampled_from(list(Command))

_REPLY_TYPE: dict[Command, type] = {
    Command.STATUS: StatusReply,
    Command.ZERO: ZeroReply,
    Command.REALTIME: RealtimeReading,
    Command.PEAK: PeakReading,
    Command.CLEAR_PEAK: Ack,
    Command.ENV: EnvReading,
}


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@given(command=COMMANDS, data=st.binary(max_size=200), cuts=st.lists(st.integers(0, 1000), max_size=10))
def test_decoder_never_raises_on_arbitrary_bytes(command: Command, data: bytes, cuts: list[int]) -> None:
    decoder = ReplyDecoder(command)
    for chunk in _chunks(data, cuts):
        for item in decoder.feed(chunk):
            assert isinstance(item, FrameError | ErrorReply | _REPLY_TYPE[command])


@given(
    garbage=st.binary(max_size=60).map(lambda b: bytes(x for x in b if x not in (0xA5, 0x15))),
    cuts=st.lists(st.integers(0, 1000), max_size=8),
)
def test_frames_are_found_after_garbage_at_any_split(garbage: bytes, cuts: list[int]) -> None:
    """Garbage that holds no start byte is skipped whole, however the bytes are cut."""
    decoder = ReplyDecoder(Command.REALTIME)
    out: list[object] = []
    for chunk in _chunks(garbage + REALTIME_EXAMPLE + garbage + REALTIME_EXAMPLE, cuts):
        out.extend(decoder.feed(chunk))
    expected = RealtimeReading(23.4, 0.62, 2350, None, 77)
    assert out == [expected, expected]


@given(
    n=st.integers(0, 0xFFFF),
    k=st.integers(0, 0xFFFF),
    rpm=st.integers(0, 0xFFFF),
    oil=st.one_of(st.none(), st.integers(0, 0xFFFE)),
    seq=st.integers(0, 0xFFFF),
)
def test_realtime_round_trips_every_field_value(n: int, k: int, rpm: int, oil: int | None, seq: int) -> None:
    reading = RealtimeReading(n / 10, k / 100, rpm, oil, seq)
    wire = encode_reply(reading)
    assert len(wire) == 12
    assert sum(wire) % 256 == 0
    assert decode_reply(Command.REALTIME, wire) == reading
