"""Limits tables: loading config/limits/*.toml, row selection, overrides, errors naming the key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from laned.errors import ConfigError
from laned.judging.limits import (
    DEFAULT_LIMITS_DIR,
    Limits,
    LimitsError,
    apply_overrides,
    load_limits,
    select_brake_row,
)


@pytest.fixture(scope="module")
def limits() -> Limits:
    return load_limits()


def test_shipped_brake_limits_carry_the_values_of_standards_md(limits):
    b = limits.brakes
    # standards.md, "Limits for an unladen test" and the imbalance / other tables
    assert b.rows["passenger_car"].rear_axle_min_pct.value == 20.0
    assert b.rows["bus_over_3500kg"].rear_axle_min_pct.value == 40.0
    assert b.rows["bus_over_3500kg"].rear_axle_min_pct.certainty == "vendor"
    assert b.rows["other"].rear_axle_min_pct.value == 50.0
    assert b.rows["articulated_bus_road_train"].front_axle_min_pct is None  # "—"
    assert b.rows["trailer"].whole_vehicle_min_pct.value == 55.0
    assert b.imbalance.new_registration.rear_low_rate_max_pct.value == 8.0
    assert b.imbalance.in_use.front_max_pct.certainty == "vendor"
    assert b.drag.divisor.value == "wheel"
    assert b.drag.divisor.certainty == "unconfirmed"
    assert b.parking.exact_ratio_case.value == "standard"
    assert b.braking_start.wheel_load_pct.value == 5.0


def test_shipped_emission_limits_carry_the_values_of_standards_md(limits):
    tsi = limits.emissions.two_speed_idle
    assert tsi.sets["a"].idle_co_max_pct.value == 0.6
    assert tsi.sets["b"].idle_hc_max_ppm.value == 40.0
    assert tsi.sets["b"].idle_hc_max_ppm.certainty == "unconfirmed"
    assert (tsi.sets["a"].high_idle_lambda.min, tsi.sets["a"].high_idle_lambda.max) == (0.95, 1.05)
    assert tsi.lambda_cross_check_tolerance.value == 0.01
    assert tsi.dilution_min_co_co2_pct["gasoline"].value == 6.0
    assert (tsi.rpm.high_idle_light.min, tsi.rpm.high_idle_light.max) == (2300.0, 2700.0)
    fa = limits.emissions.free_acceleration
    assert (fa.sets["a"].k_max_m1.value, fa.sets["b"].k_max_m1.value) == (1.2, 0.7)
    assert fa.optical_path_length_m.value == 0.430
    assert limits.emissions.asm.sets["b"].asm2540_no_max_ppm.value == 390.0
    assert limits.emissions.lug_down.sets["a"].nox_max_ppm.value == 1500.0


def test_every_shipped_limit_cites_a_clause_and_a_certainty(limits):
    def walk(node):
        if isinstance(node, dict):
            if "certainty" in node:
                yield node
            for v in node.values():
                yield from walk(v)

    cited = list(walk(limits.model_dump()))
    assert len(cited) > 50
    for c in cited:
        assert c["clause"].strip()
        assert c["certainty"] in {"firm", "vendor", "unconfirmed"}
        assert c["source"] == "config"


@pytest.mark.parametrize(
    ("vehicle_class", "total_mass_kg", "row", "front", "rear", "whole"),
    [
        ("passenger_car", 1750, "passenger_car", 60.0, 20.0, 60.0),
        ("passenger_car", 4200, "passenger_car", 60.0, 20.0, 60.0),  # a passenger car at any mass
        ("truck", 3500, "light_vehicle", 60.0, 20.0, 60.0),  # ≤ 3500 kg includes 3500
        ("truck", 3501, "other", 60.0, 50.0, 60.0),
        ("bus", 3500, "light_vehicle", 60.0, 20.0, 60.0),
        ("bus", 3501, "bus_over_3500kg", 60.0, 40.0, 60.0),
        ("bus", 12000, "bus_over_3500kg", 60.0, 40.0, 60.0),
        ("truck", 25000, "other", 60.0, 50.0, 60.0),
        ("special_purpose", 16000, "other", 60.0, 50.0, 60.0),
        ("trailer", 2000, "trailer", None, 55.0, 55.0),  # a light trailer is still a trailer
        ("trailer", 30000, "trailer", None, 55.0, 55.0),
        ("articulated_bus", 28000, "articulated_bus_road_train", None, None, 55.0),
        ("road_train", 49000, "articulated_bus_road_train", None, None, 55.0),
    ],
)
def test_select_brake_row_picks_the_row_by_class_and_total_mass(
    limits, vehicle_class, total_mass_kg, row, front, rear, whole
):
    choice = select_brake_row(limits, vehicle_class, total_mass_kg)
    assert choice.name == row
    r = choice.row
    assert (r.front_axle_min_pct.value if r.front_axle_min_pct else None) == front
    assert (r.rear_axle_min_pct.value if r.rear_axle_min_pct else None) == rear
    assert r.whole_vehicle_min_pct.value == whole
    assert choice.clause.startswith("GB 38900-2020")


def test_select_brake_row_refuses_an_unknown_vehicle_class(limits):
    with pytest.raises(ValueError, match="unknown vehicle class 'tractor'"):
        select_brake_row(limits, "tractor", 3000)


def test_override_with_a_bare_number_replaces_the_value_and_marks_it_overridden(limits):
    changed = apply_overrides(limits, {"brakes": {"rows": {"other": {"rear_axle_min_pct": 55}}}})
    rear = changed.brakes.rows["other"].rear_axle_min_pct
    assert rear.value == 55.0
    assert rear.source == "override"
    assert rear.clause == limits.brakes.rows["other"].rear_axle_min_pct.clause
    # everything else, and the original object, untouched
    assert changed.brakes.rows["other"].front_axle_min_pct.source == "config"
    assert limits.brakes.rows["other"].rear_axle_min_pct.value == 50.0


def test_override_with_a_table_merges_into_the_limit(limits):
    changed = apply_overrides(
        limits,
        {"emissions": {"two_speed_idle": {"rpm": {"idle": {"min": 700, "max": 900}}, "limit_set": "a"}}},
    )
    idle = changed.emissions.two_speed_idle.rpm.idle
    assert (idle.min, idle.max, idle.source) == (700.0, 900.0, "override")
    assert changed.emissions.two_speed_idle.limit_set.value == "a"


def test_override_can_switch_settings_such_as_the_drag_divisor(limits):
    changed = apply_overrides(limits, {"brakes": {"drag": {"divisor": "axle", "wheel_max_pct": 8}}})
    assert changed.brakes.drag.divisor.value == "axle"
    assert changed.brakes.drag.wheel_max_pct.value == 8.0


def test_no_overrides_returns_the_limits_unchanged(limits):
    assert apply_overrides(limits, {}) is limits
    assert apply_overrides(limits, None) is limits


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"brake": {}}, "brake: no such key"),
        ({"brakes": {"drag": {"wheel_max": 8}}}, "brakes.drag.wheel_max: no such key"),
        ({"brakes": {"rows": {"lorry": {}}}}, "brakes.rows.lorry: no such key"),
        ({"brakes": {"drag": {"wheel_max_pct": "lots"}}}, "brakes.drag.wheel_max_pct.value"),
        ({"emissions": {"two_speed_idle": {"limit_set": "c"}}}, "emissions.two_speed_idle.limit_set.value"),
        ({"emissions": {"two_speed_idle": {"rpm": {"idle": 800}}}}, "emissions.two_speed_idle.rpm.idle: a band"),
    ],
)
def test_bad_overrides_are_refused_naming_the_key(limits, overrides, message):
    with pytest.raises(LimitsError, match="limit overrides") as info:
        apply_overrides(limits, overrides)
    assert any(message in p for p in info.value.problems)


def test_limits_error_is_both_a_config_error_and_a_value_error():
    assert issubclass(LimitsError, ConfigError)
    assert issubclass(LimitsError, ValueError)


def _copy_limits(tmp_path: Path) -> Path:
    for name in ("brakes.toml", "emissions.toml"):
        shutil.copy(DEFAULT_LIMITS_DIR / name, tmp_path / name)
    return tmp_path


def test_a_bad_value_in_a_limits_file_names_the_file_and_the_key(tmp_path):
    d = _copy_limits(tmp_path)
    text = (d / "brakes.toml").read_text(encoding="utf-8")
    (d / "brakes.toml").write_text(
        text.replace("wheel_max_pct = { value = 10.0,", 'wheel_max_pct = { value = "ten",'), encoding="utf-8"
    )
    with pytest.raises(LimitsError) as info:
        load_limits(d)
    assert info.value.source.endswith("brakes.toml")
    assert any(p.startswith("drag.wheel_max_pct.value") for p in info.value.problems)


def test_an_unknown_key_in_a_limits_file_is_refused(tmp_path):
    d = _copy_limits(tmp_path)
    with (d / "emissions.toml").open("a", encoding="utf-8") as fh:
        fh.write('\n[free_acceleration.sets.c]\nk_max_m1 = { value = 0.5, clause = "x", certainty = "firm" }\n')
    with pytest.raises(LimitsError) as info:
        load_limits(d)
    assert info.value.source.endswith("emissions.toml")
    assert any("free_acceleration.sets.c" in p for p in info.value.problems)


def test_a_limit_without_its_certainty_is_refused(tmp_path):
    d = _copy_limits(tmp_path)
    text = (d / "brakes.toml").read_text(encoding="utf-8")
    (d / "brakes.toml").write_text(
        text.replace(
            'wheel_load_pct = { value = 5.0, clause = "GB 38900-2020 roller brake test: start of braking '
            'for the imbalance window", certainty = "firm" }',
            'wheel_load_pct = { value = 5.0, clause = "x" }',
        ),
        encoding="utf-8",
    )
    with pytest.raises(LimitsError) as info:
        load_limits(d)
    assert any(p.startswith("braking_start.wheel_load_pct.certainty") for p in info.value.problems)


def test_a_missing_limits_file_is_named(tmp_path):
    with pytest.raises(LimitsError, match=r"brakes\.toml") as info:
        load_limits(tmp_path)
    assert "file not found" in info.value.problems[0]


def test_a_limit_set_without_its_table_is_refused(limits):
    data = limits.model_dump()
    del data["emissions"]["free_acceleration"]["sets"]["b"]
    with pytest.raises(ValueError, match=r"limit_set 'b' has no sets\.b"):
        Limits.model_validate(data)
