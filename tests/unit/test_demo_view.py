"""The demo's side-by-side results: what a technician reads on the terminal."""

from __future__ import annotations

import io

from laned.demo_view import COLUMN, Screen, item_line, pad, width


def test_a_short_text_is_filled_to_the_column_counting_chinese_characters_as_two_cells() -> None:
    assert pad("鲁NA7321", 10) == "鲁NA7321  "  # 鲁 takes two cells: 8 cells of text, 2 of space


def test_a_cut_text_ends_in_an_ellipsis_so_a_cut_value_never_looks_whole() -> None:
    assert pad("imbalance_pct=7.2", 10) == "imbalance…"
    assert pad("取出探头", 5) == "取出…"  # 2 + 2 + 1 cells; half a character is never printed


def test_the_two_results_stand_in_separate_columns_with_a_gap_between_them() -> None:
    def result(kind: str, code: str) -> dict:
        return {
            "schema": f"result-{kind}/1",
            "verdict": "pass",
            "vehicle": {"plate": "鲁NA7321", "vin": "LZZ1CLSB4MA123456"},
            "result_id": "f6b605da-6bbd-58ca-0000-000000000000",
            "signature": {"key_id": "c4e6f8b0aa"},
            "photos": [{"code": "0111", "photo": "left_front"}],
            "items": [{"code": code, "verdict": "pass",
                       "values": {"axle_brake_rate_pct": 63.9, "imbalance_pct": 7.25, "rate_pct": 99.9}}],
            "platform_record": {"jylsh": "1"},
        }

    out = io.StringIO()
    Screen(plain=False, stream=out).results(result("safety", "B1"), result("emissions", "WJ"))
    rows = out.getvalue().splitlines()
    item_row = next(row for row in rows if row.startswith("B1"))
    # code 5 + verdict 14 + 'axle 63.9 %' 11 + 2 + 'imbalance 7.25 %' 16 + 2 + 'rate 99.9 %' 11 = 61 cells:
    # the 58-cell column ends in '…' after 'rate 99', then two spaces, and the emissions item
    assert item_row.startswith("B1   pass          axle 63.9 %  imbalance 7.25 %  rate 99…  WJ   pass")


def test_an_axle_line_shows_its_rate_and_imbalance_with_units_whole() -> None:
    item = {"code": "B2", "verdict": "not_completed",
            "values": {"left_wheel_load_kg": 412, "axle_brake_rate_pct": 58.1, "imbalance_pct": 12.4,
                       "imbalance_basis": "max_force"}}
    line = item_line(item)
    assert line == "B2   not_completed axle 58.1 %  imbalance 12.4 %"
    assert width(line) <= COLUMN - 2  # fits its column of the side-by-side view


def test_emission_values_are_named_as_on_a_report() -> None:
    item = {"code": "WJ", "verdict": "fail", "reason": "CO over the limit",
            "values": {"idle_co_pct": 0.9, "idle_hc_ppm": 120, "high_idle_co_pct": 0.4, "lambda": 1.02}}
    assert item_line(item) == "WJ   fail          CO 0.9 %  HC 120 ppm  high CO 0.4 % — CO over the limit"


def test_a_two_speed_idle_line_shows_low_and_high_idle_and_lambda() -> None:
    item = {"code": "SDS", "verdict": "pass",
            "values": {"idle": {"co_pct": 0.08, "hc_ppm": 12, "lambda": 1.01},
                       "high_idle": {"co_pct": 0.05, "hc_ppm": 9, "lambda": 1.004}, "lambda_analyzer": 1.004}}
    line = item_line(item)
    assert line == "SDS  pass          CO 0.08/0.05 %  HC 12/9 ppm  λ 1.004"
    assert width(line) <= COLUMN - 2


def test_an_asm_line_shows_the_last_phase_runs_corrected_gases() -> None:
    # ASM2540 ran after ASM5025: its HC / CO / NO (corrected, rounded, as judged) are the line's
    item = {"code": "WT", "verdict": "pass",
            "values": {"asm5025": {"decision": "pass", "hc_ppm": 63, "co_pct": 0.21, "no_ppm": 412},
                       "asm2540": {"decision": "pass", "hc_ppm": 52, "co_pct": 0.18, "no_ppm": 380}}}
    line = item_line(item)
    assert line == "WT   pass          HC 52 ppm  CO 0.18 %  NO 380 ppm"
    assert width(line) <= COLUMN - 2
    fast = {"code": "WT", "verdict": "pass",  # a fast pass at ASM5025 ends the test: ASM2540 not run
            "values": {"asm5025": {"decision": "fast_pass", "hc_ppm": 20, "co_pct": 0.05, "no_ppm": 90},
                       "asm2540": {"decision": "not_run"}}}
    assert item_line(fast) == "WT   pass          HC 20 ppm  CO 0.05 %  NO 90 ppm"


def test_a_lug_down_line_shows_the_three_judged_values() -> None:
    item = {"code": "JZJS", "verdict": "fail",
            "values": {"k100_m1": 0.52, "k80_m1": 0.61, "nox80_ppm": 1588, "pmax_kw": 154.9}}
    assert item_line(item) == "JZJS fail          K100 0.52 m⁻¹  K80 0.61 m⁻¹  NOx80 1588 ppm"
