"""The code stays as the style guide asks: ruff clean everywhere, mypy --strict on protocols/,
and the dependency arrows laned -> drivers -> protocols, simulators -> protocols."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> list[str]:
    if shutil.which(name, path=str(Path(sys.executable).parent)) is None:
        pytest.skip(f"{name} is not installed")
    return [sys.executable, "-m", name]


def test_ruff_finds_nothing() -> None:
    run = subprocess.run([*_tool("ruff"), "check", "--quiet", "."], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_protocols_pass_mypy_strict() -> None:
    run = subprocess.run([*_tool("mypy"), "--no-error-summary", "protocols"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


FORBIDDEN = {
    "protocols": (
        r"(asyncio|serial|serial_asyncio_fast|aiomqtt|socket|pymodbus\.(client|server)|laned|drivers|simulators)"
    ),
    "drivers": r"(laned|simulators)",
    "simulators": r"(drivers|laned)",
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependencies_point_one_way(package: str) -> None:
    pattern = re.compile(rf"^\s*(import|from)\s+{FORBIDDEN[package]}\b", re.MULTILINE)
    offenders = []
    for path in (ROOT / package).rglob("*.py"):
        for match in pattern.finditer(path.read_text(encoding="utf-8")):
            offenders.append(f"{path.relative_to(ROOT)}: {match.group(0).strip()}")
    assert not offenders, "\n".join(offenders)


def test_a_regular_install_ships_every_data_file_of_config() -> None:
    """`pip install` (not editable) copies config/ through pyproject's data-files table; a file
    in a folder the table does not name would be missing on every lane PC."""
    import glob
    import tomllib

    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    shipped = {Path(match) for patterns in table.values() for p in patterns for match in glob.glob(p, root_dir=ROOT)}
    for target, patterns in table.items():
        for pattern in patterns:
            assert target == "share/laned/" + str(Path(pattern).parent), (target, pattern)
    data = {path.relative_to(ROOT) for path in (ROOT / "config").rglob("*") if path.is_file()}
    assert sorted(map(str, data - shipped)) == []
