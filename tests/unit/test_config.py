"""The lane config: every problem named by its key path; secrets from the environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from laned.config import load_config
from laned.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
[lane]
station = "370100"
lane = "L1"
state_dir = "state"

[mqtt]
host = "broker.local"
port = 8883

[devices.gas-analyzer]
kind = "gas_analyzer"
transport = { type = "serial", port = "/dev/ttyUSB0" }

[devices.brakes]
kind = "brake_tester"
transport = { type = "tcp", host = "192.0.2.10" }
unit_id = 3
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lane.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_config_loads_with_defaults_and_relative_paths_taken_from_its_folder(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), environ={})
    assert config.lane.station == "370100"
    assert config.lane.state_dir == tmp_path / "state"
    assert config.mqtt.protocol == "3.1.1"
    assert config.client_id == "laned-370100-L1"
    ga = config.devices["gas-analyzer"]
    assert ga.kind == "gas_analyzer" and ga.transport.baudrate == 9600 and ga.timeout_ms == 300
    brakes = config.devices["brakes"]
    assert brakes.kind == "brake_tester" and brakes.transport.type == "tcp"
    assert brakes.transport.port == 502 and brakes.unit_id == 3


def test_a_misspelt_key_is_named_with_its_path_as_written_in_the_file(tmp_path: Path) -> None:
    text = GOOD.replace('port = "/dev/ttyUSB0"', 'prot = "/dev/ttyUSB0"')
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), environ={})
    assert err.value.problems == [
        "devices.gas-analyzer.transport.port: required key is missing [checked as a gas_analyzer device]",
        "devices.gas-analyzer.transport.prot: unknown key (not a setting of this table; check the spelling) "
        "(found '/dev/ttyUSB0') [checked as a gas_analyzer device]",
    ]


def test_a_modbus_transport_problem_says_which_transport_the_table_was_checked_as(tmp_path: Path) -> None:
    text = GOOD.replace('host = "192.0.2.10" }', 'host = "192.0.2.10", baud = 9600 }')
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), environ={})
    assert err.value.problems == [
        "devices.brakes.transport.baud: unknown key (not a setting of this table; check the spelling) "
        "(found 9600) [checked as a brake_tester device with a tcp transport]",
    ]


def test_a_value_of_the_wrong_kind_says_what_was_found(tmp_path: Path) -> None:
    text = GOOD.replace("port = 8883", 'port = "eighty"')
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), environ={})
    assert any(p.startswith("mqtt.port:") and "'eighty'" in p for p in err.value.problems)


def test_an_unknown_device_kind_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace('kind = "gas_analyzer"', 'kind = "smoke_detector"')
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), environ={})
    assert any(p.startswith("devices.gas-analyzer") for p in err.value.problems)


def test_broken_toml_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "[lane\nstation = 1"), environ={})
    assert "not valid TOML" in str(err.value)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "nope.toml", environ={})
    assert "cannot read the file" in str(err.value)


def test_the_environment_overrides_secrets_and_they_never_print(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, GOOD + "\n"),
        environ={"LANED_MQTT__USERNAME": "lane1", "LANED_MQTT__PASSWORD": "s3cret"},
    )
    assert config.mqtt.username == "lane1"
    assert config.mqtt.resolved_password() == "s3cret"
    assert "s3cret" not in repr(config) and "s3cret" not in str(config.model_dump())


def test_a_password_file_is_read_and_stripped(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    config = load_config(write(tmp_path, GOOD.replace("port = 8883", 'port = 8883\npassword_file = "pw"')), environ={})
    assert config.mqtt.resolved_password() == "from-file"


def test_station_codes_must_be_safe_as_topic_levels(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD.replace('lane = "L1"', 'lane = "L1/#"')), environ={})
    assert any(p.startswith("lane.lane:") for p in err.value.problems)


def test_check_config_command_exits_non_zero_and_names_the_key(tmp_path: Path) -> None:
    bad = write(tmp_path, GOOD.replace("unit_id = 3", "unit_id = 300"))
    run = subprocess.run(
        [sys.executable, "-m", "laned.cli", "check-config", str(bad)], capture_output=True, text=True, cwd=ROOT
    )
    assert run.returncode == 2
    assert "devices.brakes.unit_id: Input should be less than or equal to 247 (found 300)" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("name", ["lane.example.toml", "demo.toml"])
def test_shipped_configs_are_valid(name: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "laned.cli", "check-config", str(ROOT / "config" / name)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr


def test_a_broken_limits_table_or_platform_mapping_stops_the_lane_at_load_not_after_a_vehicle(tmp_path: Path) -> None:
    import shutil

    limits, platforms = tmp_path / "limits", tmp_path / "platforms"
    shutil.copytree(ROOT / "config" / "limits", limits)
    shutil.copytree(ROOT / "config" / "platforms", platforms)
    (limits / "brakes.toml").write_text("[drag\n", encoding="utf-8")
    (platforms / "emissions.toml").unlink()
    folders = 'state_dir = "state"\nlimits_dir = "limits"\nplatforms_dir = "platforms"'
    text = GOOD.replace('state_dir = "state"', folders)
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), environ={})
    limits_problem, platform_problem = err.value.problems
    assert limits_problem.startswith(f"lane.limits_dir: {limits / 'brakes.toml'}: not valid TOML")
    assert platform_problem.startswith(f"lane.platforms_dir: {platforms / 'emissions.toml'}")


def _option_names(model: Any, prefix: str = "") -> set[tuple[str, str]]:
    """(where, name) of every option a lane config can set, through nested tables and the device kinds."""
    from typing import get_args

    from pydantic import BaseModel

    found: set[tuple[str, str]] = set()
    for name, field in model.model_fields.items():
        found.add((prefix, name))
        candidates = [field.annotation, *get_args(field.annotation)]
        for arg in list(candidates):
            candidates += list(get_args(arg))
        for candidate in candidates:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                found |= _option_names(candidate, f"{prefix}{name}.")
    return found


def test_the_example_config_lists_every_option() -> None:
    """config/lane.example.toml is where a technician looks up an option: each one is there,
    set or commented out with its default."""
    import re

    from laned.config import LaneConfig

    text = (ROOT / "config" / "lane.example.toml").read_text(encoding="utf-8")
    missing = sorted(
        f"{where}{name}" for where, name in _option_names(LaneConfig)
        if not re.search(rf"(^|[\s{{,#]){re.escape(name)}\s*=", text, re.MULTILINE)
        and f"[{where}{name}" not in text  # a table: its header
    )
    assert missing == []


@pytest.mark.parametrize("port", ["socket://192.0.2.20:4001", "rfc2217://serial-box.local:2217"])
def test_check_config_accepts_a_serial_device_server_on_the_network(tmp_path: Path, port: str) -> None:
    good = write(tmp_path, GOOD.replace('port = "/dev/ttyUSB0"', f'port = "{port}"'))
    run = subprocess.run(
        [sys.executable, "-m", "laned.cli", "check-config", str(good)], capture_output=True, text=True, cwd=ROOT
    )
    assert run.returncode == 0, run.stderr
    assert load_config(good, environ={}).devices["gas-analyzer"].transport.port == port


@pytest.mark.parametrize(("port", "says"), [
    ("tcp://192.0.2.20:4001", "'tcp' ports are not supported"),
    ("socket://192.0.2.20", "write a network serial port as socket://HOST:PORT"),
    ("socket://192.0.2.20:99999", "write a network serial port as socket://HOST:PORT"),
    ("rfc2217://:2217", "write a network serial port as rfc2217://HOST:PORT"),
])
def test_a_network_port_of_the_wrong_form_is_named_with_its_key(tmp_path: Path, port: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD.replace('port = "/dev/ttyUSB0"', f'port = "{port}"')), environ={})
    [problem] = err.value.problems
    assert problem.startswith("devices.gas-analyzer.transport.port: ") and says in problem and port in problem


def test_live_hz_is_at_most_the_poll_rate(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), environ={})
    assert config.devices["gas-analyzer"].live_interval_s == pytest.approx(0.1)  # 10 Hz: the default
    slow = GOOD.replace('transport = { type = "serial", port = "/dev/ttyUSB0" }',
                        'transport = { type = "serial", port = "/dev/ttyUSB0" }\npoll_hz = 5')
    assert load_config(write(tmp_path, slow), environ={}).devices["gas-analyzer"].live_interval_s == pytest.approx(0.2)
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, slow.replace("poll_hz = 5", "poll_hz = 5\nlive_hz = 8")), environ={})
    [problem] = err.value.problems
    assert problem.startswith("devices.gas-analyzer: ") and "live_hz = 8 is above poll_hz = 5" in problem
