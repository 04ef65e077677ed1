"""The live document of a reading (laned/devices.py: reading_to_live): what a station sees on
`…/live/{device}` for flags and for the brake tester's curve samples."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass

from laned.devices import reading_to_live
from protocols import brake_tester as bt
from protocols import dynamometer as dy
from protocols import gas_analyzer as ga


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
