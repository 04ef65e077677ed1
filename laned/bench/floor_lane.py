"""The floor of figure 4: a bench lane's I/O done with as little Python as it can be.

    python -m laned.bench.floor_lane --gas LINK --opac LINK --brake-port PORT [--dyno-port PORT]
                                     --broker HOST:PORT --root TOPIC

The same requests and messages as a `laned run` lane at the bench's nominal rates, on the same
simulators and broker: on one 50 ms grid, READ_MAIN to the gas analyzer every other tick and
REALTIME to the opacimeter every tick (each reply read at the next tick, as laned does), the brake
tester's curve ring followed at 10 Hz over Modbus TCP (a block read of the samples since the last
poll, then a snapshot), the dynamometer's 10 Hz ring the same way at 10 Hz over Modbus TCP (the
samples up to the newest index seen, then the snapshot, input registers 0..19), and to
`{root}/live/{device}` ten QoS-0 messages a second a device, each
with the readings since the last (the opacimeter's two). No driver, no
health, no validation, no reconnecting: raw sockets, struct and json on one asyncio loop. What
this process costs is what the machine charges for the I/O alone (its wake-ups and system calls)
plus the least interpreter work that can carry it; figure 4 is compared against it
(`cpu_lane_over_floor`). Never a lane: it checks nothing it reads.

    python -m laned.bench.floor_lane --brake-only --brake-port PORT --broker HOST:PORT --root TOPIC

is figure 6's floor: the brake tester's snapshot (registers 0..15) read and published at 10 Hz,
the job laned and the gateway do there (`gateway_floor_cpu_ms_per_reading`).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import socket
import struct
import termios
import time
import tty

from protocols import brake_tester as bt
from protocols import dynamometer as dy
from protocols import gas_analyzer as ga
from protocols import opacimeter as op
from protocols.ring import INDEX_MODULUS

TICK_S = 0.05
SNAPSHOT = (bt.SNAPSHOT_ADDRESS, bt.SNAPSHOT_COUNT)  # input registers 0..15


def publish_packet(topic: bytes, payload: bytes) -> bytes:
    """One MQTT PUBLISH packet at QoS 0, not retained: the fixed header 0x30 and the remaining
    length (MQTT 3.1.1 §2.2.3: 7 bits a byte, low first, high bit = more), the UTF-8 topic with
    its 16-bit length, and the payload (no packet identifier at QoS 0, §3.3.2)."""
    remaining = 2 + len(topic) + len(payload)
    head = bytearray(b"\x30")
    while remaining > 0x7F:
        head.append(remaining & 0x7F | 0x80)
        remaining >>= 7
    head.append(remaining)
    head += len(topic).to_bytes(2, "big")
    head += topic
    head += payload
    return bytes(head)


def _open_port(path: str) -> io.FileIO:
    """The pty in raw mode at 9600 baud, non-blocking: `read` gives None when there is nothing."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    attrs[4] = attrs[5] = termios.B9600
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    return io.FileIO(fd, "r+b")


def _connect_mqtt(host: str, port: int, client_id: bytes) -> socket.socket:
    """CONNECT (MQTT 3.1.1, clean session, keep-alive 60 s), wait for CONNACK, then non-blocking."""
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack(">H", len(client_id)) + client_id
    sock.sendall(bytes([0x10, len(body)]) + body)
    if sock.recv(4)[:1] != b"\x20":
        raise ConnectionError("the broker did not answer CONNECT with CONNACK")
    sock.setblocking(False)
    return sock


class FloorLane:
    def __init__(self, args: argparse.Namespace) -> None:
        self.loop = asyncio.get_running_loop()
        self.brake_only = bool(args.brake_only)
        self.tick_s = 2 * TICK_S if self.brake_only else TICK_S
        if not self.brake_only:
            self.gas, self.opac = _open_port(args.gas), _open_port(args.opac)
        self.gas_request = ga.encode_request(ga.Command.READ_MAIN)
        self.opac_request = op.encode_request(op.Command.REALTIME)
        host, port = args.broker.rsplit(":", 1)
        self.mqtt = _connect_mqtt(host, int(port), f"laned-floor-{os.getpid()}".encode())
        self.topics = {d: f"{args.root}/live/{d}".encode()
                       for d in ("gas-analyzer", "opacimeter", "brake-tester", "dynamometer")}
        self.brake = socket.create_connection(("127.0.0.1", args.brake_port))
        self.brake.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.brake.setblocking(False)
        self.loop.add_reader(self.brake, self._brake_reply)
        self.tid = 0
        self.step = "idle"  # brake: idle, ring (block read out), snapshot (validating read out)
        self.newest: int | None = None
        self.ring = b""
        self.n = 0
        self.opac_readings: list[dict[str, object]] = []
        self.dyno: socket.socket | None = None
        if getattr(args, "dyno_port", None):
            self.dyno = socket.create_connection(("127.0.0.1", args.dyno_port))
            self.dyno.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.dyno.setblocking(False)
            self.loop.add_reader(self.dyno, self._dyno_reply)
        self.dyno_tid = 0
        self.dyno_step = "idle"  # idle, ring (block read out), snapshot (validating read out)
        self.dyno_next: int | None = None  # the first ring sample not yet read
        self.dyno_newest: int | None = None  # the newest index the last snapshot gave
        self.dyno_first = 0
        self.dyno_ring = b""
        self.t0 = time.monotonic()
        self.loop.call_at(self.t0 + self.tick_s, self._tick)

    def _publish(self, device: str, document: dict[str, object], *earlier: dict[str, object]) -> None:
        document = {**document, "readings": [*earlier, document]}
        packet = publish_packet(self.topics[device], json.dumps(document, separators=(",", ":")).encode())
        try:
            self.mqtt.send(packet)
        except BlockingIOError:
            pass  # QoS 0: the broker is slow, drop

    def _modbus(self, address: int, count: int) -> None:
        self.tid = (self.tid + 1) & 0xFFFF
        self.brake.send(struct.pack(">HHHBBHH", self.tid, 0, 6, 1, 4, address, count))

    def _brake_reply(self) -> None:
        data = self.brake.recv(4096)
        if not data:
            raise SystemExit("the brake tester closed the connection")
        if self.step == "ring":
            self.ring, self.step = data, "snapshot"
            self._modbus(*SNAPSHOT)
            return
        registers = struct.unpack(">16H", data[9:41])
        if self.brake_only:
            self.step = "idle"
            self._publish("brake-tester", {
                "lane_time": time.time(), "left_force_n": registers[0] << 16 | registers[1],
                "right_force_n": registers[2] << 16 | registers[3], "left_load_n": registers[4] << 16 | registers[5],
                "right_load_n": registers[6] << 16 | registers[7], "left_speed_kmh": registers[8] / 100,
                "right_speed_kmh": registers[9] / 100, "state": registers[10], "fault_code": registers[11],
                "sample_index": registers[12], "sample_rate_hz": registers[13], "ring_size": registers[14]})
            return
        first = self.newest
        self.newest, self.step = registers[12], "idle"
        pairs = struct.unpack(f">{(len(self.ring) - 9) // 2}h", self.ring[9:]) if first is not None else ()
        self.ring = b""
        self._publish("brake-tester", {"lane_time": time.time(), "state": registers[10], "sample_index": registers[12],
                                       "left_force_n": registers[0] << 16 | registers[1],
                                       "right_force_n": registers[2] << 16 | registers[3],
                                       "left_force_dan": pairs[0::2], "right_force_dan": pairs[1::2]})

    def _dyno_modbus(self, address: int, count: int) -> None:
        assert self.dyno is not None
        self.dyno_tid = (self.dyno_tid + 1) & 0xFFFF
        self.dyno.send(struct.pack(">HHHBBHH", self.dyno_tid, 0, 6, 1, 4, address, count))

    def _dyno_poll(self) -> None:
        """The ring from the first unread sample up to the newest one seen, then the snapshot."""
        if self.dyno_step != "idle":
            return
        if self.dyno_next is None or self.dyno_newest is None:
            self.dyno_step = "snapshot"
            self._dyno_modbus(dy.SNAPSHOT_ADDRESS, dy.SNAPSHOT_COUNT)
            return
        first = self.dyno_next
        pending = (self.dyno_newest - first + 1) % INDEX_MODULUS
        if pending == 0 or pending > INDEX_MODULUS // 2:  # nothing new since the last: the snapshot only
            self.dyno_first, self.dyno_step = first, "snapshot"
            self._dyno_modbus(dy.SNAPSHOT_ADDRESS, dy.SNAPSHOT_COUNT)
            return
        count = min(41, pending, dy.DEFAULT_RING_SIZE - first % dy.DEFAULT_RING_SIZE)
        self.dyno_first, self.dyno_step = first, "ring"
        self._dyno_modbus(dy.ring_address(first), dy.SAMPLE_REGISTERS * count)

    def _dyno_reply(self) -> None:
        assert self.dyno is not None
        data = self.dyno.recv(4096)
        if not data:
            raise SystemExit("the dynamometer closed the connection")
        if self.dyno_step == "ring":
            self.dyno_ring, self.dyno_step = data, "snapshot"
            self._dyno_modbus(dy.SNAPSHOT_ADDRESS, dy.SNAPSHOT_COUNT)
            return
        registers = struct.unpack(">20H", data[9:49])
        newest = registers[dy.InputRegister.SAMPLE_INDEX]
        ring = struct.unpack(f">{(len(self.dyno_ring) - 9) // 2}H", self.dyno_ring[9:]) if self.dyno_ring else ()
        speeds = [v / 100 for v in ring[0::3]]
        forces = [((h << 16 | lo) ^ 0x80000000) - 0x80000000 for h, lo in zip(ring[1::3], ring[2::3], strict=True)]
        first = self.dyno_first
        self.dyno_ring, self.dyno_step = b"", "idle"
        self.dyno_next = (first + len(speeds)) % INDEX_MODULUS if self.dyno_next is not None else (
            (newest + 1) % INDEX_MODULUS)
        self.dyno_newest = newest
        self._publish("dynamometer", {"lane_time": time.time(), "speed_kmh": registers[0] / 100,
                                      "state": registers[dy.InputRegister.STATE], "sample_index": newest,
                                      "first_sample_index": first if speeds else None, "speeds_kmh": speeds,
                                      "forces_n": forces})

    def _read(self, port: io.FileIO) -> bytes:
        return port.read(256) or b""

    def _tick(self) -> None:
        self.n += 1
        if self.brake_only:
            if self.step == "idle":
                self.step = "snapshot"
                self._modbus(*SNAPSHOT)
            self.loop.call_at(self.t0 + (self.n + 1) * self.tick_s, self._tick)
            return
        reply = self._read(self.opac)
        if len(reply) >= 12:
            n, k, rpm, oil, seq = struct.unpack(">5H", reply[1:11])
            self.opac_readings.append({"lane_time": time.time(), "opacity_pct": n / 10, "k_m1": k / 100,
                                       "rpm": rpm, "oil_temp_k": oil, "seq": seq})
        if self.n % 2 == 0 and self.opac_readings:
            self._publish("opacimeter", self.opac_readings[-1], *self.opac_readings[:-1])
            self.opac_readings.clear()
        self.opac.write(self.opac_request)
        if self.dyno is not None and self.n % 2 == 0:
            self._dyno_poll()
        if self.n % 2 == 0:
            reply = self._read(self.gas)
            if len(reply) >= 20:
                values = struct.unpack(">8H", reply[2:18])
                self._publish("gas-analyzer", {"lane_time": time.time(), "hc_ppm": values[0], "co_pct": values[1] / 100,
                                               "co2_pct": values[2] / 100, "o2_pct": values[3] / 100,
                                               "no_ppm": values[4], "rpm": values[5], "oil_temp_c": values[6] / 10,
                                               "lambda_value": values[7] / 1000})
            self.gas.write(self.gas_request)
        elif self.step == "idle":
            if self.newest is None:
                self.step = "snapshot"
                self._modbus(*SNAPSHOT)
            else:  # the ten samples up to the newest index seen, then the snapshot that validates them
                first = (self.newest - 9) % bt.INDEX_MODULUS
                count = bt.SAMPLE_REGISTERS * min(10, bt.DEFAULT_RING_SIZE - first % bt.DEFAULT_RING_SIZE)
                self.step = "ring"
                self._modbus(bt.ring_address(first), count)
        self.loop.call_at(self.t0 + (self.n + 1) * self.tick_s, self._tick)


async def _main(args: argparse.Namespace) -> None:
    FloorLane(args)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m laned.bench.floor_lane", description=__doc__.split("\n")[0])
    parser.add_argument("--brake-only", action="store_true", help="figure 6's floor: the snapshot at 10 Hz")
    parser.add_argument("--gas", help="gas analyzer pty link")
    parser.add_argument("--opac", help="opacimeter pty link")
    parser.add_argument("--brake-port", type=int, required=True, help="brake tester Modbus TCP port on 127.0.0.1")
    parser.add_argument("--dyno-port", type=int, default=None, help="dynamometer Modbus TCP port on 127.0.0.1")
    parser.add_argument("--broker", required=True, help="HOST:PORT")
    parser.add_argument("--root", required=True, help="topic root, e.g. laned/v1/BENCH/F1")
    args = parser.parse_args(argv)
    if not args.brake_only and not (args.gas and args.opac):
        parser.error("--gas and --opac are needed unless --brake-only")
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
