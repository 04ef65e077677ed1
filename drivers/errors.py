"""Errors of device I/O. Each names the device and its port."""

from __future__ import annotations

from protocols.errors import LaneError


class DeviceError(LaneError):
    """Something went wrong talking to one device."""

    def __init__(self, device: str, message: str, *, port: str | None = None) -> None:
        where = f"{device} on {port}" if port else device
        for prefix in (f"{where}: ", f"{device}: "):  # an earlier error's text passed on: name the device once
            message = message.removeprefix(prefix)
        self.device = device
        self.port = port
        self.detail = message
        super().__init__(f"{where}: {message}")


class DeviceTimeout(DeviceError):
    """The device did not answer (in full) within its timeout."""


class DeviceRefused(DeviceError):
    """The device answered with a refusal: a NAK, an error reply, a Modbus exception."""


class DeviceUnavailable(DeviceError):
    """The port cannot be opened or was lost (unplugged adapter, closed connection)."""


class DeviceStale(DeviceError):
    """The device answers but its data stopped changing (frozen firmware)."""
