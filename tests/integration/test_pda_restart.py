"""A PDA upload cut by a crash of the daemon is not lost: the document and the photos that had
arrived stay in the state directory, the restarted lane acks at once what is still missing, and
the PDA's sending the rest completes the inspection. The real `laned run`, killed with SIGKILL
mid-upload (and stopped with SIGTERM, where the interrupted inspection must keep its capture
too), on mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from simulators.pda import PdaSimulator
from tests.e2e_helpers import send_command, start_command
from tests.helpers import ROOT, laned_command, subscriber, write_lane_toml

pytestmark = pytest.mark.integration
LANE_ROOT = "laned/v1/370100/T1"
PDA = f"{LANE_ROOT}/pda"
INSPECTION_NO = "370100202612070003"


@contextlib.contextmanager
def daemon(config: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(laned_command("run", "--config", str(config), "--log-format", "json"),
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


async def wait_journal(path: Path, photos: int, timeout_s: float = 10.0) -> None:
    """Until the lane's saved capture lists `photos` photos: what arrived is on disk."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            saved = json.loads(path.read_text(encoding="utf-8"))
            if len(saved["captures"][0]["photos"]) == photos:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never listed {photos} photos")


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
async def test_a_capture_cut_by_a_restart_is_completed_after_it(
        tmp_path: Path, mosquitto: Any, stop: signal.Signals) -> None:
    host, port = mosquitto.host, mosquitto.port
    config = write_lane_toml(tmp_path / "lane.toml", state_dir=tmp_path / "state", host=host, port=port)
    built = PdaSimulator("gasoline-car", host=host, port=port, base=PDA).build(INSPECTION_NO)
    names = list(built.photos)
    assert names == ["front_left_45", "rear_right_45", "vin", "cabin", "tyre_size", "odometer",
                     "tailpipe", "obd_port", "emission_controls"]  # the car's photos, as its file lists them
    ack_topic = f"{PDA}/ack/{built.capture_id}"

    async with subscriber(host, port, f"{LANE_ROOT}/#") as station, \
            aiomqtt.Client(host, port, identifier=f"pda-{uuid.uuid4().hex[:8]}") as pda:
        await pda.subscribe(ack_topic, qos=1)
        with daemon(config) as first:
            await station.wait_status("online", timeout_s=20)
            await send_command(host, port, LANE_ROOT, "start",
                               start_command("gasoline-car", INSPECTION_NO, request_id="kill-1"))
            reply = (await station.wait_for(lambda m: m.topic == f"{LANE_ROOT}/reply/kill-1")).json()
            assert reply["accepted"] is True
            await pda.publish(f"{PDA}/capture", built.payload, qos=1)
            first_ack = await station.wait_for(lambda m: m.topic == ack_topic)
            assert first_ack.json() == {"schema": "pda-ack/1", "capture_id": built.capture_id, "accepted": True,
                                        "complete": False, "missing_photos": names}
            for name in names[:4]:
                await pda.publish(f"{PDA}/photo/{built.capture_id}/{name}", built.photos[name], qos=1)
            await wait_journal(tmp_path / "state" / "captures" / f"{INSPECTION_NO}.json", photos=4)
            # mid-upload, five photos not sent: killed (no clean stop at all), or stopped by systemd
            first.send_signal(stop)
            await asyncio.to_thread(first.wait, 20)
        assert first.returncode == (-signal.SIGKILL if stop == signal.SIGKILL else 0)

        with daemon(config) as second:
            # unasked, the restarted lane tells the PDA what it still needs
            after_restart = await station.wait_for(lambda m: m.topic == ack_topic, timeout_s=20)
            assert json.loads(after_restart.payload) == {
                "schema": "pda-ack/1", "capture_id": built.capture_id, "accepted": True, "complete": False,
                "missing_photos": ["tyre_size", "odometer", "tailpipe", "obd_port", "emission_controls"],
            }
            # the PDA app sends its document again: the same answer
            await pda.publish(f"{PDA}/capture", built.payload, qos=1)
            again = await station.wait_for(lambda m: m.topic == ack_topic)
            assert again.payload == after_restart.payload
            # and the rest of the photos complete the capture
            for name in names[4:]:
                await pda.publish(f"{PDA}/photo/{built.capture_id}/{name}", built.photos[name], qos=1)
            complete = await station.wait_for(lambda m: m.topic == ack_topic)
            assert complete.json() == {"schema": "pda-ack/1", "capture_id": built.capture_id, "accepted": True,
                                       "complete": True, "missing_photos": []}
            safety = (await station.wait_for(lambda m: m.topic == f"{LANE_ROOT}/result/safety")).json()
            emissions = (await station.wait_for(lambda m: m.topic == f"{LANE_ROOT}/result/emissions")).json()
            second.send_signal(signal.SIGTERM)
            await asyncio.to_thread(second.wait, 20)

    for result in (safety, emissions):
        assert result["inspection_no"] == INSPECTION_NO and result["verdict"] == "pass"
        assert result["items"][0]["capture_id"] == built.capture_id
    # photos from before and after the crash, all in the results
    assert [p["photo"] for p in safety["photos"]] == ["front_left_45", "rear_right_45", "vin", "cabin", "tyre_size"]
    assert [p["photo"] for p in emissions["photos"]] == [
        "front_left_45", "rear_right_45", "vin", "odometer", "tailpipe", "obd_port", "emission_controls"]
    assert list((tmp_path / "state" / "captures").glob("*.json")) == []  # the inspection is over
