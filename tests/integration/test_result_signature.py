"""A station in any language can check a result's signature: the signed bytes are the RFC 8785
canonical JSON of the result without `signature`, and `openssl` on the command line (no Python
in the check) verifies both algorithms: Ed25519 with the lane's public key, HMAC-SHA256 with
the shared key. `key_id` is the name configured on the lane, not something derived from the key."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from laned.config import parse_config
from laned.daemon import Lane
from protocols.canonical import canonical_json
from simulators.pda import PdaSimulator
from tests.e2e_helpers import send_command, start_command
from tests.helpers import lane_config_dict, subscriber

pytestmark = pytest.mark.integration
ROOT = "laned/v1/370100/T1"


def openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False)


async def one_result(tmp_path: Path, broker: Any, lane_settings: dict[str, Any]) -> bytes:
    """The safety result of an exterior-only inspection, as the station receives it over the broker."""
    data = lane_config_dict(tmp_path, broker)
    data["lane"] |= lane_settings
    lane = Lane(parse_config(data, "test", environ={}), startup_grace_s=0.5)
    task = asyncio.create_task(lane.run())
    try:
        await asyncio.wait_for(lane.mqtt.wait_connected(), 10)
        async with subscriber(broker.host, broker.port, f"{ROOT}/result/#") as station:
            await send_command(broker.host, broker.port, ROOT, "start",
                               start_command("gasoline-car", "370100202612070001", request_id="sig-1"))
            await asyncio.sleep(0.3)
            await PdaSimulator("gasoline-car", host=broker.host, port=broker.port,
                               base=f"{ROOT}/pda").capture("370100202612070001")
            return (await station.wait_for(lambda m: m.topic.endswith("/safety"))).payload
    finally:
        lane.request_stop()
        await asyncio.wait_for(task, 10)


def write_signed_parts(payload: bytes, where: Path) -> dict[str, Any]:
    """What a station writes before calling openssl: the canonical bytes and the signature."""
    document = json.loads(payload)
    signature = document.pop("signature")
    (where / "data").write_bytes(canonical_json(document))
    (where / "sig").write_bytes(bytes.fromhex(signature["value"]))
    return dict(signature)


async def test_an_ed25519_signed_result_verifies_with_openssl(tmp_path: Path, mosquitto: Any) -> None:
    # the key made by openssl, as a technician would: the lane reads it, the station gets the public half
    assert openssl("genpkey", "-algorithm", "ed25519", "-out", "lane.pem", cwd=tmp_path).returncode == 0
    assert openssl("pkey", "-in", "lane.pem", "-pubout", "-out", "pub.pem", cwd=tmp_path).returncode == 0
    payload = await one_result(tmp_path, mosquitto, {
        "signing_algorithm": "ed25519", "signing_key_file": str(tmp_path / "lane.pem"),
        "signing_key_id": "lane-T1-2026"})

    signature = write_signed_parts(payload, tmp_path)
    assert signature["algorithm"] == "Ed25519"
    assert signature["key_id"] == "lane-T1-2026"  # the configured name
    assert len(signature["value"]) == 128  # 64 bytes, hex
    checked = openssl("pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "data",
                      "-sigfile", "sig", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "Signature Verified Successfully"

    # one changed byte in the result, and openssl refuses it
    data = (tmp_path / "data").read_bytes()
    (tmp_path / "data").write_bytes(data.replace(b'"verdict":"pass"', b'"verdict":"fail"'))
    assert (tmp_path / "data").read_bytes() != data
    tampered = openssl("pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "data",
                       "-sigfile", "sig", cwd=tmp_path)
    assert tampered.returncode != 0
    assert "Signature Verification Failure" in tampered.stdout


async def test_an_hmac_signed_result_verifies_with_openssl(tmp_path: Path, mosquitto: Any) -> None:
    key = "station-shared-secret-7f3a"
    payload = await one_result(tmp_path, mosquitto, {"signing_key": key})

    signature = write_signed_parts(payload, tmp_path)
    assert signature["algorithm"] == "HMAC-SHA256"
    assert signature["key_id"] == "370100-T1"  # the default name: station-lane, not a hash of the key
    mac = openssl("dgst", "-sha256", "-mac", "HMAC", "-macopt", f"hexkey:{key.encode().hex()}", "data",
                  cwd=tmp_path)
    assert mac.returncode == 0, mac.stderr
    assert mac.stdout.strip() == f"HMAC-SHA2-256(data)= {signature['value']}"

