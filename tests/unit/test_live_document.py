"""The live document of a reading (laned/devices.py: reading_to_live) and of the readings gathered
between two messages (live_messages): what a station sees on `…/live/{device}` for flags, for
several readings in one message, and for the brake tester's curve samples."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass

from laned.devices import live_messages, reading_to_live
from laned.procedures.brake import BrakeCurveLive
from protocols import brake_tester as bt
from protocols import dynamometer as dy
from protocols import gas_analyzer as ga
from protocols import opacimeter as op


class Lamp(enum.IntFlag):
    RED = 1
    GREEN = 2


@dataclass(frozen=True)
class TwoFlags:
    analyzer: ga.Flags
    lamp: Lamp


def test_flags_are_listed_by_name_and_each_flag_type_keeps_its_own_names() -> None:
    # both hold the value 3: O2_SENSOR_AGED | NO_SENSOR_AGED (manual), RED | GREEN (here)
    reading = TwoFlags(ga.Flags(3), Lamp(3))
    for _ in range(2):  # the second time from the names kept for each value
        document = reading_to_live("gas-analyzer", "gas_analyzer", reading)
        assert document["analyzer"] == ["o2_sensor_aged", "no_sensor_aged"]
        assert document["lamp"] == ["red", "green"]
    assert reading_to_live("gas-analyzer", "gas_analyzer", TwoFlags(ga.Flags(0), Lamp(2)))["analyzer"] == []


def test_a_followed_snapshot_carries_its_samples_as_lists_of_dan() -> None:
    followed = bt.FollowedSnapshot(
        left_force_n=3050, right_force_n=2950, left_load_n=4500, right_load_n=4326, left_speed_kmh=2.5,
        right_speed_kmh=2.5, state=bt.TesterState.RUNNING, fault_code=bt.FaultCode.NONE, sample_index=4711,
        sample_rate_hz=100, ring_size=512, first_sample_index=4709, left_force_dan=(303, 304, 305),
        right_force_dan=(-10, 0, 295),
    )
    document = json.loads(json.dumps(reading_to_live("brake-tester", "brake_tester", followed)))
    assert document["reading"] == "TesterSnapshot"
    assert document["state"] == "running"
    assert (document["first_sample_index"], document["left_force_dan"], document["right_force_dan"]) == (
        4709, [303, 304, 305], [-10, 0, 295])


def test_the_readings_since_the_last_message_go_in_one_message_the_newest_at_the_top_level() -> None:
    batch = [(100.00, op.RealtimeReading(2.5, 0.06, 640, 355, 61)),
             (100.05, op.RealtimeReading(2.6, 0.07, 650, None, 62))]
    [message] = json.loads(json.dumps(live_messages("opacimeter", "opacimeter", batch)))
    assert message == {
        "schema": "live-opacimeter/1", "device": "opacimeter", "lane_time": 100.05, "reading": "RealtimeReading",
        "opacity_pct": 2.6, "k_m1": 0.07, "rpm": 650, "oil_temp_k": None, "seq": 62,
        "readings": [
            {"lane_time": 100.00, "reading": "RealtimeReading", "opacity_pct": 2.5, "k_m1": 0.06, "rpm": 640,
             "oil_temp_k": 355, "seq": 61},
            {"lane_time": 100.05, "reading": "RealtimeReading", "opacity_pct": 2.6, "k_m1": 0.07, "rpm": 650,
             "oil_temp_k": None, "seq": 62},
        ],
    }


def followed(sample_index: int, first: int | None, left: tuple[int, ...],
             right: tuple[int, ...]) -> bt.FollowedSnapshot:
    return bt.FollowedSnapshot(
        left_force_n=10 * (left[-1] if left else 0), right_force_n=0, left_load_n=4500, right_load_n=4326,
        left_speed_kmh=2.5, right_speed_kmh=2.5, state=bt.TesterState.RUNNING, fault_code=bt.FaultCode.NONE,
        sample_index=sample_index, sample_rate_hz=100, ring_size=512, first_sample_index=first,
        left_force_dan=left, right_force_dan=right)


def test_curve_samples_of_several_readings_are_all_at_the_top_level_once_in_order() -> None:
    batch = [(1.0, followed(4711, 4709, (303, 304, 305), (1, 2, 3))),
             (1.1, followed(4713, 4712, (306, 307), (4, 5))),
             (1.2, followed(4713, None, (), ()))]  # nothing new this poll
    [message] = live_messages("brake-tester", "brake_tester", batch)
    assert (message["first_sample_index"], message["left_force_dan"], message["right_force_dan"]) == (
        4709, [303, 304, 305, 306, 307], [1, 2, 3, 4, 5])
    assert message["sample_index"] == 4713 and message["lane_time"] == 1.2
    assert [r["sample_index"] for r in message["readings"]] == [4711, 4713, 4713]
    assert not any("left_force_dan" in r or "first_sample_index" in r for r in message["readings"])


def test_samples_that_do_not_follow_on_start_a_new_message() -> None:
    # 4712 would follow 4709..4711; 4800 does not (the tester's ring restarted, or samples were lost)
    batch = [(1.0, followed(4711, 4709, (303, 304, 305), (1, 2, 3))),
             (1.1, followed(4801, 4800, (306, 307), (4, 5)))]
    messages = live_messages("brake-tester", "brake_tester", batch)
    assert [(m["first_sample_index"], m["left_force_dan"]) for m in messages] == [
        (4709, [303, 304, 305]), (4800, [306, 307])]
    # the index wraps at 65536: 65535 is followed by 0
    wrapped = live_messages("brake-tester", "brake_tester", [(1.0, followed(65535, 65534, (1, 2), (1, 2))),
                                                             (1.1, followed(1, 0, (3, 4), (3, 4)))])
    assert [(m["first_sample_index"], m["left_force_dan"]) for m in wrapped] == [(65534, [1, 2, 3, 4])]


def test_readings_of_another_kind_or_another_curve_go_in_messages_of_their_own() -> None:
    curve = [(2.0, BrakeCurveLive(1, "service", 100, 360, [1, 2], [0, 1], 20, 10)),
             (2.1, BrakeCurveLive(2, "service", 100, 362, [5, 6], [4, 5], 60, 50))]  # next axle
    snapshot = (2.05, followed(364, None, (), ()))
    messages = live_messages("brake-tester", "brake_tester", [curve[0], snapshot, curve[1]])
    assert [(m["reading"], m.get("axle_no"), m.get("left_force_dan")) for m in messages] == [
        ("BrakeCurveLive", 1, [1, 2]), ("TesterSnapshot", None, []), ("BrakeCurveLive", 2, [5, 6])]
    # 362 follows 360, 361, but on another axle: its curve is another one
    assert [m["axle_no"] for m in live_messages("brake-tester", "brake_tester", curve)] == [1, 2]


async def test_a_live_sender_sends_a_new_slots_first_reading_at_once_and_holds_the_rest_for_the_next() -> None:
    """At most one message a slot of 1 / live_hz on the monotonic clock: the first reading of a
    slot goes out in the driver's turn with any held before it; a second one in the same slot
    waits for the next slot's first reading, or, if none comes, for the end of the next slot."""
    import asyncio
    import time

    from drivers.base import next_slot
    from laned.devices import LiveSender

    sent: list[list[int]] = []
    sender = LiveSender("opacimeter", "opacimeter", 0.1,
                        lambda _device, document: sent.append([r["seq"] for r in document["readings"]]))

    def reading(seq: int) -> op.RealtimeReading:
        return op.RealtimeReading(1.0, 0.02, 800, None, seq)

    await asyncio.sleep(next_slot(time.monotonic(), 0.1) + 0.01 - time.monotonic())  # early in a slot
    sender.add(reading(1))
    assert sent == [[1]]  # at once
    sender.add(reading(2))  # the same slot: held
    assert sent == [[1]]
    await asyncio.sleep(0.1)
    sender.add(reading(3))  # the next slot: with the one held
    assert sent == [[1], [2, 3]]
    sender.add(reading(4))  # held, and nothing comes after it
    await asyncio.sleep(0.15)
    assert sent == [[1], [2, 3]]  # not yet: the next slot could still bring a reading
    await asyncio.sleep(0.1)
    assert sent == [[1], [2, 3], [4]]  # the end of the next slot
    sender.close()


def test_a_dynamometer_snapshot_is_a_live_dynamometer_document_with_its_ring_samples() -> None:
    followed = dy.FollowedSnapshot(
        speed_kmh=25.12, force_n=1216, pau_force_n=1128, power_kw=8.48, parasitic_power_kw=0.61, distance_m=1523,
        roller_temp_c=31.5, pau_temp_c=48.2, state=dy.DynoState.LOADED, fault_code=dy.FaultCode.NONE,
        sample_index=4711, sample_rate_hz=10, ring_size=512, accel_ms2=0.0, rated_power_kw=150.0,
        rated_force_n=8000, top_speed_kmh=130.0, first_sample_index=4710, speeds_kmh=(25.1, 25.12),
        forces_n=(1210, 1216),
    )
    document = json.loads(json.dumps(reading_to_live("dynamometer", "dynamometer", followed)))
    assert document["schema"] == "live-dynamometer/1" and document["reading"] == "DynoSnapshot"
    assert (document["state"], document["fault_code"], document["speed_kmh"], document["force_n"]) == (
        "loaded", "none", 25.12, 1216)
    assert (document["first_sample_index"], document["speeds_kmh"], document["forces_n"]) == (
        4710, [25.1, 25.12], [1210, 1216])
    assert [s.speed_raw for s in followed.samples] == [2510, 2512]
