"""Candidates for a goal from the policy library, with parameters for this host (the `tune`
path), ranked by what the learner knows (`rank`: a policy with good outcomes on similar
workloads goes first as `reuse`; one that was ejected or made things worse is dropped), and
the reuse test for a kept outcome's goal (`reusable`).

Latency goals get the native demotions of the other work the goal guards (cpu.idle cgroup,
SCHED_IDLE) or, with nothing to demote, a long slice without wakeup preemption or a short slice
for the service; with sched_ext, latency_boost boosting the latency group by name, then vtime,
or with nothing to demote the long-slice `batch` scheduler.
Throughput goals get the long slice (native) or `batch` (sched_ext); makespan `favour_group`
for the long jobs (native) or `ljf`. A sched_ext policy is offered only to a host whose kernel
is at least its min_kernel (the release of the newest kfunc it calls): an older kernel would
refuse to load it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from schedcp.domain import kernels, matchers, native_policies, params, policies
from schedcp.domain.policies import PolicyMetadata
from schedcp.runtime.errors import FailedPrecondition
from schedcp.v1 import common_pb2, cycle_pb2, goal_pb2, learner_pb2, policy_pb2, profile_pb2

log = logging.getLogger(__name__)
# A kept outcome's goal is reused for a workload at least this similar (learner similarity,
# 1 = identical signature) when the learner's confidence in its policy is at least this (one
# kept outcome gives 0.33 on an identical workload, 0.2 at similarity 0.5). Kept low because
# the signature of one real workload moves between runs (a helper process classified latency
# one time and not the next); the groups the goal names must be present as well.
REUSE_MIN_SIMILARITY = 0.5
REUSE_MIN_CONFIDENCE = 0.15
GOAL_THEN = "; the goal then: "
# ljf's head start for a long job the goal names (max_lead_ms).
KNOWN_LONG_JOB_LEAD_MS = 2000
# (policy, expected improvement of the success metric, confidence), best first. Which one wins
# on a workload is measured, not assumed: the cycle tries the next when a canary rolls back
# (planner.cycle.MAX_CANARIES), and the learner's outcomes reorder them for similar workloads.
# Latency with other work to demote. SCHED_IDLE first: on real services beside CPU batch it came
# out ahead on this project's test host (bench/results/scenarios.md: nginx p99 59 ms by default,
# 13-14 ms with the batch SCHED_IDLE, 29-34 ms with it in a cpu.idle cgroup; redis 7.9 ms, 0.2
# ms and 5.4 ms), where cyclictest had found them alike (PLATFORM.md: 79-88 us and 72 us).
NATIVE_PROTECT = (("batch_sched_idle", 0.86, 0.8), ("batch_idle_cgroup", 0.88, 0.8))
# Latency with nothing to demote (an over-subscribed service): fewer preemptions in the middle of
# a request, or shorter slices and more weight for it.
NATIVE_OVERSUBSCRIBED = (("long_slice", 0.3, 0.4), ("latency_slice", 0.2, 0.3))
NATIVE = {
    goal_pb2.OBJECTIVE_THROUGHPUT: (("long_slice", 0.05, 0.4),),
    goal_pb2.OBJECTIVE_MAKESPAN: (("favour_group", 0.15, 0.5),),
}
# An over-subscribed service on sched_ext: in the sandbox VM (issue 19's measurements, one boot,
# 3 alternating repetitions) a request-serving program with more workers than CPUs had its request
# p99 3.2x better under the long-slice `batch` scheduler, and 1.4x worse under latency_boost or
# vtime: boosting wakeups among peers only reorders who waits, a long slice lets each finish.
SCHED_EXT_OVERSUBSCRIBED = (("batch", 0.3, 0.4),)
SCHED_EXT = {
    goal_pb2.OBJECTIVE_TAIL_LATENCY: (("latency_boost", 0.75, 0.6), ("vtime", 0.3, 0.5)),
    goal_pb2.OBJECTIVE_THROUGHPUT: (("batch", 0.05, 0.4),),
    goal_pb2.OBJECTIVE_MAKESPAN: (("ljf", 0.15, 0.5),),
}


def others(goal: goal_pb2.OptimizationGoal) -> list[common_pb2.GroupMatcher]:
    """The groups a goal guards besides its targets: the work a demotion applies to."""
    found: list[common_pb2.GroupMatcher] = []
    for matcher in (m for g in goal.guards for m in g.metric.groups):
        if matcher not in goal.target_groups and matcher not in found:
            found.append(matcher)
    return found


def _native_table(goal: goal_pb2.OptimizationGoal) -> tuple[tuple[str, float, float], ...]:
    if goal.objective == goal_pb2.OBJECTIVE_TAIL_LATENCY:
        return NATIVE_PROTECT if others(goal) else NATIVE_OVERSUBSCRIBED
    return NATIVE.get(goal.objective, ())


def _sched_ext_table(goal: goal_pb2.OptimizationGoal) -> tuple[tuple[str, float, float], ...]:
    if goal.objective == goal_pb2.OBJECTIVE_TAIL_LATENCY and not others(goal):
        return SCHED_EXT_OVERSUBSCRIBED
    return SCHED_EXT.get(goal.objective, ())


def candidates(goal: goal_pb2.OptimizationGoal, profile: profile_pb2.WorkloadProfile,
               library: list[PolicyMetadata] | None = None, budget: int = 1,
               learned: Mapping[str, list[dict[str, object]]] | None = None) -> cycle_pb2.CandidateList:
    """Library candidates for the goal on this host, best first (empty when none applies): each
    policy with the parameters chosen for the workload; then the points the learner measured on
    similar workloads (`learned`: policy -> parameter points); then, for a search (`budget` > 1),
    the other points of each policy's parameter range (`params.variants`), so that the trials
    compare parameters as well as policies."""
    by_name = {m.name: m for m in (library or policies.library())}
    found: list[cycle_pb2.Candidate] = []
    skipped: list[str] = []
    table: list[tuple[PolicyMetadata, float, float]] = []
    if "sched_ext" in profile.host.backends:
        for name, improvement, confidence in _sched_ext_table(goal):
            if why := too_old(by_name[name], profile.host.kernel_release):
                skipped.append(why)
                continue
            if name == "latency_boost" and not _target_comm(goal):
                # It would boost nothing, and the verifier refuses a latency claim it does not keep.
                skipped.append("latency_boost: the goal names no task by name to boost")
                continue
            table.append((by_name[name], improvement, confidence))
    for name, improvement, confidence in _native_table(goal):
        if name == "batch_idle_cgroup" and not profile.host.cgroup.cpu_idle_supported:
            continue
        if _groups_for(by_name[name], goal):
            table.append((by_name[name], improvement, confidence))
    points = [(row, {}) for row in table]
    points += [(row, point) for row in table for point in (learned or {}).get(row[0].name, [])]
    if budget > 1:
        points += [(row, point) for row in table for point in params.variants(row[0])]
    seen: set[tuple[str, str]] = set()
    for (meta, improvement, confidence), point in points:
        candidate = _candidate(meta, goal, profile, improvement, confidence, point)
        key = (meta.name, params.key(candidate.artifact.parameters))
        if key not in seen:
            seen.add(key)
            found.append(candidate)
    if skipped:
        log.info("not offered on %s: %s", profile.host.host_id or "this host", "; ".join(skipped))
        for candidate in found:  # the candidates that remain say what was passed over
            candidate.rationale += f" (Not offered: {'; '.join(skipped)}.)"
    return cycle_pb2.CandidateList(candidates=found, chosen=0)


def _candidate(meta: PolicyMetadata, goal: goal_pb2.OptimizationGoal, profile: profile_pb2.WorkloadProfile,
               improvement: float, confidence: float, point: dict[str, object]) -> cycle_pb2.Candidate:
    """One candidate: the policy with the parameters derived for this workload, `point` over them."""
    if meta.kind == "sched_ext":
        candidate = _sched_ext(meta, goal, improvement, confidence)
        for name, value in point.items():
            candidate.artifact.parameters[name].CopyFrom(params.of(value))
        if point:
            candidate.artifact.origin = policy_pb2.POLICY_ORIGIN_TUNED
            candidate.rationale += f" Trying {_point(point)}."
        return candidate
    groups = _groups_for(meta, goal)
    values = native_policies.effective(meta, {**derived(meta, goal, profile), **point}, groups)
    return _native(meta, groups, improvement, confidence, values)


def _point(point: Mapping[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items())


def _groups_for(meta: PolicyMetadata, goal: goal_pb2.OptimizationGoal) -> list[common_pb2.GroupMatcher]:
    """The goal's groups a native policy applies to, as its metadata says."""
    return list(goal.target_groups) if meta.group in ("latency", "target") else others(goal)


def too_old(meta: PolicyMetadata, kernel_release: str) -> str:
    """Why a host running `kernel_release` cannot load `meta` ("" when it can). A release that
    cannot be read (not reported) does not exclude it: the verifier's sandbox and the kernel
    still judge the program."""
    if kernels.at_least(kernel_release, meta.requires.min_kernel) is False:
        return f"{meta.name} needs Linux {meta.requires.min_kernel} or newer, the host runs {kernel_release}"
    return ""


def named(name: str, parameters, goal: goal_pb2.OptimizationGoal, profile: profile_pb2.WorkloadProfile,
          library: list[PolicyMetadata]) -> cycle_pb2.CandidateList:
    """The one candidate an operator asked for by name (`schedcp deploy`), with their parameters
    over what the cycle would choose; a native policy applies to the goal's batch or latency
    groups as its metadata says."""
    meta = next(m for m in library if m.name == name)  # Planner.check_policy came first
    if meta.kind == "sched_ext":
        candidate = _sched_ext(meta, goal, 0.0, 0.0)
        for key, value in parameters.items():
            candidate.artifact.parameters[key].CopyFrom(value)
    else:
        groups = _groups_for(meta, goal)
        if not groups:
            raise FailedPrecondition(f"{name} applies to the {meta.group} group and the goal names none "
                                     f"({goal.rationale}); say which with --intent")
        candidate = _native(meta, groups, 0.0, 0.0, params.pythons(parameters))
    candidate.rationale = f"{name}: asked for by the operator. {meta.description}"
    return cycle_pb2.CandidateList(candidates=[candidate], chosen=0)


def derived(meta: PolicyMetadata, goal: goal_pb2.OptimizationGoal,
            profile: profile_pb2.WorkloadProfile) -> dict[str, object]:
    """Parameters chosen from the profile over the library's defaults ({} when none is).

    favour_group for the observer's long jobs: the weight that gives each long job a CPU of its
    own against the program's other jobs (EEVDF balances weight across CPUs: k long jobs of
    weight w beside n others of weight 1024 on c CPUs keep theirs when w >= 1024 n / (c - k);
    nice is log1.25 of the weight ratio), within the policy's range.

    long_slice for a service's latency: the long slice without SCHED_BATCH, whose lack of wakeup
    preemption makes a woken request wait out the running worker's whole slice (web_oversubscribed,
    the p99 of wrk's requests, medians of four runs on this host: 11.1, 12.8, 11.8, 41.7 ms without
    it, 12.4, 13.2, 14.4, 48.0 with, 14.5, 18.0, 17.6, 45.6 on the defaults). Messaging throughput
    keeps it: there every wakeup preemption is a switch that does no work."""
    if meta.name == "long_slice" and goal.objective == goal_pb2.OBJECTIVE_TAIL_LATENCY:
        return {"use_sched_batch": False}
    if meta.name != "favour_group" or goal.objective != goal_pb2.OBJECTIVE_MAKESPAN:
        return {}
    targets = [m.cmdline_regex for m in goal.target_groups if m.cmdline_regex]
    batches = [g for g in profile.groups if any(j.matcher.cmdline_regex in targets for j in g.long_jobs)]
    if not batches:
        return {}
    long = sum(1 for g in batches for j in g.long_jobs if j.matcher.cmdline_regex in targets)
    others = sum(g.features.processes for g in batches) - long
    free_cpus = (profile.host.cpu.logical_cpus or 1) - long
    spec = meta.parameter("nice")
    if free_cpus <= 0 or others <= 0:
        return {"nice": spec.min}  # every CPU is a long job's: the others fill what they leave
    ratio = others / free_cpus
    return {"nice": max(spec.min, min(spec.max, -math.ceil(math.log(max(ratio, 1.0)) / math.log(1.25))))}


def _target_comm(goal: goal_pb2.OptimizationGoal) -> str:
    """The task name of the goal's first target matched by name ("" when none is)."""
    return next((m.comm for m in goal.target_groups if m.WhichOneof("match") == "comm"), "")


def _sched_ext(meta: PolicyMetadata, goal: goal_pb2.OptimizationGoal, improvement: float,
               confidence: float) -> cycle_pb2.Candidate:
    artifact = policy_pb2.PolicyArtifact(
        name=meta.name, kind=policy_pb2.POLICY_KIND_SCHED_EXT, origin=policy_pb2.POLICY_ORIGIN_LIBRARY,
        sched_ext=policies.sched_ext_program(meta))
    why = f"{meta.name}: {meta.description}"
    comm = _target_comm(goal)
    if meta.name == "latency_boost" and comm:
        artifact.parameters["boost_comm"].string_value = comm
        why += f" Boosting {comm!r}."
    if meta.name == "ljf" and comm:
        # The goal names the long job: give it the lead from the start, and enough of it to
        # outlast the short jobs' waits (bench/results/makespan.md: -18 % vs EEVDF tuned so,
        # -5 % with the defaults, which guess the long job from CPU time used).
        artifact.parameters["long_comm"].string_value = comm
        artifact.parameters["max_lead_ms"].int_value = KNOWN_LONG_JOB_LEAD_MS
        why += f" {comm!r} is the long job."
    if artifact.parameters:  # chosen here, for this goal: no longer the library's defaults
        artifact.origin = policy_pb2.POLICY_ORIGIN_TUNED
    return cycle_pb2.Candidate(artifact=artifact, path=cycle_pb2.SYNTHESIS_PATH_TUNE,
                               expected_improvement=improvement, confidence=confidence, rationale=why)


def _native(meta: PolicyMetadata, group: list[common_pb2.GroupMatcher], improvement: float,
            confidence: float, values: native_policies.Params | None = None) -> cycle_pb2.Candidate:
    artifact = policy_pb2.PolicyArtifact(name=meta.name, kind=policy_pb2.POLICY_KIND_NATIVE,
                                         origin=policy_pb2.POLICY_ORIGIN_LIBRARY,
                                         native=native_policies.build(meta, values or {}, group))
    why = f"{meta.name}: {meta.description}"
    for name, value in (values or {}).items():  # recorded, so outcomes say what was deployed
        artifact.parameters[name].CopyFrom(params.of(value))
    if values:
        artifact.origin = policy_pb2.POLICY_ORIGIN_TUNED
        why += f" With {_point(values)}, chosen for this workload."
    return cycle_pb2.Candidate(artifact=artifact, path=cycle_pb2.SYNTHESIS_PATH_TUNE,
                               expected_improvement=improvement, confidence=confidence, rationale=why)


def reusable(search: learner_pb2.SearchPoliciesResponse | None, profile: profile_pb2.WorkloadProfile,
             intent: str) -> learner_pb2.PolicyMatch | None:
    """The learner's best match whose goal may be reused as it is: kept before on a workload
    at least REUSE_MIN_SIMILARITY alike, with enough confidence and the improvement its goal
    asked for, under the same operator intent, and with every group the goal names present in
    this profile (a goal about groups that are gone would measure nothing)."""
    for match in search.matches if search else ():
        if not why_not_reused(match, profile, intent):
            return match
    return None


def why_not_reused(match: learner_pb2.PolicyMatch, profile: profile_pb2.WorkloadProfile, intent: str) -> str:
    """Why `reusable` passes over this match ("" when it does not)."""
    goal = match.goal
    present = [g.matcher for g in profile.groups] + [j.matcher for g in profile.groups for j in g.long_jobs]
    missing = [matchers.describe(m) for m in _groups_named(goal) if m not in present]
    checks = (
        (not goal.objective, "no kept outcome recorded its goal"),
        (goal.intent != intent, f"it served another intent ({goal.intent!r})"),
        (match.similarity < REUSE_MIN_SIMILARITY, f"the workload is only {match.similarity:.2f} alike"),
        (match.confidence < REUSE_MIN_CONFIDENCE, f"confidence {match.confidence:.2f} is too low"),
        (match.expected_improvement < goal.min_improvement,
         f"it improved {match.expected_improvement:.0%}, less than the goal's {goal.min_improvement:.0%}"),
        (bool(missing), f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not in this profile"),
    )
    return next((why for failed, why in checks if failed), "")


def reused_goal(match: learner_pb2.PolicyMatch) -> goal_pb2.OptimizationGoal:
    goal = goal_pb2.OptimizationGoal()
    goal.CopyFrom(match.goal)
    goal.provider = "learner"
    # A goal reused before quotes the one it came from: quote that first reasoning, not a chain.
    first = goal.rationale.rpartition(GOAL_THEN)[2]
    goal.rationale = (f"reused: {match.policy.metadata.name} was kept on a workload this similar "
                      f"(similarity {match.similarity:.2f}; {match.reason}){GOAL_THEN}{first}")
    return goal


def _groups_named(goal: goal_pb2.OptimizationGoal) -> list[common_pb2.GroupMatcher]:
    return [*goal.target_groups, *goal.success_metric.groups, *(m for g in goal.guards for m in g.metric.groups)]


def rank(found: cycle_pb2.CandidateList, search: learner_pb2.SearchPoliciesResponse,
         stored: dict[str, policy_pb2.PolicyArtifact] | None = None) -> cycle_pb2.CandidateList:
    """Put the learner's matches first (path REUSE, its expected improvement and confidence)
    and drop its anti-patterns, each a policy with the parameters it was measured with; the rest
    keep their order. `stored` holds the artifacts of repository policies the library did not
    offer (LLM-written ones), by name."""
    avoid = {(a.policy_name, a.parameters_key) for a in search.avoid}
    kept = [c for c in found.candidates if _key(c.artifact) not in avoid]
    kept += [cycle_pb2.Candidate(artifact=artifact) for name, artifact in (stored or {}).items()
             if (name, params.key(artifact.parameters)) not in avoid]
    reused = []
    # Matches without outcomes (confidence 0) are only the library's say-so: not reuse.
    for match in (m for m in search.matches if m.confidence > 0):
        wanted = (match.policy.metadata.name, params.key(match.parameters))
        candidate = next((c for c in kept if _key(c.artifact) == wanted and c not in reused), None)
        if candidate is None:
            continue
        candidate.path = cycle_pb2.SYNTHESIS_PATH_REUSE
        candidate.expected_improvement, candidate.confidence = match.expected_improvement, match.confidence
        if match.HasField("evidence"):
            candidate.evidence.CopyFrom(match.evidence)
        candidate.rationale = f"{wanted[0]}: {match.reason}"
        reused.append(candidate)
    rest = [c for c in kept if c not in reused]
    return cycle_pb2.CandidateList(candidates=[*reused, *rest], chosen=0)


def _key(artifact: policy_pb2.PolicyArtifact) -> tuple[str, str]:
    return artifact.name, params.key(artifact.parameters)


def learned_points(search: learner_pb2.SearchPoliciesResponse | None) -> dict[str, list[dict[str, object]]]:
    """The parameter points the learner has outcomes for, by policy: candidates to offer again."""
    points: dict[str, list[dict[str, object]]] = {}
    for match in (search.matches if search else []):
        if match.confidence > 0 and (point := params.tunables(match.parameters)):
            points.setdefault(match.policy.metadata.name, []).append(point)
    return points
