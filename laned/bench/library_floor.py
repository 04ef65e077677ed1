"""Figure 6's library floor: the gateway job through the libraries laned must use, and nothing of laned.

    python -m laned.bench.library_floor --brake-port PORT --broker HOST:PORT --root TOPIC

The brake tester's snapshot (input registers 0..15) read with pymodbus's `AsyncModbusTcpClient`
and published with `aiomqtt.Client.publish` (QoS 0) to `{root}/live/brake-tester` at 10 Hz on the
poll grid: one request and one message a poll, the job laned and the gateways do in figure 6. No
driver, no checks, no reconnecting, no outbox: each library called the plainest way its docs show,
with the settings laned uses on that path (TCP_NODELAY, `timeout=math.inf`). Beside the raw
floor (`floor_lane --brake-only`) it splits what a reading costs laned into what the machine
charges for the I/O, what the two libraries add to it, and what is laned's own
(`gateway_libfloor_…`, `gateway_laned_over_libfloor`). Never a lane: it checks nothing it reads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import socket
import time

import aiomqtt
from pymodbus.client import AsyncModbusTcpClient

from protocols import brake_tester as bt

POLL_S = 0.1


async def _run(args: argparse.Namespace, stop: asyncio.Event) -> None:
    host, port = args.broker.rsplit(":", 1)
    topic = f"{args.root}/live/brake-tester"
    modbus = AsyncModbusTcpClient("127.0.0.1", port=args.brake_port)
    if not await modbus.connect():
        raise SystemExit(f"cannot reach the brake tester on 127.0.0.1:{args.brake_port}")
    nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    async with aiomqtt.Client(host, int(port), identifier=f"laned-libfloor-{os.getpid()}",
                              socket_options=nodelay) as mqtt:
        loop = asyncio.get_running_loop()
        next_at = math.ceil(loop.time() / POLL_S) * POLL_S
        while not stop.is_set():
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += POLL_S
            reply = await modbus.read_input_registers(bt.SNAPSHOT_ADDRESS, count=bt.SNAPSHOT_COUNT, device_id=1)
            if reply.isError():
                continue
            r = reply.registers
            document = {
                "lane_time": time.time(), "left_force_n": r[0] << 16 | r[1], "right_force_n": r[2] << 16 | r[3],
                "left_load_n": r[4] << 16 | r[5], "right_load_n": r[6] << 16 | r[7], "left_speed_kmh": r[8] / 100,
                "right_speed_kmh": r[9] / 100, "state": r[10], "fault_code": r[11], "sample_index": r[12],
                "sample_rate_hz": r[13], "ring_size": r[14]}
            await mqtt.publish(topic, json.dumps(document, separators=(",", ":")).encode(), qos=0, timeout=math.inf)
    modbus.close()


async def _main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await _run(args, stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m laned.bench.library_floor", description=__doc__.split("\n")[0])
    parser.add_argument("--brake-port", type=int, required=True, help="brake tester Modbus TCP port on 127.0.0.1")
    parser.add_argument("--broker", required=True, help="HOST:PORT")
    parser.add_argument("--root", required=True, help="topic root, e.g. bench-libfloor")
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
