"""`laned check-config`: beyond the schema, what a technician gets wrong on the lane PC itself.

- a serial port (`transport.port` of a serial or Modbus RTU device) that does not exist on this
  machine: the adapter is unplugged, or the path is mistyped (a warning: the config is valid, and the
  lane would run, showing the device disconnected until the port appears);
- one serial port given to two devices (by-id links resolved): both drivers would open it and
  read each other's replies (an error: exit 2), the same for one Modbus TCP host:port and unit id.
"""

from __future__ import annotations

import os
from pathlib import Path

from laned.config import LaneConfig

EXIT_CODES = """exit codes:
  0  the config is valid (a serial port missing on this machine is printed as a warning)
  2  invalid: every problem with its key path (or the environment variable it came from)"""


def port_problems(config: LaneConfig) -> tuple[list[str], list[str]]:
    """(errors, warnings), each naming the device's key path and the port."""
    errors: list[str] = []
    warnings: list[str] = []
    owners: dict[str, str] = {}
    for name, device in config.devices.items():
        if not device.enabled:
            continue
        transport = device.transport
        key = f"devices.{name}.transport"
        if transport.type == "tcp":
            where = f"{transport.host}:{transport.port} unit {getattr(device, 'unit_id', 1)}"
        else:
            path = Path(transport.port)
            if not path.exists():
                warnings.append(f"{key}.port: {transport.port} does not exist on this machine "
                                "(adapter unplugged, or the path mistyped? `ls /dev/serial/by-id/`)")
            where = os.path.realpath(path)
        if where in owners:
            errors.append(f"{key}: {where} is also given to devices.{owners[where]}: one port, one device")
        else:
            owners[where] = name
    return errors, warnings
