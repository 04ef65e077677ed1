"""The code stays as the style guide asks: ruff clean everywhere, mypy --strict on protocols/,
and the dependency arrows laned -> drivers -> protocols, simulators -> protocols."""

from __future__ import annotations

import ast
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


#: `._name` reached from outside `self`: only these, each one of our own classes' members used by
#: its own module's helper (a friend, not a library's insides). Anything else is an offender.
OWN_PRIVATE_ACCESS = {
    ("laned/inspection.py", "ctx._publish_event"),  # the runner and its ItemContext
    ("drivers/brake_tester.py", "driver._recordings"),  # record_curve() pauses its driver's following
    ("drivers/brake_tester.py", "recorder._run"),  # record_curve() runs its CurveRecorder
    ("drivers/brake_tester.py", "recorder._stop"),
}
_BY_NAME = {"getattr", "setattr", "hasattr", "delattr"}


def _private_reaches(tree: ast.AST) -> list[tuple[int, str]]:
    """Every `x._name` whose `x` is not `self`, `cls` or `super()`, and every getattr/setattr/hasattr/
    delattr of a literal "_name": (line, the expression as written)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            name, base = node.attr, node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            if isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super":
                continue
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _BY_NAME
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str)):
            name = node.args[1].value
        else:
            continue
        if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_no_module_of_ours_reaches_into_another_objects_private_attributes() -> None:
    """Supported paths only: a patch release of paho, aiomqtt, pymodbus or pyserial may change any
    `_name` of theirs, so none of our modules reads or writes one (nor one of another object of
    ours, but for the few friends listed in OWN_PRIVATE_ACCESS)."""
    offenders = []
    for package in ("laned", "drivers", "protocols", "simulators"):
        for path in sorted((ROOT / package).rglob("*.py")):
            where = path.relative_to(ROOT).as_posix()
            for line, expression in _private_reaches(ast.parse(path.read_text(encoding="utf-8"))):
                if (where, expression) not in OWN_PRIVATE_ACCESS:
                    offenders.append(f"{where}:{line}: {expression}")
    assert not offenders, "private attributes reached from outside their object:\n" + "\n".join(offenders)


def test_the_private_access_check_finds_what_it_must() -> None:
    source = 'paho = getattr(client, "_client")\nclient._client.publish(1)\nself._x = obj._y\nsuper()._z()\n'
    assert sorted(e for _, e in _private_reaches(ast.parse(source))) == [
        "client._client", "getattr(client, '_client')", "obj._y"]
