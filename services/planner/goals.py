"""Goal inference, `rules` provider: deterministic, no key, from the profile's classes.

- latency-sensitive groups share the host with batch groups -> protect the latency groups'
  p99 run-queue wait, guarding the batch groups' CPU share (>= 90 % of before);
- batch groups only, contending for the CPUs (demand above capacity) -> throughput;
- otherwise nothing worth changing: a goal with no objective and the reason.

An operator's intent narrows it: a group named in it becomes the target, and "throughput",
"latency"/"p99" or "makespan" picks the objective.
"""

from __future__ import annotations

import re

from schedcp.v1 import common_pb2, goal_pb2, profile_pb2

MIN_CONFIDENCE = 0.5
LATENCY_MIN_IMPROVEMENT = 0.2
THROUGHPUT_MIN_IMPROVEMENT = 0.05
BATCH_GUARD_RATIO = 0.9
LATENCY = profile_pb2.WORKLOAD_CLASS_LATENCY_SENSITIVE
BATCH = profile_pb2.WORKLOAD_CLASS_BATCH
_OBJECTIVE_WORDS = ((goal_pb2.OBJECTIVE_THROUGHPUT, r"throughput|faster batch|more work"),
                    (goal_pb2.OBJECTIVE_MAKESPAN, r"makespan|finish sooner|finish faster"),
                    (goal_pb2.OBJECTIVE_TAIL_LATENCY, r"latency|p99|tail|responsive"))


def infer(profile: profile_pb2.WorkloadProfile, intent: str = "") -> goal_pb2.OptimizationGoal:
    latency = _confident(profile, LATENCY)
    batch = _confident(profile, BATCH)
    named = [g for g in profile.groups if intent and re.search(rf"\b{re.escape(g.name)}\b", intent, re.I)]
    objective = _objective_in(intent)
    if named and objective != goal_pb2.OBJECTIVE_THROUGHPUT:
        latency = named
        batch = [g for g in batch if g not in named]
    elif named:
        batch = named
    if objective in (goal_pb2.OBJECTIVE_UNSPECIFIED, goal_pb2.OBJECTIVE_TAIL_LATENCY) and latency and batch:
        return protect_latency(latency, batch, intent)
    if objective in (goal_pb2.OBJECTIVE_UNSPECIFIED, goal_pb2.OBJECTIVE_THROUGHPUT) and batch \
            and _contended(profile, batch):
        return throughput(batch, profile, intent)
    return goal_pb2.OptimizationGoal(
        objective=goal_pb2.OBJECTIVE_UNSPECIFIED, provider="rules", intent=intent, confidence=1.0,
        rationale=_nothing_to_do(profile, latency, batch, objective))


def protect_latency(latency: list, batch: list, intent: str) -> goal_pb2.OptimizationGoal:
    """Protect the latency groups' p99 run-queue wait from the batch groups, guarding their CPU."""
    worst = max(latency, key=lambda g: g.features.runq_latency.p99_us)
    cpus = sum(g.features.demand for g in batch)
    goal = goal_pb2.OptimizationGoal(
        objective=goal_pb2.OBJECTIVE_TAIL_LATENCY, target_groups=[g.matcher for g in latency],
        success_metric=_metric("runq_latency_p99_us", latency, common_pb2.DIRECTION_LOWER_IS_BETTER),
        min_improvement=LATENCY_MIN_IMPROVEMENT, intent=intent, provider="rules",
        confidence=min(g.classification.confidence for g in [*latency, *batch]),
        rationale=(f"{_names(latency)} wake often and wait to run (p99 {worst.features.runq_latency.p99_us:.0f} us "
                   f"for {worst.name}) behind {_names(batch)}, which want {cpus:.1f} CPUs: protect "
                   f"{'its' if len(latency) == 1 else 'their'} p99 run-queue wait, keeping at least "
                   f"{BATCH_GUARD_RATIO:.0%} of the batch CPU share"))
    goal.guards.append(_batch_guard(batch))
    return goal


def throughput(batch: list, profile: profile_pb2.WorkloadProfile, intent: str) -> goal_pb2.OptimizationGoal:
    """More CPU work per second for the batch groups."""
    demand = sum(g.features.demand for g in batch)
    return goal_pb2.OptimizationGoal(
        objective=goal_pb2.OBJECTIVE_THROUGHPUT, target_groups=[g.matcher for g in batch],
        success_metric=_metric("cpu_share", batch, common_pb2.DIRECTION_HIGHER_IS_BETTER),
        min_improvement=THROUGHPUT_MIN_IMPROVEMENT, intent=intent, provider="rules",
        confidence=min(g.classification.confidence for g in batch),
        rationale=(f"only batch work contends ({_names(batch)} want {demand:.1f} CPUs of "
                   f"{profile.host.cpu.logical_cpus or '?'}): more CPU work done per second"))


def _batch_guard(batch: list) -> goal_pb2.GuardConstraint:
    return goal_pb2.GuardConstraint(
        metric=_metric("cpu_share", batch, common_pb2.DIRECTION_HIGHER_IS_BETTER),
        comparison=goal_pb2.COMPARISON_AT_LEAST, ratio_to_baseline=BATCH_GUARD_RATIO,
        description=f"{_names(batch)} keep at least {BATCH_GUARD_RATIO:.0%} of their CPU share")


def _metric(name: str, groups: list, direction: int) -> common_pb2.MetricSpec:
    return common_pb2.MetricSpec(name=name, groups=[g.matcher for g in groups], direction=direction)


def _confident(profile: profile_pb2.WorkloadProfile, workload_class: int) -> list:
    return [g for g in profile.groups
            if g.classification.workload_class == workload_class and g.classification.confidence >= MIN_CONFIDENCE]


def _contended(profile: profile_pb2.WorkloadProfile, batch: list) -> bool:
    return sum(g.features.demand for g in batch) > max(1, profile.host.cpu.logical_cpus) * 1.05


def _objective_in(intent: str) -> int:
    for objective, words in _OBJECTIVE_WORDS:
        if re.search(words, intent, re.I):
            return objective
    return goal_pb2.OBJECTIVE_UNSPECIFIED


def _names(groups: list) -> str:
    names = [g.name for g in groups]
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _nothing_to_do(profile, latency: list, batch: list, objective: int) -> str:
    if objective == goal_pb2.OBJECTIVE_MAKESPAN:
        return "makespan needs the jobs' lengths, which a profile does not show; the rules provider cannot infer it"
    if latency and not batch:
        return f"{_names(latency)} do not compete with batch work: nothing to protect them from"
    if batch:
        return f"{_names(batch)} fit in the host's {profile.host.cpu.logical_cpus} CPUs: no contention to resolve"
    return "no latency-sensitive or batch group with confident classification: nothing to optimise"
