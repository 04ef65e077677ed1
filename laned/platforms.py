"""Platform mappings: how one capture and one set of measurements become each platform's record.

A mapping file (`config/platforms/safety.toml`, `emissions.toml`) says, as
data: which exterior check items and photos go to that platform, each photo's
platform code, each item's platform code, the platform's field names for the
shared fields, its verdict words, and its time format and zone. The shipped
defaults follow shared/spec/standards.md and devices/pda.md; a province with
other field standards edits the file, not the code.
"""

from __future__ import annotations

import tomllib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from laned.errors import ConfigError
from protocols.pda import CHECK_ITEMS, PHOTOS

# the canonical fields every platform record carries, under the platform's own names
CANONICAL_FIELDS = (
    "inspection_no", "station", "lane", "plate", "plate_type", "vin", "vehicle_class", "fuel",
    "result_id", "verdict", "finished_at", "items", "item_code", "item_verdict", "item_reason",
    "photos", "photo_code", "photo_time", "photo_sha256", "inspector_name", "inspector_id", "odometer_km",
)


class PlatformMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    platform: Literal["safety", "emissions"]
    name: str
    time_format: str = Field(description="strftime format of the platform's times")
    utc_offset: str = Field("+08:00", description="the platform's clock zone, e.g. +08:00 (Beijing time)")
    exterior_item_code: str | None = Field(None, description="the item code of the exterior check (F1), if any")
    exterior_items: list[str] = Field(description="PDA check items that belong to this platform")
    photos: dict[str, str] = Field(description="PDA photo name -> platform photo code")
    fields: dict[str, str] = Field(description="canonical field -> the platform's field name")
    verdicts: dict[str, str] = Field(description="pass/fail/void/not_tested/not_completed/incomplete -> platform word")

    @model_validator(mode="after")
    def _known_names(self) -> PlatformMapping:
        problems = [f"exterior_items: unknown check item {i!r}" for i in self.exterior_items if i not in CHECK_ITEMS]
        problems += [f"photos.{p}: unknown photo" for p in self.photos if p not in PHOTOS]
        problems += [f"fields: missing {f!r}" for f in CANONICAL_FIELDS if f not in self.fields]
        problems += [f"fields.{f}: not a canonical field" for f in self.fields if f not in CANONICAL_FIELDS]
        words = ("pass", "fail", "void", "not_tested", "not_completed", "incomplete")
        problems += [f"verdicts: missing {w!r}" for w in words if w not in self.verdicts]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def zone(self) -> timezone:
        sign = -1 if self.utc_offset.startswith("-") else 1
        hours, minutes = self.utc_offset.lstrip("+-").split(":")
        return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes)))

    def time(self, moment: datetime) -> str:
        return moment.astimezone(self.zone).strftime(self.time_format)

    def name_of(self, canonical: str) -> str:
        return self.fields[canonical]


def load_mapping(path: Path) -> PlatformMapping:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read the platform mapping: {exc}"]) from None
    try:
        return PlatformMapping.model_validate(data)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(str(path), problems) from None


def load_mappings(directory: Path) -> dict[str, PlatformMapping]:
    """`safety.toml` and `emissions.toml` from the lane's platforms_dir."""
    mappings: dict[str, PlatformMapping] = {}
    for platform in ("safety", "emissions"):
        mapping = load_mapping(directory / f"{platform}.toml")
        if mapping.platform != platform:
            raise ConfigError(str(directory / f"{platform}.toml"), [f"platform: expected {platform!r}"])
        mappings[platform] = mapping
    return mappings
