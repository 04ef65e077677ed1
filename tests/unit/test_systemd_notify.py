"""The sd_notify side of the daemon: datagrams to the socket systemd names, on a socket the test binds.

Expected datagrams are written out from sd_notify(3) and systemd.service(5): newline-separated
`KEY=value` lines, `WATCHDOG=1` every half of `$WATCHDOG_USEC`, `EXTEND_TIMEOUT_USEC` in µs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from laned.systemd import SystemdNotifier, notify_address, watchdog_interval_from_env


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket on a short path (AF_UNIX paths are limited to 107 bytes)."""
    folder = tempfile.mkdtemp(prefix="sdn-")
    path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    try:
        yield sock, path
    finally:
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)


def drain(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting on `sock`, without waiting for more."""
    received = []
    sock.setblocking(False)
    try:
        while True:
            received.append(sock.recv(4096))
    except BlockingIOError:
        return received
    finally:
        sock.settimeout(5)


def test_ready_is_one_datagram_with_the_status_line(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("idle; ga connected; broker up; outbox 0") is True
    assert sock.recv(4096) == b"READY=1\nSTATUS=idle; ga connected; broker up; outbox 0"
    notifier.close()


def test_an_abstract_socket_is_named_with_a_leading_at() -> None:
    name = f"laned-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.watchdog() is True
        assert sock.recv(4096) == b"WATCHDOG=1"
        notifier.close()


def test_notify_addresses_path_abstract_and_unsupported() -> None:
    assert notify_address("/run/systemd/notify") == "/run/systemd/notify"
    assert notify_address("@/org/freedesktop/systemd1/notify/123") == "\0/org/freedesktop/systemd1/notify/123"
    assert notify_address("vsock:2:1234") is None
    assert notify_address("") is None
    assert notify_address(None) is None


def test_stopping_and_status_datagrams(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    notifier.status("inspection 370100202611010042: brake front axle; broker up; outbox 2")
    assert sock.recv(4096) == b"STATUS=inspection 370100202611010042: brake front axle; broker up; outbox 2"
    notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping: devices to their safe state"
    notifier.close()


def test_a_status_with_newlines_stays_one_assignment(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    notifier.status("broker down\nREADY=1")  # a device error text must not become a READY
    assert sock.recv(4096) == b"STATUS=broker down READY=1"
    notifier.close()


def test_ready_is_not_sent_once_stopping(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    notifier.stopping(None)
    assert sock.recv(4096) == b"STOPPING=1"
    assert notifier.ready("online") is False
    assert drain(sock) == []
    notifier.close()


@pytest.mark.parametrize(
    ("watchdog_usec", "expected_s"),
    [("1000000", 0.5), ("30000000", 15.0), ("20000000", 10.0), ("100000", 0.05)],
)
def test_the_watchdog_is_fed_at_half_of_watchdog_usec(watchdog_usec: str, expected_s: float) -> None:
    assert watchdog_interval_from_env({"WATCHDOG_USEC": watchdog_usec}) == pytest.approx(expected_s)
    notifier = SystemdNotifier({"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": watchdog_usec})
    assert notifier.watchdog_interval_s == pytest.approx(expected_s)


def test_no_watchdog_when_unset_invalid_or_meant_for_another_process() -> None:
    assert watchdog_interval_from_env({}) is None
    assert watchdog_interval_from_env({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval_from_env({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval_from_env({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}, pid=4242) is None
    assert watchdog_interval_from_env({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "4242"}, pid=4242) == 0.5


async def test_without_notify_socket_everything_is_a_silent_no_op() -> None:
    notifier = SystemdNotifier({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    with capture_logs() as logs:
        assert notifier.ready("online") is False
        assert notifier.status("idle") is False
        assert notifier.watchdog() is False
        assert notifier.stopping() is False
        await asyncio.wait_for(notifier.run(lambda: "idle"), 1)  # returns at once: nothing to feed
    assert logs == []
    notifier.close()


def test_a_socket_nobody_listens_on_is_logged_not_raised() -> None:
    folder = Path(tempfile.mkdtemp(prefix="sdn-"))
    try:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": str(folder / "gone")})
        with capture_logs() as logs:
            assert notifier.watchdog() is False
            assert notifier.watchdog() is False
        failures = [entry for entry in logs if entry["event"] == "systemd_notify_failed"]
        assert len(failures) == 1  # once per distinct problem, not once per heartbeat
        assert failures[0]["notify_socket"] == str(folder / "gone")
        notifier.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def receive_until(
    sock: socket.socket, count: int, predicate: Callable[[bytes], bool], timeout_s: float = 5.0
) -> list[bytes]:
    """Datagrams from `sock` until `count` of them satisfy `predicate`."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    received: list[bytes] = []

    async def collect() -> None:
        while sum(1 for d in received if predicate(d)) < count:
            received.append(await loop.sock_recv(sock, 4096))

    await asyncio.wait_for(collect(), timeout_s)
    return received


async def test_the_loop_feeds_the_watchdog_and_extends_the_start_only_until_ready(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    # WATCHDOG_USEC 100 ms: WATCHDOG=1 every 50 ms; before READY, EXTEND_TIMEOUT_USEC = 3 x 50 ms = 150000 µs
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"}, status_poll_s=10)
    feeder = asyncio.create_task(notifier.run(lambda: "starting"))
    try:
        before = await receive_until(sock, 3, lambda d: d == b"WATCHDOG=1")
        before += drain(sock)  # the extension sent in the same heartbeat as the last WATCHDOG=1
        assert before.count(b"EXTEND_TIMEOUT_USEC=150000") >= 2
        assert b"STATUS=starting" in before
        notifier.ready("idle; no devices; broker up; outbox 0")
        after = await receive_until(sock, 3, lambda d: d == b"WATCHDOG=1")
        assert after[0] == b"READY=1\nSTATUS=idle; no devices; broker up; outbox 0"
        assert not [d for d in after if d.startswith(b"EXTEND_TIMEOUT_USEC=")]
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
        notifier.close()


async def test_the_status_follows_the_lane_and_a_poke_sends_it_at_once(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    line = ["idle; ga connecting; broker down; outbox 0"]
    # no watchdog, polls far apart: only a change noticed through poke() can send the second line soon
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path}, status_poll_s=60, status_refresh_s=60)
    feeder = asyncio.create_task(notifier.run(lambda: line[0]))
    try:
        first = await receive_until(sock, 1, lambda d: d.startswith(b"STATUS="))
        assert b"STATUS=idle; ga connecting; broker down; outbox 0" in first
        line[0] = "idle; ga connected; broker up; outbox 0"
        notifier.poke()
        second = await receive_until(sock, 1, lambda d: d.startswith(b"STATUS="))
        assert [d for d in second if d.startswith(b"STATUS=")] == [b"STATUS=idle; ga connected; broker up; outbox 0"]
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
        notifier.close()


async def test_an_unchanged_status_is_refreshed(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path}, status_poll_s=0.02, status_refresh_s=0.05)
    feeder = asyncio.create_task(notifier.run(lambda: "idle; no devices; broker up; outbox 0"))
    try:
        received = await receive_until(sock, 3, lambda d: d == b"STATUS=idle; no devices; broker up; outbox 0")
        assert len([d for d in received if d.startswith(b"STATUS=")]) == 3
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
        notifier.close()


async def test_a_status_line_that_raises_does_not_stop_the_watchdog(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket

    def broken() -> str:
        raise RuntimeError("no lane yet")

    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"}, status_poll_s=0.02)
    feeder = asyncio.create_task(notifier.run(broken))
    try:
        received = await receive_until(sock, 3, lambda d: d == b"WATCHDOG=1")
        assert b"STATUS=status unavailable: RuntimeError('no lane yet')" in received
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
        notifier.close()
