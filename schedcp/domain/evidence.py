"""A metric's improvement as evidence: the mean log ratio (canary over its round's baseline) of a
canary's rounds with its standard error and degrees of freedom, and what several canaries say
together.

Each round pairs a canary window with the baseline just before it, so a phase of the workload
or a busy host moves both and the ratio cancels it; the mean of the log ratios is the geometric
mean ratio, and a Student t interval of it is what a canary reports (executor canary.py). Two
canaries of one policy on similar workloads are two measurements of one effect: their inverse-
variance weighted mean is the estimate both support, with a standard error smaller than
either's; its degrees of freedom are Welch-Satterthwaite's (at most the sum, less when one
canary dominates the weights), so a t interval of the pooled estimate is not narrower than the
evidence allows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from schedcp.v1 import common_pb2, deployment_pb2

CONFIDENCE = 0.95
# Student's t at 0.975 (two-sided 95 %) by degrees of freedom 1 .. 19; past the table, its last.
T_QUANTILE = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
              2.131, 2.120, 2.110, 2.101, 2.093)
# Student's t at 0.9875 (two-sided 97.5 %), for "better at all" (see the executor's canary).
SURE = 0.975
T_SURE = (25.452, 6.205, 4.177, 3.495, 3.163, 2.969, 2.841, 2.752, 2.685, 2.634, 2.593, 2.560, 2.533, 2.510,
          2.490, 2.473, 2.458, 2.445, 2.433)
# One round's ratio past 100x either way is a measurement that broke (a group gone, a zero
# percentile), not a scale of effect: clipped, so one such round cannot outweigh the rest.
RATIO_LIMIT = 100.0


def t_quantile(df: int, table: tuple[float, ...] = T_QUANTILE) -> float:
    return table[min(max(df, 1), len(table)) - 1]


@dataclass(frozen=True)
class Estimate:
    """A mean log ratio, its standard error, its degrees of freedom and the rounds behind it."""

    mean: float
    se: float
    df: float
    rounds: int

    def ratio_interval(self, table: tuple[float, ...] = T_QUANTILE) -> tuple[float, float, float]:
        """(point, low, high) of the ratio, at the table's confidence (fractional degrees of
        freedom rounded down: the wider interval)."""
        half = t_quantile(int(self.df), table) * self.se
        return math.exp(self.mean), math.exp(self.mean - half), math.exp(self.mean + half)


def log_ratio(before: float, after: float) -> float:
    if before == after:  # both zero included: nothing changed
        return 0.0
    if before <= 0 or after <= 0:
        return math.copysign(math.log(RATIO_LIMIT), after - before)
    return max(-math.log(RATIO_LIMIT), min(math.log(RATIO_LIMIT), math.log(after / before)))


def of_logs(logs: list[float]) -> Estimate:
    """The estimate of two or more rounds' log ratios."""
    mean = sum(logs) / len(logs)
    variance = sum((x - mean) ** 2 for x in logs) / (len(logs) - 1)
    return Estimate(mean, math.sqrt(variance / len(logs)), len(logs) - 1, len(logs))


def improvement(metric: common_pb2.MetricSpec, ratio: float) -> float:
    """A ratio (after over before) as an improvement in the metric's better direction."""
    return 1 - ratio if metric.direction == common_pb2.DIRECTION_LOWER_IS_BETTER else ratio - 1


def improvements(metric: common_pb2.MetricSpec, low_ratio: float, high_ratio: float) -> tuple[float, float]:
    """A ratio interval's ends as improvements, (lower, higher)."""
    ends = sorted(improvement(metric, r) for r in (low_ratio, high_ratio))
    return ends[0], ends[1]


def of_comparison(comparison: deployment_pb2.MetricComparison) -> Estimate | None:
    """The estimate behind a reported comparison of two rounds or more at CONFIDENCE; None for
    one round, an interval of no width (it says nothing about the spread), or one whose ends
    were clipped at RATIO_LIMIT (its centre and width would be wrong)."""
    if comparison.rounds < 2 or abs(comparison.confidence - CONFIDENCE) > 1e-9:
        return None
    metric = comparison.metric
    ratios = [_unclipped_ratio(metric, i) for i in (comparison.improvement_low, comparison.improvement_high)]
    if None in ratios:
        return None
    ends = sorted(math.log(r) for r in ratios)
    if not ends[1] - ends[0] > 0:
        return None
    df = comparison.degrees_of_freedom or comparison.rounds - 1
    return Estimate((ends[0] + ends[1]) / 2, (ends[1] - ends[0]) / 2 / t_quantile(int(df)), df, comparison.rounds)


def ratio(metric: common_pb2.MetricSpec, improved: float) -> float:
    """The inverse of `improvement`: the ratio (after over before) an improvement means."""
    return 1 - improved if metric.direction == common_pb2.DIRECTION_LOWER_IS_BETTER else 1 + improved


def _unclipped_ratio(metric: common_pb2.MetricSpec, improved: float) -> float | None:
    """The inverse of `improvement`; None past RATIO_LIMIT or for a number that is not one."""
    if not math.isfinite(improved):
        return None
    value = ratio(metric, improved)
    return value if 1 / RATIO_LIMIT < value < RATIO_LIMIT else None


def pooled(estimates: list[tuple[Estimate, float]]) -> Estimate:
    """Estimates of one effect, each with a weight in 0..1 (how much it applies here: a
    workload's similarity), as one: inverse-variance weighted, with Welch-Satterthwaite's
    degrees of freedom for those weights."""
    precision = [(e, w / max(e.se, 1e-9) ** 2) for e, w in estimates]
    total = sum(p for _, p in precision)
    mean = sum(e.mean * p for e, p in precision) / total
    df = total ** 2 / sum(p ** 2 / max(e.df, 1) for e, p in precision)
    return Estimate(mean, 1 / math.sqrt(total), df, sum(e.rounds for e, _ in estimates))


def comparison(metric: common_pb2.MetricSpec, estimate: Estimate) -> deployment_pb2.MetricComparison:
    """The estimate as a reported comparison: improvement and its CONFIDENCE interval."""
    point, low, high = estimate.ratio_interval()
    low_improvement, high_improvement = improvements(metric, low, high)
    pooled = abs(estimate.df - (estimate.rounds - 1)) > 1e-6
    return deployment_pb2.MetricComparison(metric=metric, improvement=improvement(metric, point),
                                           improvement_low=low_improvement, improvement_high=high_improvement,
                                           rounds=estimate.rounds, confidence=CONFIDENCE,
                                           degrees_of_freedom=estimate.df if pooled else 0)
