"""Tailpipe coupling's pieces (simulators/tailpipe.py): operating-point maps interpolated by hand,
engine-state messages and their timeout, and the six test vehicles of the dynamometer lane as data."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from protocols.pda import capture_contract_errors, parse_capture
from protocols.vin import validate_plate, validate_vin
from simulators.gas_analyzer import ExhaustTable, GasAnalyzerSimulator, LoadedExhaust, load_analyzer_config
from simulators.opacimeter import LoadedSmoke, SmokeTable, load_smoke
from simulators.pda import build_capture
from simulators.tailpipe import EngineCoupling, EngineState, interpolate, vehicle_ambient
from simulators.vehicle import load_vehicle_file, vehicle_identity


def state(rpm: float = 1800.0, load: float = 1.0, power_kw: float = 90.0, speed_kmh: float = 60.0) -> EngineState:
    return EngineState(rpm=rpm, load=load, power_kw=power_kw, speed_kmh=speed_kmh)


SMOKE_BY_RPM = LoadedSmoke.model_validate({
    "axis": "rpm",
    "points": [{"at": 1000, "k_m1": 1.00}, {"at": 1800, "k_m1": 0.60}, {"at": 2200, "k_m1": 0.40}],
})


def test_a_point_between_two_map_points_is_linear_between_them() -> None:
    # 1400 r/min is half way from 1000 (1.00) to 1800 (0.60): 0.80
    assert SMOKE_BY_RPM.values_at(state(rpm=1400))["k_m1"] == pytest.approx(0.80)
    # 2100 r/min is 300/400 of the way from 1800 (0.60) to 2200 (0.40): 0.60 - 0.75 * 0.20 = 0.45
    assert SMOKE_BY_RPM.values_at(state(rpm=2100))["k_m1"] == pytest.approx(0.45)


def test_a_point_on_a_map_point_takes_its_values_and_outside_the_map_the_nearest_ends() -> None:
    assert SMOKE_BY_RPM.values_at(state(rpm=1800))["k_m1"] == pytest.approx(0.60)
    assert SMOKE_BY_RPM.values_at(state(rpm=650))["k_m1"] == pytest.approx(1.00)
    assert SMOKE_BY_RPM.values_at(state(rpm=2600))["k_m1"] == pytest.approx(0.40)


def test_every_gas_of_the_exhaust_map_is_interpolated_on_the_maps_axis() -> None:
    loaded = LoadedExhaust.model_validate({
        "axis": "speed_kmh",
        "points": [
            {"at": 20, "hc_ppm": 60, "co_pct": 0.30, "co2_pct": 14.5, "o2_pct": 0.5, "no_ppm": 450},
            {"at": 40, "hc_ppm": 40, "co_pct": 0.20, "co2_pct": 14.7, "o2_pct": 0.3, "no_ppm": 350, "no2_ppm": 20},
        ],
    })
    # 25 km/h is a quarter of the way from 20 to 40 km/h; the rpm does not matter on this axis
    values = loaded.values_at(state(rpm=3000, speed_kmh=25))
    assert values == pytest.approx({"hc_ppm": 55, "co_pct": 0.275, "co2_pct": 14.55, "o2_pct": 0.45,
                                    "no_ppm": 425, "no2_ppm": 5})


def test_load_and_power_are_axes_too() -> None:
    points = [(0.0, {"k": 0.1}), (1.0, {"k": 0.9})]
    assert interpolate(points, 0.25)["k"] == pytest.approx(0.3)
    by_load = LoadedSmoke.model_validate({"axis": "load", "points": [{"at": 0, "k_m1": 0.1}, {"at": 1, "k_m1": 0.9}]})
    assert by_load.values_at(state(load=0.5))["k_m1"] == pytest.approx(0.5)


def test_a_full_load_map_scales_from_idle_with_the_load_fraction() -> None:
    smoke = LoadedSmoke.model_validate({
        "axis": "rpm", "scale_with_load": True,
        "points": [{"at": 1000, "k_m1": 1.00}, {"at": 1800, "k_m1": 0.60}],
    })
    # 1400 r/min: 0.80 at full load; at load 0.5 half way from idle 0.06: 0.06 + 0.74 × 0.5 = 0.43
    assert smoke.values_at(state(rpm=1400, load=0.5), {"k_m1": 0.06})["k_m1"] == pytest.approx(0.43)
    assert smoke.values_at(state(rpm=1400, load=0.0), {"k_m1": 0.06})["k_m1"] == pytest.approx(0.06)
    assert smoke.values_at(state(rpm=1400, load=1.0), {"k_m1": 0.06})["k_m1"] == pytest.approx(0.80)
    with pytest.raises(ValueError, match="idle"):
        smoke.values_at(state())


@pytest.mark.parametrize("points", [[], [{"at": 2, "k_m1": 0.5}, {"at": 1, "k_m1": 0.4}],
                                    [{"at": 1, "k_m1": 0.5}, {"at": 1, "k_m1": 0.4}]])
def test_a_map_without_points_or_out_of_order_is_refused(points: list[dict[str, float]]) -> None:
    with pytest.raises(ValueError, match="point"):
        LoadedSmoke.model_validate({"axis": "rpm", "points": points})


def test_an_unknown_axis_is_refused() -> None:
    with pytest.raises(ValueError, match="axis"):
        LoadedSmoke.model_validate({"axis": "gear", "points": [{"at": 1, "k_m1": 0.5}]})


def test_engine_state_message_fields_are_checked_by_name() -> None:
    coupling = EngineCoupling("test")
    with pytest.raises(ValueError, match="load"):
        coupling.receive({"rpm": 1800, "load": 1.7, "power_kw": 90, "speed_kmh": 60}, now=0.0)
    with pytest.raises(ValueError, match="speed_kmh"):
        coupling.receive({"rpm": 1800, "load": 1.0, "power_kw": 90}, now=0.0)
    with pytest.raises(ValueError, match="torque"):
        coupling.receive({"rpm": 1800, "load": 1.0, "power_kw": 90, "speed_kmh": 60, "torque": 1}, now=0.0)


def test_an_engine_state_holds_for_one_second_then_the_engine_modes_are_back() -> None:
    coupling = EngineCoupling("test")
    assert coupling.at(0.0) is None
    coupling.receive({"rpm": 1800, "load": 1.0, "power_kw": 90, "speed_kmh": 60}, now=10.0)
    assert coupling.at(10.5) == state()
    assert coupling.at(11.0) == state()
    assert coupling.at(11.05) is None


# ----- the dynamometer lane's vehicles ------------------------------------------------------

NEW_VEHICLES = ["asm-pass", "asm-fast-fail", "asm-humidity-fail", "lug-pass", "lug-fail-power", "lug-fail-nox80"]


@pytest.mark.parametrize("name", NEW_VEHICLES)
def test_each_dynamometer_vehicle_has_a_valid_distinct_identity_and_a_loaded_map(name: str) -> None:
    data = load_vehicle_file(name)
    vehicle = vehicle_identity(data)
    assert validate_vin(vehicle.vin) is None and validate_plate(vehicle.plate) is None
    assert data["capture"]["obd"]["ecu_vin"] == vehicle.vin
    exhaust = ExhaustTable.model_validate(data["exhaust"])
    assert exhaust.loaded is not None
    if vehicle.fuel == "diesel":
        smoke = SmokeTable.model_validate(data["smoke"])
        assert smoke.loaded is not None and smoke.loaded.axis == "rpm" and exhaust.loaded.axis == "rpm"
        assert vehicle.rated_engine_power_kw is not None


@pytest.mark.parametrize("name", NEW_VEHICLES)
def test_each_dynamometer_vehicle_is_met_by_its_simulators_and_its_pda_capture_is_valid(name: str) -> None:
    data = load_vehicle_file(name)
    sim = GasAnalyzerSimulator("/nonexistent/ga", config=load_analyzer_config(fast=True), vehicle=name)
    assert sim.vehicle.vin == data["vehicle"]["vin"]
    if data["vehicle"]["fuel"] == "diesel":
        smoke, _path = load_smoke(name)
        assert smoke.loaded is not None
    built = build_capture(data, "370100202612070001", capture_id="c-1", now=datetime(2026, 12, 7, 9, tzinfo=UTC))
    assert capture_contract_errors(parse_capture(built.payload)) == []


def test_the_dynamometer_vehicles_are_six_different_vehicles() -> None:
    identities = [vehicle_identity(load_vehicle_file(name)) for name in NEW_VEHICLES]
    assert len({v.vin for v in identities}) == len({v.plate for v in identities}) == 6


def test_the_humidity_case_carries_its_weather_and_the_others_may_leave_it_out() -> None:
    ambient = vehicle_ambient(load_vehicle_file("asm-humidity-fail"))
    assert ambient is not None and (ambient.temp_c, ambient.rh_pct, ambient.baro_kpa) == (25.0, 70.0, 100.5)
    assert vehicle_ambient(load_vehicle_file("asm-fast-fail")) is None


def test_the_nox80_truck_is_over_1500_ppm_wherever_the_80_percent_point_falls() -> None:
    # the file's comment: over 1584-1936 r/min the NOx is 1588-1748 ppm; at 100 % (1980-2420) below
    exhaust = ExhaustTable.model_validate(load_vehicle_file("lug-fail-nox80")["exhaust"])
    assert exhaust.loaded is not None
    idle = exhaust.idle.model_dump(include={"hc_ppm", "co_pct", "co2_pct", "o2_pct", "no_ppm", "no2_ppm"})

    def nox(rpm: float) -> float:  # at full throttle, load 1.0: the map's own values
        values = exhaust.loaded.values_at(state(rpm=rpm, load=1.0), idle)  # type: ignore[union-attr]
        return values["no_ppm"] + values["no2_ppm"]

    assert nox(1584) == pytest.approx(1747.8) and nox(1936) == pytest.approx(1587.6)
    assert nox(2200) == pytest.approx(1320)


# ----- the ASM cars' verdicts, as their header comments work them out ------------------------------


def _asm_corrected(name: str, speed_kmh: float) -> tuple[float, float, float, float, float]:
    """HCc, COc, NO·DF, NOc = NO·DF·kH and kH of a car's map at this speed under its [ambient]
    (standards.md, ASM per-second values; a = 4.644 for gasoline)."""
    data = load_vehicle_file(name)
    exhaust = ExhaustTable.model_validate(data["exhaust"])
    assert exhaust.loaded is not None
    gas = exhaust.loaded.values_at(state(speed_kmh=speed_kmh))
    ambient = vehicle_ambient(data)
    t, rh, pa = (ambient.temp_c, ambient.rh_pct, ambient.baro_kpa) if ambient else (21.5, 55.3, 100.8)
    x = gas["co2_pct"] / (gas["co2_pct"] + gas["co_pct"])
    df = x / (4.644 + 1.88 * x) * 100 / gas["co2_pct"]
    pd = 0.61078 * math.exp(17.27 * t / (t + 237.3))
    h = 6.211 * rh * pd / (pa - pd * rh / 100)
    kh = 1 / (1 - 0.0329 * (h - 10.71))
    return gas["hc_ppm"] * df, gas["co_pct"] * df, gas["no_ppm"] * df, gas["no_ppm"] * df * kh, kh


def test_asm_pass_runs_both_phases_to_the_end_and_passes() -> None:
    hc, co, _no_df, no, kh = _asm_corrected("asm-pass", 25)
    assert kh == pytest.approx(0.8984, abs=1e-4)
    assert (round(hc), round(co, 2), round(no)) == (63, 0.31, 421)  # 63 > 45: no fast pass; all ≤ 90 / 0.50 / 700
    hc, co, _no_df, no, _kh = _asm_corrected("asm-pass", 40)
    assert (round(hc), round(co, 2), round(no)) == (52, 0.26, 391)  # 52 > 40: no fast pass; all ≤ 80 / 0.40 / 650


def test_asm_fast_fail_is_over_500_percent_of_the_co_limit() -> None:
    _hc, co, *_ = _asm_corrected("asm-fast-fail", 25)
    assert round(co, 2) == 3.44 and co > 5 * 0.50


def test_asm_humidity_fail_passes_no_before_the_humidity_correction_and_fails_after() -> None:
    hc, _co, no_df, no, kh = _asm_corrected("asm-humidity-fail", 25)
    assert kh == pytest.approx(1.1219, abs=1e-4)
    assert round(hc) == 57 and round(no_df) == 665 and round(no) == 747  # 665 ≤ 700 < 747
