#!/usr/bin/env python3
"""Bootstrap and run laned from a fresh clone with nothing but Python >= 3.11.

    python3 dev.py demo [ARGS...]    the whole lane end to end on simulators
    python3 dev.py test [ARGS...]    the test suite on four workers (ARGS go to pytest)
    python3 dev.py laned ARGS...     any laned subcommand inside the project's environment
    python3 dev.py bench [ARGS...]   the benchmarks

The first run creates `.venv/` beside this file and installs the project into
it (editable, with its test tools and every extra) at the versions pinned in
requirements.lock; later runs reuse it and reinstall only when pyproject.toml or
requirements.lock changed. Set LANED_VENV to use another folder.

LANED_NEWEST=1 installs aiomqtt, paho-mqtt and pymodbus at the newest versions
pyproject.toml's ranges allow instead of the locked ones (everything else stays
locked) and prints the versions it got: CI's second run.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("LANED_VENV", ROOT / ".venv"))
STAMP = VENV / ".laned-installed"
LOCK = ROOT / "requirements.lock"
#: the libraries whose newest allowed releases CI's second run tries (LANED_NEWEST=1)
NEWEST = ("aiomqtt", "paho-mqtt", "pymodbus")


def _newest() -> bool:
    return os.environ.get("LANED_NEWEST", "") not in {"", "0"}


def _python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _wanted_stamp() -> str:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + LOCK.read_bytes()).hexdigest()
    return f"{digest} {sys.version_info[:2]} newest={_newest()}"


def _name(requirement: str) -> str:
    """The normalised project name a requirement line starts with ("paho-mqtt>=2.1,<3" -> "paho-mqtt")."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else ""


def _newest_install_args() -> list[str]:
    """pip arguments for LANED_NEWEST: the lock without the pins of NEWEST as constraints, and
    NEWEST upgraded within pyproject.toml's own ranges (read from it, not repeated here)."""
    ranges = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = [r.split(";")[0].strip() for r in ranges if _name(r) in NEWEST]
    loose = VENV / "constraints-newest.txt"
    loose.write_text("".join(line + "\n" for line in LOCK.read_text().splitlines() if _name(line) not in NEWEST))
    return ["-c", str(loose), "--upgrade", "-e", f"{ROOT}[test]", *wanted]


def _print_newest_versions(python: Path) -> None:
    code = "import importlib.metadata as m, sys; print(*(f'{n}=={m.version(n)}' for n in sys.argv[1:]))"
    got = subprocess.run([str(python), "-c", code, *NEWEST], capture_output=True, text=True, check=True)
    print(f"dev.py: LANED_NEWEST: {got.stdout.strip()}", file=sys.stderr)


def ensure_env() -> Path:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs on whatever python3 is there
        sys.exit(f"laned needs Python >= 3.11; this is {sys.version.split()[0]}")
    python = _python()
    if not python.exists():
        print(f"dev.py: creating the environment in {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    if not STAMP.exists() or STAMP.read_text() != _wanted_stamp():
        print("dev.py: installing laned and its test tools (once)", file=sys.stderr)
        pip = [str(python), "-m", "pip", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
        if _newest():
            subprocess.run([*pip, "install", *_newest_install_args()], check=True)
        else:
            subprocess.run([*pip, "install", "-c", str(LOCK), "-e", f"{ROOT}[test]"], check=True)
        STAMP.write_text(_wanted_stamp())
    if _newest():
        _print_newest_versions(python)
    return python


def _parallel(rest: list[str]) -> list[str]:
    """The whole suite runs on four workers, one test file each at a time: most of its time is
    waiting on simulated devices in real time (the loaded emissions tests alone wait ~2 min), not
    computing, so four workers fit on two cores (measured: 3 m 46 s, 2 m 5 s of CPU). A chosen test
    or `-n` runs as asked."""
    chosen = any(a.startswith(("tests", "-n", "-k")) or "::" in a or a.endswith(".py") for a in rest)
    return [] if chosen else ["-n", "4", "--dist", "loadfile"]


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    python = ensure_env()
    if command == "test":
        args = [str(python), "-m", "pytest", *_parallel(rest), *rest]
    elif command == "demo":
        args = [str(python), "-m", "laned.cli", "demo", *rest]
    elif command == "bench":
        args = [str(python), "-m", "laned.cli", "bench", *rest]
    elif command == "laned":
        args = [str(python), "-m", "laned.cli", *rest]
    else:
        print(f"dev.py: unknown command {command!r}; try: demo, test, bench, laned", file=sys.stderr)
        return 2
    return subprocess.call(args, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
