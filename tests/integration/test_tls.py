"""The lane on a TLS broker that requires client certificates, as a station runs it: a real
mosquitto with a test CA made here by the `openssl` CLI (the `cryptography` package is not in
the environment), the documented ACL, and the errors a technician sees when TLS is set up wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from structlog.testing import capture_logs

from laned.broker import Mosquitto, free_port, mosquitto_path
from laned.config import parse_config
from laned.daemon import Lane
from laned.daily_check_remote import run_through_daemon
from laned.lane_lock import LockOwner
from tests.helpers import ROOT, Received, Recorder

pytestmark = [
    pytest.mark.integration,
    pytest.mark.mosquitto,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl CLI is not installed"),
    pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed (apt-get install mosquitto)"),
]
LANE_CN = "laned-370100-L1"
ROOT_TOPIC = "laned/v1/370100/L1"


# ----- a test PKI -------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    folder: Path

    def crt(self, name: str) -> Path:
        return self.folder / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.folder / f"{name}.key"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(folder: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=folder)


def _make_leaf(folder: Path, ca: str, name: str, extensions: str) -> None:
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)
    (folder / f"{name}.ext").write_text(
        extensions + "\nkeyUsage=critical,digitalSignature\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=folder)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The station's CA; the broker's certificate for IP 127.0.0.1; lane, PDA and station client
    certificates; and another CA that signed none of them."""
    folder = tmp_path_factory.mktemp("pki")
    _make_ca(folder, "station-ca")
    _make_ca(folder, "other-ca")
    _make_leaf(folder, "station-ca", "broker", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
    for client in (LANE_CN, "pda-07", "station-370100"):
        _make_leaf(folder, "station-ca", client, "extendedKeyUsage=clientAuth")
    return Pki(folder)


# ----- a TLS broker and TLS clients ---------------------------------------------------------


@contextlib.asynccontextmanager
async def tls_mosquitto(pki: Pki, acl_file: Path | None = None) -> AsyncIterator[Mosquitto]:
    """mosquitto with a TLS listener that requires a client certificate and takes its CN as user name.
    `user` keeps mosquitto as whoever runs the test, so it can read the keys made here (as root it
    would otherwise switch to the `mosquitto` user before loading them)."""
    tls_port = free_port()
    config = (
        f"user {getpass.getuser()}\n"
        f"listener {tls_port} 127.0.0.1\n"
        f"cafile {pki.crt('station-ca')}\ncertfile {pki.crt('broker')}\nkeyfile {pki.key('broker')}\n"
        "require_certificate true\nuse_identity_as_username true\n"
        + (f"acl_file {acl_file}\n" if acl_file else "")
    )
    broker = Mosquitto(extra_config=config)
    await broker.start()
    broker.port = tls_port  # what the clients use from here on; the plain listener only served start()
    try:
        yield broker
    finally:
        await broker.stop()


def client_tls(pki: Pki, name: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.crt("station-ca")))
    context.load_cert_chain(str(pki.crt(name)), str(pki.key(name)))
    return context


@contextlib.asynccontextmanager
async def tls_client(
    pki: Pki, port: int, name: str, *subscriptions: str
) -> AsyncIterator[tuple[aiomqtt.Client, Recorder]]:
    """A client with certificate `name`, recording what it receives on `subscriptions`."""
    recorder = Recorder()
    identifier = f"{name}-test-{time.monotonic_ns()}"
    async with aiomqtt.Client("127.0.0.1", port, identifier=identifier, tls_context=client_tls(pki, name)) as client:
        for topic in subscriptions:
            await client.subscribe(topic, qos=1)

        async def pump() -> None:
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                recorder.messages.append(Received(str(message.topic), payload, bool(message.retain)))
                recorder.arrived.set()

        task = asyncio.create_task(pump())
        try:
            yield client, recorder
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def lane_config(tmp_path: Path, port: int, pki: Pki, *, host: str = "127.0.0.1", ca: str = "station-ca",
                ca_file: Path | None = None) -> dict[str, Any]:
    return {
        "lane": {"station": "370100", "lane": "L1", "state_dir": str(tmp_path / "state")},
        "mqtt": {
            "host": host, "port": port, "reconnect_initial_s": 0.1, "reconnect_max_s": 0.3,
            "tls": {"enabled": True, "ca_file": str(ca_file or pki.crt(ca)),
                    "cert_file": str(pki.crt(LANE_CN)), "key_file": str(pki.key(LANE_CN))},
        },
    }


@contextlib.asynccontextmanager
async def running(lane: Lane) -> AsyncIterator[Lane]:
    task = asyncio.create_task(lane.run())
    try:
        yield lane
    finally:
        lane.request_stop()
        await asyncio.wait_for(task, 15)


async def wait_logged(
    logs: list[dict[str, Any]], event: str, count: int, timeout_s: float = 15.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [entry for entry in logs if entry["event"] == event]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} {event!r} logged within {timeout_s} s: {[e['event'] for e in logs]}")


# ----- the tests ------------------------------------------------------------------------------


async def test_a_lane_with_its_client_certificate_connects_over_tls(tmp_path: Path, pki: Pki) -> None:
    async with tls_mosquitto(pki) as broker, tls_client(pki, broker.port, "station-370100", f"{ROOT_TOPIC}/status") as (
        _,
        station,
    ):
        lane = Lane(parse_config(lane_config(tmp_path, broker.port, pki), "test", environ={}), startup_grace_s=0.5)
        async with running(lane):
            online = await station.wait_status("online", timeout_s=15)
            assert online["lane"] == "L1"
        await station.wait_status("offline")
    # the broker knew the lane by its certificate's name
    assert f"u'{LANE_CN}'" in (broker.workdir / "mosquitto.log").read_text()


@pytest.mark.parametrize(
    ("case", "expected_error", "expected_hint"),
    [
        ("wrong CA file", "CERTIFICATE_VERIFY_FAILED", "not signed by mqtt.tls.ca_file"),
        ("host not in the broker's certificate", "mismatch", "does not name mqtt.host 'localhost'"),
    ],
)
async def test_a_lane_that_cannot_trust_the_broker_does_not_connect_and_says_why(
    tmp_path: Path, pki: Pki, case: str, expected_error: str, expected_hint: str
) -> None:
    # the broker's certificate names IP 127.0.0.1 only: "localhost" reaches it but is not in it
    settings = {"ca": "other-ca"} if case == "wrong CA file" else {"host": "localhost"}
    async with tls_mosquitto(pki) as broker, tls_client(pki, broker.port, "station-370100", f"{ROOT_TOPIC}/#") as (
        _,
        station,
    ):
        lane = Lane(parse_config(lane_config(tmp_path, broker.port, pki, **settings), "test", environ={}),
                    startup_grace_s=0.5)
        with capture_logs() as logs:
            async with running(lane):
                failures = await wait_logged(logs, "mqtt_connect_failed", 2)
                assert not lane.mqtt.connected
                assert "broker down" in lane.status_line()
        first = failures[0]
        assert expected_error in first["error"]
        assert expected_hint in first["hint"]
        assert first["broker"] == f"{settings.get('host', '127.0.0.1')}:{broker.port}"
        assert first["tls_ca_file"] == str(pki.crt(settings.get("ca", "station-ca")))
        assert not [e for e in logs if e["event"] == "mqtt_connected"]
        assert station.messages == []  # not even the will: the lane never got in


async def test_a_ca_file_that_cannot_be_read_is_logged_with_its_path_and_retried(tmp_path: Path, pki: Pki) -> None:
    missing = tmp_path / "etc" / "station-ca.crt"
    async with tls_mosquitto(pki) as broker:
        lane = Lane(parse_config(lane_config(tmp_path, broker.port, pki, ca_file=missing), "test", environ={}),
                    startup_grace_s=0.5)
        with capture_logs() as logs:
            async with running(lane):
                failures = await wait_logged(logs, "mqtt_connect_failed", 2)  # retried, not given up
                assert str(missing) in failures[0]["hint"]
                assert "No such file" in failures[0]["error"]
                # the file appears (a technician copies it): the lane connects without a restart
                missing.parent.mkdir(parents=True)
                shutil.copy(pki.crt("station-ca"), missing)
                await wait_logged(logs, "mqtt_connected", 1)


# ----- the documented ACL ---------------------------------------------------------------------------


def documented_acl() -> str:
    """The acl_file of docs/broker-acl.md: the conf block after its `acl_file: tested` marker."""
    text = (ROOT / "docs" / "broker-acl.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- acl_file: tested by tests/integration/test_tls.py -->\n```conf\n(.*?)```", text, re.S)
    assert match, "docs/broker-acl.md lost its tested acl_file block"
    return match.group(1)


async def test_the_documented_acl_lets_each_client_do_its_part_and_nothing_else(tmp_path: Path, pki: Pki) -> None:
    acl = tmp_path / "laned.acl"
    acl.write_text(documented_acl())
    async with (
        tls_mosquitto(pki, acl_file=acl) as broker,
        tls_client(pki, broker.port, "station-370100", "laned/v1/370100/#") as (station_client, station),
        tls_client(pki, broker.port, "pda-07", f"{ROOT_TOPIC}/pda/ack/#") as (pda_client, pda),
    ):
        lane = Lane(parse_config(lane_config(tmp_path, broker.port, pki), "test", environ={}), startup_grace_s=0.5)
        async with running(lane):
            await station.wait_status("online", timeout_s=15)  # the lane writes its status

            # the station's command reaches the lane, whose reply reaches the station
            await station_client.publish(f"{ROOT_TOPIC}/cmd/hello", b'{"request_id": "r-1"}', qos=1)
            reply = await station.wait_for(lambda m: m.topic == f"{ROOT_TOPIC}/reply/r-1")
            assert reply.json()["accepted"] is False

            # the PDA's capture reaches the lane, whose ack reaches the PDA
            capture = b'{"schema": "pda-capture/1", "capture_id": "c-1"}'
            await pda_client.publish(f"{ROOT_TOPIC}/pda/capture", capture, qos=1)
            ack = await pda.wait_for(lambda m: m.topic == f"{ROOT_TOPIC}/pda/ack/c-1")
            assert ack.json()["capture_id"] == "c-1"

            # what each may not do is dropped by the broker; a permitted message sent after it by the
            # same client arrives, so the forbidden one would have arrived before it
            async with tls_client(pki, broker.port, LANE_CN) as (impostor, _):
                await impostor.publish(f"{ROOT_TOPIC}/cmd/start", b'{"request_id": "forged"}', qos=1)
                await impostor.publish("laned/v1/370100/L2/result/safety", b'{"forged": true}', qos=1)
                await impostor.publish(f"{ROOT_TOPIC}/event", b'{"marker": "lane"}', qos=1)
            await station.wait_for(lambda m: m.payload == b'{"marker": "lane"}')
            await pda_client.publish(f"{ROOT_TOPIC}/result/safety", b'{"forged": true}', qos=1)
            await pda_client.publish(f"{ROOT_TOPIC}/status", b'{"state": "online", "forged": true}', qos=1)
            await pda_client.publish(f"{ROOT_TOPIC}/pda/capture", b'{"marker": "pda"}', qos=1)
            await station.wait_for(lambda m: m.payload == b'{"marker": "pda"}')
            forged = [m for m in station.messages if b"forged" in m.payload]
            assert forged == []
            assert not [m for m in station.messages if m.topic.endswith("/reply/forged")]


async def test_laned_daily_check_on_the_lane_pc_may_ask_its_running_lane_under_the_documented_acl(
        tmp_path: Path, pki: Pki) -> None:
    """`laned daily-check` with a daemon running sends `…/cmd/daily-check` as the lane's own identity."""
    acl = tmp_path / "laned.acl"
    acl.write_text(documented_acl())
    async with tls_mosquitto(pki, acl_file=acl) as broker:
        config = parse_config(lane_config(tmp_path, broker.port, pki), "test", environ={})
        lane = Lane(config, startup_grace_s=0.5)
        async with running(lane):
            await lane.mqtt.wait_connected(15)
            said: list[str] = []
            owner = LockOwner(4321, "run", "laned run --config lane1.toml", time.time())
            outcome = await run_through_daemon(config, owner, ["zero"], say=said.append)
    # the lane got the command, answered it, and its events came back: it has no analyzer to check
    assert outcome == 3, said
    assert said[1:4] == [
        "daily check: [step_started] daily checks: zero",  # the checks the command asked for
        "daily check: [warning] this lane has no gas analyzer configured",
        "daily check: [step_finished] daily checks: none run",
    ]
