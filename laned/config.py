"""The lane's configuration: one TOML file, validated by pydantic, secrets from the environment.

Every table forbids unknown keys, so a typo is an error that names its key
path instead of a setting silently ignored. Any value can be overridden by an
environment variable `LANED_<TABLE>__<KEY>` (for example
`LANED_MQTT__PASSWORD`), which is how secrets stay out of the file; a
password can also come from `mqtt.password_file` (systemd credentials).
Relative paths in the file are taken from the file's own folder.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from laned.errors import ConfigError
from laned.settings import StandardTiming
from laned.settings.asm import AsmSettings
from laned.settings.brake import BrakeSettings
from laned.settings.daily_checks import DailyCheckSettings
from laned.settings.free_acceleration import FreeAccelerationSettings
from laned.settings.lug_down import LugDownSettings
from laned.settings.two_speed_idle import TwoSpeedIdleSettings
from protocols.datafiles import CONFIG_DIR
from protocols.messages import MAX_COMMAND_BYTES
from protocols.pda import MAX_CAPTURE_BYTES, MAX_PHOTO_BYTES, PHOTO_BYTES_MAX

PROJECT_CONFIG_DIR = CONFIG_DIR
_TOPIC_WORD = re.compile(r"^[A-Za-z0-9_.-]+$")
#: serial device servers on the network, as pyserial opens them: raw TCP, and RFC 2217 (telnet)
SERIAL_URL_SCHEMES = ("socket", "rfc2217")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(_Strict):
    enabled: bool = False
    ca_file: Path | None = Field(None, description="CA certificate that signed the broker's certificate")
    cert_file: Path | None = Field(None, description="client certificate, for brokers that require one")
    key_file: Path | None = None
    insecure: bool = Field(False, description="skip the broker hostname check (test benches only)")

    @model_validator(mode="after")
    def _pairs(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


def parse_broker_address(entry: str, default_port: int) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]` or `[v6]:port` as (host, port); ValueError naming the entry."""
    text = entry.strip()
    host, port_text = text, ""
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or (close + 1 < len(text) and text[close + 1] != ":"):
            raise ValueError(f"broker {entry!r}: expected [address] or [address]:port")
        host, port_text = text[1:close], text[close + 2 :]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        raise ValueError(f"broker {entry!r}: an IPv6 address goes in brackets, e.g. [{text}]:1883")
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"broker {entry!r}: no host name")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"broker {entry!r}: port {port_text!r} is not a number from 1 to 65535")
    return host, int(port_text)


class MqttConfig(_Strict):
    host: str = "localhost"
    port: int = Field(1883, ge=1, le=65535)
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    client_id: str | None = Field(None, description="default: laned-{station}-{lane}")
    keepalive_s: int = Field(30, ge=5, le=3600)
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = Field(None, description="file holding the password (systemd credential)")
    topic_prefix: str = "laned/v1"
    tls: TlsConfig = TlsConfig()
    reconnect_initial_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    max_command_bytes: int = Field(
        MAX_COMMAND_BYTES, ge=1024, le=16 * 1024 * 1024,
        description="largest payload taken on …/cmd/+; a larger one is refused unread with a warning event",
    )
    max_pda_capture_bytes: int = Field(
        MAX_CAPTURE_BYTES, ge=1024, le=16 * 1024 * 1024, description="largest capture document on …/pda/capture"
    )
    max_pda_photo_bytes: int = Field(
        MAX_PHOTO_BYTES, ge=64 * 1024, le=PHOTO_BYTES_MAX, description="largest JPEG on …/pda/photo/+/+"
    )
    hosts: list[str] | None = Field(
        None,
        min_length=1,
        description='brokers in order of preference, each "host" or "host:port" ("[v6]:port"): the first is '
        "the primary; replaces host and port",
    )
    primary_retry_s: float = Field(
        60.0, gt=0, description="while on a secondary broker, how often the primary is tried again (s)"
    )

    @model_validator(mode="after")
    def _one_way_to_name_the_broker(self) -> MqttConfig:
        if self.hosts is not None:
            both = sorted({"host", "port"} & self.model_fields_set)
            if both:
                raise ValueError(f"hosts replaces {' and '.join(both)}: set one or the other")
            for entry in self.hosts:
                parse_broker_address(entry, self.port)  # raises ValueError naming the entry
        return self

    @property
    def brokers(self) -> list[tuple[str, int]]:
        """(host, port) of every broker, the primary first: `hosts`, or the one `host`/`port`."""
        if self.hosts is None:
            return [(self.host, self.port)]
        return [parse_broker_address(entry, self.port) for entry in self.hosts]

    def resolved_password(self) -> str | None:
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return self.password_file.read_text(encoding="utf-8").strip()
        return None


class SerialTransport(_Strict):
    type: Literal["serial"] = "serial"
    port: str = Field(
        description="device path (/dev/ttyUSB0, a simulator's link), or a serial device server on the network: "
        "socket://HOST:PORT (raw TCP) or rfc2217://HOST:PORT"
    )
    baudrate: int = Field(9600, gt=0)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1

    @field_validator("port")
    @classmethod
    def _path_or_url(cls, port: str) -> str:
        if "://" not in port:
            if not port.strip():
                raise ValueError("give a device path, socket://HOST:PORT or rfc2217://HOST:PORT")
            return port
        url = urlsplit(port)
        if url.scheme not in SERIAL_URL_SCHEMES:
            raise ValueError(f"{url.scheme!r} ports are not supported: a device path, socket://HOST:PORT "
                             "or rfc2217://HOST:PORT")
        try:
            number = url.port
        except ValueError:
            number = None
        if not url.hostname or number is None or not 1 <= number <= 65535 or url.path not in ("", "/"):
            raise ValueError(f"write a network serial port as {url.scheme}://HOST:PORT (port 1-65535)")
        return port


class ModbusRtuTransport(_Strict):
    type: Literal["rtu"] = "rtu"
    port: str
    baudrate: int = Field(19200, gt=0)
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1


class ModbusTcpTransport(_Strict):
    type: Literal["tcp"] = "tcp"
    host: str
    port: int = Field(502, ge=1, le=65535)


class _DeviceBase(_Strict):
    enabled: bool = True
    timeout_ms: int = Field(300, ge=10, le=10000)
    retries: int = Field(1, ge=0, le=5)
    errors_to_disconnect: int = Field(3, ge=1, le=100)
    reconnect_initial_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    live: bool = Field(True, description="publish readings on …/live/{device}")
    live_hz: float = Field(
        10.0,
        gt=0,
        le=50,
        description="live messages a second at most, each carrying every reading since the last; "
        "not above poll_hz (a device polled slower sends at its poll rate)",
    )

    @model_validator(mode="after")
    def _live_not_above_poll(self) -> _DeviceBase:
        poll_hz = getattr(self, "poll_hz", None)
        if "live_hz" in self.model_fields_set and poll_hz is not None and self.live_hz > poll_hz:
            raise ValueError(f"live_hz = {self.live_hz:g} is above poll_hz = {poll_hz:g}: "
                             "a live message carries the readings since the last, so at most one a poll")
        return self

    @property
    def live_interval_s(self) -> float:
        """Seconds between live messages: 1 / live_hz, or one poll interval if polling is slower."""
        return 1.0 / min(self.live_hz, getattr(self, "poll_hz", self.live_hz))


class GasAnalyzerConfig(_DeviceBase):
    kind: Literal["gas_analyzer"]
    transport: SerialTransport
    poll_hz: float = Field(10.0, gt=0, le=50)


class OpacimeterConfig(_DeviceBase):
    kind: Literal["opacimeter"]
    transport: SerialTransport
    poll_hz: float = Field(20.0, gt=0, le=50)
    zero_timeout_ms: int = Field(5000, ge=100)


class BrakeTesterConfig(_DeviceBase):
    kind: Literal["brake_tester"]
    transport: Annotated[ModbusRtuTransport | ModbusTcpTransport, Field(discriminator="type")]
    unit_id: int = Field(1, ge=0, le=247)
    poll_hz: float = Field(10.0, gt=0, le=50)
    follow_curve: bool = Field(
        True,
        description="with live on, each poll also reads the 100 Hz curve ring from where the last one left off "
        "and the live message carries the new samples; false: the state registers alone",
    )


class DynamometerConfig(_DeviceBase):
    kind: Literal["dynamometer"]
    transport: Annotated[ModbusRtuTransport | ModbusTcpTransport, Field(discriminator="type")]
    unit_id: int = Field(1, ge=0, le=247)
    poll_hz: float = Field(
        5.0, ge=2, le=20,
        description="snapshot and ring reads per second; at least 2 so the dynamometer's host watchdog "
        "(WATCHDOG, 2 s by default) is fed well within its time while a mode is on",
    )


DeviceConfig = Annotated[
    GasAnalyzerConfig | OpacimeterConfig | BrakeTesterConfig | DynamometerConfig, Field(discriminator="kind")
]
#: the tags of the two unions, which pydantic puts in an error's path (describe_errors takes them out)
DEVICE_KINDS = frozenset(get_args(m.model_fields["kind"].annotation)[0]
                         for m in (GasAnalyzerConfig, OpacimeterConfig, BrakeTesterConfig, DynamometerConfig))
TRANSPORT_TYPES = frozenset(get_args(m.model_fields["type"].annotation)[0]
                            for m in (ModbusRtuTransport, ModbusTcpTransport))


class LaneIdentity(_Strict):
    station: str = Field(description="station code (jyjgbh)")
    lane: str = Field(description="lane code (jcxdh)")
    state_dir: Path = Field(Path("/var/lib/laned"), description="outbox, photos, daily checks")
    limits_dir: Path = Field(PROJECT_CONFIG_DIR / "limits")
    platforms_dir: Path = Field(PROJECT_CONFIG_DIR / "platforms")
    outbox_max_messages: int = Field(
        100_000,
        ge=100,
        description="messages the outbox holds before it refuses events and raises its alarm in …/status "
        "(results and replies are kept beyond it: they are never dropped)",
    )
    request_ids_keep_days: float = Field(
        7.0,
        gt=0,
        le=366,
        description="a command whose request_id came within this many days gets its first reply again "
        "and is not run again (state_dir/requests.sqlite3)",
    )
    signing_algorithm: Literal["hmac-sha256", "ed25519"] = Field(
        "hmac-sha256",
        description="hmac-sha256: a key shared with the station; ed25519: a private key, the station and "
        "the platform verify with its public key and cannot sign",
    )
    signing_key_id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="the name stations know the key by, sent in every signature (default {station}-{lane})",
    )
    signing_key: SecretStr | None = Field(
        None, description="the HMAC key's text, or the Ed25519 private key in PEM (better: signing_key_file)")
    signing_key_file: Path | None = Field(
        None, description="file holding the key (HMAC: its text; Ed25519: PEM private key); "
        "default: generated once in state_dir")

    @field_validator("station", "lane")
    @classmethod
    def _topic_safe(cls, value: str) -> str:
        if not _TOPIC_WORD.match(value):
            raise ValueError("use letters, digits, '_', '-' or '.' only (it becomes an MQTT topic level)")
        return value


class InspectionSettings(_Strict):
    time_scale: float = Field(
        1.0, gt=0, le=1.0, description="multiplies every procedure wait and duration; below 1 for tests and demos only"
    )
    capture_timeout_s: float = Field(1800.0, gt=0, description="how long measured results wait for the PDA capture")
    on_item_failure: Literal["continue", "abort"] = Field(
        "continue", description="when an item cannot be completed: go on with the next item, or abort the inspection"
    )
    brake: BrakeSettings = Field(default_factory=BrakeSettings, description="the roller brake test")
    two_speed_idle: TwoSpeedIdleSettings = Field(
        default_factory=TwoSpeedIdleSettings, description="the two-speed idle test on the gas analyzer"
    )
    free_acceleration: FreeAccelerationSettings = Field(
        default_factory=FreeAccelerationSettings, description="the free acceleration test on the opacimeter"
    )
    asm: AsmSettings = Field(
        default_factory=AsmSettings, description="the steady-state ASM test on the dynamometer (standards.md `asm.*`)"
    )
    lug_down: LugDownSettings = Field(
        default_factory=LugDownSettings, description="the lug-down test on the dynamometer (standards.md `lug.*`)"
    )
    daily_checks: DailyCheckSettings = Field(
        default_factory=DailyCheckSettings, description="the gas analyzer's daily leak check and HC residue"
    )

    def standard_timings(self) -> tuple[StandardTiming, ...]:
        """Every setting the standard fixes a least value for, with its key path: `time_scale`
        (the standard's procedures run at 1) and each procedure's own (its `standard_timings()`)."""
        return (
            StandardTiming("inspection.time_scale", float(self.time_scale), 1.0, ""),
            *self.brake.standard_timings("inspection.brake."),
            *self.two_speed_idle.standard_timings("inspection.two_speed_idle."),
            *self.free_acceleration.standard_timings("inspection.free_acceleration."),
            *self.asm.standard_timings("inspection.asm."),
            *self.lug_down.standard_timings("inspection.lug_down."),
        )


class LaneConfig(_Strict):
    lane: LaneIdentity
    mqtt: MqttConfig = MqttConfig()
    inspection: InspectionSettings = InspectionSettings()
    devices: dict[str, DeviceConfig] = Field(default_factory=dict)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("devices")
    @classmethod
    def _device_names(cls, devices: dict[str, Any]) -> dict[str, Any]:
        for name in devices:
            if not _TOPIC_WORD.match(name):
                raise ValueError(f"device name {name!r}: use letters, digits, '_', '-' or '.' only")
        return devices

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"laned-{self.lane.station}-{self.lane.lane}"


ENV_PREFIX = "LANED_"


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """`LANED_MQTT__PASSWORD=x` -> {"mqtt": {"password": "x"}}; keys lower-cased."""
    tree: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        path = [part.lower() for part in key[len(ENV_PREFIX) :].split("__")]
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tree


def _env_sources(environ: dict[str, str]) -> dict[str, str]:
    """The dotted key path each `LANED_…` variable sets -> the variable's name (for error messages)."""
    return {".".join(part.lower() for part in key[len(ENV_PREFIX) :].split("__")): key
            for key in environ if key.startswith(ENV_PREFIX) and "__" in key}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _resolve_paths(data: dict[str, Any], base_dir: Path) -> None:
    def fix(table: dict[str, Any] | None, *keys: str) -> None:
        if not isinstance(table, dict):
            return
        for key in keys:
            value = table.get(key)
            if isinstance(value, str) and value and not os.path.isabs(value):
                table[key] = str(base_dir / value)

    lane = data.get("lane")
    fix(lane, "state_dir", "limits_dir", "platforms_dir", "signing_key_file")
    mqtt = data.get("mqtt")
    fix(mqtt, "password_file")
    if isinstance(mqtt, dict):
        fix(mqtt.get("tls"), "ca_file", "cert_file", "key_file")


def describe_errors(exc: ValidationError, env_sources: dict[str, str] | None = None) -> list[str]:
    """One line per problem: the dotted key path, what was expected, what was found; and the
    environment variable the value came from, when one set it (`env_sources`, path -> variable)."""
    lines = []
    for err in exc.errors():
        # discriminated unions put their tag in pydantic's path ("devices.ga.gas_analyzer.poll_hz"):
        # the path shown is the file's own key path, and the tag says what the table was checked as
        path, checked_as = _key_path(err["loc"])
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key (not a setting of this table; check the spelling)"
        elif err["type"] == "missing":
            message = "required key is missing"
        found = err.get("input")
        if err["type"] == "missing" or isinstance(found, dict):
            shown = ""
        elif looks_secret(path.rsplit(".", 1)[-1]):
            shown = " (value not shown: the key looks like a secret)"
        else:
            shown = f" (found {found!r})"
        variable = (env_sources or {}).get(path)
        source = f" — set by the environment variable {variable}, not the file" if variable else ""
        lines.append(f"{path or '(top level)'}: {message}{shown}{checked_as}{source}")
    return lines


#: parts of key names that hold secrets; a key close to one of SECRET_NAMES (a misspelt
#: `pasword`) counts too, since its value is most likely the secret it was meant to set
SECRET_FRAGMENTS = ("pass", "pw", "secret", "token", "key", "cred", "auth", "private")
SECRET_NAMES = ("password", "passphrase", "secret", "token", "signing_key", "credential")


def looks_secret(name: str) -> bool:
    """True for a key whose value must never be echoed (errors go to the journal)."""
    lowered = name.lower()
    if any(fragment in lowered for fragment in SECRET_FRAGMENTS):
        return True
    return bool(difflib.get_close_matches(lowered, SECRET_NAMES, n=1, cutoff=0.75))


def _key_path(loc: tuple[int | str, ...]) -> tuple[str, str]:
    """(the dotted key path as written in the file, " [checked as a … device / … transport]" or "")."""
    parts: list[str] = []
    tags: list[str] = []
    for part in map(str, loc):
        if len(parts) == 2 and parts[0] == "devices" and part in DEVICE_KINDS:
            tags.append(f"a {part} device")
        elif len(parts) == 3 and parts[2] == "transport" and part in TRANSPORT_TYPES:
            tags.append(f"a {part} transport")
        else:
            parts.append(part)
    return ".".join(parts), (f" [checked as {' with '.join(tags)}]" if tags else "")


def parse_config(data: dict[str, Any], source: str, environ: dict[str, str] | None = None) -> LaneConfig:
    env = dict(os.environ if environ is None else environ)
    merged = _merge(data, _env_overrides(env))
    try:
        return LaneConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(source, describe_errors(exc, _env_sources(env))) from None


def load_config(path: str | Path, environ: dict[str, str] | None = None) -> LaneConfig:
    """Read, merge the environment into, and validate a lane config file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror or exc}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from None
    _resolve_paths(data, path.resolve().parent)
    config = parse_config(data, str(path), environ)
    check_data_files(config, str(path))
    return config


def check_data_files(config: LaneConfig, source: str) -> None:
    """The limits tables and platform mappings the lane judges and publishes with, read now: a
    broken one stops the lane at start-up (and `check-config`) with every problem and its file,
    not after a vehicle has been measured."""
    from laned.judging.limits import load_limits
    from laned.platforms import load_mappings

    problems: list[str] = []
    for key, load, directory in (
        ("lane.limits_dir", load_limits, config.lane.limits_dir),
        ("lane.platforms_dir", load_mappings, config.lane.platforms_dir),
    ):
        try:
            load(directory)
        except ConfigError as exc:
            problems.extend(f"{key}: {exc.source}: {problem}" for problem in exc.problems)
    if config.lane.signing_key is not None or (
        config.lane.signing_key_file is not None and config.lane.signing_key_file.exists()
    ):
        from laned.signing import load_signer

        try:
            load_signer(config.lane)
        except OSError as exc:
            problems.append(f"lane.signing_key_file: cannot read it: {exc.strerror or exc}")
        except ConfigError as exc:
            problems.extend(f"{exc.source}: {problem}" for problem in exc.problems)
    if problems:
        raise ConfigError(source, problems)


SIMULATION_FLAG = "--simulation"


def shortened_timings(config: LaneConfig) -> list[StandardTiming]:
    """The settings that would shorten a procedure below the standard's (empty: a production lane)."""
    return [t for t in config.inspection.standard_timings() if t.shortened]


def shortened_problems(config: LaneConfig) -> list[str]:
    """One line per shortened setting: its key path, its value and the standard's."""

    def shown(value: float, unit: str) -> str:
        return f"{value:g} {unit}".strip()

    return [
        f"{t.key} = {shown(t.value, t.unit)}, below the standard's {shown(t.standard_min, t.unit)}: "
        f"shortened procedures run only in a simulation (`{SIMULATION_FLAG}`), whose results say so"
        for t in shortened_timings(config)
    ]


def require_standard_timings(config: LaneConfig, *, simulation: bool, source: str = "lane config") -> None:
    """A lane that publishes signed results runs the standard's procedures: a time scale below 1
    or a duration below the standard's is refused unless the lane was started as a simulation
    (`laned run --simulation`; `Lane(config, simulation=True)`), whose results carry
    `simulation: true`. Raises ConfigError naming every shortened setting."""
    problems = shortened_problems(config)
    if problems and not simulation:
        raise ConfigError(source, problems)


def json_schema() -> dict[str, Any]:
    return LaneConfig.model_json_schema()
