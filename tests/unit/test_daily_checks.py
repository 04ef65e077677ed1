"""Daily checks: passed today on the lane PC's local date, kept across restarts, refusals that say how."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from laned.daily_checks import DailyChecks

CST = timezone(timedelta(hours=8))  # a lane in China: UTC+8


class Clock:
    """The lane PC's local time, set by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=CST)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "daily-checks.json"


def test_a_fresh_lane_misses_leak_check_and_zero_and_says_how_to_run_them(path: Path) -> None:
    reasons = DailyChecks(path, clock=Clock(at(28, 9))).missing_reasons()
    assert len(reasons) == 2
    leak, zero = reasons
    assert "leak check has not passed today (never run on this lane)" in leak
    assert "zero has not passed today (never run on this lane)" in zero
    for reason in reasons:
        assert "laned daily-check --config" in reason and "…/cmd/daily-check" in reason
    assert not any("HC residue" in r for r in reasons)  # run by the test itself when stale


def test_checks_passed_today_let_a_test_start(path: Path) -> None:
    checks = DailyChecks(path, clock=Clock(at(28, 8, 5)))
    checks.record("leak_check", True, {"device": "gas-analyzer"})
    checks.record("zero", True)
    assert checks.missing_reasons() == []
    assert checks.passed_today("leak_check") and checks.passed_today("zero")


def test_checks_passed_yesterday_do_not_count_today(path: Path) -> None:
    clock = Clock(at(27, 23, 50))
    checks = DailyChecks(path, clock=clock)
    checks.record("leak_check", True)
    checks.record("zero", True)
    clock.now = at(28, 0, 10)  # twenty minutes later, but the next day
    reasons = checks.missing_reasons()
    assert len(reasons) == 2
    assert "(last passed 2026-11-27 23:50)" in reasons[0]


def test_today_is_the_lane_pcs_local_date_not_the_utc_date(path: Path) -> None:
    clock = Clock(at(28, 7, 30))  # 2026-11-27 23:30 UTC
    checks = DailyChecks(path, clock=clock)
    checks.record("leak_check", True)
    clock.now = at(28, 9)
    assert checks.passed_today("leak_check")


def test_the_latest_result_counts_so_a_failed_leak_check_after_a_pass_blocks_the_start(path: Path) -> None:
    clock = Clock(at(28, 8))
    checks = DailyChecks(path, clock=clock)
    checks.record("leak_check", True)
    checks.record("zero", True)
    clock.now = at(28, 10)
    checks.record("leak_check", False, {"error": "pressure dropped"})
    assert checks.missing_reasons() == [
        "daily check missing: the gas analyzer's leak check has not passed today (failed at 2026-11-28 10:00); "
        "run `laned daily-check --config <lane config>` on the lane PC, or send the station command "
        "…/cmd/daily-check"
    ]


def test_results_survive_a_restart(path: Path) -> None:
    clock = Clock(at(28, 8))
    DailyChecks(path, clock=clock).record("leak_check", True)
    DailyChecks(path, clock=clock).record("zero", True)  # a new process each time
    restarted = DailyChecks(path, clock=clock)
    assert restarted.missing_reasons() == []
    assert restarted.last("leak_check") == {"check": "leak_check", "passed": True, "at": "2026-11-28T08:00:00+08:00",
                                            "details": {}}


def test_the_file_is_plain_json_replaced_whole(path: Path) -> None:
    checks = DailyChecks(path, clock=Clock(at(28, 8)))
    checks.record("hc_residue", True, {"hc_ppm": 3})
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["checks"]["hc_residue"]["details"] == {"hc_ppm": 3}
    assert [e["check"] for e in data["history"]] == ["hc_residue"]
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_checks_recorded_by_the_cli_count_in_the_running_daemon_at_once(path: Path) -> None:
    clock = Clock(at(28, 8))
    daemon = DailyChecks(path, clock=clock)
    assert len(daemon.missing_reasons()) == 2
    cli = DailyChecks(path, clock=clock)
    cli.record("leak_check", True)
    cli.record("zero", True)
    assert daemon.missing_reasons() == []


def test_an_unreadable_file_counts_as_no_checks_and_is_replaced_by_the_next_one(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text("{not json", encoding="utf-8")
    checks = DailyChecks(path, clock=Clock(at(28, 8)))
    assert len(checks.missing_reasons()) == 2
    checks.record("zero", True)
    assert json.loads(path.read_text(encoding="utf-8"))["checks"]["zero"]["passed"] is True


def test_a_start_waits_while_the_daily_checks_run(path: Path) -> None:
    checks = DailyChecks(path, clock=Clock(at(28, 8)))
    checks.record("leak_check", True)
    checks.record("zero", True)
    checks.running = True
    assert checks.missing_reasons() == [
        "the gas analyzer's daily checks are running now: start again when they have finished"
    ]


def test_the_age_of_a_passed_check_and_none_for_a_failed_one(path: Path) -> None:
    clock = Clock(at(28, 8))
    checks = DailyChecks(path, clock=clock)
    checks.record("hc_residue", True)
    clock.now = at(28, 8, 5)
    assert checks.passed_age_s("hc_residue") == 300.0
    checks.record("hc_residue", False)
    assert checks.passed_age_s("hc_residue") is None
    assert checks.passed_age_s("zero") is None


def test_the_summary_gives_each_checks_last_result_and_time(path: Path) -> None:
    checks = DailyChecks(path, clock=Clock(at(28, 8)))
    checks.record("leak_check", True)
    assert checks.summary() == {
        "last_leak_check": {"passed": True, "at": "2026-11-28T08:00:00+08:00"},
        "last_zero": None,
        "last_hc_residue": None,
    }


def test_an_unknown_check_is_refused(path: Path) -> None:
    with pytest.raises(ValueError, match="unknown daily check 'calibration'"):
        DailyChecks(path).record("calibration", True)
