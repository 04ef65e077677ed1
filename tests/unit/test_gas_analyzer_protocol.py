"""GA-5 gas analyzer protocol (protocols/gas_analyzer.py) against its manual,
../shared/spec/devices/gas-analyzer.md. Byte examples and expected values are copied from the
manual or worked out by hand in the comments; none comes from running the code."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import gas_analyzer as ga
from protocols.errors import FrameError, ProtocolError

# The manual's examples, byte for byte.
MAIN_EXAMPLE = bytes.fromhex("06 00 55 00 3e 05 98 00 2d 01 36 03 2c 03 89 03 e7 02 0d 40 04 d2 00 64")
ENV_EXAMPLE = bytes.fromhex("06 00 d7 03 f0 02 29 fb")
SPAN_EXAMPLE = bytes.fromhex("23 0c 80 01 5e 05 78 05 dc 6c")

# "HC 85 ppm, CO 0.62 %, CO2 14.32 %, O2 0.45 %, NO 310 ppm, 812 r/min, oil 90.5 °C, λ 0.999,
# PEF 0.525, pump on sample, SEQ 1234"
MAIN_EXAMPLE_READING = ga.MainReading(
    hc_ppm=85, co_pct=0.62, co2_pct=14.32, o2_pct=0.45, no_ppm=310, rpm=812, oil_temp_c=90.5,
    lambda_value=0.999, pef=0.525, flags=ga.Flags.PUMP_SAMPLE, seq=1234,
)


def decode(command: ga.Command, data: bytes) -> list[object]:
    return list(ga.ReplyDecoder(command).feed(data))


# ----- checksums of the manual's examples, summed by hand -------------------------------


def test_main_example_checksum_is_the_plain_sum_of_the_preceding_bytes() -> None:
    # 06+00+55+00+3e+05+98+00+2d+01+36+03+2c+03+89+03+e7+02+0d+40+04+d2+00
    # = 6+85+62+5+152+45+1+54+3+44+3+137+3+231+2+13+64+4+210 = 1124; 1124 & 0xFF = 100 = 0x64
    assert ga.checksum(MAIN_EXAMPLE[:-1]) == 0x64 == MAIN_EXAMPLE[-1]


def test_env_example_checksum_is_the_plain_sum_of_the_preceding_bytes() -> None:
    # 6 + 0 + 215 + 3 + 240 + 2 + 41 = 507; 507 - 256 = 251 = 0xfb
    assert ga.checksum(ENV_EXAMPLE[:-1]) == 0xFB == ENV_EXAMPLE[-1]


def test_write_span_example_checksum_is_the_plain_sum_of_the_preceding_bytes() -> None:
    # 35 + 12 + 128 + 1 + 94 + 5 + 120 + 5 + 220 = 620; 620 - 512 = 108 = 0x6c
    assert ga.checksum(SPAN_EXAMPLE[:-1]) == 0x6C == SPAN_EXAMPLE[-1]


def test_checksum_is_not_complemented_and_wraps_at_256() -> None:
    assert ga.checksum(b"\xff\x02") == 0x01
    assert ga.checksum(b"") == 0


# ----- the manual's frames both ways ----------------------------------------------------


def test_main_example_decodes_to_the_manuals_values() -> None:
    assert decode(ga.Command.READ_MAIN, MAIN_EXAMPLE) == [MAIN_EXAMPLE_READING]


def test_main_example_values_encode_to_the_manuals_bytes() -> None:
    assert ga.encode_main(MAIN_EXAMPLE_READING) == MAIN_EXAMPLE


def test_env_example_decodes_to_the_manuals_values() -> None:
    # "21.5 °C, 100.8 kPa, 55.3 %"
    assert decode(ga.Command.READ_ENV, ENV_EXAMPLE) == [ga.EnvReading(21.5, 100.8, 55.3)]


def test_env_example_values_encode_to_the_manuals_bytes() -> None:
    assert ga.encode_env(ga.EnvReading(ambient_temp_c=21.5, baro_kpa=100.8, rh_pct=55.3)) == ENV_EXAMPLE


def test_write_span_example_encodes_from_the_manuals_values() -> None:
    # "3200 ppm propane, 3.50 % CO, 14.00 % CO2, 1500 ppm NO"
    span = ga.SpanGas(c3h8_ppm=3200, co_pct=3.50, co2_pct=14.00, no_ppm=1500)
    assert ga.encode_request(ga.Command.WRITE_SPAN, span) == SPAN_EXAMPLE


def test_write_span_example_decodes_on_the_analyzer_side() -> None:
    assert ga.decode_request(SPAN_EXAMPLE) == (ga.Command.WRITE_SPAN, ga.SpanGas(3200, 3.50, 14.00, 1500))


def test_power_up_span_is_the_manuals() -> None:
    assert ga.SpanGas(3200, 3.50, 14.00, 1500) == ga.DEFAULT_SPAN


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (ga.Command.READ_MAIN, 0x01), (ga.Command.READ_ENV, 0x02), (ga.Command.READ_STATUS, 0x03),
        (ga.Command.PUMP_AMBIENT, 0x10), (ga.Command.PUMP_SAMPLE, 0x11), (ga.Command.BACKFLUSH, 0x12),
        (ga.Command.PUMP_STOP, 0x13), (ga.Command.ZERO, 0x20), (ga.Command.LEAK_CHECK, 0x21),
        (ga.Command.CALIBRATE, 0x22), (ga.Command.PROCESS_RESULT, 0x24), (ga.Command.IDENTIFY, 0x3F),
    ],
)
def test_one_byte_requests_are_the_bare_command_code_without_checksum(command: ga.Command, code: int) -> None:
    assert ga.encode_request(command) == bytes([code])
    assert ga.decode_request(bytes([code])) is command


def test_write_span_without_values_is_refused() -> None:
    with pytest.raises(ProtocolError, match="WRITE_SPAN"):
        ga.encode_request(ga.Command.WRITE_SPAN)


def test_span_values_with_another_command_are_refused() -> None:
    with pytest.raises(ProtocolError, match="READ_MAIN"):
        ga.encode_request(ga.Command.READ_MAIN, ga.DEFAULT_SPAN)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        # 06 | STATE 01 | WARMUP_LEFT 001e = 30 s | CS 6+1+0+30 = 37 = 0x25
        ("06 01 00 1e 25", ga.StatusReading(ga.AnalyzerState.WARMING_UP, 30)),
        # READY, 0 s left: 6 + 0 + 0 + 0 = 0x06
        ("06 00 00 00 06", ga.StatusReading(ga.AnalyzerState.READY, 0)),
        # CALIBRATING: 6 + 4 = 0x0a
        ("06 04 00 00 0a", ga.StatusReading(ga.AnalyzerState.CALIBRATING, 0)),
    ],
)
def test_status_frame_both_ways(frame: str, expected: ga.StatusReading) -> None:
    assert decode(ga.Command.READ_STATUS, bytes.fromhex(frame)) == [expected]
    assert ga.encode_status(expected) == bytes.fromhex(frame)


@pytest.mark.parametrize(
    ("frame", "result"),
    [
        ("06 00 06", ga.ProcessResult.PASSED),
        ("06 01 07", ga.ProcessResult.FAILED),
        ("06 05 0b", ga.ProcessResult.RUNNING),
        # 6 + 15 = 21 = 0x15: a checksum byte equal to NAK is still part of the frame
        ("06 0f 15", ga.ProcessResult.NONE_SINCE_POWER_UP),
    ],
)
def test_process_frame_both_ways(frame: str, result: ga.ProcessResult) -> None:
    assert decode(ga.Command.PROCESS_RESULT, bytes.fromhex(frame)) == [ga.ProcessReply(result)]
    assert ga.encode_process(ga.ProcessReply(result)) == bytes.fromhex(frame)


# "GA-5,SIM0001,1.0.0" is 18 bytes (0x12). ASCII sum: G71 A65 -45 5:53 ,44 S83 I73 M77 0:48 0:48
# 0:48 1:49 ,44 1:49 .46 0:48 .46 0:48 = 985; + 06 + 12h(18) = 1009; 1009 - 768 = 241 = 0xf1
IDENTITY_FRAME = bytes.fromhex("06 12") + b"GA-5,SIM0001,1.0.0" + bytes([0xF1])


def test_identity_frame_both_ways() -> None:
    identity = ga.Identity(model="GA-5", serial="SIM0001", firmware="1.0.0")
    assert decode(ga.Command.IDENTIFY, IDENTITY_FRAME) == [identity]
    assert ga.encode_identity(identity) == IDENTITY_FRAME


@pytest.mark.parametrize(
    ("identity", "field"),
    [
        (ga.Identity("GA-5", "SIM,1", "1.0"), "serial"),
        (ga.Identity("GA-5", "S" * 30, "1.0.0.0.0"), "40"),
        (ga.Identity("GA-5", "SIM°", "1.0"), "ASCII"),
    ],
)
def test_identity_that_the_frame_cannot_carry_is_refused(identity: ga.Identity, field: str) -> None:
    with pytest.raises(ProtocolError, match=field):
        ga.encode_identity(identity)


# ----- special values and scaling ---------------------------------------------------------


def _main(**changes: object) -> ga.MainReading:
    base = {**MAIN_EXAMPLE_READING.__dict__, **changes}
    return ga.MainReading(**base)  # type: ignore[arg-type]


def test_oil_temperature_8000_means_no_oil_probe_both_ways() -> None:
    frame = ga.encode_main(_main(oil_temp_c=None))
    assert frame[13:15] == b"\x80\x00"
    assert decode(ga.Command.READ_MAIN, frame)[0].oil_temp_c is None  # type: ignore[attr-defined]


def test_lambda_zero_in_the_frame_reads_as_none_both_ways() -> None:
    frame = ga.encode_main(_main(lambda_value=None))
    assert frame[15:17] == b"\x00\x00"
    assert decode(ga.Command.READ_MAIN, frame)[0].lambda_value is None  # type: ignore[attr-defined]


def test_negative_hc_near_zero_is_signed() -> None:
    frame = ga.encode_main(_main(hc_ppm=-10))
    assert frame[1:3] == b"\xff\xf6"  # -10 as int16
    assert decode(ga.Command.READ_MAIN, frame)[0].hc_ppm == -10  # type: ignore[attr-defined]


def test_negative_oil_temperature_is_signed() -> None:
    assert ga.encode_main(_main(oil_temp_c=-5.5))[13:15] == b"\xff\xc9"  # -55 as int16


def test_lambda_saturates_at_65535() -> None:
    assert ga.encode_main(_main(lambda_value=80.0))[15:17] == b"\xff\xff"


@pytest.mark.parametrize(
    ("co_pct", "raw"),
    [(0.625, 63), (0.624, 62), (0.29, 29), (14.315, 1432), (0.004, 0), (0.005, 1)],
)
def test_encoding_rounds_to_the_nearest_unit_half_up(co_pct: float, raw: int) -> None:
    assert ga.encode_main(_main(co_pct=co_pct))[3:5] == raw.to_bytes(2, "big")


def test_lambda_rounds_to_the_nearest_thousandth() -> None:
    assert ga.encode_main(_main(lambda_value=0.9995))[15:17] == (1000).to_bytes(2, "big")
    assert ga.encode_main(_main(lambda_value=1.0084))[15:17] == (1008).to_bytes(2, "big")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"co_pct": -0.01}, "co_pct"),
        ({"co2_pct": 655.36}, "co2_pct"),
        ({"hc_ppm": 40000}, "hc_ppm"),
        ({"no_ppm": -1}, "no_ppm"),
        ({"seq": 65536}, "seq"),
        ({"oil_temp_c": 4000.0}, "oil_temp_c"),
        ({"o2_pct": float("nan")}, "o2_pct"),
        ({"lambda_value": 0.0002}, "lambda_value"),  # would read 0, which means "no lambda"
        ({"rpm": 70000}, "rpm"),
    ],
)
def test_value_out_of_the_frames_range_is_refused_naming_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ProtocolError, match=field):
        ga.encode_main(_main(**changes))


def test_span_over_uint16_is_refused_naming_the_field() -> None:
    with pytest.raises(ProtocolError, match="c3h8_ppm"):
        ga.encode_request(ga.Command.WRITE_SPAN, ga.SpanGas(70000, 3.5, 14.0, 1500))


@pytest.mark.parametrize(
    ("span", "problem"),
    [
        (ga.SpanGas(10000, 10.00, 20.00, 5000), None),  # the manual's limits are inclusive
        (ga.SpanGas(10001, 3.50, 14.00, 1500), "c3h8_ppm"),
        (ga.SpanGas(3200, 10.01, 14.00, 1500), "co_pct"),
        (ga.SpanGas(3200, 3.50, 20.01, 1500), "co2_pct"),
        (ga.SpanGas(3200, 3.50, 14.00, 5001), "no_ppm"),
    ],
)
def test_span_range_the_analyzer_accepts(span: ga.SpanGas, problem: str | None) -> None:
    found = ga.span_problem(span)
    assert found is None if problem is None else problem in (found or "")


# ----- finding replies -----------------------------------------------------------------------


def test_garbage_before_a_frame_is_skipped() -> None:
    assert decode(ga.Command.READ_MAIN, b"\x00\xff\x33" + MAIN_EXAMPLE) == [MAIN_EXAMPLE_READING]


def test_bad_checksum_frame_is_reported_with_its_bytes_then_the_good_one_is_found() -> None:
    bad = MAIN_EXAMPLE[:-1] + b"\x65"
    items = decode(ga.Command.READ_MAIN, bad + MAIN_EXAMPLE)
    assert len(items) == 2
    assert isinstance(items[0], FrameError) and items[0].raw == bad
    assert items[1] == MAIN_EXAMPLE_READING


@pytest.mark.parametrize("cut", range(len(MAIN_EXAMPLE) + 1))
def test_frame_split_at_any_point_decodes_once(cut: int) -> None:
    decoder = ga.ReplyDecoder(ga.Command.READ_MAIN)
    first = decoder.feed(MAIN_EXAMPLE[:cut])
    second = decoder.feed(MAIN_EXAMPLE[cut:])
    assert first + second == [MAIN_EXAMPLE_READING]
    assert (first == []) == (cut < len(MAIN_EXAMPLE))


@pytest.mark.parametrize("command", [ga.Command.READ_MAIN, ga.Command.IDENTIFY, ga.Command.ZERO])
def test_nak_alone_is_a_nak_for_any_command(command: ga.Command) -> None:
    assert decode(command, b"\x15") == [ga.Nak()]


def test_ack_alone_answers_an_ack_command() -> None:
    assert decode(ga.Command.PUMP_SAMPLE, b"\x00\x06") == [ga.Ack()]
    assert decode(ga.Command.WRITE_SPAN, b"\x15") == [ga.Nak()]


def test_short_frame_waits_for_the_rest() -> None:
    decoder = ga.ReplyDecoder(ga.Command.READ_ENV)
    assert decoder.feed(ENV_EXAMPLE[:5]) == []
    assert decoder.pending == ENV_EXAMPLE[:5]


def test_two_frames_in_one_chunk_give_two_readings() -> None:
    assert decode(ga.Command.READ_ENV, ENV_EXAMPLE + ENV_EXAMPLE) == [ga.EnvReading(21.5, 100.8, 55.3)] * 2


def test_unknown_state_with_good_checksum_is_a_frame_error() -> None:
    items = decode(ga.Command.READ_STATUS, bytes.fromhex("06 07 00 00 0d"))  # 6 + 7 = 13
    assert len(items) == 1 and isinstance(items[0], FrameError) and "STATE" in str(items[0])


def test_identity_length_over_40_is_a_frame_error_then_resynchronises() -> None:
    items = decode(ga.Command.IDENTIFY, b"\x06\x29" + IDENTITY_FRAME)  # LEN 41
    assert isinstance(items[0], FrameError) and items[-1] == ga.Identity("GA-5", "SIM0001", "1.0.0")


# ----- analyzer side -----------------------------------------------------------------------


def test_request_length_knows_write_span_is_ten_bytes() -> None:
    assert ga.request_length(b"\x23\x0c") == 10
    assert ga.request_length(b"\x01") == 1
    assert ga.request_length(b"\x99") == 1  # unknown: one byte, answered with NAK
    assert ga.request_length(b"") is None


@pytest.mark.parametrize("frame", ["99", "23 0c 80 01 5e 05 78 05 dc 6d", "01 01"])
def test_requests_the_analyzer_must_nak_are_frame_errors(frame: str) -> None:
    with pytest.raises(FrameError):
        ga.decode_request(bytes.fromhex(frame))


def test_request_decoder_splits_a_stream_of_requests() -> None:
    decoder = ga.RequestDecoder()
    stream = b"\x01" + SPAN_EXAMPLE + b"\x03"
    items = decoder.feed(stream[:4]) + decoder.feed(stream[4:])
    assert items == [ga.Command.READ_MAIN, (ga.Command.WRITE_SPAN, ga.DEFAULT_SPAN), ga.Command.READ_STATUS]


# ----- the analyzer's λ ----------------------------------------------------------------------


def test_brettschneider_of_the_manuals_example_gases_rounds_to_its_lambda() -> None:
    # by hand: CO/CO2 = 0.0433; 0.431525 × 3.5/3.5433 − 0.0088 = 0.41745; × 14.94 = 6.2367
    # numerator 14.32 + 0.31 + 0.45 + 6.2367 = 21.3167; denominator 1.422725 × 14.991 = 21.328
    lam = ga.brettschneider_lambda(85, 0.62, 14.32, 0.45)
    assert abs(lam - 0.9995) < 0.0002
    assert round(lam, 3) == 0.999


def test_brettschneider_is_one_for_ideal_complete_combustion() -> None:
    # CO = HC = O2 = 0: (CO2 + (Hcv/4 − Ocv/2)·CO2) / ((1 + Hcv/4 − Ocv/2)·CO2) = 1 exactly
    assert ga.brettschneider_lambda(0, 0.0, 14.5, 0.0) == pytest.approx(1.0, abs=1e-12)


def test_brettschneider_excess_oxygen_is_lean() -> None:
    # O2 1 %, CO2 14 %: 1 + 1 / (1.422725 × 14) = 1 + 1/19.91815 = 1.050205
    assert ga.brettschneider_lambda(0, 0.0, 14.0, 1.0) == pytest.approx(1.050205, abs=1e-6)


def test_analyzer_reports_no_lambda_below_010_pct_co2() -> None:
    assert ga.analyzer_lambda(3, 0.0, 0.09, 20.9) is None
    assert ga.analyzer_lambda(0, 0.0, 0.10, 0.0) == pytest.approx(1.0)


# ----- properties --------------------------------------------------------------------------

commands = st.sampled_from(list(ga.Command))


@given(command=commands, data=st.binary(max_size=200), cuts=st.lists(st.integers(0, 200), max_size=6))
@settings(max_examples=300)
def test_decoding_never_raises_and_does_not_depend_on_the_split(
    command: ga.Command, data: bytes, cuts: list[int]
) -> None:
    whole = ga.ReplyDecoder(command).feed(data)
    decoder = ga.ReplyDecoder(command)
    pieces: list[object] = []
    start = 0
    for cut in [*sorted(min(c, len(data)) for c in cuts), len(data)]:
        pieces += decoder.feed(data[start:cut])
        start = cut
    assert [repr(i) for i in pieces] == [repr(i) for i in whole]


main_readings = st.builds(
    ga.MainReading,
    hc_ppm=st.integers(-0x8000, 0x7FFF),
    co_pct=st.integers(0, 0xFFFF).map(lambda u: u / 100),
    co2_pct=st.integers(0, 0xFFFF).map(lambda u: u / 100),
    o2_pct=st.integers(0, 0xFFFF).map(lambda u: u / 100),
    no_ppm=st.integers(0, 0xFFFF),
    rpm=st.integers(0, 0xFFFF),
    oil_temp_c=st.none() | st.integers(-0x7FFF, 0x7FFF).map(lambda u: u / 10),
    lambda_value=st.none() | st.integers(1, 0xFFFF).map(lambda u: u / 1000),
    pef=st.integers(0, 0xFFFF).map(lambda u: u / 1000),
    flags=st.integers(0, 255).map(ga.Flags),
    seq=st.integers(0, 0xFFFF),
)


@given(reading=main_readings)
def test_any_main_reading_round_trips(reading: ga.MainReading) -> None:
    assert decode(ga.Command.READ_MAIN, ga.encode_main(reading)) == [reading]


clean_garbage = st.binary(max_size=60).map(lambda b: b.replace(b"\x06", b"").replace(b"\x15", b""))


@given(reading=main_readings, garbage=clean_garbage)
def test_valid_frame_after_garbage_without_06_or_15_is_found(reading: ga.MainReading, garbage: bytes) -> None:
    assert decode(ga.Command.READ_MAIN, garbage + ga.encode_main(reading)) == [reading]


@given(data=st.binary(max_size=100))
def test_request_decoder_never_raises(data: bytes) -> None:
    items = ga.RequestDecoder().feed(data)
    assert all(isinstance(i, ga.Command | tuple | FrameError) for i in items)


# ----- READ_NOX (GA-5N) -------------------------------------------------------------------

# "NO 1180 ppm, NO2 95 ppm, NOx 1275 ppm": 06 | 04 9c | 00 5f | 04 fb | CS
NOX_EXAMPLE = bytes.fromhex("06 04 9c 00 5f 04 fb 04")


def test_nox_example_checksum_is_the_plain_sum_of_the_preceding_bytes() -> None:
    # 6 + 4 + 156 + 0 + 95 + 4 + 251 = 516; 516 - 512 = 4
    assert ga.checksum(NOX_EXAMPLE[:-1]) == 0x04 == NOX_EXAMPLE[-1]


def test_read_nox_is_the_one_byte_request_04() -> None:
    assert ga.encode_request(ga.Command.READ_NOX) == b"\x04"
    assert ga.decode_request(b"\x04") is ga.Command.READ_NOX


def test_nox_example_decodes_to_the_manuals_values() -> None:
    # 0x049c = 1180, 0x005f = 95, 0x04fb = 1275
    assert decode(ga.Command.READ_NOX, NOX_EXAMPLE) == [ga.NoxReading(no_ppm=1180, no2_ppm=95, nox_ppm=1275)]


def test_nox_example_is_what_the_analyzer_side_encodes() -> None:
    assert ga.encode_nox(ga.NoxReading(no_ppm=1180, no2_ppm=95, nox_ppm=1275)) == NOX_EXAMPLE


def test_nox_frame_split_anywhere_decodes_the_same() -> None:
    decoder = ga.ReplyDecoder(ga.Command.READ_NOX)
    items = [i for byte in NOX_EXAMPLE for i in decoder.feed(bytes([byte]))]
    assert items == [ga.NoxReading(1180, 95, 1275)]


def test_a_plain_ga5_answers_read_nox_with_nak() -> None:
    assert decode(ga.Command.READ_NOX, b"\x15") == [ga.Nak()]


def test_nox_frame_with_a_bad_checksum_is_a_frame_error() -> None:
    (item,) = decode(ga.Command.READ_NOX, NOX_EXAMPLE[:-1] + b"\x05")
    assert isinstance(item, FrameError)


def test_the_analyzer_adds_no_and_no2_and_saturates_at_65535() -> None:
    assert ga.nox_of(1180, 95) == ga.NoxReading(1180, 95, 1275)
    assert ga.nox_of(60000, 9000) == ga.NoxReading(60000, 9000, 65535)


def test_nox_value_over_the_frame_is_refused_by_name() -> None:
    with pytest.raises(ProtocolError, match="no2_ppm"):
        ga.encode_nox(ga.NoxReading(no_ppm=0, no2_ppm=70000, nox_ppm=0))


def test_identity_tells_a_ga5n_from_a_ga5() -> None:
    assert ga.Identity("GA-5N", "SIM0001", "1.0.0").has_nox
    assert not ga.Identity("GA-5", "SIM0001", "1.0.0").has_nox
    frame = ga.encode_identity(ga.Identity("GA-5N", "A7", "2.1"))
    # 06 | LEN | text: "GA-5N,A7,2.1" is 12 bytes, so LEN is 0x0c
    assert frame[:2] == b"\x06\x0c" and frame[2:-1] == b"GA-5N,A7,2.1"
    assert decode(ga.Command.IDENTIFY, frame) == [ga.Identity("GA-5N", "A7", "2.1")]


def test_a_decoded_main_frame_carries_no_nox() -> None:
    (main,) = decode(ga.Command.READ_MAIN, MAIN_EXAMPLE)
    assert main.no2_ppm is None and main.nox_ppm is None
