"""Plan: observe a host, infer the goal, list the candidates; nothing verified or deployed.
(Tune, the full cycle in cycle.py, builds on this.)

Cheapest first: when the learner has a kept outcome for a workload this similar, with the same
operator intent and every group it named still present, its goal is reused as it was (no goal
inference, no LLM call) and its policy leads the candidates; otherwise the goal provider
decides. Repository policies that are not in the library (LLM-written ones the learner has
good outcomes for) join the candidates with their stored artifact. For Tune's learn stage, the
learner's History says when it has applied a deployment's outcome (`applied_outcome`)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import grpc
from google.protobuf.message import DecodeError
from nats.errors import Error as NatsError

from schedcp.domain import artifacts, kernels, policies
from schedcp.runtime import rpc
from schedcp.runtime.bus import Bus
from schedcp.runtime.config import Settings
from schedcp.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from schedcp.v1 import (
    cycle_pb2,
    deployment_pb2,
    goal_pb2,
    host_pb2,
    learner_pb2,
    learner_pb2_grpc,
    observer_pb2,
    observer_pb2_grpc,
    planner_pb2,
    policy_pb2,
    profile_pb2,
    verdict_pb2,
)
from services.planner import goals, synthesis
from services.planner.hosts import HostDirectory
from services.planner.llm import LlmClient, OpenAIGoals, Usage

log = logging.getLogger(__name__)
OBSERVE_WINDOW_S = 2.0
# A window shorter than the jobs it shows cannot tell what they are: a batch that repeats (one
# long job and many short ones, started together) profiled while only its long job runs looks
# like one process on a host with room to spare. Profiled again over this many of its longest
# typical jobs, up to MAX_OBSERVE_WINDOW_S.
JOBS_PER_OBSERVE_WINDOW = 2
MAX_OBSERVE_WINDOW_S = 30.0
PROVIDERS = ("rules", "openai")
# While a cycle waits for its outcome to be applied, the learner is asked this often, for the
# host's newest outcomes: one deployment runs at a time on a host and the cycle asks right
# after its deployment ended, so its outcome is among the first few.
LEARNER_POLL_S = 0.2
HOST_OUTCOMES = 10


class Planner:
    def __init__(self, hosts: HostDirectory, settings: Settings, bus: Bus) -> None:
        self._hosts = hosts
        self._bus = bus
        self._settings = settings
        self._rpc_timeout_s = settings.rpc_timeout_s
        self._learner_addr = settings.learner_addr
        self.llm = LlmClient(settings)
        # Read once: the library ships with the code (parsing it per cycle was a fifth of the
        # planner's CPU in the fleet bench).
        self._library = policies.library()
        self._openai = OpenAIGoals(settings)

    async def plan(self, request: planner_pb2.PlanRequest) -> planner_pb2.PlanResponse:
        self.check_provider(request.provider)
        host = await self.host(request.host_id)
        profile = await self.observe(host.observer_addr)
        usage = Usage()
        goal, asked = await self.goal(profile, request.intent, request.provider, usage)
        return planner_pb2.PlanResponse(cycle_id=uuid.uuid4().hex, goal=goal,
                                        candidates=await self.candidates(goal, profile, asked=asked),
                                        llm_usage=usage.message())

    async def goal(self, profile: profile_pb2.WorkloadProfile, intent: str, provider: str,
                   usage: Usage) -> tuple[goal_pb2.OptimizationGoal, learner_pb2.SearchPoliciesResponse | None]:
        """The goal of a kept outcome for this workload when one may be reused; else the
        requested provider's (the configured one when empty). With the learner's answer it was
        decided on, for `candidates`."""
        search = await self._search(learner_pb2.SearchPoliciesRequest(signature=profile.signature, host=profile.host))
        match = synthesis.reusable(search, profile, intent)
        if match is not None:
            return synthesis.reused_goal(match), search
        tried = [m for m in search.matches if m.confidence > 0] if search else []
        if tried and log.isEnabledFor(logging.INFO):
            log.info("not reusing %s's goal: %s", tried[0].policy.metadata.name,
                     synthesis.why_not_reused(tried[0], profile, intent))
        if self.provider_of(provider) == "openai":
            return await self._openai.infer(profile, intent, usage), search
        return goals.infer(profile, intent), search

    def provider_of(self, requested: str) -> str:
        return requested or self._settings.goal_provider

    async def candidates(self, goal: goal_pb2.OptimizationGoal, profile: profile_pb2.WorkloadProfile,
                         budget: int = 1, asked: learner_pb2.SearchPoliciesResponse | None = None,
                         ) -> cycle_pb2.CandidateList:
        """Library candidates (with the parameter points the learner measured, and for a search
        of `budget` > 1 trials the others of each policy's range), ranked by the learner's
        outcomes for similar workloads. Without the learner the library order stands (and the
        log says why). `asked`: the learner's answer for this workload without a goal; when it
        knew nothing of any similar workload, it knows nothing for this goal either (a new
        workload, a fleet starting) and is not asked again."""
        search = asked if _knows_nothing(asked) else await self._search(learner_pb2.SearchPoliciesRequest(
            signature=profile.signature, host=profile.host, goal=goal))
        found = synthesis.candidates(goal, profile, self._library, budget, synthesis.learned_points(search))
        if search is None:
            return found
        return synthesis.rank(found, search, await self._stored(search, found, profile.host.kernel_release))

    def check_policy(self, name: str, host: host_pb2.HostRegistration) -> None:
        """Before a cycle for a named policy starts: InvalidArgument unless it is a library
        policy, FailedPrecondition when the host cannot run it."""
        if not name:
            return
        meta = next((m for m in self._library if m.name == name), None)
        if meta is None:
            raise InvalidArgument(f"no library policy {name!r}; `schedcp policies` lists them "
                                  f"({', '.join(sorted(m.name for m in self._library))})")
        if meta.kind == "sched_ext" and "sched_ext" not in host.facts.backends:
            raise FailedPrecondition(f"{name} is a sched_ext scheduler and {host.host_id} has no sched_ext (its "
                                     "kernel lacks CONFIG_SCHED_CLASS_EXT); choose a native policy")
        if meta.kind == "sched_ext" and (why := synthesis.too_old(meta, host.facts.kernel_release)):
            raise FailedPrecondition(f"{why} ({host.host_id}); choose another policy")

    def named(self, request: planner_pb2.TuneRequest, goal: goal_pb2.OptimizationGoal,
              profile: profile_pb2.WorkloadProfile) -> cycle_pb2.CandidateList:
        """The library policy the request names, as the only candidate."""
        return synthesis.named(request.policy, request.parameters, goal, profile, self._library)

    async def _search(self, request: learner_pb2.SearchPoliciesRequest) -> learner_pb2.SearchPoliciesResponse | None:
        """The learner's answer; None (logged) when it cannot be asked."""
        if not request.signature.values:
            return None
        try:
            async with rpc.shared(self._learner_addr, self._rpc_timeout_s) as channel:
                return await learner_pb2_grpc.LearnerServiceStub(channel).SearchPolicies(request)
        except grpc.aio.AioRpcError as exc:
            log.warning("the learner could not be asked (%s: %s): no reuse, library order",
                        exc.code().name, exc.details())
            return None

    async def _stored(self, search: learner_pb2.SearchPoliciesResponse, found: cycle_pb2.CandidateList,
                      kernel_release: str) -> dict[str, policy_pb2.PolicyArtifact]:
        """Artifacts of matched repository policies with outcomes that the library did not offer,
        unless they need a newer kernel than the host's (as the library's are left out)."""
        offered = {c.artifact.name for c in found.candidates}
        stored = {}
        for match in search.matches:
            record = match.policy
            if match.confidence <= 0 or record.metadata.name in offered or not record.artifact_digest:
                continue
            minimum = record.metadata.requirements.min_kernel
            if kernels.at_least(kernel_release, minimum) is False:
                log.info("repository policy %s needs Linux %s or newer, the host runs %s: not offered",
                         record.metadata.name, minimum, kernel_release)
                continue
            try:
                stored[record.metadata.name] = await artifacts.fetch(self._bus, record.artifact_digest)
            except (NotFound, FailedPrecondition, NatsError, DecodeError) as exc:
                log.warning("repository policy %s is not usable: %s", record.metadata.name, exc)
        return stored

    async def remember(self, verdict: verdict_pb2.Verdict, rationale: str) -> None:
        """Store a verified LLM-written policy in the learner's repository (with the verifier's
        signed approval), so its outcomes make it reusable. A failure is logged: the cycle goes on."""
        artifact = verdict.artifact
        # The goals it was verified against: what generate.py made it claim for this goal.
        metadata = policy_pb2.PolicyMetadata(name=artifact.name, kind=artifact.kind, description=rationale[:500],
                                             goals=artifact.sched_ext.goals)
        request = learner_pb2.PutPolicyRequest(artifact=artifact, metadata=metadata, verdict=verdict.signed)
        try:
            async with rpc.shared(self._learner_addr, self._rpc_timeout_s) as channel:
                await learner_pb2_grpc.LearnerServiceStub(channel).PutPolicy(request)
        except grpc.aio.AioRpcError as exc:
            log.warning("could not store %s in the repository (%s: %s)", artifact.name, exc.code().name,
                        exc.details())

    async def applied_outcome(self, host_id: str, deployment_id: str, wait_s: float,
                              cycle_id: str = "") -> tuple[deployment_pb2.Outcome | None, str]:
        """The deployment's Outcome (or, with `cycle_id`, the newest outcome of that cycle) once the
        learner has applied it (History lists only applied outcomes), asked every LEARNER_POLL_S
        for at most `wait_s`; else None and, when the last ask failed, why."""
        request = learner_pb2.LearnerHistoryRequest(host_id=host_id, limit=HOST_OUTCOMES)
        deadline = time.monotonic() + wait_s
        why = ""
        async with rpc.shared(self._learner_addr, self._rpc_timeout_s) as channel:
            stub = learner_pb2_grpc.LearnerServiceStub(channel)
            while True:
                left = deadline - time.monotonic()
                try:
                    history = await stub.History(request, timeout=min(self._rpc_timeout_s, max(left, LEARNER_POLL_S)))
                    why = ""
                except grpc.aio.AioRpcError as exc:
                    why = f"the learner could not be asked: {exc.code().name}: {(exc.details() or '').split(';')[0]}"
                else:
                    found = next((o for o in history.outcomes if (o.cycle_id == cycle_id if cycle_id
                                                                  else o.deployment_id == deployment_id)), None)
                    if found is not None:
                        return found, ""
                left = deadline - time.monotonic()
                if left <= 0:
                    return None, why
                await asyncio.sleep(min(LEARNER_POLL_S, left))

    def check_provider(self, provider: str) -> None:
        if provider not in ("", *PROVIDERS):
            raise InvalidArgument(f"goal provider {provider!r} is not available; use one of "
                                  f"{', '.join(PROVIDERS)} (empty for the default)")

    async def host(self, host_id: str) -> host_pb2.HostRegistration:
        return await self._hosts.get(host_id)

    async def observe(self, observer_addr: str, window_s: float = OBSERVE_WINDOW_S) -> profile_pb2.WorkloadProfile:
        request = observer_pb2.GetProfileRequest(detail=profile_pb2.DETAIL_LEVEL_SUMMARY)
        request.window.FromMilliseconds(int(window_s * 1000))
        async with rpc.shared(observer_addr, self._rpc_timeout_s + window_s) as channel:
            return await observer_pb2_grpc.ObserverServiceStub(channel).GetProfile(request)


def _knows_nothing(search: learner_pb2.SearchPoliciesResponse | None) -> bool:
    """The learner has no outcome of any similar workload (only the library's untested say-so)."""
    return search is not None and not search.avoid and all(m.confidence <= 0 for m in search.matches)


def window_for_jobs(profile: profile_pb2.WorkloadProfile) -> tuple[float, str]:
    """The window a profile needs to have seen its groups' jobs (JOBS_PER_OBSERVE_WINDOW of the
    longest typical job, at most MAX_OBSERVE_WINDOW_S) and why; (0, "") when it covered them."""
    window_s = profile.window.ToNanoseconds() / 1e9
    longer = [g for g in profile.groups if g.features.job_seconds > window_s]
    if not longer:
        return 0.0, ""
    longest = max(g.features.job_seconds for g in longer)
    needed = min(MAX_OBSERVE_WINDOW_S, JOBS_PER_OBSERVE_WINDOW * longest)
    if needed <= window_s:
        return 0.0, ""
    names = ", ".join(g.name for g in longer[:3])
    return needed, (f"the jobs of {names} last longer ({longest:.1f} s) than the {window_s:g} s profiled: "
                    f"profiling the host again over {needed:.1f} s")
