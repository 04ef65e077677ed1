"""Two-speed idle and free acceleration through the whole lane: station `start` on MQTT → procedure → result.

Real pieces only: an embedded amqtt broker, one Lane per scenario with its gas analyzer or
opacimeter driver on a real pty to the simulator (`fast` device timings), the simulated driver
(simulators/driver.py) acting on the lane's prompts through the simulators' control sockets. The
scenarios run side by side, a lane each, so the file stays well under a minute and a half: the
opacimeter's free accelerations happen at the engine's own pace and cannot be scaled.

Expected values are worked out by hand from the vehicle files (config/vehicles/*.toml), the
limits (config/limits/emissions.toml: set b in force unless the station overrides it) and the
formulas in standards.md. The simulators add noise (HC ± 0.5 ppm, CO ± 0.003 %, K ± 0.01 m⁻¹ a
reading); where a mean can move by one last digit the comparison allows it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from laned import daily_checks as daily_check_cli
from laned.broker import EmbeddedBroker, free_port
from laned.config import InspectionSettings, parse_config
from laned.daemon import Lane
from laned.daily_checks import DailyChecks, DailyCheckSettings
from laned.procedures.free_acceleration import FreeAccelerationSettings
from laned.procedures.two_speed_idle import TwoSpeedIdleSettings
from laned.results import verify
from simulators.control import ControlServer, send_control
from simulators.gas_analyzer import GasAnalyzerSimulator, load_analyzer_config
from simulators.opacimeter import OpacimeterSimulator, load_meter_settings
from tests.e2e_helpers import StationSide, lane_with_driver, start_command
from tests.helpers import Recorder, lane_config_dict
from tests.integration.test_messages_match_schemas import schema_errors

pytestmark = pytest.mark.integration

KEY = "test-signing-key"
TIME_SCALE = 0.05
SET_A = {"emissions": {"two_speed_idle": {"limit_set": "a"}}}


class EmissionsSettings(InspectionSettings):
    """The `[inspection]` table with short windows for the two-speed idle test."""

    two_speed_idle: TwoSpeedIdleSettings = TwoSpeedIdleSettings(min_window_s=0.15, precondition_s=10.0)
    free_acceleration: FreeAccelerationSettings = FreeAccelerationSettings()
    daily_checks: DailyCheckSettings = DailyCheckSettings()


@dataclass
class Rig(StationSide):
    vehicle: str
    lane: Lane
    station: Recorder
    control: Path
    sim: Any
    broker: EmbeddedBroker
    lane_task: asyncio.Task[None]


@contextlib.asynccontextmanager
async def lane_rig(tmp_path: Path, broker: EmbeddedBroker, vehicle: str, lane_id: str, *, device: str,
                   daily_checks_passed: bool = True, settings: EmissionsSettings | None = None) -> AsyncIterator[Rig]:
    """One lane with its own simulated device and simulated driver; the daily checks recorded as
    passed this morning unless `daily_checks_passed` is False."""
    control = tmp_path / f"{lane_id}.ctl"
    link = tmp_path / f"{lane_id}-{device}"
    async with contextlib.AsyncExitStack() as stack:
        sim: Any
        if device == "gas-analyzer":
            sim = await stack.enter_async_context(
                GasAnalyzerSimulator(link, config=load_analyzer_config(fast=True, seed=7), vehicle=vehicle))
            server = ControlServer(control, sim.control)
            await server.start()
            stack.push_async_callback(server.close)
            kind = "gas_analyzer"
        else:
            sim = await stack.enter_async_context(OpacimeterSimulator(
                link, vehicle=vehicle, settings=load_meter_settings(fast=True), control_path=control, seed=7))
            kind = "opacimeter"
        spec = {"kind": kind, "transport": {"type": "serial", "port": str(link)}, "reconnect_initial_s": 0.1,
                "reconnect_max_s": 0.3}
        data = lane_config_dict(tmp_path / lane_id, broker, {device: spec})
        data["lane"] |= {"lane": lane_id, "signing_key": KEY}
        config = parse_config(data, "test", environ={})
        config = config.model_copy(update={"inspection": settings or EmissionsSettings(time_scale=TIME_SCALE)})
        if daily_checks_passed:
            checks = DailyChecks(config.lane.state_dir / "daily-checks.json")
            checks.record("leak_check", True, {"device": device, "by": "test"})
            checks.record("zero", True, {"device": device, "by": "test"})
        lane = Lane(config, startup_grace_s=5, simulation=True)
        async with lane_with_driver(lane, broker, device, control) as (lane_task, station):
            yield Rig(vehicle, lane, station, control, sim, broker, lane_task)


def start(rig: Rig, inspection_no: str, method: str, **extra: Any) -> dict[str, Any]:
    return {**start_command(rig.vehicle, inspection_no, request_id=f"req-{inspection_no}", exterior=False,
                            emissions=method), **extra}


async def inspect(rig: Rig, inspection_no: str, method: str, **extra: Any) -> dict[str, Any]:
    reply = await rig.command("start", start(rig, inspection_no, method, **extra))
    assert reply["accepted"], reply["reasons"]
    return await rig.result(inspection_no)


# ----- the scenarios, run side by side ----------------------------------------------------------


@dataclass
class Done:
    result: dict[str, Any]
    events: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)

    def item(self, code: str) -> dict[str, Any]:
        return next(i for i in self.result["items"] if i["code"] == code)

    def prompts(self) -> list[str]:
        return [e["action"] for e in self.events if e["type"] == "prompt"]


async def refused_then_daily_check_then_pass(rig: Rig) -> Done:
    """No daily checks yet: the start is refused; the station runs them on MQTT; the start goes through."""
    before = [m.json() for m in rig.station.on("/status")][-1]
    refused = await rig.command("start", start(rig, "G1A", "two_speed_idle"))
    accepted = await rig.command("daily-check", {"schema": "lane-cmd-daily-check/1", "request_id": "daily-1"})
    finished = await rig.station.wait_for(
        lambda m: m.topic.endswith("/event") and m.json()["type"] == "step_finished"
        and m.json()["step"] == "daily_check", 30)
    after = await rig.station.wait_for(
        lambda m: m.topic.endswith("/status") and (m.json().get("daily_checks") or {}).get("two_speed_idle_ready"), 10)
    result = await inspect(rig, "G1B", "two_speed_idle")
    return Done(result, rig.events(), {"refused": refused, "daily_reply": accepted, "daily_done": finished.json(),
                                       "status_before": before, "status_after": after.json()})


async def analyzer_drops_out(rig: Rig) -> Done:
    """The analyzer goes silent for 3 s during the high-idle measurement."""
    reply = await rig.command("start", start(rig, "G5", "two_speed_idle"))
    assert reply["accepted"], reply["reasons"]
    await rig.station.wait_for(lambda m: m.topic.endswith("/event") and m.json()["type"] == "step_started"
                               and m.json()["step"] == "two_speed_idle.high_idle.measure", 60)
    await send_control(rig.control, {"fault": "silence", "for_s": 3})
    result = await rig.result("G5")
    deadline = time.monotonic() + 15
    while rig.sim.pump != "stop" and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    status = await rig.station.wait_status("online", 20, **{"gas-analyzer": "connected"})
    return Done(result, rig.events(), {"pump": rig.sim.pump, "lane_running": not rig.lane_task.done(),
                                       "status": status})


def unplugged(method: str, step: str, device: str) -> Callable[[Rig], Awaitable[Done]]:
    """The device's port disappears for 2 s at `step` (a pulled USB adapter), then comes back."""

    async def scenario(rig: Rig) -> Done:
        inspection_no = f"U{rig.lane.config.lane.lane}"
        reply = await rig.command("start", start(rig, inspection_no, method))
        assert reply["accepted"], reply["reasons"]
        await rig.station.wait_for(lambda m: m.topic.endswith("/event") and m.json()["type"] == "step_started"
                                   and m.json()["step"] == step, 60)
        await send_control(rig.control, {"fault": "lost_cable", "for_s": 2})
        result = await rig.result(inspection_no)
        status = await rig.station.wait_status("online", 20, **{device: "connected"})
        return Done(result, rig.events(), {"lane_running": not rig.lane_task.done(), "status": status})

    return scenario


def plain(method: str, **extra: Any) -> Callable[[Rig], Awaitable[Done]]:
    async def scenario(rig: Rig) -> Done:
        result = await inspect(rig, f"N{rig.lane.config.lane.lane}", method, **extra)
        return Done(result, rig.events())

    return scenario


FLAG_MODE = EmissionsSettings(time_scale=TIME_SCALE, free_acceleration=FreeAccelerationSettings(below_governed="flag"))

SCENARIOS: dict[str, tuple[str, str, dict[str, Any], Callable[[Rig], Awaitable[Done]]]] = {
    # name: (vehicle, device, lane_rig options, scenario)
    "gasoline-car": ("gasoline-car", "gas-analyzer", {"daily_checks_passed": False},
                     refused_then_daily_check_then_pass),
    "gasoline-fail-idle-co": ("gasoline-fail-idle-co", "gas-analyzer", {},
                              plain("two_speed_idle", limit_overrides=SET_A)),
    "gasoline-fail-lambda": ("gasoline-fail-lambda", "gas-analyzer", {},
                             plain("two_speed_idle", limit_overrides=SET_A)),
    "gasoline-diluted": ("gasoline-diluted", "gas-analyzer", {}, plain("two_speed_idle")),
    "analyzer-dropout": ("gasoline-car", "gas-analyzer", {}, analyzer_drops_out),
    "analyzer-unplugged": ("gasoline-car", "gas-analyzer", {},
                           unplugged("two_speed_idle", "two_speed_idle.high_idle.measure", "gas-analyzer")),
    "opacimeter-unplugged": ("diesel-car", "opacimeter", {},
                             unplugged("free_acceleration", "free_acceleration.measured1", "opacimeter")),
    "diesel-car": ("diesel-car", "opacimeter", {}, plain("free_acceleration")),
    "diesel-truck": ("diesel-truck", "opacimeter", {}, plain("free_acceleration")),
    "diesel-fail-k": ("diesel-fail-k", "opacimeter", {}, plain("free_acceleration")),
    "diesel-low-governed": ("diesel-low-governed", "opacimeter", {}, plain("free_acceleration")),
    "diesel-low-governed-flag": ("diesel-low-governed", "opacimeter", {"settings": FLAG_MODE},
                                 plain("free_acceleration")),
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Done]]:
    """Every scenario at once, each on its own lane (real broker, real ptys, simulated driver)."""
    tmp_path = tmp_path_factory.mktemp("emissions")
    async with EmbeddedBroker() as broker, contextlib.AsyncExitStack() as stack:
        rigs = {}
        for n, (name, (vehicle, device, options, _)) in enumerate(SCENARIOS.items(), start=1):
            rigs[name] = await stack.enter_async_context(
                lane_rig(tmp_path, broker, vehicle, f"E{n}", device=device, **options))
        done = await asyncio.gather(*(SCENARIOS[name][3](rig) for name, rig in rigs.items()))
    yield dict(zip(rigs, done, strict=True))


def check(item: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in item["checks"] if c["item"] == name)


def failed_checks(item: dict[str, Any]) -> list[str]:
    return [c["item"] for c in item["checks"] if c["pass"] is False]


# ----- two-speed idle ---------------------------------------------------------------------------


def test_a_start_without_todays_leak_check_and_zero_is_refused_with_how_to_run_them(fleet: dict[str, Done]) -> None:
    refused = fleet["gasoline-car"].extra["refused"]
    assert refused["accepted"] is False and refused["inspection_no"] == "G1A"
    leak, zero = refused["reasons"]
    assert "leak check has not passed today (never run on this lane)" in leak
    assert "zero has not passed today" in zero
    assert all("laned daily-check --config" in r and "…/cmd/daily-check" in r for r in refused["reasons"])


def test_the_status_shows_whether_two_speed_idle_may_start_before_and_after_the_daily_checks(
    fleet: dict[str, Done]
) -> None:
    before, after = fleet["gasoline-car"].extra["status_before"], fleet["gasoline-car"].extra["status_after"]
    assert before["daily_checks"]["two_speed_idle_ready"] is False
    assert before["daily_checks"]["due_today"] == ["leak_check", "zero"]
    assert before["daily_checks"]["last_leak_check"] is None  # never run on this lane
    assert after["daily_checks"]["due_today"] == []
    assert after["daily_checks"]["last_zero"]["passed"] is True
    analyzer = after["devices"]["gas-analyzer"]
    assert analyzer["kind"] == "gas_analyzer" and analyzer["port"].endswith("-gas-analyzer")
    assert schema_errors(before) == [] and schema_errors(after) == []


def test_the_daily_check_command_runs_leak_check_zero_and_hc_residue_with_prompts(fleet: dict[str, Done]) -> None:
    done = fleet["gasoline-car"]
    assert done.extra["daily_reply"]["accepted"] is True
    finished = done.extra["daily_done"]
    assert {c: r["passed"] for c, r in finished["data"]["results"].items()} == {
        "leak_check": True, "zero": True, "hc_residue": True}
    assert finished["data"]["missing"] == []
    daily_prompts = [e["action"] for e in done.events if e["type"] == "prompt" and e["step"].startswith("daily")]
    assert daily_prompts == ["cap_probe", "uncap_probe"]
    residue = next(e for e in done.events if e["type"] == "step_finished" and e["step"] == "daily_check.hc_residue")
    assert residue["data"]["details"]["hc_ppm"] < 20  # ambient air through a clean hose: a few ppm


def test_gasoline_car_passes_two_speed_idle_under_limit_set_b(fleet: dict[str, Done]) -> None:
    done = fleet["gasoline-car"]
    assert done.result["verdict"] == "pass" and verify(done.result, KEY.encode())
    assert done.result["method"] == "two_speed_idle"
    # a simulation lane: shortened preconditioning (10 s against the standard's 30 s) and time scale, stated
    assert done.result["simulation"] is True
    timings = done.result["procedure_timings"]
    assert timings["inspection.two_speed_idle.precondition_s"] == {"value": 10.0, "standard_min": 30.0, "unit": "s"}
    assert timings["inspection.time_scale"]["value"] == TIME_SCALE
    sds = done.item("SDS")
    assert (sds["verdict"], sds["reason"], sds["limit_set"]) == ("pass", None, "b")
    high, idle = sds["values"]["high_idle"], sds["values"]["idle"]
    # the vehicle file: high idle HC 20 ppm / CO 0.10 %, idle HC 35 ppm / CO 0.15 %
    assert abs(high["co_pct"] - 0.10) <= 0.01 and abs(high["hc_ppm"] - 20) <= 1
    assert abs(idle["co_pct"] - 0.15) <= 0.01 and abs(idle["hc_ppm"] - 35) <= 1
    assert 2300 <= high["rpm"] <= 2700 and 700 <= idle["rpm"] <= 860
    # Brettschneider λ of HC 20, CO 0.10, CO2 14.8, O2 0.25 is 1.008 (worked in the unit test)
    cross = sds["lambda_cross_check"]
    assert abs(cross["brettschneider_of_mean_gases"] - 1.008) <= 0.003 and cross["agrees"] is True
    assert high["lambda"] == 1.01 and sds["flags"] == []
    assert check(sds, "idle_hc")["limit"] == 40.0 and check(sds, "idle_hc")["source"] == "config"
    # the daily checks just ran: HC residue passed minutes ago is not repeated, the analyzer was zeroed
    assert sds["pre_checks"]["hc_residue"]["run"] is False and "zero_before_test" not in sds["pre_checks"]
    device = done.result["devices"]["gas-analyzer"]
    assert device["model"] == "GA-5" and device["last_leak_check"]["passed"] is True


def test_two_speed_idle_prompts_the_driver_through_every_step_and_ends_with_probe_out(fleet: dict[str, Done]) -> None:
    prompts = [p for p in fleet["gasoline-car"].prompts() if p not in ("cap_probe", "uncap_probe")]
    assert prompts == ["engine_precondition", "engine_high_idle", "insert_probe", "engine_idle", "remove_probe",
                       "engine_off"]
    steps = [e["step"] for e in fleet["gasoline-car"].events if e["type"] == "step_started"]
    for step in ("two_speed_idle.precondition", "two_speed_idle.high_idle.measure", "two_speed_idle.idle.measure"):
        assert step in steps


def test_two_speed_idle_process_data_has_a_row_per_second_with_gases_engine_and_ambient(
        fleet: dict[str, Done]) -> None:
    process = fleet["gasoline-car"].item("SDS")["process_data"]
    rows = process["rows"]
    assert sum(1 for r in rows if r["phase"] == "high_idle" and r["measured"]) == 30  # 30 s, one row a second
    assert sum(1 for r in rows if r["phase"] == "idle" and r["measured"]) == 30
    assert sum(1 for r in rows if r["phase"] == "precondition") == 10  # the test's 10 s setting
    row = next(r for r in rows if r["phase"] == "high_idle")
    for key in ("hc_ppm", "co_pct", "co2_pct", "o2_pct", "no_ppm", "lambda", "rpm", "oil_temp_c"):
        assert row[key] is not None
    # the analyzer's READ_ENV: 21.5 °C, 100.8 kPa, 55.3 % (config/simulators/gas-analyzer.toml)
    assert (row["ambient_temp_c"], row["baro_kpa"], row["rh_pct"]) == (21.5, 100.8, 55.3)
    assert row["oil_temp_c"] == 88.5


def test_high_idle_co_fine_but_idle_co_over_the_limit_fails_idle_co_only(fleet: dict[str, Done]) -> None:
    done = fleet["gasoline-fail-idle-co"]
    sds = done.item("SDS")
    # set a (the station's override): idle CO 1.10 % > 0.6 %; idle HC 60 ≤ 80, high idle 0.12 % / 25 ppm pass
    assert sds["limit_set"] == "a" and done.result["verdict"] == "fail"
    assert failed_checks(sds) == ["idle_co"]
    assert abs(check(sds, "idle_co")["value"] - 1.10) <= 0.01 and check(sds, "idle_co")["limit"] == 0.6
    assert sds["reason"].startswith("idle CO 1.1") and "limit ≤ 0.60 %" in sds["reason"]
    # the analyzer was not zeroed since power-up: it zeroes first, then checks the HC residue
    assert sds["pre_checks"]["zero_before_test"]["passed"] is True
    assert sds["pre_checks"]["hc_residue"]["run"] is True and sds["pre_checks"]["hc_residue"]["passed"] is True


def test_a_lean_engine_fails_on_lambda_at_high_idle(fleet: dict[str, Done]) -> None:
    sds = fleet["gasoline-fail-lambda"].item("SDS")
    # HC 30, CO 0.05, CO2 13.6, O2 1.70: Brettschneider λ 1.085, outside 1.00 ± 0.05
    assert sds["verdict"] == "fail" and failed_checks(sds) == ["high_idle_lambda"]
    assert check(sds, "high_idle_lambda")["value"] in (1.08, 1.09)
    assert abs(sds["lambda_cross_check"]["brettschneider_of_mean_gases"] - 1.085) <= 0.005
    assert sds["reason"].startswith("high-idle λ 1.0") and "limit 0.95 to 1.05" in sds["reason"]


def test_a_diluted_sample_voids_the_test_and_the_result_is_incomplete(fleet: dict[str, Done]) -> None:
    done = fleet["gasoline-diluted"]
    sds = done.item("SDS")
    assert sds["verdict"] == "void" and done.result["verdict"] == "incomplete"
    # 65 % ambient air: CO2 about 14.8 × 0.35 = 5.2 % at high idle, CO + CO2 below 6 %
    assert abs(sds["values"]["high_idle"]["co2_pct"] - 5.21) <= 0.1
    assert len(sds["void_reasons"]) == 2 and all("sample diluted" in r for r in sds["void_reasons"])
    assert sds["reason"].startswith("void: high idle: sample diluted")
    assert any(e["type"] == "warning" and "void" in e["text"] for e in done.events)


@pytest.mark.parametrize(("scenario", "code", "item", "during"), [
    ("analyzer-unplugged", "SDS", "two_speed_idle", "during the high-idle measurement"),
    ("opacimeter-unplugged", "ZYJS", "free_acceleration", "during the measured free acceleration 1"),
])
def test_a_device_unplugged_mid_measurement_ends_the_item_and_is_back_online_after(
    fleet: dict[str, Done], scenario: str, code: str, item: str, during: str
) -> None:
    done = fleet[scenario]
    reason = done.result["not_completed"][item]
    assert during in reason and "serial port lost" in reason, reason
    assert f"-{'gas-analyzer' if code == 'SDS' else 'opacimeter'})" in reason  # names the port
    assert (done.item(code)["verdict"], done.item(code)["reason"]) == ("not_completed", reason)
    assert done.result["verdict"] == "incomplete"
    assert done.extra["lane_running"] is True
    device = "gas-analyzer" if code == "SDS" else "opacimeter"
    assert done.extra["status"]["devices"][device]["state"] == "connected"


def test_an_analyzer_dropping_out_mid_measurement_ends_the_item_with_a_clear_reason(fleet: dict[str, Done]) -> None:
    done = fleet["analyzer-dropout"]
    reason = done.result["not_completed"]["two_speed_idle"]
    assert reason.startswith("gas-analyzer stopped answering during the high-idle measurement: ")
    assert "-gas-analyzer)" in reason  # names the port
    item = done.item("SDS")  # the code a completed test carries
    assert (item["verdict"], item["reason"]) == ("not_completed", reason)
    assert done.result["verdict"] == "incomplete"
    assert done.extra["pump"] == "stop"  # stopped once the analyzer answered again
    assert done.extra["lane_running"] is True
    assert done.extra["status"]["devices"]["gas-analyzer"]["state"] == "connected"


# ----- free acceleration ------------------------------------------------------------------------


@pytest.mark.parametrize(("scenario", "mean_k", "verdict"), [
    ("diesel-car", 0.33, "pass"),     # measured 0.35, 0.32, 0.33 → 0.33 ≤ 0.7
    ("diesel-truck", 0.60, "pass"),   # 0.62, 0.58, 0.60 → 0.60 ≤ 0.7
    ("diesel-fail-k", 1.49, "fail"),  # 1.45, 1.52, 1.49 → 1.4867 → 1.49 > 0.7
])
def test_free_acceleration_judges_the_mean_of_three_measured_peaks(
        fleet: dict[str, Done], scenario: str, mean_k: float, verdict: str) -> None:
    done = fleet[scenario]
    zyjs = done.item("ZYJS")
    assert zyjs["verdict"] == verdict and done.result["verdict"] == verdict
    assert zyjs["limit_set"] == "b" and zyjs["limits"]["free_acceleration_k"]["value"] == 0.7
    assert abs(zyjs["values"]["mean_k_m1"] - mean_k) <= 0.02
    assert len(zyjs["values"]["peak_k_m1"]) == 3 and zyjs["flags"] == []
    purposes = [a["purpose"] for a in zyjs["accelerations"]]
    assert purposes == ["purge"] * 3 + ["measured"] * 3
    assert all(a["n_k_consistent"] for a in zyjs["accelerations"] if a["purpose"] == "measured")
    assert done.prompts().count("free_accelerate") == 6
    assert zyjs["zero"]["passed"] is True and done.result["devices"]["opacimeter"]["model"] == "OP-1"
    if verdict == "fail":
        assert zyjs["reason"].startswith("mean K 1.") and zyjs["reason"].endswith("limit ≤ 0.70 m⁻¹")


def test_free_acceleration_process_data_follows_each_acceleration(fleet: dict[str, Done]) -> None:
    zyjs = fleet["diesel-truck"].item("ZYJS")
    rows = zyjs["process_data"]["rows"]
    phases = {r["phase"] for r in rows}
    assert {"idle", "purge 1", "measured 1", "measured 3"} <= phases
    peak_rows = max((r for r in rows if r["phase"] == "measured 1"), key=lambda r: r["k_max_m1"])
    assert abs(peak_rows["k_max_m1"] - zyjs["values"]["peak_k_m1"][0]) <= 0.02
    assert max(r["rpm_max"] for r in rows if r["phase"] == "measured 1") >= 2400  # governed 2420
    # the meter's ENV: 294.6 K → 21.5 °C; oil probe 355 K → 81.9 °C
    assert rows[0]["ambient_temp_c"] == 21.5 and zyjs["values"]["oil_temp_c"] == 81.9


def test_an_acceleration_short_of_governed_speed_is_flagged_and_repeated(fleet: dict[str, Done]) -> None:
    done = fleet["diesel-low-governed"]
    zyjs = done.item("ZYJS")
    measured = [a for a in zyjs["accelerations"] if a["purpose"] == "measured"]
    # rated 2500 r/min: 0.9 × 2500 = 2250 r/min needed; the second measured one tops out at 1750
    assert zyjs["governed_speed"]["required_min_rpm"] == 2250
    assert [a["counted"] for a in measured] == [True, False, True, True]
    assert measured[1]["reached_governed_speed"] is False and measured[1]["max_rpm"] < 1850
    assert len(zyjs["flags"]) == 1 and "below governed speed" in zyjs["flags"][0] and "repeated" in zyjs["flags"][0]
    assert any(e["type"] == "warning" and "below governed speed" in e["text"] for e in done.events)
    # counted 0.45, 0.44 (next in the file), 0.44 (the last repeats) → 0.4433 → 0.44
    assert zyjs["verdict"] == "pass" and abs(zyjs["values"]["mean_k_m1"] - 0.44) <= 0.02
    assert done.prompts().count("free_accelerate") == 7


def test_with_the_flag_setting_a_short_acceleration_counts_but_is_flagged(fleet: dict[str, Done]) -> None:
    zyjs = fleet["diesel-low-governed-flag"].item("ZYJS")
    measured = [a for a in zyjs["accelerations"] if a["purpose"] == "measured"]
    assert [a["counted"] for a in measured] == [True, True, True]
    assert measured[1]["reached_governed_speed"] is False
    assert "counted" in zyjs["flags"][0] and zyjs["settings"]["below_governed"] == "flag"
    # 0.45, 0.42, 0.44 → 0.4367 → 0.44
    assert abs(zyjs["values"]["mean_k_m1"] - 0.44) <= 0.02


# ----- `laned daily-check --config FILE` ---------------------------------------------------------


async def test_the_daily_check_cli_runs_the_checks_on_the_analyzer_without_a_broker(tmp_path: Path) -> None:
    link = tmp_path / "ga"
    config = tmp_path / "lane.toml"
    config.write_text(
        f'[lane]\nstation = "370100"\nlane = "T1"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[mqtt]\nport = {free_port()}\n'  # never contacted
        f'[inspection]\ntime_scale = {TIME_SCALE}\n'
        f'[devices.gas-analyzer]\nkind = "gas_analyzer"\ntransport = {{ type = "serial", port = "{link}" }}\n',
        encoding="utf-8")
    args = argparse.Namespace(config=config, device=None, checks=["leak_check", "zero", "hc_residue"], capped=True,
                              simulation=True)
    # its time scale is a simulation's: refused (exit 2, config unusable) without --simulation
    assert await daily_check_cli.run(argparse.Namespace(**{**vars(args), "simulation": False})) == 2
    async with GasAnalyzerSimulator(link, config=load_analyzer_config(fast=True, seed=3)) as sim:
        sim.inject("leak_fails")
        assert await daily_check_cli.run(args) == 1
        checks = DailyChecks(tmp_path / "state" / "daily-checks.json")
        assert checks.last("leak_check")["passed"] is False and checks.passed_today("zero")  # type: ignore[index]
        assert len(checks.missing_reasons()) == 1
        sim.clear("leak_fails")
        assert await daily_check_cli.run(args) == 0
        assert checks.missing_reasons() == [] and checks.last("hc_residue")["passed"] is True  # type: ignore[index]
        assert sim.pump == "stop"
