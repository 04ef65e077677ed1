"""The project's one error hierarchy, rooted here because every layer shares it.

`LaneError` is the root. Each subclass says who is at fault, and its message is
written for a lane technician: which device, which port, what was expected,
what came. `protocols/` raises only `ProtocolError`s; drivers add the
`DeviceError` family (drivers/errors.py); the daemon adds `ConfigError` and
`CommandRejected` (laned/errors.py).
"""

from __future__ import annotations


class LaneError(Exception):
    """Root of every error laned raises on purpose."""


class ProtocolError(LaneError):
    """Bytes or values that do not follow a device's manual."""


class FrameError(ProtocolError):
    """A received frame that is malformed: bad checksum, bad length, bad field.

    `raw` holds the offending bytes so a log line can show them in hex.
    """

    def __init__(self, reason: str, raw: bytes = b"") -> None:
        self.reason = reason
        self.raw = bytes(raw)
        shown = f" ({self.raw.hex(' ')})" if self.raw else ""
        super().__init__(f"{reason}{shown}")
