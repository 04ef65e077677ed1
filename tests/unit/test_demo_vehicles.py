"""`laned demo --vehicles`: which inspections run, and the starts of the loaded ones."""

from __future__ import annotations

import pytest

from laned.demo import chosen_inspections, start_document, uses_dynamometer


def test_the_default_is_todays_two_without_the_dynamometer() -> None:
    chosen = chosen_inspections("gasoline-car,diesel-truck")
    assert [name for name, _ in chosen] == ["gasoline-car", "diesel-truck"]
    assert not uses_dynamometer(chosen)


def test_all_adds_an_asm_car_and_a_lug_down_truck_on_the_dynamometer() -> None:
    chosen = chosen_inspections("all")
    assert [(name, items["emissions"]) for name, items in chosen] == [
        ("gasoline-car", "two_speed_idle"), ("diesel-truck", "free_acceleration"),
        ("asm-pass", "asm"), ("lug-pass", "lug_down")]
    assert uses_dynamometer(chosen)


def test_an_unknown_vehicle_is_named() -> None:
    with pytest.raises(ValueError, match="unknown tractor"):
        chosen_inspections("gasoline-car,tractor")


def test_the_lug_down_start_carries_the_rated_power_and_limit_set_a_and_no_brake_items() -> None:
    start = start_document("lug-pass", "370100202612070004", "lug_down")
    assert start["vehicle"]["rated_engine_power_kw"] == 180  # lug-pass.toml [vehicle]
    assert start["items"]["emissions"] == "lug_down"
    assert start["items"]["brake_axles"] == [] and start["items"]["parking_brake"] is False
    assert len(start["axles"]) == 2  # the start needs the axles even without a brake test
    assert start["limit_overrides"] == {"emissions": {"lug_down": {"limit_set": "a"}}}


def test_a_two_speed_idle_start_is_as_before() -> None:
    start = start_document("gasoline-car", "370100202612070001", "two_speed_idle")
    assert "limit_overrides" not in start and "rated_engine_power_kw" not in start["vehicle"]
    assert start["items"]["brake_axles"] == [1, 2]
