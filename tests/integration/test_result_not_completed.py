"""The result's top-level `not_completed` map names a procedure that stopped partway (issue 16, 9).

docs/mqtt-api.md: `not_completed` is `{procedure: reason}`, the procedures of this platform that
could not be completed. A brake test whose tester faults on axle 2 keeps axle 1's measurement and
reports B2 (and BZ, which needs every axle) `not_completed`: the map says `brake` and why, on
mosquitto, with the simulated RB-2 over Modbus TCP and the simulated driver.
"""

from __future__ import annotations

import asyncio

import pytest

from laned.broker import Mosquitto
from tests.e2e_helpers import send_command, start_command
from tests.integration.test_brake_procedure import lane_rig

pytestmark = [pytest.mark.integration, pytest.mark.mosquitto]


async def test_a_brake_test_stopped_at_axle_2_is_named_in_the_results_not_completed_map(
    tmp_path: pytest.TempPathFactory, mosquitto: Mosquitto
) -> None:
    async with lane_rig(tmp_path, mosquitto, "gasoline-car", "NC1") as rig:  # type: ignore[arg-type]
        start = start_command("gasoline-car", "NC1", request_id="s-nc1", exterior=False, brake_axles=[1, 2])
        await send_command(mosquitto.host, mosquitto.port, rig.root, "start", start)
        await rig.station.wait_for(lambda m: m.topic.endswith("/event") and m.json().get("action") == "brake"
                                   and m.json()["data"].get("axle") == 2, 60)
        await asyncio.sleep(0.3)  # the driver brakes on axle 2, the rollers turn
        rig.sim.inject("fault_code", for_s=1.0, code=1)  # left motor overload: the tester stops
        message = await rig.station.wait_for(lambda m: m.topic == f"{rig.root}/result/safety", 60)
        safety = message.json()
        emissions = (await rig.station.wait_for(lambda m: m.topic == f"{rig.root}/result/emissions", 10)).json()

    reason = "axle 2: brake-tester stopped with a fault: LEFT_MOTOR_OVERLOAD (FAULT_CODE 1)"
    assert [i["code"] for i in safety["items"]] == ["B1", "B2", "BZ"]  # each item once
    items = {i["code"]: i for i in safety["items"]}
    assert items["B1"]["verdict"] == "pass"  # measured before the fault: kept
    assert (items["B2"]["verdict"], items["B2"]["reason"]) == ("not_completed", reason)
    assert items["BZ"]["verdict"] == "not_completed"
    assert safety["not_completed"] == {"brake": reason}
    assert safety["verdict"] == "incomplete" and safety["aborted"] is None
    assert emissions["not_completed"] == {}  # the brake test is the safety platform's
