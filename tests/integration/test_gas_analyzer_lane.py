"""Issue 2 end to end: the GA-5 analyzer (simulated, on a real pty) through the daemon to a real broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.gas_analyzer import GasAnalyzerDriver
from laned.config import parse_config
from laned.daemon import Lane
from protocols import gas_analyzer as ga
from simulators.gas_analyzer import GasAnalyzerSimulator, load_analyzer_config
from tests.helpers import lane_config_dict, subscriber

pytestmark = pytest.mark.integration
ROOT = "laned/v1/370100/T1"


@pytest.fixture
async def analyzer(tmp_path: Path) -> AsyncIterator[GasAnalyzerSimulator]:
    sim = GasAnalyzerSimulator(tmp_path / "ga", config=load_analyzer_config(fast=True))
    async with sim:
        yield sim


def gas_lane(tmp_path: Path, broker: Any, port: str) -> Lane:
    devices = {
        "gas-analyzer": {
            "kind": "gas_analyzer",
            "transport": {"type": "serial", "port": port},
            "reconnect_initial_s": 0.1,
            "reconnect_max_s": 0.3,
        }
    }
    return Lane(parse_config(lane_config_dict(tmp_path, broker, devices), "test", environ={}), startup_grace_s=5)


async def test_live_readings_and_status_reach_a_subscriber(tmp_path: Path, broker: Any, analyzer: Any) -> None:
    lane = gas_lane(tmp_path, broker, str(analyzer.pty.link))
    task = asyncio.create_task(lane.run())
    try:
        async with subscriber(broker.host, broker.port, f"{ROOT}/#") as station:
            status = await station.wait_status("online", **{"gas-analyzer": "connected"})
            identity = status["devices"]["gas-analyzer"]["identity"]
            assert identity["model"] == "GA-5" and identity["serial"] and identity["firmware"]
            await asyncio.sleep(1.5)
            live = [m.json() for m in station.on("/live/gas-analyzer")]
    finally:
        lane.request_stop()
        await asyncio.wait_for(task, 10)
    assert len(live) >= 8  # 10 Hz polling for ~1.5 s; loose, the machine may be loaded
    reading = live[-1]
    assert reading["schema"] == "live-gas-analyzer/1" and reading["device"] == "gas-analyzer"
    for field in ("hc_ppm", "co_pct", "co2_pct", "o2_pct", "no_ppm", "rpm", "lambda_value", "pef", "flags", "seq"):
        assert field in reading
    seqs = [m["seq"] for m in live]
    assert seqs == sorted(seqs) and len(set(seqs)) > len(seqs) // 2  # SEQ advances at the analyzer's 10 Hz


@pytest.mark.parametrize("fault", ["silence", "bad_checksum", "short_reply"])
async def test_a_faulty_analyzer_is_shown_truthfully_and_read_again_once_it_is_back(
    tmp_path: Path, amqtt_broker: Any, analyzer: Any, fault: str
) -> None:
    lane = gas_lane(tmp_path, amqtt_broker, str(analyzer.pty.link))
    task = asyncio.create_task(lane.run())
    try:
        async with subscriber(amqtt_broker.host, amqtt_broker.port, f"{ROOT}/#") as station:
            await station.wait_status("online", **{"gas-analyzer": "connected"})
            analyzer.inject(fault)
            down = await station.wait_status("online", **{"gas-analyzer": "disconnected"})
            assert down["devices"]["gas-analyzer"]["last_error"]
            analyzer.clear()
            await station.wait_status("online", **{"gas-analyzer": "connected"})
            seen = len(station.on("/live/gas-analyzer"))
            await station.wait_for(lambda m: m.topic.endswith("/live/gas-analyzer") and
                                   len(station.on("/live/gas-analyzer")) > seen + 3)
        assert not task.done()
    finally:
        lane.request_stop()
        await asyncio.wait_for(task, 10)


async def test_stray_bytes_before_replies_are_skipped_without_losing_the_link(tmp_path: Path, analyzer: Any) -> None:
    driver = GasAnalyzerDriver("ga", port=str(analyzer.pty.link), poll_hz=20)
    task = asyncio.create_task(driver.run())
    try:
        await driver.wait_connected(5)
        analyzer.inject("stray_bytes")
        readings = [await driver.read_main() for _ in range(10)]
        assert all(isinstance(r, ga.MainReading) for r in readings)
        assert driver.is_connected
    finally:
        await driver.stop()
        await asyncio.wait_for(task, 5)


async def test_a_pty_that_disappears_and_comes_back(tmp_path: Path, amqtt_broker: Any, analyzer: Any) -> None:
    lane = gas_lane(tmp_path, amqtt_broker, str(analyzer.pty.link))
    task = asyncio.create_task(lane.run())
    try:
        async with subscriber(amqtt_broker.host, amqtt_broker.port, f"{ROOT}/status") as station:
            await station.wait_status("online", **{"gas-analyzer": "connected"})
            analyzer.inject("lost_cable")
            await station.wait_status("online", **{"gas-analyzer": "disconnected"})
            await asyncio.sleep(0.5)
            assert not analyzer.pty.link.exists()
            analyzer.clear("lost_cable")
            back = await station.wait_status("online", timeout_s=15, **{"gas-analyzer": "connected"})
            assert back["devices"]["gas-analyzer"]["reconnects"] >= 1
    finally:
        lane.request_stop()
        await asyncio.wait_for(task, 10)


async def test_a_missing_serial_port_is_a_clear_error_in_the_status(tmp_path: Path, amqtt_broker: Any) -> None:
    lane = gas_lane(tmp_path, amqtt_broker, str(tmp_path / "no-such-port"))
    lane.startup_grace_s = 0.5
    task = asyncio.create_task(lane.run())
    try:
        async with subscriber(amqtt_broker.host, amqtt_broker.port, f"{ROOT}/status") as station:
            status = await station.wait_status("online", **{"gas-analyzer": "disconnected"})
        error = status["devices"]["gas-analyzer"]["last_error"]
        assert "cannot open serial port" in error and "no-such-port" in error
    finally:
        lane.request_stop()
        await asyncio.wait_for(task, 10)


async def test_the_driver_runs_the_analyzers_processes_and_reads_every_frame(tmp_path: Path, analyzer: Any) -> None:
    driver = GasAnalyzerDriver("ga", port=str(analyzer.pty.link), process_time_scale=0.2)
    task = asyncio.create_task(driver.run())
    try:
        await driver.wait_connected(5)
        while (await driver.status()).state != ga.AnalyzerState.READY:
            await asyncio.sleep(0.1)
        assert await driver.zero() is True
        env = await driver.read_env()
        assert 0 < env.baro_kpa < 120 and 0 <= env.rh_pct <= 100
        before = await driver.read_main()
        await driver.pump("ambient")
        main = await driver.read_main()
        while main.seq in (before.seq, (before.seq + 1) % 65536):  # readings change at the next 10 Hz update
            main = await driver.read_main()
        assert main.flags & ga.Flags.PUMP_AMBIENT
        with pytest.raises(ValueError, match="pump mode"):
            await driver.pump("vacuum")
    finally:
        await driver.stop()
        await asyncio.wait_for(task, 5)
    assert analyzer.pump == "stop"  # stop() put the analyzer in its safe state: pump off
