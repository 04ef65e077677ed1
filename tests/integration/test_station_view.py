"""The station software's side, done with nothing of ours: `mosquitto_pub` sends the start,
`mosquitto_sub` receives the replies and results from a real mosquitto, and the PDA simulator
sends the capture. Exactly one result per platform must arrive, valid against the shipped
schemas, with what the vehicle file says (diesel-truck, exterior only).

And the platform mappings are data: a changed mapping file changes the published names and
codes with no change to the code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from laned.config import PROJECT_CONFIG_DIR, parse_config
from laned.daemon import Lane
from laned.results import verify
from simulators.pda import PdaSimulator
from tests.e2e_helpers import send_command, start_command
from tests.helpers import lane_config_dict, subscriber
from tests.integration.test_messages_match_schemas import schema_errors

pytestmark = pytest.mark.integration

ROOT = "laned/v1/370100/T1"
KEY = "station-key"
INSPECTION_NO = "370100202611280777"


@contextlib.asynccontextmanager
async def running_lane(tmp_path: Path, broker: Any, **lane: Any) -> AsyncIterator[Lane]:
    data = lane_config_dict(tmp_path, broker)
    data["lane"] |= {"signing_key": KEY, **lane}
    daemon = Lane(parse_config(data, "test", environ={}), startup_grace_s=0.5)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.mqtt.wait_connected(), 10)
        yield daemon
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 10)


class MosquittoSub:
    """`mosquitto_sub -v` on the lane's topics: one line per message, topic then payload."""

    def __init__(self, host: str, port: int, topics: list[str]) -> None:
        self.argv = ["mosquitto_sub", "-h", host, "-p", str(port), "-q", "1", "-v"]
        for topic in topics:
            self.argv += ["-t", topic]
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> MosquittoSub:
        self.proc = await asyncio.create_subprocess_exec(*self.argv, stdout=asyncio.subprocess.PIPE)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        await self.proc.wait()

    async def next(self, topic_suffix: str, timeout_s: float = 30) -> dict[str, Any]:
        """The next message whose topic ends with `topic_suffix` (others are kept in `messages`)."""
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), max(0.01, deadline - time.monotonic()))
            if not line:
                raise AssertionError(f"mosquitto_sub ended before a message on …{topic_suffix}")
            topic, _, payload = line.decode("utf-8").rstrip("\n").partition(" ")
            document = json.loads(payload)
            self.messages.append((topic, document))
            if topic.endswith(topic_suffix):
                return document

    async def drain(self, for_s: float) -> None:
        """Whatever else arrives within `for_s` seconds, into `messages`."""
        with contextlib.suppress(TimeoutError):
            await self.next("/never", timeout_s=for_s)


async def mosquitto_pub(host: str, port: int, topic: str, document: dict[str, Any]) -> None:
    proc = await asyncio.create_subprocess_exec(
        "mosquitto_pub", "-h", host, "-p", str(port), "-q", "1", "-t", topic, "-m", json.dumps(document)
    )
    assert await proc.wait() == 0


async def test_a_station_on_mosquitto_clients_gets_exactly_one_valid_result_per_platform(
    tmp_path: Path, mosquitto: Any
) -> None:
    if shutil.which("mosquitto_pub") is None or shutil.which("mosquitto_sub") is None:
        pytest.skip("mosquitto_pub / mosquitto_sub are not installed (apt-get install mosquitto-clients)")
    host, port = mosquitto.host, mosquitto.port
    async with running_lane(tmp_path, mosquitto):
        topics = [f"{ROOT}/status", f"{ROOT}/reply/#", f"{ROOT}/result/#"]
        async with MosquittoSub(host, port, topics) as station:
            await station.next("/status")  # the retained status: subscribed
            start = start_command("diesel-truck", INSPECTION_NO, request_id="mq-1")
            await mosquitto_pub(host, port, f"{ROOT}/cmd/start", start)
            reply = await station.next("/reply/mq-1")
            assert (reply["accepted"], reply["reasons"]) == (True, [])
            acks = await PdaSimulator("diesel-truck", host=host, port=port, base=f"{ROOT}/pda").capture(INSPECTION_NO)
            assert acks[-1].complete is True
            await station.next("/result/safety")
            await station.next("/result/emissions")
            await station.drain(1.5)  # and nothing more: no second copy of either

    results = [(topic.rsplit("/", 1)[1], doc) for topic, doc in station.messages if "/result/" in topic]
    assert [platform for platform, _ in results] == ["safety", "emissions"]
    safety, emissions = (doc for _, doc in results)
    for result in (safety, emissions):
        assert schema_errors(result) == []
        assert verify(result, KEY.encode())
        assert result["inspection_no"] == INSPECTION_NO and result["verdict"] == "pass"
        assert result["vehicle"]["vin"] == "LZZ1CLSB4MA123456" and result["vehicle"]["odometer_km"] == 286410
        # the truck's PDA runs 150 s behind the lane: a positive offset of 150 s plus the upload
        assert 149.0 < result["clocks"]["pda_clock_offset_s"] < 155.0
    # the vehicle file's capture: nine photos, split by platform (config/platforms/*.toml)
    assert {p["photo"]: p["code"] for p in safety["photos"]} == {
        "front_left_45": "0111", "rear_right_45": "0112", "vin": "0113", "cabin": "0115", "tyre_size": "0136",
    }
    assert {p["photo"]: p["code"] for p in emissions["photos"]} == {
        "front_left_45": "E01", "rear_right_45": "E02", "vin": "E03", "odometer": "E04", "tailpipe": "E05",
        "obd_port": "E06", "emission_controls": "E07",
    }
    assert [(i["code"], i["verdict"]) for i in safety["items"]] == [("F1", "pass")]
    assert [(i["code"], i["verdict"]) for i in emissions["items"]] == [("WJ", "pass"), ("OBD", "pass")]
    checks = {c["item"]: c for c in safety["items"][0]["checks"]}
    assert checks["fire_extinguisher"]["result"] == "na"
    assert checks["reflective_marking"]["note"] == "rear marking faded but complete"
    assert "fire_extinguisher" not in {c["item"] for c in emissions["items"][0]["checks"]}  # S only


async def test_a_changed_platform_mapping_changes_the_published_names_without_code(
    tmp_path: Path, amqtt_broker: Any
) -> None:
    platforms = tmp_path / "platforms"
    shutil.copytree(PROJECT_CONFIG_DIR / "platforms", platforms)
    mapping = platforms / "safety.toml"
    text = mapping.read_text(encoding="utf-8")
    edits = [('plate = "hphm"', 'plate = "plate_number"'), ('vin = "0113"', 'vin = "0199"'),
             ('pass = "1"', 'pass = "P"'), ('time_format = "%Y-%m-%d %H:%M:%S"', 'time_format = "%Y%m%d%H%M%S"')]
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    mapping.write_text(text, encoding="utf-8")
    host, port = amqtt_broker.host, amqtt_broker.port
    async with (
        running_lane(tmp_path, amqtt_broker, platforms_dir=str(platforms)),
        subscriber(host, port, f"{ROOT}/result/#") as station,
    ):
        await send_command(host, port, ROOT, "start", start_command("diesel-truck", INSPECTION_NO))
        await asyncio.sleep(0.3)
        await PdaSimulator("diesel-truck", host=host, port=port, base=f"{ROOT}/pda").capture(INSPECTION_NO)
        safety = (await station.wait_for(lambda m: m.topic.endswith("/result/safety"))).json()
        emissions = (await station.wait_for(lambda m: m.topic.endswith("/result/emissions"))).json()

    record = safety["platform_record"]
    assert record["plate_number"] == "鲁NA7321" and "hphm" not in record
    assert record["zpd"] == "P"
    assert {p["zpzl"] for p in record["zplb"]} == {"0111", "0112", "0199", "0115", "0136"}
    assert all(len(p["pssj"]) == len("20261128090000") and p["pssj"].isdigit() for p in record["zplb"])
    assert {p["code"] for p in safety["photos"]} == {"0111", "0112", "0199", "0115", "0136"}
    # the other platform's file was not touched: its names are as shipped
    assert emissions["platform_record"]["HPHM"] == "鲁NA7321"
