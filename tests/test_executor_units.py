"""The executor's canary judgement, without a host: what it keeps, what it rolls back, and what
it says either way."""

from __future__ import annotations

import pytest

from schedcp.runtime.errors import InvalidArgument
from schedcp.v1 import common_pb2, deployment_pb2, goal_pb2, observer_pb2
from services.executor import canary

BATCH = common_pb2.GroupMatcher(comm="stress-ng-cpu")
PROBE = common_pb2.GroupMatcher(comm="cyclictest")


def spec(guard_ratio: float = 0.9) -> deployment_pb2.CanarySpec:
    share = common_pb2.MetricSpec(name="cpu_share", groups=[BATCH], direction=common_pb2.DIRECTION_HIGHER_IS_BETTER)
    return deployment_pb2.CanarySpec(
        success_metric=common_pb2.MetricSpec(name="runq_latency_p99_us", groups=[PROBE],
                                             direction=common_pb2.DIRECTION_LOWER_IS_BETTER),
        min_improvement=0.2,
        guards=[goal_pb2.GuardConstraint(metric=share, comparison=goal_pb2.COMPARISON_AT_LEAST,
                                         ratio_to_baseline=guard_ratio, description="the batch keeps its share")])


def windows(s: deployment_pb2.CanarySpec, p99: tuple[float, float], share: tuple[float, float]):
    latency, guard = canary.key(s.success_metric), canary.key(s.guards[0].metric)
    return {latency: p99[0], guard: share[0]}, {latency: p99[1], guard: share[1]}


def test_a_kept_canary_says_how_close_each_guard_came():
    s = spec()
    verdict = canary.judge(s, *windows(s, p99=(4000, 500), share=(0.98, 0.91)))
    assert verdict.keep and [g.satisfied for g in verdict.guards] == [True]
    assert verdict.reason == ("runq_latency_p99_us 4000 -> 500 (88 % better); "
                              "guard the batch keeps its share held (0.98 -> 0.91)")


def test_a_failed_guard_rolls_back_however_good_the_latency():
    s = spec()
    verdict = canary.judge(s, *windows(s, p99=(4000, 500), share=(0.98, 0.85)))
    assert not verdict.keep
    assert verdict.reason == "guard the batch keeps its share failed (0.98 -> 0.85)"


def test_a_throughput_canary_that_gained_nothing_says_so_in_shares():
    share = common_pb2.MetricSpec(name="cpu_share", groups=[BATCH], direction=common_pb2.DIRECTION_HIGHER_IS_BETTER)
    s = deployment_pb2.CanarySpec(success_metric=share, min_improvement=0.05)
    before, after = {canary.key(share): 0.979}, {canary.key(share): 0.973}
    verdict = canary.judge(s, before, after)
    assert not verdict.keep
    assert verdict.reason == "cpu_share improved -1 % (0.979 -> 0.973), less than the 5 % required"


def test_each_latency_metric_reads_its_own_distribution_and_the_worst_group():
    measured = [observer_pb2.GroupMeasurement(matcher=PROBE), observer_pb2.GroupMeasurement(matcher=BATCH)]
    measured[0].runq_latency.p99_us, measured[0].response.p99_us = 40, 900
    measured[1].runq_latency.p99_us, measured[1].response.p99_us = 70, 300
    metric = common_pb2.MetricSpec(groups=[PROBE, BATCH])
    metric.name = "runq_latency_p99_us"
    assert canary.value_of(metric, measured) == 70
    metric.name = "response_p99_us"
    assert canary.value_of(metric, measured) == 900


def test_an_unknown_metric_is_refused_with_the_names_that_exist():
    s = spec()
    s.success_metric.name = "request_p99_us"
    s.baseline_window.FromSeconds(5)
    s.canary_window.FromSeconds(5)
    with pytest.raises(InvalidArgument, match="response_p99_us") as raised:
        canary.check_spec(s)
    assert "'request_p99_us' is not measurable" in str(raised.value)
