"""The demo's side-by-side results: what a technician reads on the terminal."""

from __future__ import annotations

import io

from laned.demo_view import Screen, pad


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
    # code 5 + verdict 14 + 'axle_brake_rate_pct=63.9' 24 + ' imbalance_pct' 14 = 57 cells, then '…'
    # closes the 58-cell column, two spaces, and the emissions item
    assert item_row.startswith("B1   pass          axle_brake_rate_pct=63.9 imbalance_pct…  WJ   pass")
