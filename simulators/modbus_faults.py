"""The timed faults of the two Modbus simulators (brake tester, dynamometer), written once.

A fault is on from `inject()` until its time runs out or `clear()`; while on it changes what the
device does (each simulator reads `fault_active`/`fault_params` where it matters) and, for
`silence` and `crc_error`, what goes out on the wire (`_trace_packet`). Each simulator keeps its
own `inject` (which faults it knows, and what switching one on does there), `now` and `sync`.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ModbusFaults:
    """Mixin: `faults` {name: (until, params)}, on the simulator's clock `now()`."""

    #: the device's name in the log events ("brake_tester", "dynamometer")
    device: ClassVar[str]
    #: the simulator's logger (its events keep the logger name they had)
    fault_log: ClassVar[Any]
    faults: dict[str, tuple[float, dict[str, Any]]]

    def now(self) -> float:
        raise NotImplementedError

    def sync(self) -> None:
        raise NotImplementedError

    def fault_active(self, name: str) -> bool:
        entry = self.faults.get(name)
        if entry is None:
            return False
        if self.now() >= entry[0]:
            del self.faults[name]
            self.fault_log.info("sim_fault_off", device=self.device, fault=name, reason="expired")
            return False
        return True

    def fault_params(self, name: str) -> dict[str, Any]:
        return self.faults.get(name, (0.0, {}))[1]

    def clear(self, fault: str | None = None) -> None:
        self.sync()
        if fault is None:
            self.faults.clear()
        else:
            self.faults.pop(fault, None)
        self.sync()
        self.fault_log.info("sim_fault_off", device=self.device, fault=fault or "all", reason="cleared")

    def _trace_packet(self, *, rtu: bool) -> Any:
        def trace(sending: bool, data: bytes) -> bytes:
            if not sending:
                return data
            if self.fault_active("silence"):
                return b""
            if rtu and data and self.fault_active("crc_error"):
                return data[:-1] + bytes([data[-1] ^ 0x5A])
            return data

        return trace
