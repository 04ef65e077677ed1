"""CD-1 dynamometer protocol: the manual's frames byte for byte, the map, the interlocks, per-second data.

Every frame below is copied from spec/devices/dynamometer.md, "Examples"; expected values are
written out by hand from the manual's tables and formulas.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU
from pymodbus.pdu.bit_message import WriteSingleCoilRequest
from pymodbus.pdu.register_message import (
    ReadInputRegistersRequest,
    WriteMultipleRegistersRequest,
    WriteSingleRegisterRequest,
)

from protocols import dynamometer as dy
from protocols.brake_tester import Table, registers_from_bytes
from protocols.errors import ProtocolError

READ_0_15 = bytes.fromhex("01 04 00 00 00 10 f1 c6")
SNAPSHOT_REPLY = bytes.fromhex(
    "01 04 20 09 d0 00 00 04 c0 00 00 04 68 03 50 00 3d 00 00 05 f3"
    " 01 3b 01 e2 00 01 00 00 12 67 00 0a 02 00 fa 3c"
)
READ_SAMPLE_4711 = bytes.fromhex("01 04 05 1d 00 03 20 c1")
SAMPLE_REPLY = bytes.fromhex("01 04 06 09 d0 00 00 04 c0 a3 48")
READ_INPUTS = bytes.fromhex("01 02 00 00 00 08 79 cc")
INPUTS_REPLY = bytes.fromhex("01 02 01 25 60 53")
ASM_TARGETS = bytes.fromhex("01 10 00 01 00 02 04 03 4d 04 c0 a0 a0")
ASM_TARGETS_REPLY = bytes.fromhex("01 10 00 01 00 02 10 08")
MODE_2 = bytes.fromhex("01 06 00 00 00 02 08 0b")
MODE_REFUSED = bytes.fromhex("01 86 06 c2 62")
LIFT_UP = bytes.fromhex("01 05 00 00 ff 00 8c 3a")
LIFT_REFUSED = bytes.fromhex("01 85 06 c2 92")
SCAN_TARGETS = bytes.fromhex("01 10 00 03 00 02 04 0b b8 00 c8 30 2d")
SCAN_TARGETS_REPLY = bytes.fromhex("01 10 00 03 00 02 b1 c8")
ALL_FRAMES = [READ_0_15, SNAPSHOT_REPLY, READ_SAMPLE_4711, SAMPLE_REPLY, READ_INPUTS, INPUTS_REPLY, ASM_TARGETS,
              ASM_TARGETS_REPLY, MODE_2, MODE_REFUSED, LIFT_UP, LIFT_REFUSED, SCAN_TARGETS, SCAN_TARGETS_REPLY]


def crc16_modbus(data: bytes) -> bytes:
    """Reference CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF), low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return bytes([crc & 0xFF, crc >> 8])


def _rtu(pdu: object) -> bytes:
    return FramerRTU(DecodePDU(False)).buildFrame(pdu)  # type: ignore[arg-type]


@pytest.mark.parametrize("frame", ALL_FRAMES, ids=lambda f: f.hex(" ")[:20])
def test_every_manual_frame_ends_with_a_valid_crc(frame: bytes) -> None:
    assert crc16_modbus(frame[:-2]) == frame[-2:]


def test_pymodbus_builds_the_manuals_requests_byte_for_byte() -> None:
    assert _rtu(ReadInputRegistersRequest(address=0, count=16, dev_id=1)) == READ_0_15
    assert _rtu(ReadInputRegistersRequest(address=dy.ring_address(4711), count=3, dev_id=1)) == READ_SAMPLE_4711
    assert _rtu(WriteSingleRegisterRequest(address=0, registers=[2], dev_id=1)) == MODE_2
    assert _rtu(WriteSingleCoilRequest(address=0, bits=[True], dev_id=1)) == LIFT_UP
    assert _rtu(WriteMultipleRegistersRequest(address=1, registers=[845, 1216], dev_id=1)) == ASM_TARGETS
    assert _rtu(WriteMultipleRegistersRequest(address=3, registers=[3000, 200], dev_id=1)) == SCAN_TARGETS


def test_manual_snapshot_reply_decodes_to_the_manuals_values() -> None:
    framer = FramerRTU(DecodePDU(False))
    used, pdu = framer.handleFrame(SNAPSHOT_REPLY, 1, 0)
    assert used == len(SNAPSHOT_REPLY) and pdu is not None
    registers = list(pdu.registers)
    assert registers == registers_from_bytes(SNAPSHOT_REPLY[3:-2])
    # 0..15 as in the example, then ACCEL 0 and the CD-1L's ratings: 150.0 kW, 8000 N, 130.00 km/h
    snapshot = dy.decode_snapshot([*registers, 0, 1500, 8000, 13000])
    assert snapshot == dy.DynoSnapshot(
        speed_kmh=25.12, force_n=1216, pau_force_n=1128, power_kw=8.48, parasitic_power_kw=0.61, distance_m=1523,
        roller_temp_c=31.5, pau_temp_c=48.2, state=dy.DynoState.LOADED, fault_code=dy.FaultCode.NONE,
        sample_index=4711, sample_rate_hz=10, ring_size=512, accel_ms2=0.0, rated_power_kw=150.0,
        rated_force_n=8000, top_speed_kmh=130.0,
    )
    assert snapshot.build == dy.CD1L
    assert dy.encode_snapshot(snapshot)[:16] == registers


def test_ring_sample_4711_is_at_1309_and_decodes() -> None:
    assert dy.ring_address(4711) == 1309 == 0x051D
    samples = dy.decode_ring_samples(4711, registers_from_bytes(SAMPLE_REPLY[3:-2]))
    assert samples == [dy.RingSample(4711, 2512, 1216)]
    assert dy.encode_ring_sample(2512, 1216) == (0x09D0, 0x0000, 0x04C0)


def test_manual_discrete_inputs_reply() -> None:
    bits = [bool(0x25 >> k & 1) for k in range(8)]
    assert dy.decode_inputs(bits) == dy.DynoInputs(
        in_position=True, lift_up=False, lift_down=True, rollers_stopped=False, roller_brake_on=False,
        pau_ready=True, motor_running=False, fault=False)


def test_asm5025_targets_are_the_manuals_registers() -> None:
    # POWER_TARGET 8.45 kW = 845 × 0.01 kW, FORCE_TARGET 1216 N
    assert dy.encode_holding(dy.DynoHolding(power_target_kw=8.45, force_target_n=1216))[1:3] == [0x034D, 0x04C0]
    # lug-down scan: SPEED_TARGET 30.00 km/h, SPEED_RAMP 2.00 km/h/s
    assert dy.encode_holding(dy.DynoHolding(speed_target_kmh=30.0, speed_ramp_kmh_s=2.0))[3:5] == [3000, 200]


def test_defaults_give_the_manuals_parasitic_force() -> None:
    h = dy.decode_holding([0, 0, 0, 0, 0, 910, 0, 500, 1200, 120, 6000, 20])
    assert (h.pl_a_n, h.pl_b_n_per_kmh, h.pl_c_n_per_kmh2, h.watchdog_s) == (50.0, 1.2, 0.012, 2.0)
    # F_pl(25.12) = 50 + 1.2·25.12 + 0.012·25.12² = 87.72 N; 1128 + 87.7 ≈ 1216 N
    assert dy.parasitic_force_n(25.12, 50.0, 1.2, 0.012) == pytest.approx(87.716, abs=0.001)


# ----- the map and the interlocks -------------------------------------------------------------------

READY = dy.DeviceStatus(lift_down=True, pau_ready=True, rollers_stopped=True,
                        coils=(False, False, True, False, False, False))


def write(table: Table, address: int, values: list[int], s: dy.DeviceStatus) -> int | None:
    code = dy.check_write(table, address, values, s, dy.CD1L, 910)
    return None if code is None else int(code)


def test_map_extent() -> None:
    assert dy.in_map(Table.INPUT_REGISTER, 0, 20) and not dy.in_map(Table.INPUT_REGISTER, 0, 21)
    assert dy.in_map(Table.INPUT_REGISTER, 1000 + 3 * 511, 3) and not dy.in_map(Table.INPUT_REGISTER, 2534, 3)
    assert dy.in_map(Table.COIL, 0, 6) and not dy.in_map(Table.COIL, 6, 1)
    assert dy.in_map(Table.HOLDING_REGISTER, 11, 1) and not dy.in_map(Table.HOLDING_REGISTER, 12, 1)
    assert write(Table.HOLDING_REGISTER, 12, [0], READY) == 2


H = Table.HOLDING_REGISTER
C = Table.COIL


@pytest.mark.parametrize(
    ("table", "address", "values", "status", "code"),
    [
        (H, 0, [2], READY, None),
        (H, 0, [2], dy.DeviceStatus(lift_down=False, pau_ready=True), 6),  # lift not down (up or moving)
        (H, 0, [2], dy.DeviceStatus(pau_ready=False), 6),  # PAU off
        (H, 0, [1], dy.DeviceStatus(pau_ready=True, roller_brake_on=True), 6),
        (H, 0, [3], dy.DeviceStatus(pau_ready=True, motor_running=True), 6),
        (H, 0, [3], dy.DeviceStatus(pau_ready=True, fault=True), 6),
        (H, 0, [0], dy.DeviceStatus(lift_down=False), None),  # mode 0: always
        (H, 0, [2], dy.DeviceStatus(lift_down=False, control_mode=2), None),  # the value it has
        (H, 0, [4], READY, 3),
        (H, 0, [4], dy.DeviceStatus(lift_down=False), 3),  # out of range and not allowed: 03 first
        (H, 1, [15000], READY, None), (H, 1, [15001], READY, 3),  # 150.00 kW on CD-1L
        (H, 2, [8000], READY, None), (H, 2, [8001], READY, 3),
        (H, 3, [13000], READY, None), (H, 3, [13001], READY, 3),
        (H, 4, [2001], READY, 3),
        (H, 1, [845, 1216], dy.DeviceStatus(lift_down=False, control_mode=2), None),  # targets: any state
        (H, 6, [0], READY, None), (H, 6, [909], READY, 3), (H, 6, [910], READY, None), (H, 6, [5501], READY, 3),
        (H, 7, [500], READY, None),
        (H, 7, [500], dy.DeviceStatus(rollers_stopped=False), 6),  # calibration while turning
        (H, 5, [910], dy.DeviceStatus(control_mode=2, pau_ready=True), 6),
        (H, 5, [499], READY, 3),
        (H, 10, [999], READY, 3), (H, 11, [601], READY, 3), (H, 11, [0], READY, None),
        (C, 0, [1], READY, None),
        (C, 0, [1], dy.DeviceStatus(rollers_stopped=False), 6),  # the manual's "refused, rollers turning"
        (C, 0, [1], dy.DeviceStatus(control_mode=2), 6),
        (C, 0, [1], dy.DeviceStatus(motor_running=True), 6),
        (C, 0, [0], dy.DeviceStatus(rollers_stopped=False, coils=(True, False, False, False, False, False)), None),
        (C, 3, [1], READY, None),
        (C, 3, [1], dy.DeviceStatus(in_position=True), 6),  # never with a vehicle
        (C, 3, [1], dy.DeviceStatus(lift_down=False), 6),
        (C, 3, [1], dy.DeviceStatus(roller_brake_on=True), 6),
        (C, 3, [1], dy.DeviceStatus(fault=True), 6),
        (C, 1, [1], dy.DeviceStatus(speed_raw=1000, rollers_stopped=False), None),
        (C, 1, [1], dy.DeviceStatus(speed_raw=1001, rollers_stopped=False), 6),  # above 10.00 km/h
        (C, 1, [1], dy.DeviceStatus(control_mode=1), 6),
        (C, 5, [1], READY, None), (C, 5, [1], dy.DeviceStatus(rollers_stopped=False), 6),
        (C, 2, [1], dy.DeviceStatus(fault=True), 6), (C, 2, [0], dy.DeviceStatus(fault=True), None),
        (C, 4, [1], dy.DeviceStatus(fault=True, lift_down=False, rollers_stopped=False), None),  # FAN
        (C, 0, [0, 0, 1, 1], dy.DeviceStatus(in_position=True), 6),  # FC15: MOTOR refused: all refused
    ],
)
def test_ranges_then_interlocks(table: Table, address: int, values: list[int], status: dy.DeviceStatus,
                                code: int | None) -> None:
    assert write(table, address, values, status) == code


def test_interlock_rules_name_what_is_needed() -> None:
    assert "LIFT_DOWN" in dy.interlock_rule(Table.HOLDING_REGISTER, 0)
    assert "ROLLERS_STOPPED" in dy.interlock_rule(Table.COIL, 0)
    assert "PL_A" in dy.interlock_rule(Table.HOLDING_REGISTER, 8)


# ----- the ring and the per-second data --------------------------------------------------------------------


def test_ring_reads_take_41_samples_at_most_and_split_at_the_ring_end() -> None:
    assert dy.plan_ring_reads(0, 99) == [dy.RingRead(1000, 123, 0), dy.RingRead(1123, 123, 41),
                                        dy.RingRead(1246, 54, 82)]
    # samples 500..530: slots 500..511 (12 samples from 1000 + 1500), then 0..18 (19 samples)
    assert dy.plan_ring_reads(500, 530) == [dy.RingRead(2500, 36, 500), dy.RingRead(1000, 57, 512)]
    assert dy.plan_ring_reads(65530, 5) == [dy.RingRead(1000 + 3 * 506, 18, 65530), dy.RingRead(1000, 18, 0)]


def test_cursor_counts_samples_overwritten_during_the_read() -> None:
    cursor = dy.SampleCursor(0)
    (read,) = cursor.plan(40)
    registers = [v for i in range(41) for v in dy.encode_ring_sample(i, 100 + i)]
    # SAMPLE_INDEX read after the block is 513: samples 0 and 1 were overwritten meanwhile
    samples = cursor.accept(read, registers, 513)
    assert [s.index for s in samples] == list(range(2, 41))
    assert (cursor.lost, cursor.delivered, cursor.next_index) == (2, 39, 41)


def sample(index: int, speed_raw: int, force_n: int) -> dy.RingSample:
    return dy.RingSample(index % 65536, speed_raw, force_n)


def test_per_second_means_are_exact_and_start_at_i0() -> None:
    # i0 = 65530: the first second crosses the index wrap (65530..65535, 0..3)
    speeds = [2500, 2510, 2490, 2500, 2505, 2495, 2500, 2500, 2480, 2520]
    forces = [1216, 1220, 1210, 1216, 1216, 1216, 1200, 1232, 1216, 1218]
    samples = [sample(65528, 9999, 9999), sample(65529, 9999, 9999)]  # before i0: not part of the test
    samples += [sample(65530 + k, speeds[k], forces[k]) for k in range(10)]
    samples += [sample(4 + k, 4000, 950) for k in range(10)]
    samples += [sample(14, 4000, 950)]  # the third second is not complete
    records = dy.per_second(samples, 65530)
    assert len(records) == 2
    first, second = records
    assert first.k == 0 and first.first_index == 65530 and first.samples == 10
    assert first.speed_kmh == Fraction(25000, 1000)  # (sum of the speeds 25000 × 0.01) / 10 = 25.000 km/h
    assert first.force_n == Fraction(12160, 10)
    # the mean of the ten products F·v/3.6, by hand: Σ F·raw = 3 040 000 + 3 062 200 + … + 3 069 360
    # = 30 400 140 (F in N, raw in 0.01 km/h), then / 360 000 (to kW) / 10 (the mean)
    assert sum(f * s for f, s in zip(forces, speeds, strict=True)) == 30400140
    assert first.power_kw == Fraction(30400140, 3_600_000)
    assert second.k == 1 and second.first_index == 4
    assert second.speed_kmh == 40 and second.force_n == 950
    assert second.power_kw == Fraction(950 * 40, 3600)  # 10.556 kW


def test_per_second_aggregator_is_incremental_and_keeps_a_second_with_a_lost_sample() -> None:
    agg = dy.PerSecondAggregator(100)
    assert agg.feed([sample(100 + k, 2500, 1000) for k in range(5)]) == []
    # sample 105 was lost: the first second is over the nine it has
    (rec,) = agg.feed([sample(100 + k, 2500, 1000) for k in range(6, 10)])
    assert rec.samples == 9 and rec.force_n == 1000
    with pytest.raises(ProtocolError, match="fed twice"):
        agg.feed([sample(109, 2500, 1000)])
