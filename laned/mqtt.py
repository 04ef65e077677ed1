"""The lane's MQTT side: the topic tree, the retained status with its will, live readings,
and the publisher that drains the durable outbox in order, reconnecting forever.

aiomqtt keeps nothing while the broker is away; the outbox does. Live readings
(QoS 0) are the only thing dropped while offline: they are for watching, and a
stale one is worthless. The retained status is re-sent on every connect, so a
broker that restarted without persistence still shows the lane.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt
import structlog

from laned.config import LaneConfig, MqttConfig
from laned.outbox import Outbox, Pending

log = structlog.get_logger("laned.mqtt")

MessageHandler = Callable[[str, bytes], Awaitable[None]]
#: told of a payload refused for its size: topic, size in bytes, the limit, the setting that sets it
OversizeHandler = Callable[[str, int, int, str], None]
OUTBOX_WINDOW = 32  # QoS-1 messages in flight from the outbox


@dataclass(frozen=True)
class Topics:
    """`laned/v1/{station}/{lane}/…` — the contract of shared/spec/README.md."""

    root: str

    @classmethod
    def for_lane(cls, prefix: str, station: str, lane: str) -> Topics:
        return cls(f"{prefix.rstrip('/')}/{station}/{lane}")

    @property
    def status(self) -> str:
        return f"{self.root}/status"

    @property
    def event(self) -> str:
        return f"{self.root}/event"

    @property
    def commands(self) -> str:
        return f"{self.root}/cmd/+"

    def cmd(self, name: str) -> str:
        return f"{self.root}/cmd/{name}"

    def reply(self, request_id: str) -> str:
        return f"{self.root}/reply/{request_id}"

    def live(self, device: str) -> str:
        return f"{self.root}/live/{device}"

    def result(self, kind: str) -> str:
        return f"{self.root}/result/{kind}"

    @property
    def pda(self) -> str:
        return f"{self.root}/pda"


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def dumps(document: dict[str, Any]) -> bytes:
    """The one JSON encoding of every payload: UTF-8, compact, non-ASCII kept readable. One encoder
    for the process: `json.dumps` with options builds a new one at every call."""
    return _ENCODER.encode(document).encode("utf-8")


def connect_failure_fields(config: LaneConfig, exc: Exception, host: str | None = None) -> dict[str, str]:
    """What a technician needs beside the library's words when the connection cannot be made:
    which files are in play, and which of them (or the broker's certificate) the error points at."""
    mqtt = config.mqtt
    tls = mqtt.tls
    error = str(exc)
    fields: dict[str, str] = {}
    if tls.enabled:
        fields["tls_ca_file"] = str(tls.ca_file) if tls.ca_file else "(the system's CAs)"
        if tls.cert_file:
            fields["tls_cert_file"] = str(tls.cert_file)
    if not isinstance(exc, aiomqtt.MqttError):  # raised before connecting: reading the files named in [mqtt]
        named = ", ".join(str(p) for p in (tls.ca_file, tls.cert_file, tls.key_file, mqtt.password_file) if p)
        fields["hint"] = f"cannot use a file named in [mqtt] ({named}): does it exist, may laned read it, key matches?"
    elif not tls.enabled:
        pass
    elif "mismatch" in error and "CERTIFICATE_VERIFY_FAILED" in error:
        fields["hint"] = f"the broker's certificate does not name mqtt.host {(host or mqtt.host)!r} (its SAN list)"
    elif "CERTIFICATE_VERIFY_FAILED" in error:
        fields["hint"] = "the broker's certificate is not signed by mqtt.tls.ca_file (wrong CA file, or expired)"
    elif "ALERT" in error.upper() and ("CERTIFICATE" in error.upper() or "UNKNOWN CA" in error.upper()):
        fields["hint"] = "the broker refused the lane's certificate (mqtt.tls.cert_file): not signed by a CA it trusts?"
    elif "WRONG_VERSION_NUMBER" in error or "record layer failure" in error:
        fields["hint"] = "the broker's port does not speak TLS: check mqtt.port (8883 is usual for TLS)"
    return fields


def login_kwargs(mqtt: MqttConfig) -> dict[str, Any]:
    """aiomqtt.Client keyword arguments that log in to the lane's broker as `mqtt` says: username and
    password (the password file read now) and the TLS context; empty when it asks for neither.

    The one place the daemon, `laned daily-check` through the daemon and the tools' `--config`
    (laned/station_client.py) build them, so the three log in alike. OSError (ssl.SSLError is
    one) when the password file or a TLS file cannot be read."""
    kwargs: dict[str, Any] = {}
    if mqtt.username:
        kwargs["username"] = mqtt.username
        kwargs["password"] = mqtt.resolved_password()
    if mqtt.tls.enabled:
        context = ssl.create_default_context(cafile=str(mqtt.tls.ca_file) if mqtt.tls.ca_file else None)
        if mqtt.tls.cert_file and mqtt.tls.key_file:
            context.load_cert_chain(str(mqtt.tls.cert_file), str(mqtt.tls.key_file))
        if mqtt.tls.insecure:
            context.check_hostname = False
        kwargs["tls_context"] = context
        kwargs["tls_insecure"] = mqtt.tls.insecure
    return kwargs


class MqttLink:
    """One connection to the station's broker, kept up for the daemon's whole life."""

    def __init__(
        self,
        config: LaneConfig,
        outbox: Outbox,
        *,
        offline_status: Callable[[], dict[str, Any]],
        on_message: MessageHandler | None = None,
        subscriptions: list[str] | None = None,
        live_queue_size: int = 1000,
        on_oversize: OversizeHandler | None = None,
        on_connected: Callable[[], None] | None = None,
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.topics = Topics.for_lane(config.mqtt.topic_prefix, config.lane.station, config.lane.lane)
        self.outbox = outbox
        self._offline_status = offline_status
        self._on_message = on_message
        self._on_oversize = on_oversize
        self._subscriptions = subscriptions or []
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._outbox_wakeup = asyncio.Event()
        self._status: bytes | None = None
        self._status_dirty = asyncio.Event()
        self._live: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(live_queue_size)
        self.live_dropped = 0
        self.published = 0
        self.connects = 0
        self.last_error: str | None = None
        self._stopping = False
        self.brokers = config.mqtt.brokers  # the primary first
        self._broker_index = 0  # the broker connected to, or tried next
        self._will = b""  # the will of the current connection
        self._on_connected = on_connected  # e.g. a fresh status, naming the broker now in use
        self._on_progress = on_progress or (lambda: None)  # the link's loop turned: a heartbeat

    # ----- what the daemon calls ---------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def broker(self) -> str:
        """`host:port` of the broker in use (or being tried)."""
        host, port = self.brokers[self._broker_index]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def on_primary(self) -> bool:
        return self._broker_index == 0

    async def wait_connected(self, timeout_s: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout_s)

    def set_status(self, document: dict[str, Any]) -> None:
        """The retained status; sent now if connected, and again on every reconnect."""
        self._status = dumps(document)
        self._status_dirty.set()

    def publish_live(self, device: str, document: dict[str, Any]) -> None:
        """QoS 0, not retained: dropped while offline; when the queue is full its oldest message
        makes room (a newer reading is worth more to a screen)."""
        if not self._connected.is_set():
            return
        if self._live.full():
            self._live.get_nowait()
            self.live_dropped += 1
        self._live.put_nowait((self.topics.live(device), dumps(document)))

    def enqueue(self, topic: str, document: dict[str, Any], *, kind: str, retain: bool = False) -> int:
        """Write a QoS-1 message to the outbox; the publisher sends it when it can."""
        return self.enqueue_payload(topic, dumps(document), kind=kind, retain=retain)

    def enqueue_payload(self, topic: str, payload: bytes, *, kind: str, retain: bool = False) -> int:
        """`enqueue` for a payload already encoded (a reply sent again byte for byte)."""
        seq = self.outbox.put(topic, payload, qos=1, retain=retain, kind=kind)
        self._outbox_wakeup.set()
        return seq

    async def publish_now(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Publish directly (used for the offline status on a clean stop)."""
        if self._client is None or not self._connected.is_set():
            return
        await self._client.publish(topic, payload, qos=qos, retain=retain, timeout=5)

    # ----- the connection --------------------------------------------------------

    def _client_kwargs(self, *, probe: bool = False) -> dict[str, Any]:
        """The connection to the broker in use; `probe`: a short one to the primary, under a client
        id of its own (the lane's own would take over its session), with no will."""
        mqtt = self.config.mqtt
        host, port = self.brokers[0 if probe else self._broker_index]
        kwargs: dict[str, Any] = {
            "hostname": host,
            "port": port,
            "identifier": f"{self.config.client_id}-probe" if probe else self.config.client_id,
            "keepalive": mqtt.keepalive_s,
            "protocol": aiomqtt.ProtocolVersion.V5 if mqtt.protocol == "5" else aiomqtt.ProtocolVersion.V311,
            "timeout": 5 if probe else 10,
            "max_queued_outgoing_messages": None,
            # paho leaves Nagle on: a live message written while the status's or a result's QoS-1
            # packet waits for its TCP ACK was held until the broker's delayed ACK, ~40 ms later
            "socket_options": [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        }
        if not probe:
            kwargs["will"] = aiomqtt.Will(self.topics.status, self._will_payload(), qos=1, retain=True)
        if mqtt.protocol != "5":
            kwargs["clean_session"] = True
        kwargs.update(login_kwargs(mqtt))
        return kwargs

    async def run(self) -> None:
        """Connect, serve, and reconnect with capped backoff and jitter until `stop()`.

        Only the network (`MqttError`) and files it cannot read (`OSError`) mean "reconnect".
        Anything else (the outbox's disk full, a bug) is a crash: the offline status is
        published on the connection still open, then the error propagates, so the daemon
        stops and systemd restarts it instead of a link that is gone under a lane that looks
        online (aiomqtt disconnects cleanly on the way out, and a clean disconnect sends no will).

        Brokers (`mqtt.hosts`) are tried in order: a failed connect moves to the next one at
        once; a round where every broker failed waits the backoff. On a secondary the link
        tries the primary every `mqtt.primary_retry_s` and moves back when it answers."""
        attempt = 0  # rounds of every broker failing
        mqtt = self.config.mqtt
        while not self._stopping:
            self._on_progress()
            broker = self.broker
            moving_back = False
            try:
                async with aiomqtt.Client(**self._client_kwargs()) as client:
                    # the outbox keeps a window of QoS-1 publishes in flight: not a warning each time
                    client.pending_calls_threshold = max(client.pending_calls_threshold, 2 * OUTBOX_WINDOW)
                    self._client = client
                    attempt = 0
                    self.connects += 1
                    for topic in self._subscriptions:
                        await client.subscribe(topic, qos=1)
                    self._connected.set()
                    log.info(
                        "mqtt_connected",
                        broker=broker,
                        primary=self.on_primary,
                        client_id=self.config.client_id,
                    )
                    self._status_dirty.set()
                    try:
                        if self._on_connected is not None:
                            self._on_connected()
                        moving_back = await self._serve(client)
                    except (aiomqtt.MqttError, OSError):
                        raise
                    except Exception:
                        await self._publish_offline_before_crash(client)
                        raise
            except (aiomqtt.MqttError, OSError) as exc:  # OSError: a TLS or password file it cannot read
                self.last_error = str(exc)
                if self._connected.is_set():
                    log.warning("mqtt_lost", broker=broker, error=str(exc))
                else:
                    log.warning(
                        "mqtt_connect_failed",
                        broker=broker,
                        error=str(exc),
                        attempt=attempt,
                        **connect_failure_fields(self.config, exc, self.brokers[self._broker_index][0]),
                    )
                    self._next_broker()
                    if self._broker_index != 0:
                        continue  # the next broker at once; the backoff is for a whole round failing
            finally:
                self._connected.clear()
                self._client = None
                self._drain_live()
            if self._stopping:
                break
            if moving_back:
                self._broker_index = 0
                continue
            delay = min(mqtt.reconnect_max_s, mqtt.reconnect_initial_s * 2 ** min(attempt, 16))
            delay *= random.uniform(0.8, 1.2)
            attempt += 1
            await asyncio.sleep(delay)

    def _next_broker(self) -> None:
        if len(self.brokers) > 1:
            self._broker_index = (self._broker_index + 1) % len(self.brokers)
            log.info("mqtt_trying_next_broker", broker=self.broker, primary=self.on_primary)

    def _will_payload(self) -> bytes:
        self._will = dumps(self._offline_status())
        return self._will

    async def _publish_offline_before_crash(self, client: aiomqtt.Client) -> None:
        """The retained status to offline on the connection still open: aiomqtt's clean
        disconnect on the way out of a crash would leave `online` retained (no will). The
        will's own document if a fresh one cannot be made (the crash may be in what it reads)."""
        self._connected.clear()
        try:
            payload = dumps(self._offline_status())
        except Exception:
            payload = self._will
        with contextlib.suppress(Exception):
            await client.publish(self.topics.status, payload, qos=1, retain=True, timeout=3)

    async def _primary_answers(self) -> bool:
        """The primary broker accepts an MQTT connection (then closed at once): more than a TCP
        port that answers, which a load balancer with no broker behind it does too."""
        try:
            async with aiomqtt.Client(**self._client_kwargs(probe=True)):
                return True
        except (aiomqtt.MqttError, OSError):
            return False

    async def _back_to_primary(self) -> None:
        """On a secondary broker: returns once the primary answers (tried every primary_retry_s)."""
        while True:
            await asyncio.sleep(self.config.mqtt.primary_retry_s)
            if await self._primary_answers():
                log.info("mqtt_primary_back", broker=self.broker, primary=f"{self.brokers[0][0]}:{self.brokers[0][1]}")
                return

    async def _serve(self, client: aiomqtt.Client) -> bool:
        """Run the pumps until one fails (raised) or, on a secondary, the primary answers (True)."""
        tasks = [
            asyncio.create_task(self._status_pump(client), name="mqtt-status"),
            asyncio.create_task(self._outbox_pump(client), name="mqtt-outbox"),
            asyncio.create_task(self._live_pump(client), name="mqtt-live"),
            asyncio.create_task(self._receive(client), name="mqtt-receive"),
        ]
        back = None
        if not self.on_primary:
            back = asyncio.create_task(self._back_to_primary(), name="mqtt-back-to-primary")
            tasks.append(back)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if exc is not None:
                    raise exc
            if back is not None and back in done:
                return True
            # a pump that ends without an error ends the connection: reconnect
            raise aiomqtt.MqttError(f"{', '.join(t.get_name() for t in done)} ended")
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _status_pump(self, client: aiomqtt.Client) -> None:
        while True:
            await self._status_dirty.wait()
            self._status_dirty.clear()
            if self._status is not None:
                await client.publish(self.topics.status, self._status, qos=1, retain=True)
                self._on_progress()

    async def _outbox_pump(self, client: aiomqtt.Client, window: int = OUTBOX_WINDOW) -> None:
        """Send pending messages oldest first; remove each after its PUBACK. Up to `window` in flight,
        sent in order, so order on the wire is the order of `enqueue()`."""
        while True:
            batch = self.outbox.peek(limit=window)
            if not batch:
                self._outbox_wakeup.clear()
                if not self.outbox.depth:
                    await self._outbox_wakeup.wait()
                continue

            async def send(item: Pending) -> None:
                await client.publish(item.topic, item.payload, qos=item.qos, retain=item.retain)

            sends = [asyncio.ensure_future(send(item)) for item in batch]
            acked: list[int] = []
            try:
                for item, fut in zip(batch, sends, strict=True):
                    await fut
                    acked.append(item.seq)
            finally:
                # every PUBACKed message leaves the outbox, in one transaction per window
                self.outbox.remove_many(acked)
                self.published += len(acked)
                for fut in sends:
                    fut.cancel()
                with contextlib.suppress(Exception):
                    await asyncio.gather(*sends, return_exceptions=True)

    async def _live_pump(self, client: aiomqtt.Client) -> None:
        """Send live messages in the order they were queued, through aiomqtt's own publish.

        `timeout=math.inf` (aiomqtt's documented "wait indefinitely") makes its publish await the
        write's confirmation directly: any other timeout wraps the wait in a task and a timer per
        message (`asyncio.wait_for`; ~0.04 of the ~0.35 ms a QoS-0 publish costs here, measured
        alone: docs/performance.md).
        A message can wait no longer than the connection lives: `_serve` cancels this pump when the
        connection ends. Messages queued by the time the pump wakes are published together, so
        paho writes them in one go and aiomqtt confirms them in one turn."""
        while True:
            batch = [await self._live.get()]
            while not self._live.empty():
                batch.append(self._live.get_nowait())
            if len(batch) == 1:
                outcomes: list[Any] = [await self._publish_live(client, *batch[0])]
            else:
                outcomes = await asyncio.gather(*(self._publish_live(client, *item) for item in batch))
            self.live_dropped += outcomes.count(False)

    async def _publish_live(self, client: aiomqtt.Client, topic: str, payload: bytes) -> bool:
        """One live message at QoS 0; False if the connection is going (reconnecting is run()'s job)."""
        try:
            await client.publish(topic, payload, qos=0, timeout=math.inf)
        except aiomqtt.MqttCodeError:
            return False
        return True

    def payload_limit(self, topic: str) -> tuple[int, str] | None:
        """The largest payload the lane takes on `topic`, and the setting that says so (None: no limit
        of ours). The broker's own limit is the broker's; this one holds whatever broker is used."""
        mqtt = self.config.mqtt
        if topic.startswith(f"{self.topics.root}/cmd/"):
            return mqtt.max_command_bytes, "mqtt.max_command_bytes"
        if topic == f"{self.topics.pda}/capture":
            return mqtt.max_pda_capture_bytes, "mqtt.max_pda_capture_bytes"
        if topic.startswith(f"{self.topics.pda}/photo/"):
            return mqtt.max_pda_photo_bytes, "mqtt.max_pda_photo_bytes"
        return None

    def _oversize(self, topic: str, size: int) -> bool:
        """True (and reported) if the payload is over its topic's limit: it is then not read at all."""
        limit = self.payload_limit(topic)
        if limit is None or size <= limit[0]:
            return False
        log.warning("mqtt_payload_too_large", topic=topic[:200], bytes=size, limit_bytes=limit[0], setting=limit[1])
        if self._on_oversize is not None:
            try:
                self._on_oversize(topic, size, limit[0], limit[1])
            except Exception:  # a handler's bug must not drop the connection
                log.exception("mqtt_oversize_handler_failed", topic=topic[:200])
        return True

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if self._on_message is None:
                continue
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload or "").encode()
            if self._oversize(str(message.topic), len(payload)):
                continue
            try:
                await self._on_message(str(message.topic), payload)
            except Exception:  # a handler's bug must not drop the connection
                log.exception("mqtt_handler_failed", topic=str(message.topic))

    def _drain_live(self) -> None:
        while not self._live.empty():
            self._live.get_nowait()

    async def stop(self, final_status: dict[str, Any] | None = None, *, fallback_to_will: bool = False) -> None:
        """Publish the final (offline) status if connected, then disconnect for good. Without a
        final status, `fallback_to_will` publishes the connection's will document instead."""
        self._stopping = True
        payload = dumps(final_status) if final_status is not None else (self._will if fallback_to_will else b"")
        if payload and self._client is not None and self._connected.is_set():
            with contextlib.suppress(Exception):
                await self._client.publish(self.topics.status, payload, qos=1, retain=True, timeout=3)
