"""The monitor's model and texts, message by message (no screen, no broker): what a lane's messages
make the technician see."""

from __future__ import annotations

import datetime as dt
import json

from laned.monitor import render
from laned.monitor.model import StationModel, label_and_unit, live_values

ROOT = "laned/v1/370100"


def feed(model: StationModel, topic: str, document: dict[str, object]) -> str | None:
    return model.apply(f"{ROOT}/{topic}", json.dumps(document).encode())


def test_units_come_from_the_field_names() -> None:
    assert label_and_unit("left_force_n") == ("left force", "N")
    assert label_and_unit("left_speed_kmh") == ("left speed", "km/h")
    assert label_and_unit("k_m1") == ("K", "m⁻¹")
    assert label_and_unit("co2_pct") == ("CO₂", "%")
    assert label_and_unit("no_ppm") == ("NO", "ppm")
    assert label_and_unit("rpm") == ("rpm", "r/min")
    assert label_and_unit("state") == ("state", "")
    shown = live_values({"schema": "live-opacimeter/1", "device": "opacimeter", "lane_time": 1.0, "seq": 4,
                         "opacity_pct": 2.5, "oil_temp_k": None})
    assert shown == [("opacity", "2.5", "%"), ("oil temp", "-", "K")]


def test_messages_of_other_stations_or_not_json_change_nothing() -> None:
    model = StationModel("laned/v1", "370100")
    assert model.apply("laned/v1/370200/L1/status", b"{}") is None
    assert model.apply(f"{ROOT}/L1/status", b"not json") is None
    assert model.apply(f"{ROOT}/L1/cmd/start", b"{}") is None  # commands are not the lane's state
    assert model.lanes == {}


def test_the_brake_curve_grows_per_axle_and_restarts_with_the_next() -> None:
    model = StationModel("laned/v1", "370100")
    curve = {"reading": "BrakeCurveLive", "axle_no": 1, "test": "service", "sample_rate_hz": 100}
    feed(model, "L1/live/brake-tester", curve | {"left_force_dan": [1, 2], "right_force_dan": [1, 1]})
    feed(model, "L1/live/brake-tester", curve | {"left_force_dan": [5], "right_force_dan": [4]})
    lane = model.lanes["L1"]
    assert (lane.curve.left_dan, lane.curve.right_dan, lane.curve.times_s()) == ([1, 2, 5], [1, 1, 4],
                                                                                 [0.0, 0.01, 0.02])
    feed(model, "L1/live/brake-tester", curve | {"axle_no": 2, "left_force_dan": [9], "right_force_dan": [8]})
    assert lane.curve.left_dan == [9] and lane.curve.axle_no == 2
    assert "brake-tester" not in lane.live  # curve messages are the plot's, not the values line


def test_a_prompt_shows_until_its_step_finishes_and_replies_are_logged() -> None:
    model = StationModel("laned/v1", "370100")
    feed(model, "L1/event", {"type": "prompt", "step": "brake.axle1", "text": "brake now"})
    assert model.lanes["L1"].prompt == "brake now"
    feed(model, "L1/event", {"type": "step_finished", "step": "brake.axle1", "text": "recorded"})
    assert model.lanes["L1"].prompt is None
    feed(model, "L1/reply/r1", {"command": "abort", "accepted": False, "reasons": ["no inspection in progress"]})
    assert list(model.lanes["L1"].log)[-1] == "abort refused: no inspection in progress"


def test_todays_daily_checks_and_the_outbox_alarm_are_shown() -> None:
    model = StationModel("laned/v1", "370100")
    today_utc = dt.datetime(2026, 12, 7, 1, 5, tzinfo=dt.UTC)
    feed(model, "L1/status", {"state": "online", "outbox": {"depth": 100000, "over_limit": True}, "daily_checks": {
        "running": False, "due_today": ["zero"],
        "last_leak_check": {"passed": True, "at": today_utc.isoformat()},
        "last_zero": {"passed": False, "at": today_utc.isoformat()},
        "last_hc_residue": {"passed": True, "at": "2026-12-01T01:00:00+00:00"}}})
    text = render.outbox_and_checks(model.lanes["L1"], today=today_utc.astimezone().date())
    local = today_utc.astimezone()
    assert text == (f"outbox 100000 pending  ALARM: outbox over its limit\n"
                    f"daily checks today: leak check passed {local:%H:%M}; zero FAILED {local:%H:%M}; due: zero")
