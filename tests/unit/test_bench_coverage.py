"""The bench's coverage figure (issue 17): every device update seen exactly once at the subscriber,
from the SEQ of every reading a live message carries and the ring index of every curve sample."""

from __future__ import annotations

from laned.bench.fig_lanes import Coverage


def _gas(*seqs: int) -> dict[str, object]:
    return {"seq": seqs[-1], "readings": [{"seq": s} for s in seqs]}


def test_every_seq_once_is_coverage_one_across_the_16_bit_wrap() -> None:
    coverage = Coverage()
    for seqs in [(65533, 65534), (65535, 0), (1,)]:  # the opacimeter's messages of two readings, then one
        coverage.add("L1", "opacimeter", _gas(*seqs))
    figures = coverage.figures()
    assert figures["live_coverage_opacimeter"] == 1.0
    assert figures["live_updates_opacimeter"] == 5
    assert figures["live_duplicates"] == 0


def test_a_skipped_and_a_repeated_seq_are_both_counted() -> None:
    coverage = Coverage()
    for seqs in [(10,), (11,), (11,), (13,)]:  # 12 never seen, 11 seen twice
        coverage.add("L1", "gas-analyzer", _gas(*seqs))
    figures = coverage.figures()
    assert figures["live_coverage_gas_analyzer"] == 0.75  # 10, 11, 13 of 10..13
    assert figures["live_duplicates_gas_analyzer"] == 1
    assert figures["live_coverage"] == 0.75


def test_brake_samples_counted_by_ring_index_from_first_sample_index() -> None:
    coverage = Coverage()
    coverage.add("L1", "brake-tester", {"first_sample_index": 65534, "left_force_dan": [1, 2, 3]})  # 65534, 65535, 0
    coverage.add("L1", "brake-tester", {"first_sample_index": 1, "left_force_dan": [4, 5]})  # 1, 2
    coverage.add("L1", "brake-tester", {"first_sample_index": 2, "left_force_dan": [6]})  # 2 again
    figures = coverage.figures()
    assert figures["live_updates_brake_tester"] == 5
    assert figures["live_coverage_brake_tester"] == 1.0
    assert figures["live_duplicates_brake_tester"] == 1
