"""A control socket for a running simulator: faults and scenario changes on demand.

Every simulator started with `--control PATH` listens on a Unix socket for JSON
lines and answers each with one JSON line:

    {"fault": "silence", "for_s": 3}     switch a fault on (for_s optional)
    {"clear": "silence"}                 switch one fault off ({"clear": null}: all)
    {"do": "NAME", ...}                  a device-specific action (drive on an axle, remove the probe, ...)
    {"get": "state"}                     the simulator's state as JSON

The gas analyzer and the opacimeter also take the dynamometer's engine state, ten a second
while a vehicle is on the rollers (simulators/tailpipe.py; answered {"coupled": true, "rpm": …}):

    {"do": "engine_state", "rpm": 2350.0, "load": 0.62, "power_kw": 11.4, "speed_kmh": 25.1}

Try it with `socat - UNIX-CONNECT:PATH`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("simulators.control")

Handler = Callable[[dict[str, Any]], Any]


class ControlServer:
    def __init__(self, path: str | Path, handler: Handler) -> None:
        self.path = Path(path)
        self.handler = handler
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._client, path=str(self.path))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ValueError("a control request is a JSON object")
                    answer = {"ok": True, "result": self.handler(request)}
                except Exception as exc:  # a bad request is answered, never fatal
                    answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                    log.warning("sim_control_refused", request=line.decode(errors="replace").strip(), error=str(exc))
                writer.write(json.dumps(answer, default=str).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()


async def send_control(path: str | Path, request: dict[str, Any]) -> Any:
    """Send one control request to a simulator and return its result (raises on refusal)."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        answer = json.loads(await reader.readline())
    finally:
        writer.close()
    if not answer.get("ok"):
        raise RuntimeError(answer.get("error", "refused"))
    return answer.get("result")
