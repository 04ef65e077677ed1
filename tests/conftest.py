"""Shared fixtures: real brokers (embedded amqtt, and mosquitto where installed) on free ports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from laned.broker import EmbeddedBroker, Mosquitto, mosquitto_path

# Tests assert behaviour, not speed: on a loaded machine (CI, the suite's two workers) neither
# an example's run time nor how fast examples are generated may fail a test.
settings.register_profile("laned", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("laned")

BROKER_KINDS = ["amqtt", pytest.param("mosquitto", marks=pytest.mark.mosquitto)]


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
