"""The timed faults and the serving of the two Modbus simulators (brake tester, dynamometer),
written once.

The faults (`FAULTS`) are the same on both devices. A fault is on from `inject()` until its time
runs out or `clear()`; while on it changes what the
device does (each simulator reads `fault_active`/`fault_params` where it matters) and, for
`silence` and `crc_error`, what goes out on the wire (`_trace_packet`); `lost_link` pulls the
cable: the RTU bridge's and the TCP server's (`_tick`, `_set_link`). The servers themselves come up
and go down here too (`_tcp_up`, `_rtu_up`, `_serve_down`: a busy TCP port is one line naming the
device, not pymodbus's traceback). Each simulator keeps its physics (`model`, with `fault_cause` and
`advance_to`), its `FaultCode` enum (`fault_codes`) and `_server_parts` (its register image).
"""

from __future__ import annotations

import asyncio
from enum import IntEnum
from pathlib import Path
from typing import Any, ClassVar, Self

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from simulators.brake.rtu_line import PacedRtuBridge
from simulators.control import ControlServer
from simulators.line import LineTiming

#: how often the simulators look at their faults (the lost link's cable in and out)
TICK_S = 0.02
#: the faults either Modbus simulator can be given (the manuals' failure modes, and the cable)
FAULTS = frozenset({"silence", "crc_error", "exception", "frozen_index", "fault_code", "lost_link"})


class ModbusFaults:
    """Mixin: `faults` {name: (until, params)}, on the simulator's clock `now()`."""

    #: the device's name in the log events ("brake_tester", "dynamometer")
    device: ClassVar[str]
    #: the simulator's logger (its events keep the logger name they had)
    fault_log: ClassVar[Any]
    #: the device's FAULT_CODE values (protocols/…: FaultCode)
    fault_codes: ClassVar[type[IntEnum]]
    #: the device's physics: `fault_cause` and `advance_to(t)` on the simulator's clock
    model: Any
    _frozen_since: float | None
    _frozen_total: float
    _tasks: set[asyncio.Task[None]]
    faults: dict[str, tuple[float, dict[str, Any]]]
    tcp_address: tuple[str, int] | None
    tcp_port: int | None
    unit_id: int
    timing: LineTiming
    link: Path | None
    control_path: Path | None
    _loop: asyncio.AbstractEventLoop | None
    _t0: float
    _tcp_server: ModbusTcpServer | None
    _rtu_server: ModbusSerialServer | None
    _bridge: PacedRtuBridge | None
    _control: ControlServer | None
    _link_down: bool

    def now(self) -> float:
        assert self._loop is not None, "start() the simulator first"
        return self._loop.time()

    def sync(self) -> None:
        """Bring the device up to now: produce what is due, apply fault causes. While
        `frozen_index` is on the device stands still (its clock does not count that time)."""
        now = self.now()
        if self.fault_active("frozen_index"):
            if self._frozen_since is None:
                self._frozen_since = now
            return
        if self._frozen_since is not None:
            self._frozen_total += now - self._frozen_since
            self._frozen_since = None
        code = self.fault_params("fault_code").get("code", 1) if self.fault_active("fault_code") else None
        self.model.fault_cause = self.fault_codes(int(code)) if code is not None else None
        self.model.advance_to(now - self._t0 - self._frozen_total)

    def inject(self, fault: str, for_s: float | None = None, **params: Any) -> None:
        """Switch a fault on, for `for_s` seconds or until cleared."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(sorted(FAULTS))}")
        top = max(self.fault_codes)
        if fault == "fault_code" and not 1 <= int(params.get("code", 1)) <= top:
            raise ValueError(f"fault_code code {params['code']}: use 1–{top} (FAULT_CODE)")
        if fault == "exception" and int(params.get("code", 4)) not in {int(c) for c in ExcCodes}:
            raise ValueError(f"exception code {params['code']}: not a Modbus exception code")
        self.sync()  # what happened before the fault happened without it
        self.faults[fault] = (self.now() + for_s if for_s else float("inf"), params)
        self.sync()
        self.fault_log.info("sim_fault_on", device=self.device, fault=fault, for_s=for_s, **params)
        if fault == "lost_link" and not self._link_down and self._loop is not None:
            self._link_down = True
            self._spawn(self._set_link(up=False), f"{self.device}-link-down")

    def _spawn(self, coro: Any, name: str) -> None:
        """A task of the simulator's, kept until done (close() ends those still running)."""
        assert self._loop is not None
        task = self._loop.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _server_parts(self, unit_id: int, own_unit_only: int | None) -> tuple[Any, Any]:
        """The pymodbus SimDevice for `unit_id` and the simulator's datastore that serves it."""
        raise NotImplementedError

    def control(self, request: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _started(self) -> None:
        """The simulator's own tasks and its start line, once its servers are up."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    # ----- life -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """The clock from now, the servers the simulator was given (TCP, RTU, control), its tasks.
        Whatever fails on the way closes what was already up."""
        try:
            self._loop = asyncio.get_running_loop()
            self._t0 = self._loop.time()
            self.sync()
            if self.tcp_address is not None:
                await self._tcp_up(*self.tcp_address)
            if self.link is not None:
                await self._rtu_up(self.link)
            if self.control_path is not None:
                self._control = ControlServer(self.control_path, self.control)
                await self._control.start()
            self._started()
        except BaseException:
            await self.close()
            raise

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

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

    # ----- the servers ------------------------------------------------------------------------------

    async def _tcp_up(self, host: str, port: int) -> None:
        """Modbus TCP on host:port (any unit id answers, as a TCP device does)."""
        device, datastore = self._server_parts(0, None)
        server = ModbusTcpServer(device, address=(host, port), trace_packet=self._trace_packet(rtu=False))
        # pymodbus makes a plain SimCore of the SimDevice; the simulator's own datastore replaces it
        server.context = datastore
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus says only "Could not start listen"
            raise OSError(f"{self.device.replace('_', ' ')}: cannot listen on {host}:{port} (the port is in use, "
                          "or the address is not this machine's)") from exc
        self._tcp_server = server
        self.tcp_port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def _rtu_up(self, link: Path) -> None:
        """Modbus RTU behind a paced bridge at `link` (the line's own speed), only its own unit id."""
        self._bridge = PacedRtuBridge(link, self.timing, name=self.device)
        self._bridge.open()
        device, datastore = self._server_parts(self.unit_id, self.unit_id)
        self._rtu_server = ModbusSerialServer(
            device, framer=FramerType.RTU, port=self._bridge.inner_path, baudrate=self.timing.baud,
            parity="N",  # a pty carries no parity bit (Linux refuses PARENB there); the bridge's pacing counts it
            ignore_missing_devices=True, trace_packet=self._trace_packet(rtu=True),
        )
        self._rtu_server.context = datastore
        await self._rtu_server.serve_forever(background=True)

    async def _serve_down(self) -> None:
        """The control socket, the TCP server, the RTU server and its bridge, each if up."""
        if self._control is not None:
            await self._control.close()
        await self._tcp_down()
        if self._rtu_server is not None:
            await self._rtu_server.shutdown()  # type: ignore[no-untyped-call]
        if self._bridge is not None:
            self._bridge.close()

    # ----- the lost link ---------------------------------------------------------------------------

    async def _tcp_down(self) -> None:
        server, self._tcp_server = self._tcp_server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]

    async def _tick(self) -> None:
        while True:
            self.sync()
            down = self.fault_active("lost_link")
            if down != self._link_down:
                self._link_down = down
                try:
                    await self._set_link(up=not down)
                except Exception as exc:  # e.g. the TCP port is taken meanwhile: try again next tick
                    self.fault_log.error("sim_link_failed", device=self.device, up=not down, error=repr(exc))
                    self._link_down = not down
            await asyncio.sleep(TICK_S)

    async def _set_link(self, *, up: bool) -> None:
        self.fault_log.info("sim_link", device=self.device, up=up)
        if self._bridge is not None:
            (self._bridge.cable_in if up else self._bridge.cable_out)()
        if self.tcp_address is not None:
            if up:
                await self._tcp_up(self.tcp_address[0], self.tcp_port or self.tcp_address[1])
            else:
                await self._tcp_down()
