"""Where the technician's tools (`laned status`, `laned monitor`) find a lane: a broker and topics.

A tool is a client of the station's broker like the station software: it reads the retained
`…/status` and the live topics, and sends commands on `…/cmd/…`, so the broker's ACL decides what
it may do. It is told where to look either by the lane's own config file (`--config`: the same
broker, credentials, TLS and topic prefix as the daemon) or by `--broker HOST:PORT --station S`.
"""

from __future__ import annotations

import argparse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from laned.errors import ConfigError
from protocols.errors import LaneError


class UsageError(LaneError):
    """The command line does not say where the lane is, or says it wrongly (exit 2, one line)."""


@dataclass(frozen=True)
class Target:
    """A station's lanes (or one lane) on a broker, and how to log in there."""

    host: str
    port: int
    station: str
    lane: str | None = None  # None: every lane of the station
    prefix: str = "laned/v1"
    client: dict[str, Any] = field(default_factory=dict)  # username, password, tls_context for aiomqtt
    state_dir: Path | None = None  # the lane's state directory, known from --config

    def root(self, lane: str | None = None) -> str:
        """`laned/v1/{station}/{lane}`; the lane `+` when none is given (a subscription of every lane)."""
        return f"{self.prefix}/{self.station}/{lane or self.lane or '+'}"

    def client_kwargs(self, purpose: str) -> dict[str, Any]:
        """aiomqtt.Client keyword arguments: a clean session with a fresh id (never the lane's)."""
        return {
            "hostname": self.host,
            "port": self.port,
            "identifier": f"laned-{purpose}-{uuid.uuid4().hex[:8]}",
            "timeout": 5,
            **self.client,
        }


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", type=Path, help="the lane's TOML config: its broker, station and lane")
    parser.add_argument("--broker", metavar="HOST:PORT", help="the station's broker (without --config)")
    parser.add_argument("--station", help="station code (without --config)")
    parser.add_argument("--lane", help="one lane's code; default: the config's lane, or every lane of the station")
    parser.add_argument("--topic-prefix", default="laned/v1", help="the lanes' mqtt.topic_prefix (default laned/v1)")


def target_from_args(args: argparse.Namespace) -> Target:
    """The target named on the command line; UsageError (or the config's ConfigError) with what is
    missing or wrong."""
    if args.config is not None:
        from laned.config import load_config
        from laned.mqtt import login_kwargs

        config = load_config(args.config)
        mqtt = config.mqtt
        try:
            client = login_kwargs(mqtt)
        except OSError as exc:  # ssl.SSLError is one too
            raise ConfigError(str(args.config), [f"mqtt: cannot read the password file or TLS files: {exc}"]) from None
        return Target(
            host=args.broker.rpartition(":")[0] if args.broker else mqtt.brokers[0][0],  # the primary
            port=_port(args.broker) if args.broker else mqtt.brokers[0][1],
            station=args.station or config.lane.station,
            lane=args.lane or config.lane.lane,
            prefix=mqtt.topic_prefix,
            client=client,
            state_dir=config.lane.state_dir,
        )
    if not args.broker or not args.station:
        raise UsageError("say where the lane is: --config FILE, or --broker HOST:PORT and --station CODE")
    return Target(args.broker.rpartition(":")[0] or "localhost", _port(args.broker), args.station, args.lane,
                  args.topic_prefix)


def _port(broker: str) -> int:
    text = broker.rpartition(":")[2] if ":" in broker else "1883"
    try:
        port = int(text)
    except ValueError:
        raise UsageError(f"--broker {broker}: the port {text!r} is not a number (HOST:PORT)") from None
    if not 1 <= port <= 65535:
        raise UsageError(f"--broker {broker}: the port {port} is outside 1..65535")
    return port
