"""A metric's improvement as evidence (schedcp/domain/evidence.py): what a canary reports reads
back as the estimate behind it, and two canaries of one effect pool into a tighter one."""

from __future__ import annotations

import math

import pytest

from schedcp.domain import evidence
from schedcp.v1 import common_pb2

LOWER = common_pb2.MetricSpec(name="response_p99_us", direction=common_pb2.DIRECTION_LOWER_IS_BETTER)
HIGHER = common_pb2.MetricSpec(name="cpu_share", direction=common_pb2.DIRECTION_HIGHER_IS_BETTER)


@pytest.mark.parametrize("metric", [LOWER, HIGHER], ids=["lower is better", "higher is better"])
def test_a_reported_comparison_reads_back_as_the_estimate_it_came_from(metric):
    estimate = evidence.of_logs([math.log(r) for r in (0.74, 0.92, 0.64, 0.95, 0.59, 0.61)])
    reported = evidence.comparison(metric, estimate)
    assert reported.rounds == 6 and reported.improvement_low < reported.improvement < reported.improvement_high
    back = evidence.of_comparison(reported)
    assert back.df == estimate.df
    assert back.mean == pytest.approx(estimate.mean) and back.se == pytest.approx(estimate.se)


def test_one_round_or_an_interval_of_no_width_is_no_evidence():
    reported = evidence.comparison(LOWER, evidence.Estimate(-0.2, 0.05, 2, 3))
    reported.rounds = 1
    assert evidence.of_comparison(reported) is None
    flat = evidence.comparison(LOWER, evidence.Estimate(-0.2, 0.0, 2, 3))
    assert evidence.of_comparison(flat) is None


def test_two_agreeing_estimates_pool_between_them_with_a_smaller_error():
    a, b = evidence.Estimate(-0.30, 0.08, 5, 6), evidence.Estimate(-0.15, 0.08, 5, 6)
    both = evidence.pooled([(a, 1.0), (b, 1.0)])
    assert both.mean == pytest.approx(-0.225) and both.se == pytest.approx(0.08 / math.sqrt(2))
    assert both.df == pytest.approx(10) and both.rounds == 12
    # A less similar workload's canary counts for less.
    leaning = evidence.pooled([(a, 1.0), (b, 0.25)])
    assert a.mean < leaning.mean < both.mean
    # ... and its rounds count for less too: Welch-Satterthwaite's degrees of freedom.
    assert 5 < leaning.df < 10


def test_a_pooled_estimate_reads_back_with_its_own_degrees_of_freedom():
    pooled = evidence.pooled([(evidence.Estimate(-0.30, 0.08, 5, 6), 1.0), (evidence.Estimate(-0.15, 0.05, 2, 3), 0.5)])
    back = evidence.of_comparison(evidence.comparison(LOWER, pooled))
    assert back.df == pytest.approx(pooled.df) and back.rounds == 9 and back.se == pytest.approx(pooled.se)


def test_an_interval_clipped_at_the_ratio_limit_or_not_a_number_is_no_evidence():
    reported = evidence.comparison(LOWER, evidence.Estimate(-0.2, 0.05, 2, 3))
    reported.improvement_low = -150.0  # a ratio past 100x: clipped when measured
    assert evidence.of_comparison(reported) is None
    reported.improvement_low = float("nan")
    assert evidence.of_comparison(reported) is None
