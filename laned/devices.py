"""From a device's configuration to its driver, and from its readings to live messages.

Whether the other end is a real analyzer on /dev/ttyUSB0 or a simulator on a
pty is a line of configuration, never a code path: this is the one place that
turns a `[devices.NAME]` table into a driver.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog

from drivers.base import Backoff, Driver
from laned.config import BrakeTesterConfig, DeviceConfig, DynamometerConfig, GasAnalyzerConfig, OpacimeterConfig
from protocols.brake_tester import INDEX_MODULUS

log = structlog.get_logger("laned.live")
#: readings a live device holds between two messages at most; past it the oldest go
LIVE_BATCH_MAX = 500


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


#: the fields that carry curve samples (the brake tester's): a message holds every sample of the
#: readings it gathers, each once, in order, starting at `first_sample_index`
_CURVE_FIELDS = ("first_sample_index", "left_force_dan", "right_force_dan")
#: fields naming which curve the samples belong to: readings that differ in them never share a message
_SERIES_FIELDS = ("axle_no", "test")


def reading_fields(reading: Any) -> dict[str, Any]:
    """A reading's fields as JSON values, with the name of its kind under `reading`."""
    names = _FIELD_NAMES.get(type(reading))
    if names is None and dataclasses.is_dataclass(reading) and not isinstance(reading, type):
        names = _FIELD_NAMES[type(reading)] = tuple(f.name for f in dataclasses.fields(reading))
    if names is not None:
        fields = {name: _plain(getattr(reading, name)) for name in names}
    elif isinstance(reading, dict):
        fields = _plain(reading)
    else:
        fields = {"value": _plain(reading)}
    return {"reading": getattr(type(reading), "live_reading", None) or type(reading).__name__, **fields}


def live_messages(device: str, kind: str, batch: list[tuple[float, Any]]) -> list[dict[str, Any]]:
    """The live messages for the readings (lane time, reading) gathered since the last, oldest first:
    one, unless the batch holds readings of different kinds or curves that do not follow on.

    A message is the newest reading's fields at the top level, as a message of one reading always
    was, plus `readings`: every reading it gathers, oldest first, the newest included, each with its
    `lane_time`. Curve samples are not repeated there: the top level's `left_force_dan` and
    `right_force_dan` hold all of them, from `first_sample_index` on."""
    messages: list[dict[str, Any]] = []
    message: dict[str, Any] = {}
    next_index: int | None = None  # the sample index the message's curve goes on with (None: no samples yet)
    for lane_time, reading in batch:
        fields = reading_fields(reading)
        samples = bool(fields.get("left_force_dan"))
        if not message or not _follows_on(message, fields, next_index if samples else None):
            message = {"schema": f"live-{kind.replace('_', '-')}/1", "device": device, "readings": []}
            messages.append(message)
            next_index = None
        entry = {name: value for name, value in fields.items() if name not in _CURVE_FIELDS}
        message["readings"].append({"lane_time": lane_time, **entry})
        curve = {name: message[name] for name in _CURVE_FIELDS if name in message}  # the samples so far
        message.update(lane_time=lane_time, **fields)  # the newest reading at the top level
        if next_index is not None:
            if samples:  # the samples so far, then this reading's
                curve["left_force_dan"] = curve["left_force_dan"] + fields["left_force_dan"]
                curve["right_force_dan"] = curve["right_force_dan"] + fields["right_force_dan"]
            message.update(curve)
        if message.get("left_force_dan"):
            next_index = (message["first_sample_index"] + len(message["left_force_dan"])) % INDEX_MODULUS
    for message in messages:  # `readings` last, after the fields a reader of one reading looks for
        message["readings"] = message.pop("readings")
    return messages


def _follows_on(message: dict[str, Any], fields: dict[str, Any], next_index: int | None) -> bool:
    """Whether a reading joins `message`: the same kind of reading of the same curve, and its
    samples, if it has any and the message has some, the ones after the message's (`next_index`)."""
    if fields["reading"] != message["reading"]:
        return False
    if any(fields.get(name) != message.get(name) for name in _SERIES_FIELDS):
        return False
    return next_index is None or fields["first_sample_index"] % INDEX_MODULUS == next_index


def reading_to_live(device: str, kind: str, reading: Any) -> dict[str, Any]:
    """The live message of one reading: its fields with their units in their names, and the lane's time."""
    return live_messages(device, kind, [(time.time(), reading)])[0]


class LiveSender:
    """One device's live messages: at most one per `interval_s` slot of the monotonic clock (the
    drivers' poll grid), each with every reading since the last.

    `add` is the driver's Broadcast listener, so it runs in the driver's turn: a reading that is
    the first of a new slot goes out at once with those held before it (a 10 Hz device at 10 Hz:
    every reading, at once); one in a slot that already had its message is held for the next
    slot's first reading (a 20 Hz device at 10 Hz: messages of two readings). A timer at the end
    of the next slot, a tick where the polls wake the process anyway, sends what is still held
    when no reading came to take it (the device stopped answering). No task, no wake-up of its
    own. (A timer at the next slot's start would send the held reading just before that slot's
    own, and then hold every reading a slot: a poll interval of latency on every message.)"""

    def __init__(
        self, device: str, kind: str, interval_s: float, publish: Callable[[str, dict[str, Any]], None]
    ) -> None:
        self.device, self.kind, self.interval_s = device, kind, interval_s
        self._publish = publish
        self.pending: deque[tuple[float, Any]] = deque(maxlen=LIVE_BATCH_MAX)
        self._slot = -1  # the slot of the last message
        self._timer: asyncio.TimerHandle | None = None

    def add(self, reading: Any) -> None:
        self.pending.append((time.time(), reading))
        slot = math.floor(time.monotonic() / self.interval_s)
        if slot != self._slot:
            self._send(slot)
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_at((slot + 2) * self.interval_s, self._send, slot + 2)

    def _send(self, slot: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._slot = slot
        if not self.pending:
            return
        batch = list(self.pending)
        self.pending.clear()
        try:
            for document in live_messages(self.device, self.kind, batch):
                self._publish(self.device, document)
        except Exception:  # a reading it cannot turn into JSON must not end the device's live messages
            log.exception("live_message_failed", device=self.device, readings=len(batch))

    def close(self) -> None:
        """No message after this: the timer, if set, is cancelled."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
