"""Canary measurement and judgement: the goal's metrics measured through the observer's Measure
before (baseline) and after (canary) a policy is applied, then keep or roll back.

Metrics by name, each over the groups its MetricSpec names (several matchers: the worst for a
latency, the sum for CPU): runq_latency_{p50,p90,p99,p999,max}_us, response_{...}_us (wakeup to
the next block; BPF sampling only), cpu_share, cpu_seconds, wakeups_per_s.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass

from schedcp.domain import matchers
from schedcp.runtime import rpc
from schedcp.runtime.errors import InvalidArgument
from schedcp.v1 import common_pb2, deployment_pb2, goal_pb2, observer_pb2, observer_pb2_grpc

# A latency metric by name: which distribution of the measurement (run-queue wait, or response:
# wakeup to the next block) and which statistic of it.
LATENCY = {f"{field}_{stat}": (field, stat) for field in ("runq_latency", "response")
           for stat in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us")}
SUMMED = {"cpu_share", "cpu_seconds", "wakeups_per_s"}
MIN_WINDOW_S, MAX_WINDOW_S = 0.5, 600.0
FOREIGN_LOAD_TOLERANCE = 0.1  # of the host's CPU capacity

log = logging.getLogger(__name__)


def check_spec(spec: deployment_pb2.CanarySpec) -> None:
    """InvalidArgument for a canary the executor cannot run. No metrics: nothing to measure."""
    if not metrics_of(spec):
        return
    for name, window in (("baseline_window", spec.baseline_window), ("canary_window", spec.canary_window)):
        seconds = window.ToNanoseconds() / 1e9
        if not MIN_WINDOW_S <= seconds <= MAX_WINDOW_S:
            raise InvalidArgument(f"canary.{name} must be {MIN_WINDOW_S:g}..{MAX_WINDOW_S:g} s, got {seconds:g}")
    for metric in metrics_of(spec):
        if metric.name not in LATENCY and metric.name not in SUMMED:
            raise InvalidArgument(f"metric {metric.name!r} is not measurable here; use one of "
                                  f"{', '.join([*LATENCY, *sorted(SUMMED)])}")
        if not metric.groups:
            raise InvalidArgument(f"metric {metric.name} names no groups")
        matchers.compile_all(metric.groups)
    if spec.HasField("success_metric") and spec.success_metric.direction == common_pb2.DIRECTION_UNSPECIFIED:
        raise InvalidArgument("the success metric needs a direction (lower or higher is better)")


def metrics_of(spec: deployment_pb2.CanarySpec) -> list[common_pb2.MetricSpec]:
    found = [spec.success_metric] if spec.HasField("success_metric") else []
    return found + [g.metric for g in spec.guards]


@dataclass
class Window:
    """A measurement window: every metric of the spec, and the CPU share (0..1 of the host) that
    processes outside the measured groups used meanwhile."""

    values: dict[str, float]
    foreign_cpu_share: float


async def measure(observer_addr: str, spec: deployment_pb2.CanarySpec, window_s: float) -> Window:
    """Every metric of the spec over one window: values by key(metric)."""
    metrics = metrics_of(spec)
    groups, seen = [], set()
    for metric in metrics:
        for matcher in metric.groups:
            if (wire := matcher.SerializeToString(deterministic=True)) not in seen:
                seen.add(wire)
                groups.append(matcher)
    request = observer_pb2.MeasureRequest(groups=groups)
    request.duration.FromNanoseconds(int(window_s * 1e9))
    async with rpc.channel(observer_addr, default_timeout_s=window_s + 30) as channel:
        response = await observer_pb2_grpc.ObserverServiceStub(channel).Measure(request)
    by_matcher = {g.matcher.SerializeToString(deterministic=True): g for g in response.groups}
    values = {key(m): value_of(m, [by_matcher[g.SerializeToString(deterministic=True)] for g in m.groups])
              for m in metrics}
    # Every window in the log: a judgement read later needs the context the event text leaves out.
    log.info("measured %.1f s: %s; other processes %.1f %%, the observer %.1f %% of the CPU",
             response.measured.ToTimedelta().total_seconds(), ", ".join(f"{k} {v:.4g}" for k, v in values.items()),
             100 * response.foreign_cpu_share, 100 * response.observer_cpu_share)
    return Window(values, response.foreign_cpu_share)


def disturbed(baseline: Window, observed: Window) -> bool:
    """Other processes used notably more CPU during the canary than during the baseline: the
    comparison would judge them, not the policy (a demoted batch yields to anything)."""
    return observed.foreign_cpu_share - baseline.foreign_cpu_share > FOREIGN_LOAD_TOLERANCE


def key(metric: common_pb2.MetricSpec) -> str:
    return f"{metric.name}[{', '.join(matchers.describe(g) for g in metric.groups)}]"


def value_of(metric: common_pb2.MetricSpec, measured: list[observer_pb2.GroupMeasurement]) -> float:
    if metric.name in LATENCY:
        field, stat = LATENCY[metric.name]
        return max(getattr(getattr(g, field), stat) for g in measured)
    return sum(getattr(g, metric.name) for g in measured)


@dataclass
class Judgement:
    keep: bool
    reason: str
    success: deployment_pb2.MetricComparison | None
    guards: list[deployment_pb2.MetricComparison]


def judge(spec: deployment_pb2.CanarySpec, baseline: dict[str, float], observed: dict[str, float]) -> Judgement:
    """Keep when the success metric improved by at least min_improvement and every guard held."""
    success = None
    problems = []
    if spec.HasField("success_metric"):
        success = compare(spec.success_metric, baseline, observed)
        success.satisfied = success.improvement >= spec.min_improvement
        if not success.satisfied:
            problems.append(f"{spec.success_metric.name} improved {100 * success.improvement:.0f} % "
                            f"({_number(success.baseline)} -> {_number(success.observed)}), less than the "
                            f"{100 * spec.min_improvement:.0f} % required")
    guards, held = [], []
    for guard in spec.guards:
        comparison = compare(guard.metric, baseline, observed)
        comparison.satisfied = guard_holds(guard, comparison.baseline, comparison.observed)
        guards.append(comparison)
        # The numbers either way: how close a kept canary came to its guard matters too.
        verdict = "held" if comparison.satisfied else "failed"
        told = (f"guard {guard.description or guard.metric.name} {verdict} "
                f"({_number(comparison.baseline)} -> {_number(comparison.observed)})")
        (held if comparison.satisfied else problems).append(told)
    if problems:
        return Judgement(False, "; ".join(problems), success, guards)
    detail = (f"{success.metric.name} {_number(success.baseline)} -> {_number(success.observed)} "
              f"({100 * success.improvement:.0f} % better)") if success else "no success metric"
    return Judgement(True, "; ".join([detail, *held]), success, guards)


def judge_rounds(spec: deployment_pb2.CanarySpec, rounds: list[tuple[Window, Window]]) -> Judgement:
    """Several rounds of (baseline, canary): each metric's median over the baselines against its
    median over the canaries, as `judge` would; and a success metric that improved by the least
    required in only a minority of rounds is not kept (a median can hide one lucky window)."""
    if len(rounds) == 1:
        return judge(spec, rounds[0][0].values, rounds[0][1].values)
    baseline = {k: statistics.median(b.values[k] for b, _ in rounds) for k in rounds[0][0].values}
    observed = {k: statistics.median(o.values[k] for _, o in rounds) for k in rounds[0][1].values}
    verdict = judge(spec, baseline, observed)
    if not spec.HasField("success_metric"):
        return verdict
    each = [compare(spec.success_metric, b.values, o.values).improvement for b, o in rounds]
    told = f"medians of {len(rounds)} rounds; {spec.success_metric.name} per round " + \
           ", ".join(f"{100 * i:+.0f} %" for i in each)
    agreeing = sum(1 for i in each if i >= spec.min_improvement)
    if verdict.keep and 2 * agreeing <= len(rounds):
        return Judgement(False, f"{spec.success_metric.name} improved by {100 * spec.min_improvement:.0f} % in only "
                                f"{agreeing} of {len(rounds)} rounds ({told})", verdict.success, verdict.guards)
    return Judgement(verdict.keep, f"{verdict.reason} ({told})", verdict.success, verdict.guards)


def _number(value: float) -> str:
    """Microseconds whole, shares and rates to three figures (a CPU share of 0.98 is not "1")."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def compare(metric: common_pb2.MetricSpec, baseline: dict[str, float],
            observed: dict[str, float]) -> deployment_pb2.MetricComparison:
    before, after = baseline[key(metric)], observed[key(metric)]
    change = (before - after) if metric.direction == common_pb2.DIRECTION_LOWER_IS_BETTER else (after - before)
    improvement = change / before if before else 0.0
    return deployment_pb2.MetricComparison(metric=metric, baseline=before, observed=after, improvement=improvement)


def guard_holds(guard: goal_pb2.GuardConstraint, before: float, after: float) -> bool:
    """A guard is a floor (COMPARISON_AT_LEAST): the metric keeps at least its bound."""
    bound = guard.ratio_to_baseline * before if guard.WhichOneof("bound") == "ratio_to_baseline" else guard.absolute
    return after >= bound
