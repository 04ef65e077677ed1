"""The simulated driver: acts on the lane's prompts by poking the device simulators.

On a real lane a person reads the LED board ("brake now", "hold 2500 r/min")
and acts. Here a small MQTT client listens to `…/event`, and for each prompt
sends the control requests that `config/simulators/driver.toml` lists to the
simulators' control sockets. It meets the lane only on the wire (MQTT) and the
simulators only through their control sockets.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
from pathlib import Path
from typing import Any

import aiomqtt
import structlog

from protocols.datafiles import CONFIG_DIR
from simulators.control import send_control

log = structlog.get_logger("simulators.driver")

DEFAULT_SCRIPT = CONFIG_DIR / "simulators" / "driver.toml"


def load_script(path: Path = DEFAULT_SCRIPT) -> dict[str, Any]:
    with path.open("rb") as fh:
        return tomllib.load(fh)


def fill(template: Any, data: dict[str, Any]) -> Any:
    """Replace "{name}" strings in a request template with the prompt's data."""
    if isinstance(template, str) and template.startswith("{") and template.endswith("}"):
        return data.get(template[1:-1])
    if isinstance(template, dict):
        return {k: fill(v, data) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, data) for v in template]
    return template


class SimulatedDriver:
    def __init__(self, controls: dict[str, Path], script: dict[str, Any] | None = None) -> None:
        self.controls = controls  # simulator name -> control socket
        self.script = script or load_script()
        self.reaction_s = float(self.script.get("reaction_s", 0.2))
        self.actions_done: list[str] = []

    async def act(self, action: str, data: dict[str, Any]) -> None:
        steps = self.script.get("actions", {}).get(action)
        if steps is None:
            log.info("driver_ignores_prompt", action=action)
            return
        await asyncio.sleep(self.reaction_s)
        for simulator, requests in steps.items():
            socket = self.controls.get(simulator)
            if socket is None:
                continue
            for request in requests:
                try:
                    await send_control(socket, fill(request, data))
                except Exception as exc:  # the driver does not crash on a missing simulator
                    log.warning("driver_action_failed", action=action, simulator=simulator, error=str(exc))
        self.actions_done.append(action)
        log.info("driver_acted", action=action, data=data)

    async def run(self, host: str, port: int, lane_root: str) -> None:
        """Follow the lane's prompts until cancelled."""
        prompts: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

        async def follow() -> None:  # one prompt after the other, as a person would
            while True:
                action, data = await prompts.get()
                await self.act(action, data)

        worker = asyncio.create_task(follow())
        try:
            while True:  # a lane's display comes back with the broker: so does this driver
                try:
                    async with aiomqtt.Client(host, port, identifier=f"sim-driver-{id(self)}") as client:
                        await client.subscribe(f"{lane_root}/event", qos=1)
                        async for message in client.messages:
                            try:
                                event = json.loads(bytes(message.payload))
                            except ValueError:
                                continue
                            if event.get("type") == "prompt" and event.get("action"):
                                prompts.put_nowait((event["action"], event.get("data") or {}))
                except aiomqtt.MqttError as exc:
                    log.warning("sim_driver_broker_lost", error=str(exc))
                    await asyncio.sleep(0.2)
        finally:
            worker.cancel()
