"""A lane's `[devices.NAME]` table for the CD-1 dynamometer: TCP or RTU, and a poll fast enough for its watchdog."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from drivers.dynamometer import DynamometerDriver
from laned.config import DeviceConfig, DynamometerConfig
from laned.devices import build_driver
from protocols.status import DeviceStatus

ADAPTER: TypeAdapter[DeviceConfig] = TypeAdapter(DeviceConfig)


def test_rtu_table_becomes_a_dynamometer_driver_at_19200_8e1() -> None:
    config = ADAPTER.validate_python({"kind": "dynamometer", "transport": {"type": "rtu", "port": "/dev/ttyUSB3"}})
    assert isinstance(config, DynamometerConfig)
    driver = build_driver("dyno", config)
    assert isinstance(driver, DynamometerDriver)
    assert (driver.link.transport, driver.link.baudrate, driver.link.parity, driver.link.unit_id) == ("rtu", 19200,
                                                                                                        "E", 1)
    assert driver.poll_interval_s == pytest.approx(0.2)  # 5 Hz by default
    assert driver.safe_state_action == "CONTROL_MODE 0, PAU off, motor off"


def test_tcp_table() -> None:
    config = ADAPTER.validate_python({"kind": "dynamometer", "transport": {"type": "tcp", "host": "192.168.10.21"},
                                      "poll_hz": 10})
    driver = build_driver("dyno", config)
    assert isinstance(driver, DynamometerDriver)
    assert driver.link.where == "192.168.10.21:502"


def test_a_poll_slower_than_2_hz_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="poll_hz"):
        ADAPTER.validate_python({"kind": "dynamometer", "transport": {"type": "tcp", "host": "h"}, "poll_hz": 1})


def test_the_status_document_accepts_a_dynamometer() -> None:
    driver = build_driver("dyno", ADAPTER.validate_python(
        {"kind": "dynamometer", "transport": {"type": "tcp", "host": "192.168.10.21"}}))
    entry = DeviceStatus.model_validate({**driver.health.as_dict(), "kind": driver.kind, "port": driver.port})
    assert (entry.kind, entry.port) == ("dynamometer", "192.168.10.21:502")
