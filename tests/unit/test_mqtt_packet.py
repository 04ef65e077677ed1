"""The PUBLISH packet the bench's floor lane writes its live messages as (laned/bench/floor_lane.py
`publish_packet`): bytes from MQTT 3.1.1 §3.3 and §2.2.3 (remaining length, with the examples of
its table 2.4)."""

from __future__ import annotations

import pytest

from laned.bench.floor_lane import publish_packet


def test_a_small_publish_is_header_length_topic_and_payload() -> None:
    # 0x30: PUBLISH, QoS 0, no DUP, no RETAIN; remaining length 2 + 3 + 2 = 7; topic "a/b"; "hi"
    assert publish_packet(b"a/b", b"hi") == bytes.fromhex("30 07 0003 612f62 6869")


@pytest.mark.parametrize(("remaining", "encoded"), [
    (127, "7f"),          # table 2.4: one byte up to 127
    (128, "8001"),        # two bytes from 128
    (16383, "ff7f"),
    (16384, "808001"),    # three bytes from 16,384
])
def test_remaining_length_takes_seven_bits_a_byte_low_first(remaining: int, encoded: str) -> None:
    payload = b"x" * (remaining - 3)  # topic "t": its 2-byte length and 1 byte
    packet = publish_packet(b"t", payload)
    head = bytes.fromhex("30" + encoded + "0001") + b"t"
    assert packet[:len(head)] == head
    assert packet[len(head):] == payload


def test_a_non_ascii_topic_counts_its_utf8_bytes() -> None:
    topic = "laned/v1/370100/W1/live/größe".encode()
    packet = publish_packet(topic, b"{}")
    assert packet[1] == 2 + len(topic) + 2
    assert packet[2:4] == len(topic).to_bytes(2, "big") == b"\x00\x1f"
