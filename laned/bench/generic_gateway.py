"""The smallest honest generic Modbus-to-MQTT gateway: poll registers, publish them as JSON.

The bench's fallback when modbus4mqtt cannot be installed: what a user would write
in an afternoon with pymodbus (sync client) and paho-mqtt, nothing tuned. It polls
input registers 0..15 of the brake tester over Modbus TCP every `--interval-s` and
publishes each poll as one JSON object (the same fields modbus4mqtt is configured with)
on `{prefix}/brake/snapshot`, QoS 0.

    python -m laned.bench.generic_gateway --modbus HOST:PORT --broker HOST:PORT [--interval-s 0.1]
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from typing import Any

#: (name, first register, kind) of input registers 0..15 (spec/devices/brake-tester.md)
FIELDS = [("left_force_n", 0, "int32"), ("right_force_n", 2, "int32"), ("left_load_n", 4, "int32"),
          ("right_load_n", 6, "int32"), ("left_speed_kmh", 8, "speed"), ("right_speed_kmh", 9, "speed"),
          ("state", 10, "uint16"), ("fault_code", 11, "uint16"), ("sample_index", 12, "uint16"),
          ("sample_rate_hz", 13, "uint16"), ("ring_size", 14, "uint16")]


def decode(registers: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, address, kind in FIELDS:
        if kind == "int32":
            value = (registers[address] << 16) | registers[address + 1]
            out[name] = value - (1 << 32) if value & 0x80000000 else value
        elif kind == "speed":
            out[name] = registers[address] / 100
        else:
            out[name] = registers[address]
    return out


def main(argv: list[str] | None = None) -> None:
    import paho.mqtt.client as mqtt
    from pymodbus.client import ModbusTcpClient

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modbus", required=True, help="HOST:PORT of the Modbus TCP device")
    parser.add_argument("--broker", required=True, help="HOST:PORT of the MQTT broker")
    parser.add_argument("--prefix", default="bench-gateway")
    parser.add_argument("--interval-s", type=float, default=0.1)
    args = parser.parse_args(argv)
    modbus_host, _, modbus_port = args.modbus.rpartition(":")
    broker_host, _, broker_port = args.broker.rpartition(":")
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)  # type: ignore[attr-defined]
    client.connect(broker_host, int(broker_port))
    client.loop_start()
    modbus = ModbusTcpClient(modbus_host, port=int(modbus_port), timeout=1)
    modbus.connect()  # type: ignore[no-untyped-call]
    topic = f"{args.prefix}/brake/snapshot"
    next_at = time.monotonic()
    while running[0]:
        reply = modbus.read_input_registers(0, count=16, device_id=1)
        if not reply.isError():
            client.publish(topic, json.dumps(decode(list(reply.registers))), qos=0)
        next_at += args.interval_s
        time.sleep(max(0.0, next_at - time.monotonic()))
    client.loop_stop()
    modbus.close()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
