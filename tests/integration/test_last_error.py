"""`devices.*.last_error` as a technician reads it in `laned status` and the monitor: the device and its
port named once, then what went wrong (it read "gas-analyzer on …/ga: gas-analyzer on …/ga: serial port
lost" when a lost port's error was passed on)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from drivers.errors import DeviceUnavailable
from simulators.gas_analyzer import GasAnalyzerSimulator, load_analyzer_config
from tests.helpers import subscriber
from tests.integration.test_gas_analyzer_lane import ROOT, gas_lane

pytestmark = pytest.mark.integration


def test_an_error_passed_on_names_its_device_once() -> None:
    first = DeviceUnavailable("gas-analyzer", "serial port lost: read failed", port="/dev/ttyUSB0")
    again = DeviceUnavailable("gas-analyzer", str(first), port="/dev/ttyUSB0")
    assert str(again) == "gas-analyzer on /dev/ttyUSB0: serial port lost: read failed"
    assert again.detail == "serial port lost: read failed"


async def test_a_lost_serial_port_is_shown_with_its_device_and_port_once(tmp_path: Path, amqtt_broker: Any) -> None:
    async with GasAnalyzerSimulator(tmp_path / "ga", config=load_analyzer_config(fast=True)) as analyzer:
        lane = gas_lane(tmp_path, amqtt_broker, str(analyzer.pty.link))
        task = asyncio.create_task(lane.run())
        try:
            async with subscriber(amqtt_broker.host, amqtt_broker.port, f"{ROOT}/status") as station:
                await station.wait_status("online", **{"gas-analyzer": "connected"})
                analyzer.inject("lost_cable")
                status = await station.wait_status("online", **{"gas-analyzer": "disconnected"})
                await asyncio.sleep(1.0)  # the reconnect attempts' errors too
                later = await station.wait_for(lambda m: m.topic.endswith("/status"), 10)
        finally:
            lane.request_stop()
            await asyncio.wait_for(task, 10)
    for document in (status, later.json()):
        error = document["devices"]["gas-analyzer"]["last_error"]
        where = f"gas-analyzer on {analyzer.pty.link}"
        assert error.startswith(f"{where}: ") and error.count("gas-analyzer") == 1, error
