"""In CI a test never skips for a tool CI installs: tests/conftest.py turns a skip whose reason
says the tool "is not installed" into a failure when LANED_CI (or CI) is set, and leaves it a
skip on a developer's machine without the tool. Checked on a throwaway test run by pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_inner(tmp_path: Path, ci: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_runtest_makereport  # noqa: F401\n")
    (tmp_path / "test_inner.py").write_text(
        "import pytest\n\n\n"
        "def test_needs_a_tool() -> None:\n"
        "    pytest.skip('mbpoll is not installed (apt-get install mbpoll)')\n\n\n"
        "def test_needs_a_newer_kernel() -> None:\n"
        "    pytest.skip('the kernel has no PR_SET_MDWE (Linux < 6.3)')\n")
    env = {**os.environ, "LANED_CI": ci, "CI": ci, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "-p", "no:randomly", "--rootdir", str(tmp_path), str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_in_ci_a_skip_for_a_missing_tool_fails_and_names_the_tool(tmp_path: Path) -> None:
    run = run_inner(tmp_path, "1")
    assert run.returncode == 1, run.stdout
    assert "in CI a missing tool is a failure, not a skip: mbpoll is not installed" in run.stdout
    assert "1 failed, 1 skipped" in run.stdout  # a skip for the kernel is still a skip


def test_outside_ci_a_missing_tool_is_a_skip(tmp_path: Path) -> None:
    run = run_inner(tmp_path, "0")
    assert run.returncode == 0, run.stdout
    assert "2 skipped" in run.stdout
