"""RB-2 brake tester protocol: the manual's byte examples, the map, word coding, ring arithmetic.

Every expected value is written out by hand from spec/devices/brake-tester.md.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU
from pymodbus.pdu.bit_message import WriteSingleCoilRequest
from pymodbus.pdu.register_message import ReadInputRegistersRequest

from protocols import brake_tester as bt
from protocols.errors import ProtocolError

# ----- the manual's examples (RTU, unit 1) --------------------------------------------------

READ_SNAPSHOT = bytes.fromhex("01 04 00 00 00 10 f1 c6")
SNAPSHOT_REPLY = bytes.fromhex(
    "01 04 20 00 00 0b ea 00 00 0b 86 00 00 11 94 00 00 10 e6 00 fa 00 fa"
    " 00 02 00 00 12 67 00 64 02 00 00 00 e6 83"
)
READ_SAMPLE_4711 = bytes.fromhex("01 04 04 b6 00 02 91 1d")
MOTORS_ON = bytes.fromhex("01 05 00 00 ff 00 8c 3a")

MANUAL_SNAPSHOT = bt.TesterSnapshot(
    left_force_n=3050,
    right_force_n=2950,
    left_load_n=4500,
    right_load_n=4326,
    left_speed_kmh=2.50,
    right_speed_kmh=2.50,
    state=bt.TesterState.RUNNING,
    fault_code=bt.FaultCode.NONE,
    sample_index=4711,
    sample_rate_hz=100,
    ring_size=512,
)


def crc16_modbus(data: bytes) -> bytes:
    """Reference CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF), low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return bytes([crc & 0xFF, crc >> 8])


@pytest.mark.parametrize("frame", [READ_SNAPSHOT, SNAPSHOT_REPLY, READ_SAMPLE_4711, MOTORS_ON])
def test_manual_frames_end_with_a_valid_crc16_modbus_low_byte_first(frame: bytes) -> None:
    assert crc16_modbus(frame[:-2]) == frame[-2:]


def test_crc_reference_matches_the_published_check_value() -> None:
    # CRC-16/MODBUS of ASCII "123456789" is 0x4B37 (catalogue check value), sent 37 4b
    assert crc16_modbus(b"123456789") == bytes([0x37, 0x4B])


def _rtu(pdu: object) -> bytes:
    return FramerRTU(DecodePDU(False)).buildFrame(pdu)  # type: ignore[arg-type]


def test_pymodbus_builds_the_manuals_request_frames_byte_for_byte() -> None:
    # the driver's requests go through pymodbus: they must be the manual's bytes
    assert _rtu(ReadInputRegistersRequest(address=0, count=16, dev_id=1)) == READ_SNAPSHOT
    assert _rtu(ReadInputRegistersRequest(address=1206, count=2, dev_id=1)) == READ_SAMPLE_4711
    assert _rtu(WriteSingleCoilRequest(address=0, bits=[True], dev_id=1)) == MOTORS_ON


def test_manual_reply_payload_decodes_to_the_manuals_values() -> None:
    assert SNAPSHOT_REPLY[:3] == bytes([0x01, 0x04, 0x20])  # unit 1, FC04, 32 data bytes
    registers = bt.registers_from_bytes(SNAPSHOT_REPLY[3:-2])
    assert len(registers) == 16
    assert bt.decode_snapshot(registers) == MANUAL_SNAPSHOT


def test_manual_reply_decoded_by_pymodbus_framer_gives_the_same_snapshot() -> None:
    framer = FramerRTU(DecodePDU(False))
    used, pdu = framer.handleFrame(SNAPSHOT_REPLY, 1, 0)
    assert used == len(SNAPSHOT_REPLY)
    assert pdu is not None
    assert bt.decode_snapshot(pdu.registers) == MANUAL_SNAPSHOT


def test_snapshot_encodes_back_to_the_manuals_payload() -> None:
    payload = b"".join(r.to_bytes(2, "big") for r in bt.encode_snapshot(MANUAL_SNAPSHOT))
    assert payload == SNAPSHOT_REPLY[3:-2]


def test_ring_sample_4711_lives_at_register_1206() -> None:
    # 1000 + 2 · (4711 mod 512) = 1000 + 2 · 103 = 1206
    assert bt.ring_address(4711, 512) == 1206


@pytest.mark.parametrize(
    ("index", "address"),
    [(0, 1000), (511, 2022), (512, 1000), (65535, 2022), (65536, 1000), (65536 + 5, 1010)],
)
def test_ring_address_wraps_at_the_ring_end_and_at_65536(index: int, address: int) -> None:
    assert bt.ring_address(index, 512) == address


# ----- the map ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "address", "count", "inside"),
    [
        (bt.Table.COIL, 0, 3, True),
        (bt.Table.COIL, 2, 1, True),
        (bt.Table.COIL, 3, 1, False),
        (bt.Table.COIL, 0, 4, False),
        (bt.Table.DISCRETE_INPUT, 0, 6, True),
        (bt.Table.DISCRETE_INPUT, 5, 2, False),
        (bt.Table.INPUT_REGISTER, 0, 16, True),
        (bt.Table.INPUT_REGISTER, 15, 2, False),
        (bt.Table.INPUT_REGISTER, 999, 1, False),
        (bt.Table.INPUT_REGISTER, 1000, 125, True),
        (bt.Table.INPUT_REGISTER, 2022, 2, True),
        (bt.Table.INPUT_REGISTER, 2023, 2, False),
        (bt.Table.HOLDING_REGISTER, 0, 3, True),
        (bt.Table.HOLDING_REGISTER, 3, 1, False),
    ],
)
def test_map_extent_per_table(table: bt.Table, address: int, count: int, inside: bool) -> None:
    assert bt.in_map(table, address, count, 512) is inside


def test_map_names_and_addresses_follow_the_manual() -> None:
    assert [(p.address, p.name) for p in bt.COILS] == [(0, "MOTORS"), (1, "LIFT"), (2, "TARE")]
    assert [p.name for p in bt.DISCRETE_INPUTS] == [
        "IN_POSITION", "LEFT_SLIP", "RIGHT_SLIP", "MOTORS_RUNNING", "LIFT_UP", "FAULT"]
    assert [(p.address, p.name, p.minimum, p.maximum, p.default) for p in bt.HOLDING_REGISTERS] == [
        (0, "SLIP_THRESHOLD", 5, 60, 25), (1, "SAMPLE_RATE_SET", 10, 200, 100), (2, "AUTO_STOP_S", 5, 300, 60)]
    assert bt.InputRegister.SAMPLE_INDEX == 12 and bt.InputRegister.RING_SIZE == 14


@pytest.mark.parametrize(("address", "value"), [(0, 5), (0, 60), (1, 10), (1, 200), (2, 5), (2, 300)])
def test_holding_values_at_the_range_ends_are_accepted(address: int, value: int) -> None:
    bt.check_holding_value(address, value)


@pytest.mark.parametrize(("address", "value", "name"), [(0, 4, "SLIP_THRESHOLD"), (0, 61, "SLIP_THRESHOLD"),
                                                         (1, 9, "SAMPLE_RATE_SET"), (2, 301, "AUTO_STOP_S")])
def test_holding_value_out_of_range_is_refused_naming_the_register(address: int, value: int, name: str) -> None:
    with pytest.raises(ProtocolError, match=name):
        bt.check_holding_value(address, value)


def test_unknown_state_is_a_protocol_error_naming_state() -> None:
    registers = bt.encode_snapshot(MANUAL_SNAPSHOT)
    registers[10] = 9
    with pytest.raises(ProtocolError, match="STATE = 9"):
        bt.decode_snapshot(registers)


def test_unknown_fault_code_is_a_protocol_error_naming_fault_code() -> None:
    registers = bt.encode_snapshot(MANUAL_SNAPSHOT)
    registers[11] = 7  # the manual's codes end at 6 (emergency stop)
    with pytest.raises(ProtocolError, match="FAULT_CODE = 7"):
        bt.decode_snapshot(registers)


def test_a_register_value_no_register_can_hold_is_a_protocol_error_naming_it() -> None:
    registers = bt.encode_snapshot(MANUAL_SNAPSHOT)
    registers[3] = 70000
    with pytest.raises(ProtocolError, match="register value 70000"):
        bt.decode_snapshot(registers)
    with pytest.raises(ProtocolError, match="register value -1"):
        bt.ring_forces_dan([0x0131, -1])


def test_discrete_inputs_decode_from_a_byte_padded_bit_read() -> None:
    bits = [True, False, True, True, False, False, True, True]  # pymodbus pads to 8 bits
    assert bt.decode_inputs(bits) == bt.TesterInputs(
        in_position=True, left_slip=False, right_slip=True, motors_running=True, lift_up=False, fault=False)


def test_exception_codes_say_what_they_mean_here() -> None:
    assert "outside" in bt.ExceptionCode(2).meaning
    assert "range" in bt.ExceptionCode(3).meaning
    assert "busy" in bt.ExceptionCode(6).meaning


# ----- word coding -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "words"),
    [(3050, (0x0000, 0x0BEA)), (-1, (0xFFFF, 0xFFFF)), (-2, (0xFFFF, 0xFFFE)), (65536, (0x0001, 0x0000)),
     (2**31 - 1, (0x7FFF, 0xFFFF)), (-(2**31), (0x8000, 0x0000))],
)
def test_int32_is_two_registers_high_word_first_twos_complement(value: int, words: tuple[int, int]) -> None:
    assert bt.int32_to_registers(value) == words
    assert bt.registers_to_int32(*words) == value


@pytest.mark.parametrize(("value", "register"), [(0, 0), (305, 0x0131), (-10, 0xFFF6), (-32768, 0x8000),
                                                 (32767, 0x7FFF)])
def test_int16_is_twos_complement(value: int, register: int) -> None:
    assert bt.int16_to_register(value) == register
    assert bt.register_to_int16(register) == value


@pytest.mark.parametrize("value", [32768, -32769])
def test_int16_out_of_range_is_refused(value: int) -> None:
    with pytest.raises(ProtocolError):
        bt.int16_to_register(value)


@pytest.mark.parametrize(
    ("force_n", "dan"),
    [(3050, 305), (3044, 304), (3045, 305), (3055, 306), (-3045, -305), (-3044, -304), (15, 2), (14, 1),
     (-15, -2), (5, 1), (-5, -1), (4, 0), (0, 0), (3044.9, 304), (3045.0, 305)],
)
def test_newtons_to_dan_rounds_half_away_from_zero(force_n: float, dan: int) -> None:
    assert bt.n_to_dan(force_n) == dan


def test_ring_registers_decode_to_newtons() -> None:
    # 0x0131 = 305 daN = 3050 N; 0xFFF6 = −10 daN = −100 N
    samples = bt.decode_ring_samples(4711, [0x0131, 0xFFF6, 0x0000, 0x0001])
    assert samples == [bt.CurveSample(4711, 3050, -100, 0), bt.CurveSample(4712, 0, 10, 1)]
    assert bt.encode_ring_sample(3050, -100) == (0x0131, 0xFFF6)
    assert bt.ring_forces_dan([0x0131, 0xFFF6, 0x0000, 0x0001]) == [305, -10, 0, 1]  # daN, as the ring holds them
    with pytest.raises(ProtocolError, match="not whole samples"):
        bt.ring_forces_dan([0x0131, 0xFFF6, 0x0000])


# ----- planning ring reads -------------------------------------------------------------------------


def test_plan_splits_at_62_samples_per_read() -> None:
    # samples 4612 … 4711 (100): slot of 4612 is 4612 − 9·512 = 4; no ring end inside slots 4 … 103
    assert bt.plan_ring_reads(4612, 4711, 512) == [
        bt.RingRead(1008, 124, 4612),  # 62 samples from slot 4
        bt.RingRead(1132, 76, 4674),  # 38 samples from slot 66: 1000 + 2·66 = 1132
    ]


def test_plan_splits_at_the_ring_end() -> None:
    # samples 500 … 530: slots 500 … 511 (12 samples), then 0 … 18 (19 samples)
    assert bt.plan_ring_reads(500, 530, 512) == [bt.RingRead(2000, 24, 500), bt.RingRead(1000, 38, 512)]


def test_plan_wraps_the_index_at_65536() -> None:
    # samples 65530 … 65535 sit in slots 506 … 511; samples 0 … 5 in slots 0 … 5
    assert bt.plan_ring_reads(65530, 5, 512) == [bt.RingRead(2012, 12, 65530), bt.RingRead(1000, 12, 0)]


def test_plan_splits_at_the_index_wrap_even_mid_ring_when_the_ring_size_does_not_divide_65536() -> None:
    # ring of 100: samples 65530 … 65535 sit in slots 30 … 35, and sample 0 is back in slot 0
    assert bt.plan_ring_reads(65530, 5, 100) == [bt.RingRead(1060, 12, 65530), bt.RingRead(1000, 12, 0)]


def test_plan_of_a_reader_too_far_behind_starts_at_the_rings_oldest_sample() -> None:
    # newest 1000, ring 512: samples 489 … 1000 can be read; slot of 489 is 489
    reads = bt.plan_ring_reads(0, 1000, 512)
    assert reads[0] == bt.RingRead(1000 + 2 * 489, 46, 489)  # 23 samples up to slot 511
    assert reads[1] == bt.RingRead(1000, 124, 512)
    assert sum(r.samples for r in reads) == 512


def test_plan_is_empty_when_caught_up_or_ahead() -> None:
    assert bt.plan_ring_reads(4712, 4711) == []
    assert bt.plan_ring_reads(4720, 4711) == []  # a start in the future: nothing produced yet


def _expected_available(start: int, newest: int, ring_size: int) -> list[int]:
    """Written from the manual: samples start … newest (mod 65536) that are still in the ring."""
    count = (newest - start + 1) % 65536
    if count > 32768:  # start is after newest: nothing produced yet
        return []
    count = min(count, ring_size)
    return [(newest - count + 1 + k) % 65536 for k in range(count)]


@settings(max_examples=400, deadline=None)
@given(
    start=st.integers(0, 65535),
    newest=st.integers(0, 65535),
    ring_size=st.sampled_from([512, 64, 100, 1000, 4096]),
    max_regs=st.sampled_from([125, 124, 2, 3, 40]),
)
def test_planned_reads_cover_each_available_sample_once_in_order_within_limits(
    start: int, newest: int, ring_size: int, max_regs: int
) -> None:
    reads = bt.plan_ring_reads(start, newest, ring_size, max_regs)
    covered = [(r.first_sample + k) % 65536 for r in reads for k in range(r.samples)]
    assert covered == _expected_available(start, newest, ring_size)
    for read in reads:
        assert 2 <= read.register_count <= max_regs and read.register_count % 2 == 0
        slot = (read.first_sample % 65536) % ring_size
        assert read.address == 1000 + 2 * slot
        assert slot + read.samples <= ring_size  # never crosses the ring's end
        for k in range(read.samples):  # one contiguous register range
            assert bt.ring_address(read.first_sample + k, ring_size) == read.address + 2 * k


# ----- validating blocks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "size", "after", "lost"),
    [
        (1000, 62, 1061, 0),  # read right away: all 62 valid
        (1000, 62, 1511, 0),  # sample 1000 is 511 behind: still in the ring
        (1000, 62, 1512, 1),  # sample 1000 is 512 behind: overwritten
        (1000, 62, 1520, 9),  # 1520 − 1000 − 511 = 9 overwritten
        (1000, 62, 1600, 62),  # all of them overwritten
        (65530, 12, 5, 0),  # across the index wrap: 65530 is 11 behind 5
        (65500, 10, (65500 + 514) % 65536, 3),  # 478 after the wrap: 65500 is 514 behind, 3 lost
    ],
)
def test_block_validity_from_the_sample_index_read_after_it(first: int, size: int, after: int, lost: int) -> None:
    check = bt.validate_block(first, size, after, 512)
    assert check.lost == lost
    assert check.valid == size - lost


def test_block_newer_than_the_index_read_after_it_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="backwards"):
        bt.validate_block(1000, 10, 1005, 512)


# ----- the cursor ------------------------------------------------------------------------------


class FakeRing:
    """A tester ring written by hand from the manual: sample i's forces are (i mod 3000, −(i mod 700))
    in daN, at slot i mod size; reads return the slots as they are now."""

    def __init__(self, size: int = 512, first: int = 0) -> None:
        self.size = size
        self.slots = [0] * (2 * size)
        self.produced = first  # next sample number, unwrapped
        self.first = first

    @staticmethod
    def value(i: int) -> tuple[int, int]:
        return i % 3000, -(i % 700)

    def produce(self, n: int) -> None:
        for _ in range(n):
            i = self.produced % 65536
            left, right = self.value(self.produced)
            slot = i % self.size
            self.slots[2 * slot] = bt.int16_to_register(left)
            self.slots[2 * slot + 1] = bt.int16_to_register(right)
            self.produced += 1

    @property
    def newest(self) -> int:
        return (self.produced - 1) % 65536

    def read(self, read: bt.RingRead) -> list[int]:
        start = read.address - 1000
        return self.slots[start : start + read.register_count]


def test_cursor_counts_samples_overwritten_before_and_during_a_read() -> None:
    ring = FakeRing()
    ring.produce(600)  # samples 0 … 599; the ring holds 88 … 599
    cursor = bt.CurveCursor(0, 512)
    reads = cursor.plan(ring.newest)
    assert reads[0].first_sample == 88
    registers = ring.read(reads[0])  # samples 88 … 149 read …
    ring.produce(10)  # … while the tester writes 600 … 609 over slots 88 … 97
    samples = cursor.accept(reads[0], registers, ring.newest)
    # 0 … 87 skipped, 88 … 97 overwritten during the read: 98 lost, one gap
    assert cursor.lost == 98
    assert cursor.gaps == [bt.Gap(first_index=0, count=98, first_seq=0)]
    assert [s.index for s in samples] == list(range(98, 150))
    assert samples[0].seq == 98
    assert (samples[0].left_force_n, samples[0].right_force_n) == (980, -980)


def test_cursor_hands_a_live_follower_the_rings_own_dan_values_after_the_same_checks() -> None:
    ring = FakeRing()
    ring.produce(600)
    cursor = bt.CurveCursor(0, 512)
    read = cursor.plan(ring.newest)[0]
    registers = ring.read(read)  # samples 88 … 149, of which 88 … 97 are overwritten during the read
    ring.produce(10)
    first, forces = cursor.accept_forces(read, registers, ring.newest)
    assert first == 98
    assert forces[:4] == [98, -98, 99, -99]  # sample i holds (i mod 3000, −(i mod 700)) daN
    assert forces[-2:] == [149, -149]
    assert len(forces) == 2 * 52
    assert (cursor.lost, cursor.delivered, cursor.next_index, cursor.next_seq) == (98, 52, 150, 150)


def test_cursor_refuses_a_read_that_would_deliver_samples_twice() -> None:
    ring = FakeRing()
    ring.produce(100)
    cursor = bt.CurveCursor(0, 512)
    read = cursor.plan(ring.newest)[0]
    cursor.accept(read, ring.read(read), ring.newest)
    with pytest.raises(ValueError, match="twice"):
        cursor.accept(read, ring.read(read), ring.newest)


@settings(max_examples=200, deadline=None)
@given(
    first=st.integers(0, 65535),
    steps=st.lists(st.tuples(st.integers(0, 700), st.integers(0, 80)), min_size=1, max_size=25),
)
def test_cursor_delivers_every_sample_once_in_order_and_counts_every_loss(
    first: int, steps: list[tuple[int, int]]
) -> None:
    """Whatever the tester writes before and during each block, delivered + lost is exactly the run of
    samples from the start to the last index read, and every delivered value is the one produced."""
    ring = FakeRing(first=first)
    cursor = bt.CurveCursor(first, 512)
    delivered: list[bt.CurveSample] = []
    last_after = None
    for before, during in steps:
        ring.produce(before)
        if ring.produced == first:
            continue
        for read in cursor.plan(ring.newest):
            registers = ring.read(read)
            ring.produce(during)
            last_after = ring.newest
            delivered.extend(cursor.accept(read, registers, last_after))
    seqs = [s.seq for s in delivered]
    assert seqs == sorted(set(seqs))  # once each, in order
    lost_seqs = {g.first_seq + k for g in cursor.gaps for k in range(g.count)}
    assert not lost_seqs & set(seqs)
    assert len(lost_seqs) == cursor.lost
    assert lost_seqs | set(seqs) == set(range(cursor.next_seq))  # no sample neither delivered nor counted
    for s in delivered:
        assert s.index == (first + s.seq) % 65536
        left, right = FakeRing.value(first + s.seq)
        assert (s.left_force_n, s.right_force_n) == (left * 10, right * 10)
    if last_after is not None:
        assert cursor.next_index == (cursor.next_seq + first) % 65536
