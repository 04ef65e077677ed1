"""The JSON Schemas of the lane's MQTT contract: which model describes which message, and the files.

Every JSON payload on the lane's topics carries a `schema` field naming its kind
and version ("lane-reply/1"). `REGISTRY` maps each of those names to the pydantic
model the code itself validates or builds the message with, so the shipped
schemas (`docs/schemas/*.json`) cannot drift from the code: a test regenerates
them and compares with the checked-in files.

    python -m protocols.schemas --write docs/schemas    regenerate the files
    python -m protocols.schemas --check docs/schemas    exit 1 if they are stale

How a model becomes a schema (draft 2020-12, pydantic's `model_json_schema` with
field aliases, so `schema` and `bytes` appear under their wire names):

- messages TO the lane (commands, the PDA's capture) use pydantic's validation
  mode: what the lane accepts, with defaults for what may be left out;
- messages FROM the lane use serialization mode, and where the lane always
  writes every field (null when it has no value) every field is `required`, so a
  consumer knows what it can rely on. Result items (`ResultItem`) stay open: only
  `code`, `item` and `verdict` are promised, each kind of item adds its own fields;
- the PDA ack keeps pydantic's defaults, because the PDA manual's acks omit
  `complete`/`missing_photos` on a refusal and `errors` on an acceptance;
- `schema` is always required and constant; the PDA's check-item and photo names
  get the manual's tables as enums (the models check them in code).

Live readings (`…/live/{device}`, QoS 0) are loose on purpose: every device kind
has its own reading fields (units in their names), and they are for watching,
not for records.

Each file gets `$id` `urn:laned:schema:<name>` and `title` the schema name; files
are written with sorted keys, two-space indent, UTF-8 and a trailing newline, so
regenerating them is byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode
from pydantic_core import core_schema

from protocols.messages import MAX_COMMAND_BYTES, AbortCommand, DailyCheckCommand, Event, Reply, StartCommand
from protocols.pda import CHECK_ITEMS, MAX_CAPTURE_BYTES, PHOTOS, CaptureDocument, PdaAck
from protocols.results import EmissionsResult, SafetyResult
from protocols.status import LaneStatus

DIALECT = "https://json-schema.org/draft/2020-12/schema"
LIVE_SCHEMA_PATTERN = r"^live-[a-z0-9]+(-[a-z0-9]+)*/1$"

Direction = Literal["to_lane", "from_lane"]


class LiveReading(BaseModel):
    """`…/live/{device}`, QoS 0, not retained: the readings of one device since its last message,
    for monitoring screens (at most `live_hz` messages a second, 10 by default).

    `schema` is "live-<kind>/1" with the device kind (live-gas-analyzer/1, live-opacimeter/1,
    live-brake-tester/1, live-dynamometer/1); beside the fields below each kind carries its newest reading's own
    fields, with their units in their names (hc_ppm, co_pct, k_m1, left_force_n,
    speed_kmh, …), and
    `readings` lists every reading the message gathers. Curve samples (the brake tester's
    `first_sample_index`, `left_force_dan`, `right_force_dan`) are at the top level only, all of
    the message's, each once. Readings are dropped while the broker is away: they are for
    watching, never for records."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    schema_: str = Field(alias="schema", pattern=LIVE_SCHEMA_PATTERN)
    device: str = Field(description="the device's configured name, as in the topic")
    lane_time: float = Field(description="lane clock, Unix time (s): when the lane received the reading")
    reading: str = Field(description="the kind of reading, e.g. MainReading, RealtimeReading, TesterSnapshot")
    readings: list[dict[str, Any]] = Field(
        default_factory=list,
        description="every reading since the device's last message, oldest first, the newest (the top level's) "
        "last: each its `lane_time`, `reading` and its own fields (curve samples only at the top level)",
    )


@dataclass(frozen=True)
class SchemaEntry:
    """One message kind of the contract."""

    name: str  # the `schema` value ("lane-reply/1"); "live-*/1" for the live family
    model: type[BaseModel]
    direction: Direction
    topic: str  # under the lane's root `laned/v1/{station}/{lane}`
    every_field_sent: bool = True  # from the lane: every field is always present (null if empty)
    max_payload_bytes: int | None = None  # to the lane: the largest payload it reads by default

    @property
    def filename(self) -> str:
        """`lane-reply/1` -> `lane-reply.v1.json`; `live-*/1` -> `live.v1.json`."""
        kind, version = self.name.rsplit("/", 1)
        return f"{kind.removesuffix('-*')}.v{version}.json"

    @property
    def schema_id(self) -> str:
        kind, version = self.name.rsplit("/", 1)
        return f"urn:laned:schema:{kind.removesuffix('-*')}/{version}"


_ENTRIES = (
    SchemaEntry("lane-status/2", LaneStatus, "from_lane", "status"),
    SchemaEntry("lane-cmd-start/1", StartCommand, "to_lane", "cmd/start", max_payload_bytes=MAX_COMMAND_BYTES),
    SchemaEntry("lane-cmd-abort/1", AbortCommand, "to_lane", "cmd/abort", max_payload_bytes=MAX_COMMAND_BYTES),
    SchemaEntry("lane-cmd-daily-check/1", DailyCheckCommand, "to_lane", "cmd/daily-check",
                max_payload_bytes=MAX_COMMAND_BYTES),
    SchemaEntry("lane-reply/1", Reply, "from_lane", "reply/{request_id}"),
    SchemaEntry("lane-event/1", Event, "from_lane", "event"),
    SchemaEntry("result-safety/2", SafetyResult, "from_lane", "result/safety"),
    SchemaEntry("result-emissions/2", EmissionsResult, "from_lane", "result/emissions"),
    SchemaEntry("pda-capture/1", CaptureDocument, "to_lane", "pda/capture", max_payload_bytes=MAX_CAPTURE_BYTES),
    SchemaEntry("pda-ack/1", PdaAck, "from_lane", "pda/ack/{capture_id}", every_field_sent=False),
    SchemaEntry("live-*/1", LiveReading, "from_lane", "live/{device}", every_field_sent=False),
)

#: schema name -> its entry (model, direction, topic)
REGISTRY: dict[str, SchemaEntry] = {entry.name: entry for entry in _ENTRIES}


def entry_for_document(document: dict[str, Any]) -> SchemaEntry | None:
    """The entry describing a received document, by its `schema` field (live-<kind>/1 -> live-*/1)."""
    name = document.get("schema")
    if not isinstance(name, str):
        return None
    if name.startswith("live-") and name.endswith("/1"):
        return REGISTRY["live-*/1"]
    return REGISTRY.get(name)


class _EveryFieldRequired(GenerateJsonSchema):
    """Serialization mode where every field of a closed model is required (the lane writes them all)."""

    def field_is_required(
        self,
        field: core_schema.ModelField | core_schema.DataclassField | core_schema.TypedDictField,
        total: bool,
    ) -> bool:
        if self.mode == "serialization" and self._config.extra != "allow":
            return True
        return super().field_is_required(field, total)


def _node(schema: dict[str, Any], *path: str) -> dict[str, Any]:
    """The sub-schema at `path`; KeyError naming the path if a model changed shape under us."""
    node: Any = schema
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise KeyError(f"schema has no {'.'.join(path)} (stopped at {key!r}): update protocols/schemas.py")
        node = node[key]
    if not isinstance(node, dict):
        raise KeyError(f"schema node {'.'.join(path)} is not an object")
    return node


def _pda_names_as_enums(schema: dict[str, Any]) -> None:
    _node(schema, "$defs", "CheckEntry", "properties", "item")["enum"] = list(CHECK_ITEMS)
    _node(schema, "$defs", "PhotoEntry", "properties", "photo")["enum"] = list(PHOTOS)


def _ack_photo_names_as_enums(schema: dict[str, Any]) -> None:
    _node(schema, "properties", "missing_photos", "items")["enum"] = list(PHOTOS)


_REFINEMENTS: dict[str, Callable[[dict[str, Any]], None]] = {
    "pda-capture/1": _pda_names_as_enums,
    "pda-ack/1": _ack_photo_names_as_enums,
}


def build_schema(entry: SchemaEntry) -> dict[str, Any]:
    """The JSON Schema of one message kind (a fresh dict)."""
    mode: JsonSchemaMode = "validation" if entry.direction == "to_lane" else "serialization"
    generator = _EveryFieldRequired if entry.every_field_sent and mode == "serialization" else GenerateJsonSchema
    schema = entry.model.model_json_schema(by_alias=True, mode=mode, schema_generator=generator)
    properties = _node(schema, "properties")
    kind_field = properties["schema"]
    kind_field.pop("default", None)
    kind_field["description"] = "the message's kind and version"
    if "*" not in entry.name:
        kind_field["const"] = entry.name
    schema["required"] = ["schema", *(name for name in schema.get("required", []) if name != "schema")]
    refine = _REFINEMENTS.get(entry.name)
    if refine is not None:
        refine(schema)
    direction = "station/PDA -> lane" if entry.direction == "to_lane" else "lane -> station/PDA"
    schema["title"] = entry.name
    schema["$schema"] = DIALECT
    schema["$id"] = entry.schema_id
    schema["$comment"] = (
        f"topic laned/v1/{{station}}/{{lane}}/{entry.topic} ({direction}); "
        f"generated from {entry.model.__module__}.{entry.model.__qualname__} by `python -m protocols.schemas`"
    )
    if entry.max_payload_bytes is not None:  # an annotation keyword: validators ignore it, people read it
        schema["x-max-payload-bytes"] = entry.max_payload_bytes
        schema["$comment"] += (
            f"; the lane reads at most {entry.max_payload_bytes} bytes on this topic by default "
            "(a larger payload is refused unread with a warning event)"
        )
    return schema


def generate_schemas() -> dict[str, dict[str, Any]]:
    """Every schema of the contract: file name -> JSON Schema."""
    return {entry.filename: build_schema(entry) for entry in REGISTRY.values()}


def render(schema: dict[str, Any]) -> str:
    """The one stable text of a schema file: sorted keys, indent 2, UTF-8 kept readable, final newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def stale_files(directory: Path) -> list[str]:
    """Files in `directory` that differ from the models (missing, changed, or no longer generated)."""
    wanted = {name: render(schema) for name, schema in generate_schemas().items()}
    problems = []
    for name, text in sorted(wanted.items()):
        path = directory / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from the models")
    for path in sorted(directory.glob("*.json")):
        if path.name not in wanted:
            problems.append(f"{path}: not generated by any model (remove it)")
    return problems


def write_schemas(directory: Path) -> list[Path]:
    """Write every schema file into `directory` (created if needed); returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in generate_schemas().items():
        path = directory / name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None, prog: str = "python -m protocols.schemas") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Generate or check the MQTT contract's JSON Schemas.")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", metavar="DIR", type=Path, help="write every schema file into DIR")
    action.add_argument("--check", metavar="DIR", type=Path, help="exit 1 if DIR's files differ from the models")
    action.add_argument("--print", metavar="NAME", help="print one schema (e.g. lane-reply/1) to stdout")
    args = parser.parse_args(argv)
    if args.write is not None:
        for path in write_schemas(args.write):
            sys.stdout.write(f"wrote {path}\n")
        return 0
    if args.check is not None:
        problems = stale_files(args.check)
        for problem in problems:
            sys.stderr.write(f"{problem}\n")
        if problems:
            sys.stderr.write(f"regenerate with: python -m protocols.schemas --write {args.check}\n")
        return 1 if problems else 0
    if args.print not in REGISTRY:
        parser.error(f"unknown schema {args.print!r} (known: {', '.join(REGISTRY)})")
    sys.stdout.write(render(build_schema(REGISTRY[args.print])))
    return 0


if __name__ == "__main__":
    # run the imported module's main, so that models defined here are named protocols.schemas.*, not __main__.*
    from protocols.schemas import main as _main

    sys.exit(_main())
