"""The code stays as the style guide asks: ruff clean everywhere, mypy --strict (with the pydantic
plugin) on the packages pyproject.toml's [tool.mypy] files names, and the dependency arrows
laned -> drivers -> protocols, simulators -> protocols."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
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


def test_mypy_strict_finds_nothing() -> None:
    """Checks what [tool.mypy] names: protocols/, drivers/, laned/ (less the modules its overrides
    leave for later) and simulators/, strict, with the pydantic plugin."""
    run = subprocess.run([*_tool("mypy"), "--no-error-summary"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_mypy_checks_drivers_and_laned() -> None:
    """The strict check keeps covering protocols/, drivers/ and laned/ with the pydantic plugin: a
    narrowed `files`, or an override silencing a whole package, would let the check pass silently."""
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    assert mypy["strict"] is True and "pydantic.mypy" in mypy["plugins"]
    assert {"protocols", "drivers", "laned"} <= set(mypy["files"])
    silenced = [m for o in mypy.get("overrides", []) if o.get("ignore_errors") for m in o["module"]]
    wholesale = [m for m in silenced if m.split(".")[0] in {"protocols", "drivers"} or m in {"laned", "laned.*"}]
    assert not wholesale, f"overrides silence whole packages: {wholesale}"


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


#: laned's entry points: they compose the rest and may import anything of laned; nothing else
#: imports them (nor the daemon, which composes the lane for them).
LANED_ENTRY_POINTS = (
    "laned.cli", "laned.demo", "laned.demo_view", "laned.sim_lane", "laned.sim_driver", "laned.systemd",
    "laned.check_config", "laned.status_cmd", "laned.monitor", "laned.bench",
)
#: the layers below: each imports only these parts of laned (a name covers its submodules)
LANED_MAY_IMPORT = {
    "laned.settings": ("laned.settings", "laned.judging.rounding"),
    "laned.judging": ("laned.judging", "laned.settings", "laned.errors"),
    "laned.procedures": ("laned.procedures", "laned.judging", "laned.settings", "laned.errors", "laned.figures"),
    "laned.signing": ("laned.errors", "laned.private_files"),
    "laned.config": ("laned.errors", "laned.settings", "laned.judging", "laned.platforms", "laned.signing"),
}
#: the middle: the parts the daemon composes never import the daemon nor the parts above them
LANED_MUST_NOT_IMPORT = {
    "laned.results": ("laned.inspection", "laned.daily_checks", "laned.devices", "laned.mqtt"),
    "laned.daily_checks": ("laned.inspection", "laned.results"),
    "laned.devices": ("laned.inspection", "laned.procedures", "laned.results", "laned.mqtt"),
    "laned.mqtt": ("laned.inspection", "laned.procedures", "laned.results", "laned.devices"),
}


def _within(module: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def laned_imports(root: Path) -> dict[str, dict[str, set[str]]]:
    """laned's internal imports, `{module: {imported module: {how, e.g. "line 12"}}}`, read from the
    AST: every `import`, also inside functions and under `if TYPE_CHECKING:` (a type-only import is
    still an arrow). Importing `laned.a.b` also runs the package `laned.a`, an arrow from a module
    outside that package."""
    files = {}
    for path in (root / "laned").rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, dict[str, set[str]]] = {name: {} for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], *base.split(".")])
                    base = base.strip(".")
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for target in targets:
                pieces = target.split(".")
                for n in range(2, len(pieces) + 1):
                    imported = ".".join(pieces[:n])
                    implicit = n < len(pieces)  # a package run on the way to its submodule
                    if imported in files and imported != name and not (implicit and _within(name, imported)):
                        how = f"line {node.lineno}" + (f", running the package of {target}" if implicit else "")
                        graph[name].setdefault(imported, set()).add(how)
    return graph


def _cycles(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def laned_layering_offences(root: Path) -> list[str]:
    """Every import cycle inside laned/ and every arrow against its layering (empty: one way)."""
    graph = laned_imports(root)
    offences = [f"import cycle among: {', '.join(c)}" for c in _cycles(graph)]
    for module, imported in sorted(graph.items()):
        for target, where in sorted(imported.items()):
            arrow = f"{module} -> {target} ({', '.join(sorted(where))})"
            if _within(target, (*LANED_ENTRY_POINTS, "laned.daemon")) and not _within(module, LANED_ENTRY_POINTS):
                offences.append(f"only an entry point imports the daemon or an entry point: {arrow}")
            only_run = all("running the package" in how for how in where)  # on the way to an allowed module
            for layer, allowed in LANED_MAY_IMPORT.items():
                if _within(module, layer) and not _within(target, allowed) and not (
                    only_run and any(_within(a, target) for a in allowed)
                ):
                    offences.append(f"{layer} imports only {', '.join(allowed)}: {arrow}")
            for layer, forbidden in LANED_MUST_NOT_IMPORT.items():
                if _within(module, layer) and _within(target, forbidden):
                    offences.append(f"{layer} must not import {target}: {arrow}")
    return offences


def test_the_arrows_inside_laned_point_one_way() -> None:
    """laned/ is layered like the top level: settings and judging at the bottom, then procedures,
    config, results, daily checks, the inspection runner, and the daemon that composes them,
    under the entry points (docs/architecture.md). No import cycle, not even a type-only one."""
    offences = laned_layering_offences(ROOT)
    assert not offences, "\n".join(offences)


def test_the_laned_arrow_check_sees_imports_inside_functions_and_type_checking(tmp_path: Path) -> None:
    files = {
        "laned/__init__.py": "",
        "laned/daemon.py": "from laned.inspection import InspectionRunner\n",
        "laned/inspection.py": "import typing\nif typing.TYPE_CHECKING:\n    from laned.daemon import Lane\n",
        "laned/config.py": "def load():\n    from laned.procedures.brake import run\n",
        "laned/procedures/__init__.py": "",
        "laned/procedures/brake.py": "from . import something\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert laned_layering_offences(tmp_path) == [
        "import cycle among: laned.daemon, laned.inspection",
        "laned.config imports only laned.errors, laned.settings, laned.judging, laned.platforms, laned.signing: "
        "laned.config -> laned.procedures (line 2, running the package of laned.procedures.brake)",
        "laned.config imports only laned.errors, laned.settings, laned.judging, laned.platforms, laned.signing: "
        "laned.config -> laned.procedures.brake (line 2)",
        "only an entry point imports the daemon or an entry point: laned.inspection -> laned.daemon (line 3)",
    ]


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
