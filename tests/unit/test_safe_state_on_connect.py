"""The life cycle's safe state on connect: before `connected`, on every connect, unless claimed; a
safe state that fails fails the connect. A unit test of drivers/base.py with a scripted device (the
wire versions are in tests/integration/test_safe_state_on_connect.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from drivers.base import Backoff, Driver, HealthState
from drivers.errors import DeviceError, DeviceTimeout, DeviceUnavailable


class PumpDriver(Driver):
    """A device with a dangerous state (a pump) whose replies are a script."""

    kind = "scripted_pump"
    safe_state_action = "pump off"

    def __init__(self) -> None:
        super().__init__("pump", port="/dev/null", poll_interval_s=0.01, backoff=Backoff(initial_s=0.01, max_s=0.02),
                         errors_to_disconnect=1)
        self.opens = 0
        self.safe_fails = 0
        self.link_down = False
        #: the health state seen by each safe state, in order
        self.safe_calls: list[HealthState] = []

    async def _open(self) -> None:
        self.opens += 1
        if self.link_down:
            raise DeviceUnavailable(self.name, "no such file", port=self.port)

    async def _close(self) -> None:
        pass

    async def _hello(self) -> None:
        await self.exchange(self._reply)

    async def _reply(self) -> int:
        if self.link_down:
            raise DeviceTimeout(self.name, "no reply", port=self.port)
        return 1

    async def _poll(self) -> None:
        await self.exchange(self._reply)

    async def _safe_state(self) -> None:
        self.safe_calls.append(self.health.state)
        if self.safe_fails:
            self.safe_fails -= 1
            raise DeviceError(self.name, "PUMP_STOP not acknowledged", port=self.port)


@contextlib.asynccontextmanager
async def running(driver: Driver) -> AsyncIterator[None]:
    task = asyncio.create_task(driver.run())
    try:
        yield
    finally:
        await driver.stop()
        await asyncio.wait_for(task, 2)


async def until(condition: object, timeout_s: float = 2.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.005)


async def drop_link_and_restore(driver: PumpDriver) -> None:
    driver.link_down = True
    await until(lambda: driver.health.state == HealthState.DISCONNECTED)
    driver.link_down = False
    await driver.wait_connected(2)


async def test_every_connect_puts_the_device_in_its_safe_state_before_it_shows_connected() -> None:
    driver = PumpDriver()
    async with running(driver):
        await driver.wait_connected(2)
        assert driver.safe_calls == [HealthState.CONNECTING]  # not yet connected: nobody could use it before
        await drop_link_and_restore(driver)
        assert len(driver.safe_calls) == 2 and HealthState.CONNECTED not in driver.safe_calls


async def test_a_claimed_device_is_left_as_its_procedure_set_it_and_safe_again_once_released() -> None:
    driver = PumpDriver()
    async with running(driver):
        await driver.wait_connected(2)
        with driver.claim(), driver.claim():  # claims nest (an item and a nested helper)
            await drop_link_and_restore(driver)
            assert len(driver.safe_calls) == 1  # only the first connect, before the claim
        assert not driver.claimed
        await drop_link_and_restore(driver)
        assert len(driver.safe_calls) == 2


async def test_a_safe_state_that_fails_fails_the_connect_until_it_holds() -> None:
    driver = PumpDriver()
    driver.safe_fails = 2
    errors: list[str] = []
    driver.add_health_listener(lambda _n, h: errors.append(h.last_error or ""))
    async with running(driver):
        await driver.wait_connected(2)
        assert driver.opens == 3 and len(driver.safe_calls) == 3  # two failed connects, retried after backoff
        assert any("safe state on connect (pump off) failed: " in e and "PUMP_STOP not acknowledged" in e
                   for e in errors)


async def test_a_device_without_a_dangerous_state_is_left_alone() -> None:
    driver = PumpDriver()
    driver.safe_state_action = None  # as the opacimeter: nothing to switch off
    async with running(driver):
        await driver.wait_connected(2)
        assert driver.safe_calls == []
