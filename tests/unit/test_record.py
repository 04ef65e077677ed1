"""The inspection record keeps how the lane that measured it was started (issue 15, point 5): a
simulation stays a simulation through a restart, and the timings reported are never longer
than the ones used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from laned.config import parse_config
from laned.daemon import Lane
from laned.record import InspectionRecord
from laned.settings import StandardTiming
from protocols.messages import StartCommand
from tests.unit.test_schemas import START

SCALE_01 = StandardTiming("inspection.time_scale", 0.1, 1.0, "")
SCALE_1 = StandardTiming("inspection.time_scale", 1.0, 1.0, "")
MEASURE_30 = StandardTiming("inspection.two_speed_idle.measure_s", 30.0, 30.0, "s")
MEASURE_3 = StandardTiming("inspection.two_speed_idle.measure_s", 3.0, 30.0, "s")


def record() -> InspectionRecord:
    return InspectionRecord.new(StartCommand.model_validate(START))


def test_a_simulation_record_resumed_by_a_production_lane_stays_a_simulation_with_its_timings() -> None:
    first = record()
    first.mark_run(simulation=True, timings=[SCALE_01, MEASURE_30])
    resumed = InspectionRecord.from_json(json.loads(json.dumps(first.to_json(), default=str)))
    resumed.mark_run(simulation=False, timings=[SCALE_1, MEASURE_30])
    assert resumed.simulation is True
    assert resumed.procedure_timings == {
        "inspection.time_scale": {"value": 0.1, "standard_min": 1.0, "unit": ""},
        "inspection.two_speed_idle.measure_s": {"value": 30.0, "standard_min": 30.0, "unit": "s"},
    }


def test_a_production_record_resumed_by_a_simulation_takes_its_shorter_timings() -> None:
    first = record()
    first.mark_run(simulation=False, timings=[SCALE_1, MEASURE_30])
    assert first.simulation is False
    first.mark_run(simulation=True, timings=[SCALE_1, MEASURE_3])
    assert first.simulation is True
    assert first.procedure_timings["inspection.two_speed_idle.measure_s"]["value"] == 3.0


def test_a_record_written_before_the_marker_existed_reads_as_not_a_simulation() -> None:
    data: dict[str, Any] = record().to_json()
    del data["simulation"], data["procedure_timings"]
    old = InspectionRecord.from_json(json.loads(json.dumps(data, default=str)))
    assert (old.simulation, old.procedure_timings) == (False, {})


async def test_the_lane_resuming_an_inspection_keeps_the_simulation_marker_on_disk(tmp_path: Path) -> None:
    """A simulation's unfinished record, found by a lane started without --simulation."""
    config = parse_config({"lane": {"station": "370100", "lane": "L1", "state_dir": str(tmp_path)}}, "test",
                          environ={})
    measured = record()
    measured.mark_run(simulation=True, timings=[SCALE_01])
    records = tmp_path / "inspections"
    records.mkdir()
    path = records / f"{measured.inspection_no}.json"
    path.write_text(json.dumps(measured.to_json(), default=str), encoding="utf-8")
    lane = Lane(config)
    try:
        lane.runner.resume()
        assert lane.runner.current is not None and lane.runner.current.simulation is True
        saved = json.loads(path.read_text(encoding="utf-8"))
        assert saved["simulation"] is True
        assert saved["procedure_timings"]["inspection.time_scale"]["value"] == 0.1
        # the production lane's own timings are added, never replacing a shorter one
        assert saved["procedure_timings"]["inspection.two_speed_idle.measure_s"]["value"] == 30.0
    finally:
        lane.runner.cancel()
        await lane.runner.wait_stopped()
        lane.outbox.close()
