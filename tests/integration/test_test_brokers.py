"""The brokers and ports the tests, the demo and the bench start their servers on.

Tests stop and restart brokers and simulators on the same port while other tests run beside them
(xdist). A port from the kernel's ephemeral range can be handed to someone else meanwhile, and a
restarted broker that finds its port taken must say so, not pass for ready because something else
answers there (CI once saw a lane time out three connects against such a stranger)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from laned.broker import Mosquitto, free_port

pytestmark = pytest.mark.integration


def test_free_ports_are_never_ones_the_kernel_hands_out_by_itself() -> None:
    low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = {free_port() for _ in range(50)}
    assert all(not low <= port <= high for port in ports), sorted(ports)
    assert len(ports) > 40  # spread, so two tests' picks rarely meet
    for port in ports:  # and each really free to listen on
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_free_ports_differ_in_workers_whose_random_module_was_seeded_alike() -> None:
    """pytest-randomly seeds `random` with the same value in every xdist worker before each test:
    ports drawn from it would be the same in two tests running side by side."""
    import random

    random.seed(1234)
    first = [free_port() for _ in range(5)]
    random.seed(1234)
    second = [free_port() for _ in range(5)]
    assert first != second


@pytest.mark.mosquitto
async def test_a_mosquitto_whose_port_is_taken_fails_to_start_instead_of_passing_for_ready() -> None:
    with socket.socket() as stranger:  # a server that took the port while the broker was down
        stranger.bind(("127.0.0.1", free_port()))
        stranger.listen()
        broker = Mosquitto(port=stranger.getsockname()[1])
        with pytest.raises((RuntimeError, TimeoutError), match="mosquitto"):
            await broker.start(timeout_s=5)
        await broker.stop()


@pytest.mark.mosquitto
async def test_a_mosquitto_restarted_on_its_port_is_ready_again() -> None:
    broker = Mosquitto()
    await broker.start()
    try:
        await broker.stop()
        await broker.start()
        with socket.create_connection((broker.host, broker.port), timeout=2) as client:
            client.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")  # CONNECT, clean, no id
            assert client.recv(4) == b"\x20\x02\x00\x00"  # CONNACK, accepted
    finally:
        await broker.stop()
