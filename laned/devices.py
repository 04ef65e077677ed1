"""From a device's configuration to its driver, and from its readings to live messages.

Whether the other end is a real analyzer on /dev/ttyUSB0 or a simulator on a
pty is a line of configuration, never a code path: this is the one place that
turns a `[devices.NAME]` table into a driver.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from typing import Any

from drivers.base import Backoff, Driver
from laned.config import BrakeTesterConfig, DeviceConfig, DynamometerConfig, GasAnalyzerConfig, OpacimeterConfig


def build_driver(name: str, config: DeviceConfig) -> Driver:
    backoff = Backoff(initial_s=config.reconnect_initial_s, max_s=config.reconnect_max_s)
    common: dict[str, Any] = {
        "backoff": backoff,
        "errors_to_disconnect": config.errors_to_disconnect,
    }
    if isinstance(config, GasAnalyzerConfig):
        from drivers.gas_analyzer import GasAnalyzerDriver

        return GasAnalyzerDriver(
            name,
            port=config.transport.port,
            baudrate=config.transport.baudrate,
            timeout_s=config.timeout_ms / 1000,
            retries=config.retries,
            poll_hz=config.poll_hz,
            **common,
        )
    if isinstance(config, OpacimeterConfig):
        from drivers.opacimeter import OpacimeterDriver

        return OpacimeterDriver(
            name,
            port=config.transport.port,
            baudrate=config.transport.baudrate,
            timeout_s=config.timeout_ms / 1000,
            zero_timeout_s=config.zero_timeout_ms / 1000,
            retries=config.retries,
            poll_hz=config.poll_hz,
            **common,
        )
    if isinstance(config, BrakeTesterConfig):
        from drivers.brake_tester import BrakeTesterDriver

        # live on: the driver follows the 100 Hz curve ring at poll_hz and each live message carries
        # the new samples (docs/performance.md); live off: the state registers alone
        return BrakeTesterDriver.from_config(name, config, follow_curve=follows_curve(config), **common)
    if isinstance(config, DynamometerConfig):
        from drivers.dynamometer import DynamometerDriver

        # every poll follows the 10 Hz sample ring: the live message carries the new samples
        return DynamometerDriver.from_config(name, config, **common)
    raise TypeError(f"no driver for device kind {type(config).__name__}")


def follows_curve(config: BrakeTesterConfig) -> bool:
    """Whether the brake tester's driver follows the curve ring for live messages: with live on,
    unless the table says `follow_curve = false`."""
    return config.live and config.follow_curve


_AS_IS = frozenset({int, str, bool, type(None)})
#: field names of each reading type, looked up once: `dataclasses.fields()` at every reading
#: was a tenth of a live message's cost (docs/performance.md)
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
#: a flag value's member names, by its type and value: a Flag's members are found by iterating its
#: class (an IntFlag equals any int of its value, so the type is part of the key)
_FLAG_NAMES: dict[tuple[type, Any], list[str]] = {}


def _plain(value: Any) -> Any:
    if type(value) in _AS_IS:
        return value
    if isinstance(value, enum.Flag) and not isinstance(value, enum.IntEnum):
        key = (type(value), value.value)
        names = _FLAG_NAMES.get(key)
        if names is None:
            names = _FLAG_NAMES[key] = [m.name.lower() for m in type(value) if m in value and m.name]
        return list(names)
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, (list, tuple)):  # the brake tester's curve samples: ints, no call each
        return [v if type(v) in _AS_IS else _plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def reading_to_live(device: str, kind: str, reading: Any) -> dict[str, Any]:
    """A live message: the reading's fields with their units in their names, and the lane's time."""
    names = _FIELD_NAMES.get(type(reading))
    if names is None and dataclasses.is_dataclass(reading) and not isinstance(reading, type):
        names = _FIELD_NAMES[type(reading)] = tuple(f.name for f in dataclasses.fields(reading))
    if names is not None:
        fields = {name: _plain(getattr(reading, name)) for name in names}
    elif isinstance(reading, dict):
        fields = _plain(reading)
    else:
        fields = {"value": _plain(reading)}
    return {
        "schema": f"live-{kind.replace('_', '-')}/1",
        "device": device,
        "lane_time": time.time(),
        "reading": getattr(type(reading), "live_reading", None) or type(reading).__name__,
        **fields,
    }
