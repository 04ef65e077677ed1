"""Shared fixtures: real brokers (embedded amqtt, and mosquitto where installed) on free ports."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from laned.broker import EmbeddedBroker, Mosquitto, mosquitto_path

# Tests assert behaviour, not speed: on a loaded machine (CI, the suite's two workers) neither
# an example's run time nor how fast examples are generated may fail a test.
settings.register_profile("laned", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("laned")

BROKER_KINDS = ["amqtt", pytest.param("mosquitto", marks=pytest.mark.mosquitto)]

#: what every skip for a missing tool says; in CI such a skip is a failure
NOT_INSTALLED = "is not installed"


def tools_required() -> bool:
    """CI installs every tool the tests use (.ci/run sets LANED_CI=1; most CI services set CI)."""
    return any(os.environ.get(name, "").lower() not in {"", "0", "false"} for name in ("LANED_CI", "CI"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """In CI a test never skips for a tool CI installs (mosquitto, mbpoll, socat, openssl, …): a skip
    whose reason says the tool "is not installed" is reported as a failure naming the tool."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and tools_required() and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        if NOT_INSTALLED in reason:
            report.outcome = "failed"
            report.longrepr = f"in CI a missing tool is a failure, not a skip: {reason}"


@pytest.fixture(params=BROKER_KINDS)
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A real MQTT broker on a free loopback port: the embedded amqtt one, and mosquitto if installed."""
    if request.param == "mosquitto":
        if mosquitto_path() is None:
            pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
        instance: Any = Mosquitto()
    else:
        instance = EmbeddedBroker()
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()


@pytest.fixture
async def amqtt_broker() -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker() as instance:
        yield instance


@pytest.fixture
async def mosquitto() -> AsyncIterator[Mosquitto]:
    if mosquitto_path() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    instance = Mosquitto()
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()
