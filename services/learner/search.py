"""SearchPolicies: which repository policies are likely to help this workload on this host.

Every outcome for the goal's objective votes for its (policy, parameters) with a weight that
falls with the distance between its workload signature and the one asked about (Gaussian,
width SIMILARITY_WIDTH). Expected improvement is the weighted mean of measured improvements;
confidence grows with the effective number of similar outcomes and shrinks with their spread.
Ejections and repeated regressions on similar workloads make a policy an anti-pattern: it is
returned under `avoid`, never among the matches. Policies without outcomes are returned last,
with zero confidence, when their metadata says they serve the goal. A match carries the goal
of its most similar kept outcome, which the planner may reuse for the same workload.
"""

from __future__ import annotations

import math
from collections import defaultdict

from schedcp.domain import evidence, params
from schedcp.domain.policies import GOAL_WORDS
from schedcp.runtime.errors import InvalidArgument
from schedcp.v1 import common_pb2, deployment_pb2, goal_pb2, host_pb2, learner_pb2, policy_pb2, profile_pb2
from services.learner.outcomes import OutcomeLedger

R = deployment_pb2
SIMILARITY_WIDTH = 0.3
MIN_SIMILARITY = 0.2
DEFAULT_LIMIT = 5


def similarity(a: profile_pb2.WorkloadSignature, b: profile_pb2.WorkloadSignature) -> float:
    """1 for identical signatures, falling towards 0 with distance; 0 across versions."""
    if a.version != b.version or len(a.values) != len(b.values):
        return 0.0
    distance_sq = sum((x - y) ** 2 for x, y in zip(a.values, b.values, strict=True))
    return math.exp(-distance_sq / (2 * SIMILARITY_WIDTH ** 2))


def runnable_on(record: policy_pb2.PolicyRecord, host: host_pb2.HostFacts) -> bool:
    if record.metadata.kind == policy_pb2.POLICY_KIND_SCHED_EXT:
        return "sched_ext" in host.backends
    return True


class _Votes:
    def __init__(self) -> None:
        self.weight = 0.0
        self.weighted_sum = 0.0
        self.weighted_sq = 0.0
        self.best_similarity = 0.0
        self.count = 0
        self.ejections = 0
        self.regressions = 0
        self.goal: goal_pb2.OptimizationGoal | None = None
        self._goal_similarity = 0.0
        self.parameters: dict[str, common_pb2.ParamValue] = {}
        # Judged canaries of two rounds or more, by their success metric (name, groups and
        # direction, serialized): (estimate, similarity).
        self.estimates: dict[bytes, list[tuple[evidence.Estimate, float]]] = defaultdict(list)

    def add(self, outcome: deployment_pb2.Outcome, w: float) -> None:
        self.best_similarity = max(self.best_similarity, w)
        self.parameters = dict(outcome.parameters)  # one (policy, parameters) key: the same for all
        if outcome.result == R.OUTCOME_RESULT_EJECTED:
            self.ejections += 1
            return
        if outcome.result not in (R.OUTCOME_RESULT_KEPT, R.OUTCOME_RESULT_ROLLED_BACK):
            return
        if outcome.result == R.OUTCOME_RESULT_KEPT and outcome.HasField("goal") and w > self._goal_similarity:
            self.goal, self._goal_similarity = outcome.goal, w
        if (estimate := evidence.of_comparison(outcome.success)) is not None:
            self.estimates[outcome.success.metric.SerializeToString(deterministic=True)].append((estimate, w))
        x = outcome.success.improvement
        self.count += 1
        self.regressions += x < 0
        self.weight += w
        self.weighted_sum += w * x
        self.weighted_sq += w * x * x

    @property
    def mean(self) -> float:
        return self.weighted_sum / self.weight if self.weight else 0.0

    def pooled_evidence(self) -> deployment_pb2.MetricComparison | None:
        """The pooled estimate on the very success metric the most similar kept goal judged (None
        without a kept goal or canaries on it): what the next canary of this point is judged with."""
        if self.goal is None:
            return None
        wanted = self.goal.success_metric.SerializeToString(deterministic=True)
        if not self.estimates.get(wanted):
            return None
        return evidence.comparison(self.goal.success_metric, evidence.pooled(self.estimates[wanted]))

    @property
    def confidence(self) -> float:
        spread = math.sqrt(max(0.0, self.weighted_sq / self.weight - self.mean ** 2)) if self.weight else 0.0
        support = self.weight / (self.weight + 2.0)
        return support / (1.0 + spread / max(abs(self.mean), 0.05))


def search(request: learner_pb2.SearchPoliciesRequest, records: list[policy_pb2.PolicyRecord],
           ledger: OutcomeLedger) -> learner_pb2.SearchPoliciesResponse:
    if not request.signature.values:
        raise InvalidArgument("signature is required (the workload's signature from its profile)")
    objective = request.goal.objective
    by_name = {r.metadata.name: r for r in records if runnable_on(r, request.host)}
    votes: dict[tuple[str, str], _Votes] = defaultdict(_Votes)
    for outcome in ledger.outcomes:
        if outcome.policy_name not in by_name or (objective and outcome.objective != objective):
            continue
        w = similarity(request.signature, outcome.signature)
        if w >= MIN_SIMILARITY:
            votes[(outcome.policy_name, params.key(outcome.parameters))].add(outcome, w)

    response = learner_pb2.SearchPoliciesResponse()
    matches = []
    for (name, key), v in votes.items():
        if v.ejections or (v.regressions >= 2 and v.mean < 0):
            response.avoid.append(learner_pb2.AntiPattern(
                policy_name=name, parameters_key=key, regressions=v.regressions, ejections=v.ejections,
                reason=(f"ejected by the kernel {v.ejections} time(s)" if v.ejections
                        else f"made things worse in {v.regressions} of {v.count} similar outcomes")))
        elif v.count:
            matches.append(learner_pb2.PolicyMatch(
                policy=by_name[name], expected_improvement=v.mean, confidence=v.confidence,
                similarity=v.best_similarity, goal=v.goal, parameters=v.parameters, evidence=v.pooled_evidence(),
                reason=f"{v.count} similar outcome(s) with {key or 'default parameters'}: "
                       f"mean improvement {100 * v.mean:+.1f}%"))
    matches.sort(key=lambda m: m.expected_improvement * m.confidence, reverse=True)
    tried = {m.policy.metadata.name for m in matches} | {a.policy_name for a in response.avoid}
    goal = GOAL_WORDS.get(objective)
    for name, record in sorted(by_name.items()):
        serves = goal is None or goal in record.metadata.goals
        if name not in tried and serves:
            matches.append(learner_pb2.PolicyMatch(
                policy=record, reason=f"untested here; the library says it serves {goal or 'this goal'}"))
    response.matches.extend(matches[:request.limit or DEFAULT_LIMIT])
    return response

