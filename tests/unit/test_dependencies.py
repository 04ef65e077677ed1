"""The split of pyproject's dependencies: the daemon installs only what it imports; the demo's broker,
the monitor's Textual and the test tools are extras, and a command whose extra is missing says so
in one line (docs/operations.md, "Install")."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PACKAGES = ("laned", "drivers", "protocols", "simulators")
#: modules that only an extra's command imports, and that extra
EXTRA_MODULES = {"laned/broker.py": "demo", "laned/monitor/": "monitor"}
#: a distribution that one listed runtime dependency pins exactly (pydantic requires pydantic-core==X)
PINNED_BY = {"pydantic-core": "pydantic"}


def _name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


RUNTIME = {_name(r) for r in PROJECT["dependencies"]}
EXTRAS = {extra: {_name(r) for r in reqs} for extra, reqs in PROJECT["optional-dependencies"].items()}


def _third_party_imports(path: Path) -> set[str]:
    """Every top-level module `path` imports (at module level or inside a function) that is neither
    the standard library nor one of this distribution's packages."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in PACKAGES and n != "__future__"}


def _distribution(module: str) -> str:
    found = packages_distributions().get(module)
    assert found, f"{module} is imported but no installed distribution provides it"
    return _name(found[0])


def _extra_of(relative: str) -> str | None:
    return next((extra for prefix, extra in EXTRA_MODULES.items() if relative.startswith(prefix)), None)


def test_the_daemons_runtime_requirements_hold_no_demo_monitor_or_test_tools() -> None:
    for name in ("amqtt", "textual", "textual-serve", "textual-plotext", "pytest", "selenium", "pydantic-settings"):
        assert name not in RUNTIME, f"{name} is in [project].dependencies"
    assert EXTRAS["demo"] == {"amqtt"}
    assert EXTRAS["monitor"] == {"textual", "textual-plotext", "textual-serve", "rich"}
    # `pip install -e .[test]` (dev.py) brings every command's extra: the suite runs the demo, bench and monitor
    assert any(r.replace(" ", "") == "laned[demo,bench,monitor]" for r in PROJECT["optional-dependencies"]["test"])


def test_every_third_party_import_outside_the_extras_modules_is_a_runtime_requirement() -> None:
    missing = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            allowed = RUNTIME | EXTRAS.get(_extra_of(relative) or "", set())
            for module in sorted(_third_party_imports(path)):
                dist = _distribution(module)
                if dist not in allowed and PINNED_BY.get(dist) not in allowed:
                    missing.append(f"{relative}: import {module} ({dist})")
    assert not missing, "imports the runtime requirements do not cover:\n" + "\n".join(missing)


def test_the_lock_pins_every_requirement_of_every_extra() -> None:
    locked = {_name(line) for line in (ROOT / "requirements.lock").read_text().splitlines()
              if line.strip() and not line.lstrip().startswith(("#", "-"))}
    wanted = RUNTIME.union(*EXTRAS.values()) - {"laned"}
    assert wanted - locked == set(), "refresh requirements.lock (docs/operations.md, Install)"


@pytest.mark.parametrize(
    ("hidden", "argv", "message"),
    [
        ("amqtt", ["demo", "--no-ui"], "laned demo needs the demo extra: pip install 'laned[demo]'"),
        ("textual", ["monitor", "--broker", "127.0.0.1:9", "--station", "370100"],
         "laned monitor needs the monitor extra: pip install 'laned[monitor]'"),
    ],
)
def test_a_command_without_its_extra_says_which_extra_to_install(hidden: str, argv: list[str], message: str) -> None:
    # a fresh interpreter where `hidden` cannot be imported, as after `pip install laned` without the extra
    code = f"import sys; sys.modules[{hidden!r}] = None; from laned.cli import main; sys.exit(main({argv!r}))"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stdout + run.stderr
    assert message in run.stderr
    assert "Traceback" not in run.stderr
