"""The live document of a reading (laned/devices.py: reading_to_live): what a station sees on
`…/live/{device}` for flags and for the brake tester's curve samples."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass

from laned.devices import reading_to_live
from protocols import brake_tester as bt
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
