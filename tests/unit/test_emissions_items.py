"""The emissions procedures' pure half: one-second means, process-data rows, and the SDS / ZYJS items.

Expected values are worked out by hand from standards.md and the device manuals
(Brettschneider's λ of the gasoline-car's high-idle gas, the opacimeter manual's
N 41.1 % / K 1.23 m⁻¹ example), never copied from the code's output.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from drivers.base import Broadcast
from drivers.errors import DeviceTimeout
from laned.judging.emissions import GasSecond, judge_free_acceleration, judge_two_speed_idle, phase_means
from laned.judging.limits import apply_overrides, load_limits
from laned.procedures.emissions_items import (
    Acceleration,
    ReadingFeed,
    Sample,
    bucket_rows,
    failure_reason,
    free_acceleration_item,
    gas_row,
    gas_second,
    n_k_consistent,
    settings_from,
    smoke_row,
    two_speed_idle_item,
    windows,
)
from laned.procedures.free_acceleration import FreeAccelerationSettings
from laned.procedures.two_speed_idle import TwoSpeedIdleSettings
from protocols import gas_analyzer as ga
from protocols import opacimeter as op

LIMITS = load_limits()
START = datetime(2026, 11, 28, 9, 0, 0, tzinfo=UTC)


def main(hc: int = 20, co: float = 0.10, co2: float = 14.8, o2: float = 0.25, lam: float | None = 1.008,
         rpm: int = 2500, oil: float | None = 88.5, seq: int = 1) -> ga.MainReading:
    return ga.MainReading(hc_ppm=hc, co_pct=co, co2_pct=co2, o2_pct=o2, no_ppm=120, rpm=rpm, oil_temp_c=oil,
                          lambda_value=lam, pef=0.525, flags=ga.Flags.PUMP_SAMPLE, seq=seq)


def seconds(n: int = 30, **gas: float) -> list[GasSecond]:
    values = {"hc_ppm": 20.0, "co_pct": 0.10, "co2_pct": 14.8, "o2_pct": 0.25, "no_ppm": 120.0,
              "lambda_value": 1.008, "rpm": 2500.0} | gas
    return [GasSecond(**values) for _ in range(n)]


def tsi_item(verdict: Any, high_idle: Any, limits: Any = LIMITS) -> dict[str, Any]:
    tsi = limits.emissions.two_speed_idle
    return two_speed_idle_item(
        verdict, high_idle=high_idle, tolerance=tsi.lambda_cross_check_tolerance,
        bands={"high_idle": tsi.rpm.high_idle_light, "idle": tsi.rpm.idle},
        ambient={"ambient_temp_c": 21.5}, oil_temp_c=88.5, pre_checks={}, process_data={"rows": []}, settings={},
    )


# ----- one-second means and rows ----------------------------------------------------------------


def test_a_one_second_mean_averages_hc_signed_and_lambda_only_where_the_analyzer_gave_one() -> None:
    # HC -1 and 3 ppm → +1.0 (signed, zero drift stays in); CO 0.10 and 0.12 → 0.11 %;
    # λ 1.010 and "none" (CO2 < 0.10 %) → 1.010 alone; rpm 2490 and 2510 → 2500
    second = gas_second([main(hc=-1, co=0.10, lam=1.010, rpm=2490), main(hc=3, co=0.12, lam=None, rpm=2510)])
    assert second.hc_ppm == pytest.approx(1.0)
    assert second.co_pct == pytest.approx(0.11)
    assert second.lambda_value == pytest.approx(1.010)
    assert second.rpm == pytest.approx(2500.0)


def test_a_second_without_any_lambda_has_lambda_0_and_an_empty_second_is_an_error() -> None:
    assert gas_second([main(lam=None)]).lambda_value == 0.0
    with pytest.raises(ValueError):
        gas_second([])


def test_a_gas_row_carries_the_means_the_engine_the_oil_and_the_ambient_at_its_time() -> None:
    env = ga.EnvReading(ambient_temp_c=21.5, baro_kpa=100.8, rh_pct=55.3)
    row = gas_row(2.5, "high_idle", [main(hc=20, co=0.10), main(hc=21, co=0.11, oil=None)], measured=True,
                  held=False, env=env, started_at=START)
    assert row["time"] == "2026-11-28T09:00:02.500000+00:00"
    assert (row["phase"], row["measured"], row["readings"]) == ("high_idle", True, 2)
    assert (row["hc_ppm"], row["co_pct"], row["rpm"]) == (20.5, 0.11, 2500.0)  # 0.105 → 0.11 half away from zero
    assert row["oil_temp_c"] == 88.5  # only the reading that had an oil probe value
    assert (row["ambient_temp_c"], row["rh_pct"], row["baro_kpa"]) == (21.5, 55.3, 100.8)


def test_a_smoke_row_reports_ambient_kelvin_as_celsius_and_the_largest_k_of_the_row() -> None:
    env = op.EnvReading(ambient_temp_k=294.6, rh_pct=55.3, baro_kpa=100.8)  # the manual's ENV example
    readings = [op.RealtimeReading(23.4, 0.62, 2350, None, 77), op.RealtimeReading(41.1, 1.23, 2410, 355, 78)]
    row = smoke_row(0.0, "measured 1", readings, env=env, started_at=START)
    assert row["ambient_temp_c"] == 21.5  # 294.6 K − 273.15 = 21.45 → 21.5
    assert (row["k_max_m1"], row["rpm_max"]) == (1.23, 2410)
    assert row["k_m1"] == 0.93  # (0.62 + 1.23) / 2 = 0.925 → 0.93
    assert row["oil_temp_c"] == 81.9  # 355 K − 273.15 = 81.85 → 81.9


def test_samples_are_cut_into_windows_within_each_phase() -> None:
    samples = [Sample(0.00, "r0", "a"), Sample(0.10, "r1", "a"), Sample(0.30, "r2", "a"),
               Sample(0.35, "r3", "b"), Sample(0.90, "r4", "b")]
    assert bucket_rows(samples, 0.25) == [
        (0.00, "a", ["r0", "r1"]), (0.25, "a", ["r2"]), (0.35, "b", ["r3"]), (0.85, "b", ["r4"]),
    ]


@pytest.mark.parametrize(("duration_s", "interval_s", "rows"), [(30, 1, 30), (15, 2, 8), (0, 1, 1), (0.4, 1, 1)])
def test_a_duration_takes_whole_rows_halves_rounding_up(duration_s: float, interval_s: float, rows: int) -> None:
    assert windows(duration_s, interval_s) == rows


# ----- settings ---------------------------------------------------------------------------------


def test_settings_come_from_the_lane_table_or_default() -> None:
    assert settings_from(SimpleNamespace(), "two_speed_idle", TwoSpeedIdleSettings).measure_s == 30.0
    given = settings_from(SimpleNamespace(two_speed_idle={"measure_s": 20}), "two_speed_idle", TwoSpeedIdleSettings)
    assert given.measure_s == 20.0 and given.high_idle_settle_s == 15.0
    model = FreeAccelerationSettings(below_governed="flag")
    assert settings_from(SimpleNamespace(free_acceleration=model), "free_acceleration",
                         FreeAccelerationSettings) is model
    with pytest.raises(ValidationError):
        settings_from(SimpleNamespace(two_speed_idle={"measure_secs": 20}), "two_speed_idle", TwoSpeedIdleSettings)


# ----- the SDS item -----------------------------------------------------------------------------


def test_a_clean_gasoline_car_gives_a_passing_sds_item_naming_limit_set_b() -> None:
    high_idle = phase_means(seconds())
    idle = phase_means(seconds(hc_ppm=35.0, co_pct=0.15, co2_pct=14.6, o2_pct=0.30, rpm=780.0))
    verdict = judge_two_speed_idle(high_idle, idle, LIMITS.emissions, total_mass_kg=1750)
    item = tsi_item(verdict, high_idle)
    assert (item["code"], item["item"], item["verdict"], item["reason"]) == ("SDS", "two_speed_idle", "pass", None)
    assert item["limit_set"] == "b"  # the set emissions.toml names
    assert item["values"]["high_idle"] == {"hc_ppm": 20, "co_pct": 0.1, "co2_pct": 14.8, "o2_pct": 0.25,
                                           "no_ppm": 120, "lambda": 1.01, "rpm": 2500}
    assert (item["values"]["idle"]["co_pct"], item["values"]["idle"]["hc_ppm"]) == (0.15, 35)
    # Brettschneider of HC 20, CO 0.10, CO2 14.8, O2 0.25 (by hand): 21.386206 / 21.215675 = 1.00804
    cross = item["lambda_cross_check"]
    assert cross["brettschneider_of_mean_gases"] == 1.008 and cross["analyzer_mean"] == 1.008
    assert cross["agrees"] is True and cross["tolerance"]["value"] == 0.01
    assert item["limits"]["idle_co"]["value"] == 0.4 and item["limits"]["rpm_high_idle"]["value"] == [2300, 2700]
    assert [c["item"] for c in item["checks"]] == ["high_idle_co", "high_idle_hc", "high_idle_lambda", "idle_co",
                                                   "idle_hc"]
    assert all(c["pass"] for c in item["checks"])


def test_a_high_idle_co_fails_and_the_reason_names_value_and_limit() -> None:
    high_idle = phase_means(seconds())
    idle = phase_means(seconds(co_pct=1.10, co2_pct=13.9, hc_ppm=60.0, rpm=800.0))
    verdict = judge_two_speed_idle(high_idle, idle, LIMITS.emissions, total_mass_kg=1690)
    item = tsi_item(verdict, high_idle)
    assert item["verdict"] == "fail"
    assert item["reason"] == "idle CO 1.10 %, limit ≤ 0.40 %; idle HC 60 ppm, limit ≤ 40 ppm"


def test_lambda_outside_its_band_is_reported_as_a_band() -> None:
    high_idle = phase_means(seconds(lambda_value=1.085, co_pct=0.05, co2_pct=13.6, o2_pct=1.70, hc_ppm=30.0))
    idle = phase_means(seconds(rpm=760.0, hc_ppm=40.0))
    verdict = judge_two_speed_idle(high_idle, idle, LIMITS.emissions, total_mass_kg=1850, limit_set="a")
    # λ 1.085 → 1.09 (half away from zero) outside 0.95 … 1.05
    assert failure_reason(verdict.checks) == "high-idle λ 1.09, limit 0.95 to 1.05"


def test_a_diluted_sample_makes_a_void_item_whose_reason_says_why() -> None:
    high_idle = phase_means(seconds(co_pct=0.04, co2_pct=5.21))  # CO + CO2 = 5.25 % < 6 %
    idle = phase_means(seconds(co_pct=0.05, co2_pct=5.14, rpm=790.0))
    verdict = judge_two_speed_idle(high_idle, idle, LIMITS.emissions, total_mass_kg=1780)
    item = tsi_item(verdict, high_idle)
    assert item["verdict"] == "void"
    assert item["reason"].startswith("void: high idle: sample diluted, CO + CO2 = 5.25 % below 6.0 %")
    assert len(item["void_reasons"]) == 2


def test_the_regulators_limit_set_override_is_named_in_the_item() -> None:
    limits = apply_overrides(LIMITS, {"emissions": {"two_speed_idle": {"limit_set": "a"}}})
    high_idle = phase_means(seconds())
    idle = phase_means(seconds(hc_ppm=60.0, rpm=780.0))  # 60 ppm: fails set b (40), passes set a (80)
    item = tsi_item(judge_two_speed_idle(high_idle, idle, limits.emissions, total_mass_kg=1750), high_idle, limits)
    assert item["limit_set"] == "a" and item["verdict"] == "pass"
    assert item["limits"]["idle_hc"]["value"] == 80.0


# ----- the ZYJS item ----------------------------------------------------------------------------


PATH = LIMITS.emissions.free_acceleration.optical_path_length_m
TOLERANCE = LIMITS.emissions.free_acceleration.n_k_tolerance_pct


def fa_item(verdict: Any, accelerations: list[Acceleration], void_reason: str | None = None) -> dict[str, Any]:
    fa = LIMITS.emissions.free_acceleration
    return free_acceleration_item(
        verdict, accelerations=accelerations, governed={"required_min_rpm": 2250}, path=PATH, tolerance=TOLERANCE,
        limit=fa.sets["b"].k_max_m1, limit_set="b", void_reason=void_reason, flags=["flagged"], ambient={},
        oil_temp_c=None, process_data={"rows": []}, settings={}, zero={"passed": True},
    )


def measured(number: int, k: float, n: float, rpm: int, *, counted: bool = True) -> Acceleration:
    return Acceleration(number=number, purpose="measured", max_rpm=rpm, peak_k_m1=k, peak_opacity_pct=n,
                        rpm_at_peak=rpm, reached_governed=counted, counted=counted, n_k_consistent=True)


def test_the_zyjs_item_counts_only_valid_accelerations_and_judges_their_mean_k() -> None:
    accelerations = [
        Acceleration(1, "purge", 2720), measured(1, 0.45, 17.6, 2708), measured(2, 0.42, 16.5, 1752, counted=False),
        measured(3, 0.44, 17.2, 2709), measured(4, 0.44, 17.2, 2692),
    ]
    verdict = judge_free_acceleration([0.45, 0.44, 0.44], LIMITS.emissions, peak_rpm=[2708, 2709, 2692])
    item = fa_item(verdict, accelerations)
    # (0.45 + 0.44 + 0.44) / 3 = 0.4433 → 0.44 m⁻¹ ≤ 0.7 (set b)
    assert (item["code"], item["verdict"], item["values"]["mean_k_m1"]) == ("ZYJS", "pass", 0.44)
    assert item["values"]["peak_k_m1"] == [0.45, 0.44, 0.44]
    assert item["values"]["rpm_at_peak"] == [2708, 2709, 2692]
    assert [a["counted"] for a in item["accelerations"]] == [False, True, False, True, True]
    assert item["accelerations"][2]["reached_governed_speed"] is False
    # N from K by the manual's formula: 100 · (1 − e^(−0.45·0.43)) = 17.58 → 17.6 %
    assert item["accelerations"][1]["opacity_from_k_pct"] == 17.6
    assert item["limits"]["free_acceleration_k"]["value"] == 0.7 and item["checks"][0]["pass"] is True


def test_a_zyjs_item_with_too_few_valid_accelerations_is_void() -> None:
    item = fa_item(None, [measured(1, 0.45, 17.6, 2708)], void_reason="only 1 of 3 reached governed speed")
    assert item["verdict"] == "void" and item["reason"] == "void: only 1 of 3 reached governed speed"
    assert item["values"]["mean_k_m1"] is None and item["checks"] == []


def test_a_mean_k_over_the_limit_fails_with_its_reason() -> None:
    verdict = judge_free_acceleration([1.45, 1.52, 1.49], LIMITS.emissions)
    item = fa_item(verdict, [measured(i, k, 46.0, 3500) for i, k in enumerate((1.45, 1.52, 1.49), 1)])
    # (1.45 + 1.52 + 1.49) / 3 = 1.4867 → 1.49 m⁻¹ > 0.7
    assert item["verdict"] == "fail" and item["reason"] == "mean K 1.49 m⁻¹, limit ≤ 0.70 m⁻¹"


@pytest.mark.parametrize(("n_pct", "k_m1", "consistent"), [
    (41.1, 1.23, True),   # the manual's PEAK example: 100 · (1 − e^(−1.23·0.43)) = 41.07 %
    (23.4, 0.62, True),   # the manual's REALTIME example: 23.43 %
    (43.0, 1.23, False),  # 1.93 % away
])
def test_peak_n_and_k_are_cross_checked_through_the_optical_path(n_pct: float, k_m1: float, consistent: bool) -> None:
    assert n_k_consistent(n_pct, k_m1, PATH, TOLERANCE) is consistent


# ----- fresh readings ---------------------------------------------------------------------------


def fake_driver(connected: bool = True) -> Any:
    return SimpleNamespace(name="gas-analyzer", port="/dev/ttyUSB0", readings=Broadcast(), is_connected=connected,
                           health=SimpleNamespace(last_error="no reply within 300 ms"))


def test_a_reading_with_a_seq_already_seen_is_the_same_measurement_and_is_dropped() -> None:
    feed = ReadingFeed(fake_driver(), silence_s=1.5)
    feed.phase = "idle"
    for seq in (1, 1, 2, 2, 2, 3):
        feed.add(main(seq=seq))
    assert [s.reading.seq for s in feed.samples] == [1, 2, 3]
    assert {s.phase for s in feed.samples} == {"idle"}


def test_an_analyzer_silent_longer_than_the_limit_is_reported_with_its_last_error() -> None:
    feed = ReadingFeed(fake_driver(), silence_s=1.5)
    feed.add(main(seq=1))
    feed.check_alive()
    feed.last_fresh = time.monotonic() - 2.0
    with pytest.raises(DeviceTimeout) as caught:
        feed.check_alive()
    assert caught.value.device == "gas-analyzer" and caught.value.port == "/dev/ttyUSB0"
    assert "no new reading for 2." in caught.value.detail and "no reply within 300 ms" in caught.value.detail


def test_a_driver_that_lost_its_device_is_reported_at_once() -> None:
    feed = ReadingFeed(fake_driver(connected=False), silence_s=1.5)
    with pytest.raises(DeviceTimeout):
        feed.check_alive()
