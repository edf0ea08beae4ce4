"""The timing benchmark's plumbing: its classifier, and its server answering both endpoints."""

from __future__ import annotations

import pytest

from bench.bench_timing import balanced_accuracy, measure, serve

pytestmark = pytest.mark.bench


def test_the_classifier_scores_separable_samples_as_one() -> None:
    assert balanced_accuracy([5.0, 6.0, 7.0], [1.0, 2.0, 3.0]) == 1.0
    assert balanced_accuracy([1.0, 2.0], [5.0, 6.0]) == 1.0  # either direction


def test_the_classifier_finds_no_signal_in_identical_samples() -> None:
    assert balanced_accuracy([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 0.5
    assert balanced_accuracy([1.0] * 4, [1.0] * 4) == 0.5


def test_the_classifier_takes_the_best_cut() -> None:
    # One known sample among the fast ones: the best cut misses it, 3/4 and 1 -> 0.875.
    assert balanced_accuracy([1.5, 5.0, 6.0, 7.0], [1.0, 2.0, 3.0, 4.0]) == 0.875


def test_the_timing_server_answers_both_endpoints_for_both_kinds() -> None:
    with serve(3) as base_url:
        results = measure(base_url, 3)
    for measured in results.values():
        assert len(measured.known) == len(measured.unknown) == 3
        assert all(value > 0 for value in measured.known + measured.unknown)
