"""Tune: one decision cycle on one host, as a stream of CycleEvents (also published on
schedcp.cycle.<host>.<cycle>): observe -> goal -> candidates -> verify -> deploy (the host's
executor runs the canary) -> learn -> result.

Candidates are tried best first, at most MAX_CANDIDATES_TRIED of them: one the verifier
rejects is skipped for the next, and so is one whose canary rolled back (it measured that the
policy does not help here, and which library policy wins has to be measured); the first one
kept ends the cycle (the executor publishes each canary's Outcome, the learner learns from
both). With a budget of more kept trials (TuneRequest.budget, SCHEDCP_TUNE_BUDGET: 2 unless
set), a kept one is taken off and the next measured from the same baseline, until that many were
kept or the candidates ran out; the one whose success metric improved most is then deployed again
with its canary, unless it is the last and still in force (a search over the candidates). A
policy proven on a similar workload (the learner's reuse, ranked first) and one the operator
chose are tried alone, unless the request sets a budget. When the deployment produced an Outcome (a judged canary,
an ejection), the cycle waits, at most LEARN_WAIT_S, until the learner lists it as applied
(History of the host) and says so in a learn event; a cycle without an outcome has no learn
event. When no library policy passes on a sched_ext host and the openai provider is in use,
the LLM writes a scheduler (generate.py), verified and repaired from the verifier's findings
for a few rounds. A goal with no objective, or no candidate, ends the cycle with the reason,
and so does a chosen policy that is already running on the host (the same verified artifact).
A written program that passes is stored in the learner's repository, so later cycles can
reuse it without the LLM. The whole cycle is one trace: the Tune span is the parent of every
call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator

import grpc
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from schedcp.domain import artifacts
from schedcp.runtime import metrics, rpc, telemetry, topology
from schedcp.runtime.bus import Bus, MalformedMessage
from schedcp.runtime.config import MAX_TUNE_BUDGET
from schedcp.runtime.errors import InvalidArgument
from schedcp.v1 import (
    common_pb2,
    cycle_pb2,
    deployment_pb2,
    executor_pb2,
    executor_pb2_grpc,
    goal_pb2,
    host_pb2,
    planner_pb2,
    policy_pb2,
    profile_pb2,
    verdict_pb2,
    verifier_pb2,
    verifier_pb2_grpc,
)
from services.planner import synthesis
from services.planner.generate import Generator
from services.planner.leases import CycleLeases
from services.planner.llm import Usage
from services.planner.planning import Planner, window_for_jobs
from services.planner.verdict_memo import VerdictMemo

log = logging.getLogger(__name__)
C = cycle_pb2
# An automatic cycle starts from the profile that triggered it when it is at most this old (else
# from the host's newest published one, if that is).
PUBLISHED_PROFILE_MAX_AGE_S = 30
MAX_CANDIDATES_TRIED = 3
# Rounds of (baseline, canary) for goals judged on modest effects (canary_rounds).
ALTERNATING_ROUNDS = 3
# The end recorded for a cycle whose Tune call was cancelled (the caller went away, or the
# planner stopped): what happens to a deployment it had started.
INTERRUPTED = ("interrupted before its result (the caller went away or the planner stopped); a deployment "
               "already started goes on without the planner: the host's executor judges its canary and publishes "
               "the outcome for the learner (`schedcp history` shows it)")
CLOSE_TIMEOUT_S = 5.0
# How long a cycle waits for the learner to apply its deployment's outcome. The learner follows
# the outcome stream with a durable consumer and applies one in milliseconds; this covers a busy
# or restarting learner without holding the cycle (and its caller) long when the learner is
# down: the outcome waits in its stream, and the learner applies it whenever it reads it.
LEARN_WAIT_S = 10.0
# How long what the executor said runs on the host stands for the cycle (verification from the
# planner's memo takes microseconds; one that boots the sandbox VM, seconds: then it asks again).
STATUS_FRESH_S = 1.0
# A verifier that cannot be reached is asked again for this long (a restart, a replica taking
# over behind its address) before the candidate counts as unverifiable: a cycle should not
# fail over a central service's restart.
VERIFIER_RESTART_S = 60.0
VERIFIER_RETRY_PAUSE_S = 1.0
_ASK = object()  # what the host runs is not known: ask its executor


class Cycle:
    def __init__(self, planner: Planner, bus: Bus, verifier_addr: str, canary_window_s: float,
                 budget: int = 1, leases: CycleLeases | None = None) -> None:
        """`leases`: held on every cycle, so another replica closes it if this one dies."""
        self._planner = planner
        self._bus = bus
        self._leases = leases
        self._verifier_addr = verifier_addr
        self._canary_window_s = canary_window_s
        self._budget = budget
        self._verdicts = VerdictMemo()
        # Cycles in flight, so a stopping planner can close the records of those it could not
        # finish even when their handlers were cancelled too abruptly to do it themselves.
        self._open: set[_CycleEvents] = set()
        self._closing: set[asyncio.Task] = set()

    async def tune(self, request: planner_pb2.TuneRequest,
                   published: profile_pb2.WorkloadProfile | None = None) -> AsyncIterator[cycle_pb2.CycleEvent]:
        """One cycle; `published` is the profile that triggered an automatic one (or a rollout's
        newest), used instead of profiling the host again while it is fresh; when it went stale,
        the host's newest published profile is used if that is fresh."""
        self._planner.check_provider(request.provider)
        host = await self._planner.host(request.host_id)
        self._planner.check_policy(request.policy, host)
        if request.budget > MAX_TUNE_BUDGET:
            raise InvalidArgument(
                f"a budget of {request.budget} trials is more than the {MAX_TUNE_BUDGET} a cycle may try")
        cycle = _CycleEvents(uuid.uuid4().hex, host.host_id, self._bus, self._leases)
        telemetry.mark_cycle(cycle.cycle_id)
        self._open.add(cycle)
        await cycle.hold_lease()
        interrupted = True
        try:
            async for event in self._stages(cycle, host, request, published):
                yield event
            interrupted = False
        except Exception as exc:
            interrupted = False
            await cycle.close_unfinished(f"the cycle failed: {exc}")
            raise
        finally:
            # Cancelled, or closed by its consumer (a gRPC handler whose caller went away is
            # closed at its yield, or finalised later by the garbage collector): the end is
            # recorded by a task of its own, which a second cancellation cannot cut short. One
            # that ran to its result was not interrupted, even if publishing that result failed.
            if interrupted and not cycle.ended:
                self._close_later(cycle)
            else:
                self._open.discard(cycle)

    def _close_later(self, cycle: _CycleEvents) -> None:
        def done(_: asyncio.Task) -> None:
            self._closing.discard(task)
            if cycle.ended:  # otherwise it stays open for close() at shutdown
                self._open.discard(cycle)

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # finalised after its loop ended: close() cannot run either
            return
        task = loop.create_task(cycle.close_unfinished(INTERRUPTED))
        self._closing.add(task)
        task.add_done_callback(done)

    async def close(self) -> None:
        """At shutdown, after the gRPC server stopped: the end of every cycle still open."""
        await asyncio.gather(*self._closing, return_exceptions=True)
        for cycle in list(self._open):
            await cycle.close_unfinished(INTERRUPTED)

    async def newest_published(self, host_id: str) -> profile_pb2.WorkloadProfile | None:
        """The host's newest profile on the profile stream; None when there is none or it cannot
        be read now (the cycle then profiles the host)."""
        try:
            return await self._bus.last_message(topology.subject(topology.Kind.PROFILE, host_id),
                                                profile_pb2.WorkloadProfile)
        except NotFoundError:
            return None
        except (NatsError, MalformedMessage) as exc:
            log.warning("the newest profile of %s could not be read (%s)", host_id, exc)
            return None

    async def _stages(self, cycle: _CycleEvents, host: host_pb2.HostRegistration, request: planner_pb2.TuneRequest,
                      published: profile_pb2.WorkloadProfile | None) -> AsyncIterator[cycle_pb2.CycleEvent]:
        if published is not None and _age_s(published) > PUBLISHED_PROFILE_MAX_AGE_S:
            # It waited for a free slot (a fleet starting together): the host has published since.
            published = await self.newest_published(host.host_id) or published
        if published is not None and _age_s(published) <= PUBLISHED_PROFILE_MAX_AGE_S:
            profile, how = published, f"the published profile {published.profile_id}"
        else:
            yield await cycle.emit(C.CYCLE_STAGE_OBSERVE, common_pb2.STAGE_STATUS_STARTED, "profiling the host")
            profile, how = await self._planner.observe(host.observer_addr), "profiled"
        window_s, why = window_for_jobs(profile)
        if window_s:
            yield await cycle.emit(C.CYCLE_STAGE_OBSERVE, common_pb2.STAGE_STATUS_STARTED, why)
            profile, how = await self._planner.observe(host.observer_addr, window_s), f"profiled over {window_s:.1f} s"
        yield await cycle.emit(C.CYCLE_STAGE_OBSERVE, common_pb2.STAGE_STATUS_SUCCEEDED,
                               f"{how}: {len(profile.groups)} groups", profile=profile)
        usage = Usage()
        goal, asked = await self._planner.goal(profile, request.intent, request.provider, usage)
        cycle.usage = usage
        if goal.objective == goal_pb2.OBJECTIVE_UNSPECIFIED:
            yield await cycle.emit(C.CYCLE_STAGE_GOAL, common_pb2.STAGE_STATUS_SKIPPED, goal.rationale, goal=goal)
            yield await cycle.emit(C.CYCLE_STAGE_RESULT, common_pb2.STAGE_STATUS_SKIPPED,
                                   f"nothing to do: {goal.rationale}")
            return
        yield await cycle.emit(C.CYCLE_STAGE_GOAL, common_pb2.STAGE_STATUS_SUCCEEDED, goal.rationale, goal=goal)
        found = (self._planner.named(request, goal, profile) if request.policy
                 else await self._planner.candidates(goal, profile, request.budget or self._budget, asked))
        budget, why = _budget_for(request, found, self._budget)
        status_at, running = time.monotonic(), (_ASK if request.policy else await self._running(host))
        if running not in (None, _ASK):
            found = _running_first(found, running)
        names = ", ".join(artifacts.label(c.artifact) for c in found.candidates) or "none"
        yield await cycle.emit(C.CYCLE_STAGE_CANDIDATES, common_pb2.STAGE_STATUS_SUCCEEDED,
                               f"candidates: {names}{why}", candidates=found)
        judged: deployment_pb2.DeploymentEvent | None = None
        judged_verdict: verdict_pb2.Verdict | None = None
        tried = found.candidates[:max(MAX_CANDIDATES_TRIED, budget)]
        kept: list[tuple[float, verdict_pb2.Verdict]] = []  # a search's kept trials, taken off
        for index, candidate in enumerate(tried):
            # A verdict the verifier gave for this very question a moment ago needs no call (nor
            # a "verifying" event microseconds before its answer).
            if (verdict := self._verdicts.get(_verify_request(candidate.artifact, host))) is None:
                yield await cycle.emit(C.CYCLE_STAGE_VERIFY, common_pb2.STAGE_STATUS_STARTED,
                                       f"verifying {artifacts.label(candidate.artifact)}")
                verdict = await self._verify(candidate.artifact, host)
            status = common_pb2.STAGE_STATUS_SUCCEEDED if verdict.claims.approved else common_pb2.STAGE_STATUS_FAILED
            yield await cycle.emit(C.CYCLE_STAGE_VERIFY, status, verdict.summary, verdict=verdict)
            if not verdict.claims.approved:
                continue
            # What runs, as the executor said a moment ago (asked again after a verification that took time).
            known = running if time.monotonic() - status_at < STATUS_FRESH_S else _ASK
            if judged is None and (skipped := await self._already_running(cycle, host, verdict, known)):
                yield skipped
                return
            async for event in self._canary(cycle, host, verdict, goal, profile, _evidence(candidate)):
                yield event
            judged, judged_verdict = cycle.deployed, verdict
            # A canary that rolled back measured that this policy does not help here; the next
            # candidate may (which one wins is measured, not assumed). So may the next after one
            # that could not be applied here (a sched_ext scheduler that did not start on a
            # starved host): the executor put the host back. Within a budget of more than one
            # kept trial, a kept one is compared with the next from the same baseline.
            movable = _rolled_back(judged) or _kept(judged) or _not_applied(judged)
            if index == len(tried) - 1 or not movable:
                break
            if _kept(judged):
                if len(kept) + 1 >= budget:
                    break
                kept.append((_improvement(judged, goal), verdict))
                trial = artifacts.label(verdict.artifact)
                await self._take_off(host, f"search: {trial} measured, taken off to try the next candidate from "
                                           "the same baseline")
                yield await cycle.emit(C.CYCLE_STAGE_CANDIDATES, common_pb2.STAGE_STATUS_RUNNING,
                                       f"{trial} kept ({_percent(kept[-1][0])}): taken off to try the next candidate "
                                       f"from the same baseline (kept {len(kept)} of {budget})")
                continue
            what = "could not be applied" if _not_applied(judged) else "rolled back"
            yield await cycle.emit(C.CYCLE_STAGE_CANDIDATES, common_pb2.STAGE_STATUS_RUNNING,
                                   f"{artifacts.label(verdict.artifact)} {what}: trying the next candidate")
        if kept:
            async for event in self._keep_the_best(cycle, host, kept, judged, judged_verdict, goal, profile):
                yield event
            judged = cycle.deployed
        if judged is not None:
            yield await cycle.emit(C.CYCLE_STAGE_RESULT, *_result(judged.deployment.policy_name, judged),
                                   deployment=judged)
            return
        if self._planner.provider_of(request.provider) == "openai" and "sched_ext" in host.facts.backends:
            yield await cycle.emit(C.CYCLE_STAGE_CANDIDATES, common_pb2.STAGE_STATUS_RUNNING,
                                   "no library policy passed: the LLM writes one (verified, repaired from findings)")
            generator = Generator(self._planner.llm, lambda artifact: self._verify(artifact, host))
            generation = await generator.generate(goal, profile, usage)
            for number, summary in enumerate(generation.rounds, 1):
                yield await cycle.emit(C.CYCLE_STAGE_VERIFY, common_pb2.STAGE_STATUS_RUNNING,
                                       f"generated program, round {number}: {summary}")
            if generation.verdict is not None:
                yield await cycle.emit(C.CYCLE_STAGE_CANDIDATES, common_pb2.STAGE_STATUS_SUCCEEDED,
                                       f"candidates: {generation.candidate.artifact.name} (written by the LLM)",
                                       candidates=C.CandidateList(candidates=[generation.candidate]))
                await self._planner.remember(generation.verdict, generation.rationale)
                async for event in self._deploy_and_report(cycle, host, generation.verdict, goal, profile):
                    yield event
                return
        yield await cycle.emit(C.CYCLE_STAGE_RESULT, common_pb2.STAGE_STATUS_FAILED,
                               "no candidate could be verified and deployed on this host")

    async def _keep_the_best(self, cycle: _CycleEvents, host: host_pb2.HostRegistration,
                             kept: list[tuple[float, verdict_pb2.Verdict]],
                             last: deployment_pb2.DeploymentEvent | None, last_verdict: verdict_pb2.Verdict | None,
                             goal: goal_pb2.OptimizationGoal, profile):
        """After a search: the trial whose success metric improved most stays. The last trial,
        still in force if it was kept, competes too; an earlier one is deployed again (with its
        canary: what was measured once is confirmed, not assumed)."""
        if _kept(last):
            kept = [*kept, (_improvement(last, goal), last_verdict)]
        _, best = max(kept, key=lambda trial: trial[0])
        board = ", ".join(f"{artifacts.label(v.artifact)} {_percent(i)}" for i, v in kept)
        if _kept(last) and best is last_verdict:
            cycle.deployed = last
            yield await cycle.emit(C.CYCLE_STAGE_CANDIDATES, common_pb2.STAGE_STATUS_SUCCEEDED,
                                   f"search: {artifacts.label(last_verdict.artifact)} improved most ({board}); "
                                   "it stays")
            return
        if _kept(last):
            await self._take_off(host, f"search: {artifacts.label(best.artifact)} improved more")
        yield await cycle.emit(C.CYCLE_STAGE_CANDIDATES, common_pb2.STAGE_STATUS_SUCCEEDED,
                               f"search: {artifacts.label(best.artifact)} improved most ({board}): deploying it again")
        async for event in self._canary(cycle, host, best, goal, profile):
            yield event

    async def _deploy_and_report(self, cycle: _CycleEvents, host: host_pb2.HostRegistration,
                                 verdict: verdict_pb2.Verdict, goal: goal_pb2.OptimizationGoal, profile):
        if skipped := await self._already_running(cycle, host, verdict):
            yield skipped
            return
        async for event in self._canary(cycle, host, verdict, goal, profile):
            yield event
        yield await cycle.emit(C.CYCLE_STAGE_RESULT, *_result(verdict.artifact.name, cycle.deployed),
                               deployment=cycle.deployed)

    async def _already_running(self, cycle: _CycleEvents, host: host_pb2.HostRegistration,
                               verdict: verdict_pb2.Verdict, running=_ASK) -> cycle_pb2.CycleEvent | None:
        """When the verified artifact is what the host runs already, the cycle's RESULT (it ends).
        `running`: the host's deployment as its executor just said (else it is asked)."""
        if running is _ASK:
            running = await self._running(host)
        if running is None or running.artifact_digest != verdict.artifact.digest:
            return None
        return await cycle.emit(C.CYCLE_STAGE_RESULT, common_pb2.STAGE_STATUS_SKIPPED,
                                f"{verdict.artifact.name} is already running on this host (deployment "
                                f"{running.deployment_id}): nothing to change")

    async def _canary(self, cycle: _CycleEvents, host: host_pb2.HostRegistration, verdict: verdict_pb2.Verdict,
                      goal: goal_pb2.OptimizationGoal, profile, prior: deployment_pb2.MetricComparison | None = None):
        """Deploy as a canary (judged with `prior`, earlier canaries' evidence, when given) and wait
        for the learner; the last deployment event is `cycle.deployed`."""
        cycle.deployed = None
        async for event in self._deploy(host, verdict, goal, profile, cycle.cycle_id, prior):
            cycle.deployed = event
            yield await cycle.emit(_stage_of(event), common_pb2.STAGE_STATUS_RUNNING, event.message, deployment=event)
        if _outcome_published(cycle.deployed):
            async for event in self._learn(cycle, cycle.deployed.deployment):
                yield event

    async def _learn(self, cycle: _CycleEvents, deployment: deployment_pb2.Deployment):
        """Wait (at most LEARN_WAIT_S) until the learner has applied the deployment's outcome.
        Not confirmed in time is not a failure of the cycle: the learner applies the outcome
        when it reads it from its stream (RUNNING says the planner stopped waiting)."""
        yield await cycle.emit(C.CYCLE_STAGE_LEARN, common_pb2.STAGE_STATUS_STARTED,
                               f"waiting for the learner to apply the outcome of deployment {deployment.deployment_id}")
        outcome, why = await self._planner.applied_outcome(deployment.host_id, deployment.deployment_id,
                                                           LEARN_WAIT_S)
        if outcome is not None:
            yield await cycle.emit(C.CYCLE_STAGE_LEARN, common_pb2.STAGE_STATUS_SUCCEEDED, _learned(outcome),
                                   outcome=outcome)
            return
        yield await cycle.emit(C.CYCLE_STAGE_LEARN, common_pb2.STAGE_STATUS_RUNNING,
                               f"the learner has not confirmed the outcome of deployment {deployment.deployment_id} "
                               f"within {LEARN_WAIT_S:g} s{f' ({why})' if why else ''}; the learner applies it when "
                               "it reads it from the outcome stream")

    async def _verify(self, artifact: policy_pb2.PolicyArtifact,
                      host: host_pb2.HostRegistration) -> verdict_pb2.Verdict:
        request = _verify_request(artifact, host)
        deadline = time.monotonic() + VERIFIER_RESTART_S
        while True:
            try:
                verdict = await self._ask_verifier(request)
                break
            except grpc.aio.AioRpcError as exc:
                # Asked again only while the verifier cannot be reached at all (restarting): an
                # UNAVAILABLE it answers itself (its compiler or sandbox VM down) stands.
                if (exc.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline
                        and not await self._verifier_answers()):
                    log.warning("the verifier cannot be reached (%s); asking again for up to %g s", exc.details(),
                                VERIFIER_RESTART_S)
                    await asyncio.sleep(VERIFIER_RETRY_PAUSE_S)
                    continue
                # Not a verdict (e.g. no sandbox kernel for this host): this candidate cannot be used.
                return verdict_pb2.Verdict(summary=f"not verified: {exc.details()} ({exc.code().name})")
        self._verdicts.put(request, verdict)
        return verdict

    async def _verifier_answers(self) -> bool:
        """Whether the verifier's process answers its health check (whatever it says)."""
        try:
            async with rpc.shared(self._verifier_addr, VERIFIER_RETRY_PAUSE_S) as channel:
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        except grpc.aio.AioRpcError as exc:
            return exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        return True

    async def _ask_verifier(self, request: verifier_pb2.VerifyRequest) -> verdict_pb2.Verdict:
        verdict = verdict_pb2.Verdict(summary="the verifier ended without a verdict")
        async with rpc.shared(self._verifier_addr) as channel:
            async for progress in verifier_pb2_grpc.VerifierServiceStub(channel).Verify(request):
                if progress.HasField("verdict"):
                    verdict = progress.verdict
        return verdict

    async def _running(self, host: host_pb2.HostRegistration) -> deployment_pb2.Deployment | None:
        """The deployment in force on the host, if any (None too when the executor cannot say:
        the Deploy that follows will report why)."""
        try:
            async with rpc.shared(host.executor_addr) as channel:
                status = await executor_pb2_grpc.ExecutorServiceStub(channel).Status(
                    executor_pb2.StatusRequest(host_id=host.host_id))
        except grpc.aio.AioRpcError as exc:
            log.warning("the executor of %s did not report its status: %s", host.host_id, exc.details())
            return None
        return status.current if status.HasField("current") else None

    async def _take_off(self, host: host_pb2.HostRegistration, reason: str) -> None:
        """Roll back what the host runs (a kept trial of a search), as an operator would."""
        async with rpc.shared(host.executor_addr) as channel:
            await executor_pb2_grpc.ExecutorServiceStub(channel).Rollback(
                executor_pb2.RollbackRequest(reason=reason, host_id=host.host_id))

    async def _deploy(self, host: host_pb2.HostRegistration, verdict: verdict_pb2.Verdict,
                      goal: goal_pb2.OptimizationGoal, profile, cycle_id: str,
                      prior: deployment_pb2.MetricComparison | None = None):
        request = executor_pb2.DeployRequest(artifact=verdict.artifact, verdict=verdict,
                                             canary=canary_for(goal, self._canary_window_s, prior), goal=goal,
                                             signature=profile.signature, cycle_id=cycle_id,
                                             host_id=host.host_id)
        last = None
        async with rpc.shared(host.executor_addr) as channel:
            try:
                async for event in executor_pb2_grpc.ExecutorServiceStub(channel).Deploy(request):
                    last = event
                    yield event
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _REFUSALS:
                    raise
                yield _refused(host, verdict, last, exc.details() or exc.code().name)


# How an executor refuses a deployment it will not apply (a verdict it does not trust, a kernel
# the verdict is not for, a backend it lacks): the cycle reports the refusal and ends.
_REFUSALS = (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT)


def _refused(host: host_pb2.HostRegistration, verdict: verdict_pb2.Verdict,
             last: deployment_pb2.DeploymentEvent | None, why: str) -> deployment_pb2.DeploymentEvent:
    """The executor's refusal as the deployment's last event (the executor audited it already)."""
    deployment = deployment_pb2.Deployment()
    if last is not None:
        deployment.CopyFrom(last.deployment)
    else:
        deployment.host_id, deployment.policy_name = host.host_id, verdict.artifact.name
    deployment.state, deployment.reason = deployment_pb2.DEPLOYMENT_STATE_REFUSED, why
    return deployment_pb2.DeploymentEvent(deployment=deployment, message=f"the executor of {host.host_id} refused "
                                                                        f"it: {why}")


def _verify_request(artifact: policy_pb2.PolicyArtifact, host: host_pb2.HostRegistration) -> verifier_pb2.VerifyRequest:
    facts = host.facts
    target = verdict_pb2.TargetKernel(release=facts.kernel_release, btf_sha256=facts.btf_sha256, arch=facts.arch)
    return verifier_pb2.VerifyRequest(artifact=artifact, target=target)


def _age_s(profile: profile_pb2.WorkloadProfile) -> float:
    """Seconds since the profile's window ended."""
    end = profile.window_start.ToNanoseconds() + profile.window.ToNanoseconds()
    return (time.time_ns() - end) / 1e9


def canary_for(goal: goal_pb2.OptimizationGoal, window_s: float,
               prior: deployment_pb2.MetricComparison | None = None) -> deployment_pb2.CanarySpec:
    """The goal as the executor's canary: its success metric, least improvement, guards and rounds;
    windows of `window_s`, or the longer one the goal's metric needs. `prior`: what earlier
    canaries of the policy measured on the goal's success metric, judged together with the new
    rounds (only by a canary of several rounds, and only on the very metric)."""
    window = duration_pb2.Duration()
    window.FromMilliseconds(int(max(window_s, goal.min_window.ToNanoseconds() / 1e9) * 1000))
    spec = deployment_pb2.CanarySpec(baseline_window=window, canary_window=window, success_metric=goal.success_metric,
                                     min_improvement=goal.min_improvement, guards=goal.guards,
                                     rounds=canary_rounds(goal))
    if prior is not None and spec.rounds > 1 and prior.metric == goal.success_metric:
        spec.prior.CopyFrom(prior)
    return spec


def canary_rounds(goal: goal_pb2.OptimizationGoal) -> int:
    """Protecting a service from batch work moves its p99 by 70-98 % (bench/results/scenarios.md):
    one window against one tells. Throughput, makespan and an over-subscribed service move their
    metric by a few to tens of per cent, on workloads that go through phases (jobs that start and
    end, a benchmark loop), where one window against one can say anything (long_slice on hackbench:
    messages per second +105 % in one cycle, -31 % in the next): those alternate, judged on the
    interval of the per-round ratios, and the executor adds rounds while that is inconclusive."""
    protecting = goal.objective == goal_pb2.OBJECTIVE_TAIL_LATENCY and synthesis.others(goal)
    return 1 if protecting else ALTERNATING_ROUNDS


def _stage_of(event: deployment_pb2.DeploymentEvent) -> int:
    measuring = (deployment_pb2.DEPLOYMENT_STATE_BASELINE, deployment_pb2.DEPLOYMENT_STATE_CANARY)
    return C.CYCLE_STAGE_MEASURE if event.deployment.state in measuring else C.CYCLE_STAGE_DEPLOY


def _outcome_published(last: deployment_pb2.DeploymentEvent | None) -> bool:
    """Whether the executor published an Outcome for the deployment that ended so: it does for
    a judged canary (kept or rolled back, with its measurements) and for an ejection; not for a
    refusal, a failure, a deployment cancelled before its judgement or one kept with nothing to
    measure (docs/executor.md)."""
    if last is None:
        return False
    state = last.deployment.state
    judged = state in (deployment_pb2.DEPLOYMENT_STATE_KEPT, deployment_pb2.DEPLOYMENT_STATE_ROLLED_BACK)
    return state == deployment_pb2.DEPLOYMENT_STATE_EJECTED or (judged and bool(last.metrics))


def _budget_for(request: planner_pb2.TuneRequest, found: cycle_pb2.CandidateList,
                default: int) -> tuple[int, str]:
    """Kept trials the cycle compares, and what the candidates line says of it: the request's
    budget; one for the operator's policy or for a proven one (the learner ranked first what was
    kept on a similar workload: measured already); else the planner's default, a search (which
    library policy wins has to be measured)."""
    if request.policy or not found.candidates:
        return 1, ""
    budget = request.budget or default
    proven = found.candidates[0].path == cycle_pb2.SYNTHESIS_PATH_REUSE
    if proven and not request.budget:
        return 1, f" ({found.candidates[0].artifact.name} is proven on a similar workload: no search)"
    return budget, (f" (a search: up to {budget} kept compared, the best stays)" if budget > 1 else "")


def _running_first(found: cycle_pb2.CandidateList, running: deployment_pb2.Deployment) -> cycle_pb2.CandidateList:
    """The candidates with the policy the host runs first (the very artifact, where its digest
    shows before verification, then its other parameter points): a policy in force that serves
    this goal was kept by a canary here, so it is checked first ("already running", nothing to
    change) rather than a search replacing it with another on every cycle."""
    ordered = sorted(found.candidates, key=lambda c: (artifacts.digest_of(c.artifact) != running.artifact_digest,
                                                      c.artifact.name != running.policy_name))
    return cycle_pb2.CandidateList(candidates=ordered, chosen=0)


def _rolled_back(last: deployment_pb2.DeploymentEvent | None) -> bool:
    return last is not None and last.deployment.state == deployment_pb2.DEPLOYMENT_STATE_ROLLED_BACK


def _not_applied(last: deployment_pb2.DeploymentEvent | None) -> bool:
    """Failed because the policy could not be put in force here, not because the host or its
    observer failed: another candidate may still apply."""
    return (last is not None and last.deployment.state == deployment_pb2.DEPLOYMENT_STATE_FAILED
            and last.deployment.failure == deployment_pb2.DEPLOYMENT_FAILURE_NOT_APPLIED)


def _kept(last: deployment_pb2.DeploymentEvent | None) -> bool:
    return last is not None and last.deployment.state == deployment_pb2.DEPLOYMENT_STATE_KEPT


def _evidence(candidate: cycle_pb2.Candidate) -> deployment_pb2.MetricComparison | None:
    return candidate.evidence if candidate.HasField("evidence") else None


def _improvement(last: deployment_pb2.DeploymentEvent, goal: goal_pb2.OptimizationGoal) -> float:
    """How much a kept canary improved the goal's success metric (0 when it was not measured)."""
    name = goal.success_metric.name
    return next((m.improvement for m in last.metrics if m.metric.name == name), 0.0)


def _percent(improvement: float) -> str:
    return f"{100 * improvement:+.0f} %"


def _learned(outcome: deployment_pb2.Outcome) -> str:
    """`the learner applied outcome d1-kept: batch_idle_cgroup kept, improvement of runq_latency_p99_us +93 %`."""
    result = deployment_pb2.OutcomeResult.Name(outcome.result).removeprefix("OUTCOME_RESULT_").lower()
    told = f"the learner applied outcome {outcome.outcome_id}: {outcome.policy_name} {result.replace('_', ' ')}"
    if outcome.HasField("success"):
        told += f", improvement of {outcome.success.metric.name} {100 * outcome.success.improvement:+.0f} %"
    return told


def _result(name: str, last: deployment_pb2.DeploymentEvent | None) -> tuple[int, str]:
    if last is None:
        return common_pb2.STAGE_STATUS_FAILED, f"the executor reported nothing for {name}"
    state = last.deployment.state
    if state == deployment_pb2.DEPLOYMENT_STATE_KEPT:
        return common_pb2.STAGE_STATUS_SUCCEEDED, f"{name} kept: {last.message}"
    word = deployment_pb2.DeploymentState.Name(state).removeprefix("DEPLOYMENT_STATE_").lower().replace("_", " ")
    return common_pb2.STAGE_STATUS_FAILED, f"{name} {word}: {last.message}"


class _CycleEvents:
    """Stamps, publishes and returns a cycle's events."""

    def __init__(self, cycle_id: str, host_id: str, bus: Bus, leases: CycleLeases | None = None) -> None:
        self.cycle_id = cycle_id
        self._host_id = host_id
        self._bus = bus
        self._leases = leases
        self.usage = Usage()
        # The last event of the deployment the cycle is canarying (or canaried last).
        self.deployed: deployment_pb2.DeploymentEvent | None = None
        self._stage, self._stage_started = C.CYCLE_STAGE_UNSPECIFIED, time.monotonic()
        # Its result is on the stream: the record is closed.
        self.ended = False

    async def emit(self, stage: int, status: int, message: str, **detail) -> cycle_pb2.CycleEvent:
        event = cycle_pb2.CycleEvent(cycle_id=self.cycle_id, host_id=self._host_id, stage=stage, status=status,
                                     message=message, trace_id=telemetry.current_trace_id(),
                                     llm_usage=self.usage.message(), **detail)
        event.at.GetCurrentTime()
        self._time_stages(stage, status)
        log.info("cycle %s on %s: %s %s: %s", self.cycle_id[:8], self._host_id,
                 C.CycleStage.Name(stage).removeprefix("CYCLE_STAGE_").lower(),
                 common_pb2.StageStatus.Name(status).removeprefix("STAGE_STATUS_").lower(), message)
        try:
            # Not a span each: the event carries the cycle's trace id and its headers the trace
            # context; a span per event (eight or more a cycle) would say nothing the event does not.
            await self._bus.publish(topology.subject(topology.Kind.CYCLE, self._host_id, self.cycle_id), event,
                                    traced=False)
            self.ended = stage == C.CYCLE_STAGE_RESULT
        except Exception as exc:  # the caller still gets the event; the stream is best effort
            log.warning("could not publish the cycle event: %s", exc)
        if self.ended and self._leases is not None:
            await self._leases.release(self.cycle_id)
        return event

    async def hold_lease(self) -> None:
        """Best effort: without its lease a cycle runs all the same; only if this replica then
        died would nobody record its end."""
        if self._leases is None:
            return
        try:
            await self._leases.hold(self.cycle_id, self._host_id)
        except Exception as exc:
            log.warning("cycle %s runs without a lease (%s): if this planner dies, its record stays open",
                        self.cycle_id[:8], exc)

    async def close_unfinished(self, why: str) -> None:
        """Record the end of a cycle that stops without a result, so its record is never left
        open; best effort (bounded: this runs while the planner may be stopping)."""
        if self.ended:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.emit(C.CYCLE_STAGE_RESULT, common_pb2.STAGE_STATUS_FAILED, why),
                                   CLOSE_TIMEOUT_S)

    def _time_stages(self, stage: int, status: int) -> None:
        """A stage lasts from its first event to the next stage's; the result ends the cycle."""
        now = time.monotonic()
        if stage != self._stage:
            if self._stage != C.CYCLE_STAGE_UNSPECIFIED:
                metrics.CYCLE_STAGE_DURATION.labels(_name(C.CycleStage, self._stage)).observe(now - self._stage_started)
            self._stage, self._stage_started = stage, now
        if stage == C.CYCLE_STAGE_RESULT:
            metrics.CYCLES.labels(_name(common_pb2.StageStatus, status)).inc()


def _name(enum, value: int) -> str:
    """`CYCLE_STAGE_VERIFY` -> `verify`, `STAGE_STATUS_SUCCEEDED` -> `succeeded`."""
    return enum.Name(value).split("_", 2)[-1].lower()
