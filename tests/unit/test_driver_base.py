"""The common driver life cycle: health from real reads, backoff, reconnect, safe state first."""

from __future__ import annotations

import asyncio
import random

import pytest

from drivers.base import Backoff, Broadcast, Driver, HealthState
from drivers.errors import DeviceTimeout, DeviceUnavailable


class ScriptedDriver(Driver):
    """A driver whose device is a script: a unit test of the life cycle, not of any wire."""

    kind = "scripted"

    def __init__(self) -> None:
        super().__init__(
            "dev",
            port="/dev/null",
            poll_interval_s=0.01,
            backoff=Backoff(initial_s=0.01, max_s=0.05),
            errors_to_disconnect=3,
        )
        self.open_fails = 0
        self.poll_fails = False
        self.opens = 0
        self.safe_calls: list[str] = []

    async def _open(self) -> None:
        self.opens += 1
        if self.open_fails:
            self.open_fails -= 1
            raise DeviceUnavailable(self.name, "cannot open serial port: no such file", port=self.port)

    async def _close(self) -> None:
        pass

    async def _hello(self) -> None:
        await self.exchange(self._reply)

    async def _reply(self) -> int:
        if self.poll_fails:
            raise DeviceTimeout(self.name, "no valid frame within 300 ms (got nothing)", port=self.port)
        return 1

    async def _poll(self) -> None:
        self.readings.publish(await self.exchange(self._reply))

    async def _safe_state(self) -> None:
        self.safe_calls.append("pump off")


async def wait_state(driver: Driver, state: HealthState, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while driver.health.state != state:
            await asyncio.sleep(0.005)


def test_backoff_grows_and_is_capped_with_jitter() -> None:
    backoff = Backoff(initial_s=0.5, max_s=30.0, factor=2.0, jitter=0.2)
    rng = random.Random(1)
    for attempt, nominal in [(0, 0.5), (1, 1.0), (3, 4.0), (10, 30.0)]:
        delay = backoff.delay(attempt, rng)
        assert nominal * 0.8 <= delay <= min(30.0, nominal * 1.2)


async def test_connected_only_after_a_good_read_then_degraded_then_disconnected_and_back() -> None:
    driver = ScriptedDriver()
    driver.open_fails = 2
    states: list[str] = []
    driver.add_health_listener(lambda _n, h: states.append(str(h.state)))
    task = asyncio.create_task(driver.run())
    await wait_state(driver, HealthState.CONNECTED)
    assert driver.opens == 3  # two failed opens, backed off, then a good one
    assert "connected" not in states[: states.index("connected")]
    driver.poll_fails = True
    await wait_state(driver, HealthState.DEGRADED)
    await wait_state(driver, HealthState.DISCONNECTED)
    assert "no valid frame" in (driver.health.last_error or "")
    driver.poll_fails = False
    await wait_state(driver, HealthState.CONNECTED)
    assert driver.health.reconnects >= 3
    await driver.stop()
    await asyncio.wait_for(task, 1)
    assert driver.health.state == HealthState.STOPPED
    assert driver.safe_calls == ["pump off"]


async def test_requests_while_disconnected_fail_fast_with_the_last_error() -> None:
    driver = ScriptedDriver()
    with pytest.raises(DeviceUnavailable, match="not connected"):
        await driver.exchange(driver._reply)


async def test_a_slow_subscriber_loses_oldest_readings_and_never_blocks() -> None:
    hub: Broadcast[int] = Broadcast()
    with hub.subscription(maxsize=3) as queue:
        for i in range(5):
            hub.publish(i)
        assert [queue.get_nowait() for _ in range(3)] == [2, 3, 4]
    assert hub.dropped == 2 and hub.latest == 4
