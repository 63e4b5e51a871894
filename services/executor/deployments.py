"""Deploy, keep or roll back, one deployment at a time per host.

Deploy: check the verdict (signature with the trusted verifier keys, the artifact's digest,
this host's kernel, expiry) before anything else; measure the baseline; revert the policy in
force ("stop old"); apply the new one; measure the canary window; keep it, or revert it and
re-apply the one before ("start new" failed). Every step is a DeploymentEvent, streamed to
the caller, published on schedcp.deployment.<host> and kept in a local history file; the end
of a canary is an Outcome for the learner on schedcp.outcome.<host>.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import json_format

from schedcp.domain import artifacts, hostclass, sched_ext, verdicts
from schedcp.runtime import metrics, rpc, tasks, topology
from schedcp.runtime.bus import Bus
from schedcp.runtime.config import Settings
from schedcp.runtime.errors import DependencyUnavailable, FailedPrecondition, InvalidArgument
from schedcp.v1 import deployment_pb2, executor_pb2, observer_pb2, observer_pb2_grpc, policy_pb2
from services.executor import audit, canary, procevents
from services.executor.native import ApplyReport, NativeBackend
from services.executor.sched_ext_backend import SchedExtBackend

log = logging.getLogger(__name__)
S = deployment_pb2
RESCAN_INTERVAL_S = 1.0
HISTORY_LIMIT = 1000
# Deployment states in which a policy is applied on the host.
IN_FORCE = (S.DEPLOYMENT_STATE_APPLYING, S.DEPLOYMENT_STATE_CANARY, S.DEPLOYMENT_STATE_KEPT)


@dataclass
class Applied:
    """A deployment in force, with the request that made it (to apply it again)."""

    deployment: deployment_pb2.Deployment
    request: executor_pb2.DeployRequest


@dataclass
class Run:
    """One deployment going through Executor._run's steps, and what the steps found so far."""

    request: executor_pb2.DeployRequest
    deployment: deployment_pb2.Deployment
    baseline: canary.Window = field(default_factory=lambda: canary.Window({}, 0.0))
    observed: canary.Window = field(default_factory=lambda: canary.Window({}, 0.0))
    # The (baseline, canary) windows measured so far; more than one when the canary alternates.
    rounds: list[tuple[canary.Window, canary.Window]] = field(default_factory=list)
    # Whether the canary alternates: it asked for rounds and no other policy was in force.
    alternating: bool = False
    # How many rounds the canary runs before it is judged: spec.rounds, one more for each
    # inconclusive judgement (up to canary.max_rounds).
    planned: int = 1
    # Set once applying starts: from then on, ending in anything but kept means reverting.
    host_touched: bool = False

    @property
    def spec(self) -> deployment_pb2.CanarySpec:
        return self.request.canary

    @property
    def measured(self) -> bool:
        """Whether the canary has metrics: without any there is no baseline and no judgement."""
        return bool(canary.metrics_of(self.request.canary))


@dataclass(frozen=True)
class Next:
    """Go on with `step`; with `say`, first stream an event with that message (in the state the
    step that returned this left the deployment in)."""

    step: Step
    say: str = ""


@dataclass(frozen=True)
class Ending:
    """How a run ends: the deployment's final state and reason. `message` is the event's text when
    it is not the reason, `actor` who the audit trail names (default: the executor), `comparisons`
    the canary's numbers, and `judgement` the verdict a judged canary reports to the learner."""

    state: int  # a DeploymentState
    reason: str
    message: str = ""
    actor: str = ""
    comparisons: list[deployment_pb2.MetricComparison] = field(default_factory=list)
    judgement: canary.Judgement | None = None
    failure: int = S.DEPLOYMENT_FAILURE_UNSPECIFIED  # a DeploymentFailure, with state FAILED


@dataclass(frozen=True)
class Ejected:
    """The run ends because the kernel ejected the scheduler; `record` is the loader's exit record."""

    record: dict


# A step of a run: does its part of the deployment, says where the run goes next.
Step = Callable[[Run], Awaitable[Next | Ending | Ejected]]


class EventLog:
    """The host's deployment events, newest last, in a JSON-lines file that survives restarts."""

    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, event: deployment_pb2.DeploymentEvent) -> None:
        with self._path.open("a") as f:
            f.write(json_format.MessageToJson(event, indent=None) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def last(self, limit: int) -> list[deployment_pb2.DeploymentEvent]:
        try:
            lines = self._path.read_text().splitlines()
        except FileNotFoundError:
            return []
        events = []
        for line in lines[-limit:]:
            try:
                events.append(json_format.Parse(line, deployment_pb2.DeploymentEvent()))
            except json_format.ParseError:  # a line torn by a crash
                continue
        return events


RESCANS_ONLY = f"new processes get the policy within {RESCAN_INTERVAL_S:.0f} s (rescans)"


def _subscribe() -> procevents.ProcEvents | None:
    try:
        return procevents.ProcEvents()
    except procevents.Unavailable as exc:
        log.info("%s; %s", exc, RESCANS_ONLY)
        return None


async def _started(events: procevents.ProcEvents | None, wait_s: float) -> set[int] | None:
    """The processes that started a program within `wait_s` (empty: none; None: look at all).
    Without process events: after `wait_s`, look at all."""
    if events is None:
        await asyncio.sleep(wait_s)
        return None
    return await asyncio.to_thread(events.started, wait_s)


class Executor:
    def __init__(self, settings: Settings, bus: Bus, native: NativeBackend, events: EventLog,
                 scx: SchedExtBackend | None = None) -> None:
        self._settings = settings
        self._bus = bus
        self._native = native
        self._scx = scx
        self._events = events
        self._audit = audit.AuditTrail(bus, settings.host_id)
        self._lock = asyncio.Lock()
        self._current: Applied | None = None
        self._previous: Applied | None = None
        self._rescan: asyncio.Task | None = None
        self._process_events: procevents.ProcEvents | None = None
        self._watch: asyncio.Task | None = None
        self._running: asyncio.Task | None = None
        self._class = ""

    # --- the RPCs ----------------------------------------------------------------------------
    async def deploy(self, request: executor_pb2.DeployRequest,
                     requested_by: str = "") -> AsyncIterator[deployment_pb2.DeploymentEvent]:
        deployment = self._new_deployment(request, requested_by)
        yield await self._event(deployment, "checking the verdict, the artifact's digest and this host's kernel")
        try:
            self._check(request, deployment)
        except (verdicts.UntrustedVerdict, verdicts.VerdictNotApplicable, FailedPrecondition) as exc:
            deployment.state, deployment.reason = S.DEPLOYMENT_STATE_REFUSED, str(exc)
            await self._event(deployment, f"refused: {exc}", actor=requested_by)
            _count_ended(deployment)
            raise
        # The deployment runs in a task of its own: a caller that goes away does not leave a
        # policy applied and unjudged; Rollback and shutdown cancel it, and it cleans up.
        events: asyncio.Queue = asyncio.Queue()
        task = asyncio.create_task(self._deploy_task(request, deployment, events), name="deploy")
        while (event := await events.get()) is not None:
            yield event
        await task

    async def _deploy_task(self, request: executor_pb2.DeployRequest, deployment: deployment_pb2.Deployment,
                           events: asyncio.Queue) -> None:
        try:
            if self._lock.locked():
                events.put_nowait(await self._event(deployment, "waiting for the deployment in progress to finish"))
            async with self._lock:
                self._running = asyncio.current_task()
                try:
                    async for event in self._run(request, deployment):
                        events.put_nowait(event)
                except asyncio.CancelledError:
                    await self._cancelled(deployment)
                    raise
                finally:
                    self._running = None
                    _count_ended(deployment)
        finally:
            events.put_nowait(None)

    async def _cancelled(self, deployment: deployment_pb2.Deployment) -> None:
        """A deployment stopped half-way (Rollback, shutdown): undo it if it was applied."""
        if self._current is not None and self._current.deployment is deployment:
            await self._revert()
        deployment.state, deployment.reason = S.DEPLOYMENT_STATE_ROLLED_BACK, "cancelled before it was judged"
        await self._event(deployment, deployment.reason)

    async def rollback(self, reason: str, requested_by: str = "") -> executor_pb2.RollbackResponse:
        """Stop a deployment in progress, revert the one in force, and apply the last known good
        again (or leave the host on its defaults)."""
        await self._cancel_running()
        async with self._lock:
            rolled = self._current.deployment if self._current else None
            if rolled is not None:
                metrics.ROLLBACKS.labels("request").inc()
                await self._revert()
                rolled.state, rolled.reason = S.DEPLOYMENT_STATE_ROLLED_BACK, reason or "rollback requested"
                await self._event(rolled, f"rolled back: {rolled.reason}", actor=requested_by)
            restored = await self._restore_previous()
            if rolled is None and restored is None:
                return executor_pb2.RollbackResponse(message="nothing deployed: the host runs its defaults")
            what = f"rolled back {rolled.policy_name}; " if rolled else ""
            message = what + (f"restored {restored.policy_name}" if restored else "the host runs its defaults")
            return executor_pb2.RollbackResponse(restored=restored, message=message)

    def status(self) -> executor_pb2.StatusResponse:
        info = sched_ext.read_state()
        response = executor_pb2.StatusResponse(host_id=self._settings.host_id, sched_ext=info,
                                               backends=sched_ext.backends(info),
                                               journalled_changes=self._native.journalled())
        if self._current:
            response.current.CopyFrom(self._current.deployment)
        if self._previous:
            response.last_known_good.CopyFrom(self._previous.deployment)
        return response

    def history(self, limit: int) -> list[deployment_pb2.DeploymentEvent]:
        return self._events.last(min(limit or 100, HISTORY_LIMIT))

    async def recover(self) -> int:
        """At start: undo changes a previous run left (killed mid-deploy, crashed, power loss),
        and close the record of the deployment that was in force then."""
        left = self._native.journalled()
        if left:
            report = await asyncio.to_thread(self._native.revert)
            log.warning("restored %d changes left by a previous run (%d threads gone since, %d errors: %s)",
                        report.restored, report.gone, len(report.errors), "; ".join(report.errors[:3]))
        await self._close_interrupted()
        return left

    async def _close_interrupted(self) -> None:
        """A previous run that died with a policy applied left its last event saying so; nothing
        of it is in force now (a sched_ext scheduler goes with its loader, native changes were
        just restored), so the history, the event stream and the audit trail say that too. No
        outcome: an interruption says nothing about the policy."""
        last = self._events.last(1)
        if not last or last[0].deployment.state not in IN_FORCE:
            return
        deployment = last[0].deployment
        undone = ("the kernel went back to the fair class when its loader exited"
                  if deployment.backend == "sched_ext" else "its changes were restored from the journal")
        deployment.state = S.DEPLOYMENT_STATE_ROLLED_BACK
        deployment.reason = f"the executor stopped without reverting it (crash or kill); {undone}"
        await self._event(deployment, deployment.reason)

    async def close(self) -> None:
        """Clean shutdown: nothing schedcp changed outlives the executor."""
        await self._cancel_running()
        async with self._lock:
            current = self._current.deployment if self._current else None
            if current or self._native.journalled() or (self._scx and self._scx.active):
                await self._revert()
                log.info("restored the host's settings at shutdown (%s was deployed)",
                         current.policy_name if current else "nothing")
            if current is not None:
                current.state, current.reason = S.DEPLOYMENT_STATE_ROLLED_BACK, "reverted: the executor stopped"
                await self._event(current, current.reason)

    async def _cancel_running(self) -> None:
        await tasks.stop([self._running], "the deployment in progress")

    # --- steps -------------------------------------------------------------------------------
    def _new_deployment(self, request: executor_pb2.DeployRequest, requested_by: str) -> deployment_pb2.Deployment:
        artifact = request.artifact
        if artifact.WhichOneof("body") is None:
            raise InvalidArgument("the artifact has no body (sched_ext or native)")
        canary.check_spec(request.canary)
        deployment = deployment_pb2.Deployment(
            deployment_id=uuid.uuid4().hex[:16], host_id=self._settings.host_id, cycle_id=request.cycle_id,
            policy_name=artifact.name, artifact_digest=artifacts.digest_of(artifact),
            verdict_id=request.verdict.claims.verdict_id, verdict_key_id=request.verdict.claims.key_id,
            backend=artifact.WhichOneof("body"), state=S.DEPLOYMENT_STATE_CHECKING, requested_by=requested_by)
        deployment.started_at.GetCurrentTime()
        return deployment

    def _check(self, request: executor_pb2.DeployRequest, deployment: deployment_pb2.Deployment) -> None:
        trusted = verdicts.trusted_keys(self._settings)
        if not trusted:
            raise FailedPrecondition("no trusted verifier key: set SCHEDCP_TRUSTED_VERIFIER_KEYS")
        if deployment.backend == "sched_ext" and self._scx is None:
            raise FailedPrecondition("this host cannot run sched_ext schedulers (no sched_ext in its kernel, or no "
                                     "loader); deploy a native policy")
        kernel = self._scx.kernel() if deployment.backend == "sched_ext" else sched_ext.host_kernel()
        claims = verdicts.check(request.verdict.signed, trusted, deployment.artifact_digest, kernel)
        deployment.verdict_id = claims.verdict_id
        if request.artifact.digest and request.artifact.digest != deployment.artifact_digest:
            raise verdicts.VerdictNotApplicable("digest_mismatch", "the artifact's digest field does not match its "
                                                "content")
        if deployment.backend == "sched_ext" and not request.artifact.sched_ext.object:
            raise FailedPrecondition("the artifact has no compiled object: deploy the artifact from the verdict")

    # --- the deployment run, as a state machine ----------------------------------------------
    # Each step does one piece of work and returns where the run goes next: another step (with
    # an event to stream first when it has something to say before a long wait), or how the run
    # ends. _run drives the steps and streams the events; _end is the one way a run ends (an
    # ejection excepted: _ejected, shared with the watcher).
    #
    #   step                   goes on to                                   or ends
    #   _start                 _measure_baseline if the canary has metrics,
    #                          else _check_again
    #   _measure_baseline      _check_again                                 failed: baseline not measured
    #   _check_again           _record_deploy                               refused (e.g. the verdict expired)
    #   _record_deploy         _apply_policy                                failed: the audit trail is unavailable
    #   _apply_policy          _start_canary                                failed: could not apply (reverted)
    #   _start_canary          _measure_canary                              kept: the canary has no metrics
    #   _measure_canary        _end_round, or _measure_canary_again when    failed: canary not measured (reverted)
    #                          other processes loaded the host meanwhile
    #   _measure_canary_again  _end_round                                   failed: canary not measured (reverted)
    #   _end_round             _pause when the canary alternates and has    ejected
    #                          rounds to go, else _judge
    #   _pause                 _measure_round_baseline (the policy is off)
    #   _measure_round_baseline _resume                                     failed: baseline not measured
    #   _resume                _measure_canary (the policy is on again)     failed: could not apply (reverted)
    #   _judge                 _pause when inconclusive with rounds left    kept, kept (report only),
    #                          (one more round planned)                     rolled back (reverted; also
    #                                                                       when still inconclusive)

    async def _run(self, request: executor_pb2.DeployRequest,
                   deployment: deployment_pb2.Deployment) -> AsyncIterator[deployment_pb2.DeploymentEvent]:
        run = Run(request, deployment)
        where: Next | Ending | Ejected = Next(self._start)
        while isinstance(where, Next):
            where = await where.step(run)
            if isinstance(where, Next) and where.say:
                yield await self._event(deployment, where.say)
        if isinstance(where, Ejected):
            # The kernel already took the scheduler off: recorded as the ejection watcher does.
            yield await self._ejected(deployment, request, where.record)
            return
        async for event in self._end(run, where):
            yield event

    async def _end(self, run: Run, ending: Ending) -> AsyncIterator[deployment_pb2.DeploymentEvent]:
        """End the run. A policy that was (even partly) applied and is not kept is reverted before
        the ending is recorded, so the event tells the truth about the host, and the last known
        good goes back on after it; a judged canary is an outcome for the learner."""
        undo = run.host_touched and ending.state != S.DEPLOYMENT_STATE_KEPT
        if undo:
            await self._revert()
        deployment = run.deployment
        deployment.state, deployment.reason, deployment.failure = ending.state, ending.reason, ending.failure
        yield await self._event(run.deployment, ending.message or ending.reason, ending.comparisons,
                                actor=ending.actor)
        if ending.judgement is not None:
            await self._publish_outcome(run.request, run.deployment, ending.judgement)
        if undo:
            await self._restore_previous()

    async def _start(self, run: Run) -> Next:
        if not run.measured:
            return Next(self._check_again)
        run.deployment.state = S.DEPLOYMENT_STATE_BASELINE
        return Next(self._measure_baseline, f"measuring the baseline for {_seconds(run.spec.baseline_window):g} s")

    async def _measure_baseline(self, run: Run) -> Next | Ending:
        return await self._baseline(run) or Next(self._check_again)

    async def _baseline(self, run: Run) -> Ending | None:
        """One baseline window into run.baseline; the ending when it could not be measured."""
        try:
            run.baseline = await canary.measure(self._settings.observer_addr, run.spec,
                                                _seconds(run.spec.baseline_window))
        except Exception as exc:
            return Ending(S.DEPLOYMENT_STATE_FAILED, f"baseline not measured: {exc}",
                          failure=S.DEPLOYMENT_FAILURE_NOT_MEASURED)
        return None

    async def _check_again(self, run: Run) -> Next | Ending:
        """Checked again right before applying: the verdict may have expired while this waited
        (for the lock, for the baseline)."""
        try:
            self._check(run.request, run.deployment)
        except (verdicts.UntrustedVerdict, verdicts.VerdictNotApplicable, FailedPrecondition) as exc:
            return Ending(S.DEPLOYMENT_STATE_REFUSED, str(exc), message=f"refused: {exc}",
                          actor=run.deployment.requested_by)
        return Next(self._record_deploy)

    async def _record_deploy(self, run: Run) -> Next | Ending:
        """The audit trail shows the deployment before the host runs it (APPLYING: a DEPLOY record)."""
        deployment = run.deployment
        deployment.state = S.DEPLOYMENT_STATE_APPLYING
        try:
            await self._audit.require(self._audit.record_of(deployment, deployment.requested_by,
                                                            f"verdict {deployment.verdict_id} checked"))
        except DependencyUnavailable as exc:
            return Ending(S.DEPLOYMENT_STATE_FAILED, str(exc), failure=S.DEPLOYMENT_FAILURE_DEPENDENCY)
        return Next(self._apply_policy)

    async def _apply_policy(self, run: Run) -> Next | Ending:
        """Stop the policy in force (it becomes the last known good), then start the new one."""
        deployment = run.deployment
        replaced = self._current
        if replaced is not None:
            deployment.previous_deployment_id = replaced.deployment.deployment_id
            await self._revert()
            self._previous = replaced
        # From here on an ending other than kept reverts: a failed apply may have left part of
        # the policy behind (journalled native changes, a loader that started).
        run.host_touched = True
        # Alternating takes the policy off between canary windows: the host must then run what
        # the first baseline saw, which it does only when nothing else was in force.
        run.alternating = run.spec.rounds > 1 and replaced is None
        run.planned = run.spec.rounds if run.alternating else 1
        report = await self._apply_run(run, "apply")
        if isinstance(report, Ending):
            return report
        errors = (f" ({len(report.errors)} could not be changed: {'; '.join(report.errors[:3])})"
                  if report.errors else "")
        return Next(self._start_canary, report.detail or f"applied to {report.processes} processes "
                                                         f"({report.threads} thread settings changed){errors}")

    async def _start_canary(self, run: Run) -> Next | Ending:
        if not run.measured:
            return Ending(S.DEPLOYMENT_STATE_KEPT, "kept: the canary has no metrics to judge")
        run.deployment.state = S.DEPLOYMENT_STATE_CANARY
        rounds = (f" (round 1 of {run.planned}: the policy goes off and on between windows)" if run.alternating
                  else " (one round: another policy was in force before)" if run.spec.rounds > 1 else "")
        return Next(self._measure_canary, f"canary: measuring for {_seconds(run.spec.canary_window):g} s{rounds}")

    async def _measure_canary(self, run: Run) -> Next | Ending:
        if failed := await self._measure(run):
            return failed
        if canary.disturbed(run.baseline, run.observed):
            return Next(self._measure_canary_again,
                        f"other processes used {100 * run.observed.foreign_cpu_share:.0f} % of the CPU during the "
                        f"canary (baseline {100 * run.baseline.foreign_cpu_share:.0f} %): measuring again")
        return Next(self._end_round)

    async def _measure_canary_again(self, run: Run) -> Next | Ending:
        """Once only: a host that stays busy is judged as it is rather than never."""
        return await self._measure(run) or Next(self._end_round)

    async def _end_round(self, run: Run) -> Next | Ejected:
        if run.deployment.backend == "sched_ext" and not self._scx.active:
            # Ejected during the canary: the measurement was of the fair class, not the policy.
            return Ejected(self._scx.last_exit)
        run.rounds.append((run.baseline, run.observed))
        if len(run.rounds) < run.planned:
            return Next(self._pause)
        return Next(self._judge)

    async def _pause(self, run: Run) -> Next:
        await self._revert()
        run.deployment.state = S.DEPLOYMENT_STATE_BASELINE
        return Next(self._measure_round_baseline,
                    f"round {len(run.rounds) + 1} of {run.planned}: policy off, measuring the baseline for "
                    f"{_seconds(run.spec.baseline_window):g} s")

    async def _measure_round_baseline(self, run: Run) -> Next | Ending:
        return await self._baseline(run) or Next(self._resume)

    async def _resume(self, run: Run) -> Next | Ending:
        if isinstance(failed := await self._apply_run(run, "apply again"), Ending):
            return failed
        run.deployment.state = S.DEPLOYMENT_STATE_CANARY
        return Next(self._measure_canary, f"round {len(run.rounds) + 1} of {run.planned}: policy on, measuring "
                                          f"for {_seconds(run.spec.canary_window):g} s")

    async def _measure(self, run: Run) -> Ending | None:
        """One canary window into run.observed; the ending when it could not be measured."""
        try:
            run.observed = await canary.measure(self._settings.observer_addr, run.spec,
                                                _seconds(run.spec.canary_window))
        except Exception as exc:
            return _canary_not_measured(exc)
        return None

    async def _judge(self, run: Run) -> Next | Ending:
        verdict = canary.judge_rounds(run.spec, run.rounds)
        if verdict.inconclusive and run.alternating and run.planned < canary.max_rounds(run.spec):
            run.planned += 1
            return Next(self._pause, f"{verdict.reason}; adding round {run.planned} (at most "
                                     f"{canary.max_rounds(run.spec)})")
        if verdict.inconclusive:
            # Safe default: a policy that could not show it helps does not stay.
            verdict.reason = (f"inconclusive after {len(run.rounds)} rounds, the most allowed: "
                              + verdict.reason.removeprefix("inconclusive: "))
        comparisons = ([verdict.success] if verdict.success else []) + verdict.guards
        if verdict.keep:
            return Ending(S.DEPLOYMENT_STATE_KEPT, verdict.reason, comparisons=comparisons, judgement=verdict)
        if run.spec.report_only:
            return Ending(S.DEPLOYMENT_STATE_KEPT, f"kept (report only) although: {verdict.reason}",
                          comparisons=comparisons, judgement=verdict)
        metrics.ROLLBACKS.labels("canary").inc()
        return Ending(S.DEPLOYMENT_STATE_ROLLED_BACK, verdict.reason, comparisons=comparisons, judgement=verdict)

    async def _apply_run(self, run: Run, what: str) -> ApplyReport | Ending:
        """Apply the run's policy and make it the one in force; the ending when that failed."""
        try:
            report = await self._apply(run.deployment, run.request.artifact)
        except Exception as exc:
            if not isinstance(exc, (OSError, FailedPrecondition, InvalidArgument)):
                log.exception("%s %s failed", what, run.deployment.deployment_id)
            return Ending(S.DEPLOYMENT_STATE_FAILED, f"could not {what}: {exc}",
                          failure=S.DEPLOYMENT_FAILURE_NOT_APPLIED)
        self._current = Applied(run.deployment, run.request)
        return report

    async def _apply(self, deployment: deployment_pb2.Deployment, artifact: policy_pb2.PolicyArtifact):
        if artifact.WhichOneof("body") == "sched_ext":
            ops = await self._scx.apply(deployment.deployment_id, artifact)
            self._watch = asyncio.create_task(self._watch_ejection(deployment), name="sched_ext-watch")
            return ApplyReport(processes=1, threads=0, detail=f"sched_ext scheduler {ops} enabled")
        # Subscribed first: a process that starts while the policy is applied is told too.
        self._process_events = await asyncio.to_thread(_subscribe)
        report = await asyncio.to_thread(self._native.apply, deployment.deployment_id, artifact.native)
        self._rescan = asyncio.create_task(self._rescan_loop(self._process_events), name="native-rescan")
        return report

    async def _revert(self) -> None:
        # A watcher or rescan that died must not stop the revert.
        for failed in await tasks.stop([self._rescan, self._watch], "the deployment's watchers"):
            log.error("%s had failed", failed.get_name(), exc_info=failed.exception())
        self._rescan = self._watch = None
        if self._process_events is not None:
            await asyncio.to_thread(self._process_events.close)
            self._process_events = None
        if self._scx is not None:
            await self._scx.revert()
        report = await asyncio.to_thread(self._native.revert)
        if report.errors:
            log.warning("reverting left %d errors: %s", len(report.errors), "; ".join(report.errors[:5]))
        self._current = None

    async def _restore_previous(self) -> deployment_pb2.Deployment | None:
        """Apply again the deployment that was in force before (its verdict checked again)."""
        previous, self._previous = self._previous, None
        if previous is None:
            return None
        deployment = previous.deployment
        try:
            self._check(previous.request, deployment)
            await self._apply(deployment, previous.request.artifact)
        except (verdicts.UntrustedVerdict, verdicts.VerdictNotApplicable, FailedPrecondition, OSError) as exc:
            await self._revert()
            await self._event(deployment, f"could not restore {deployment.policy_name}: {exc}; the host runs its "
                                          "defaults")
            return None
        self._current = previous
        await self._event(deployment, f"restored {deployment.policy_name} (the last known good)")
        return deployment

    async def _watch_ejection(self, deployment: deployment_pb2.Deployment) -> None:
        """The kernel ejected the scheduler (watchdog, runtime error): report it, then put the
        last known good back."""
        record = await self._scx.wait_for_ejection()
        async with self._lock:
            if self._current is None or self._current.deployment is not deployment:
                return
            self._watch = None
            await self._ejected(deployment, self._current.request, record)

    async def _ejected(self, deployment: deployment_pb2.Deployment, request: executor_pb2.DeployRequest,
                       record: dict) -> deployment_pb2.DeploymentEvent:
        deployment.state = S.DEPLOYMENT_STATE_EJECTED
        deployment.reason = "ejected by the kernel: " + " / ".join(
            str(record[k]) for k in ("kind_name", "reason", "msg") if record.get(k))
        event = await self._event(deployment, deployment.reason)
        metrics.ROLLBACKS.labels("ejected").inc()
        await self._publish_outcome(request, deployment, None)
        await self._revert()
        await self._restore_previous()
        return event

    async def _rescan_loop(self, events: procevents.ProcEvents | None) -> None:
        """Tasks started after the deployment get the policy too: a process that starts a matched
        program as it starts (process events, where the kernel has them; `_revert` closes them),
        every new task within RESCAN_INTERVAL_S (new threads, and anything the events missed)."""
        rescan_at = time.monotonic() + RESCAN_INTERVAL_S
        while True:
            try:
                started = await _started(events, max(0.0, rescan_at - time.monotonic()))
            except procevents.Unavailable as exc:
                log.warning("%s; %s", exc, RESCANS_ONLY)
                events, started = None, None
            if started:
                report = await asyncio.to_thread(self._native.apply_to, started)
                if report.threads:
                    log.debug("applied the policy to %d threads of %d processes as they started",
                              report.threads, report.processes)
            if started is None or time.monotonic() >= rescan_at:
                report = await asyncio.to_thread(self._native.rescan)
                if report.threads:
                    log.info("applied the policy to %d new threads", report.threads)
                rescan_at = time.monotonic() + RESCAN_INTERVAL_S

    async def _event(self, deployment: deployment_pb2.Deployment, message: str,
                     metrics: list[deployment_pb2.MetricComparison] | None = None,
                     actor: str = "") -> deployment_pb2.DeploymentEvent:
        """Record a step: the local history, the deployment stream, and for an ending (kept,
        rolled back, refused, ejected, failed) the audit trail, by `actor` (default: the
        executor's own decision)."""
        deployment.updated_at.GetCurrentTime()
        if deployment.state in audit.ACTIONS and deployment.state != S.DEPLOYMENT_STATE_APPLYING:
            await self._audit.note(self._audit.record_of(deployment, actor or audit.EXECUTOR, message))
        event = deployment_pb2.DeploymentEvent(deployment=deployment, message=message, metrics=metrics or [])
        event.at.GetCurrentTime()
        log.info("deployment %s (%s): %s: %s", deployment.deployment_id, deployment.policy_name or "unnamed",
                 deployment_pb2.DeploymentState.Name(deployment.state).removeprefix("DEPLOYMENT_STATE_").lower(),
                 message)
        self._events.append(event)
        try:
            await self._bus.publish(topology.subject(topology.Kind.DEPLOYMENT, self._settings.host_id,
                                                     deployment.deployment_id), event)
        except Exception as exc:  # the local history has it; NATS being down must not stop a rollback
            log.warning("could not publish the deployment event: %s", exc)
        return event

    async def _host_class(self) -> str:
        """This host's class (schedcp/domain/hostclass.py) from the local observer's facts, asked
        once (the facts it depends on change with a reboot, which restarts the executor); "" while
        the observer cannot say, so the learner counts the outcome under no class."""
        if not self._class:
            try:
                async with rpc.shared(self._settings.observer_addr, self._settings.rpc_timeout_s) as channel:
                    info = await observer_pb2_grpc.ObserverServiceStub(channel).HostInfo(observer_pb2.HostInfoRequest())
                self._class = hostclass.of(info.facts)
            except grpc.aio.AioRpcError as exc:
                log.warning("the observer did not tell this host's facts (%s): outcome without a host class",
                            exc.details())
        return self._class

    async def _publish_outcome(self, request: executor_pb2.DeployRequest, deployment: deployment_pb2.Deployment,
                               verdict: canary.Judgement | None) -> None:
        result = {S.DEPLOYMENT_STATE_KEPT: S.OUTCOME_RESULT_KEPT, S.DEPLOYMENT_STATE_EJECTED: S.OUTCOME_RESULT_EJECTED
                  }.get(deployment.state, S.OUTCOME_RESULT_ROLLED_BACK)
        verdict = verdict or canary.Judgement(False, deployment.reason, None, [])
        outcome = deployment_pb2.Outcome(
            outcome_id=f"{deployment.deployment_id}-{S.OutcomeResult.Name(result).removeprefix('OUTCOME_RESULT_').lower()}",
            cycle_id=deployment.cycle_id, deployment_id=deployment.deployment_id,
            host_id=deployment.host_id, host_class=await self._host_class(),
            policy_name=deployment.policy_name, artifact_digest=deployment.artifact_digest,
            parameters=request.artifact.parameters, signature=request.signature, objective=request.goal.objective,
            guards=verdict.guards, result=result, reason=deployment.reason, canary_window=request.canary.canary_window,
            goal=request.goal)
        if verdict.success is not None:
            outcome.success.CopyFrom(verdict.success)
        outcome.at.GetCurrentTime()
        try:
            await self._bus.publish(topology.subject(topology.Kind.OUTCOME, self._settings.host_id,
                                                     deployment.deployment_id), outcome, msg_id=outcome.outcome_id)
        except Exception as exc:
            log.warning("could not publish the outcome of %s: %s", deployment.deployment_id, exc)


def _count_ended(deployment: deployment_pb2.Deployment) -> None:
    """schedcp_executor_deployments_total by the state the deployment flow ended in."""
    state = S.DeploymentState.Name(deployment.state).removeprefix("DEPLOYMENT_STATE_").lower()
    metrics.DEPLOYMENTS.labels(state).inc()


def _canary_not_measured(exc: Exception) -> Ending:
    # An unjudged policy does not stay: this ending reverts it.
    return Ending(S.DEPLOYMENT_STATE_FAILED, f"canary not measured: {exc}", failure=S.DEPLOYMENT_FAILURE_NOT_MEASURED)


def _seconds(duration) -> float:
    return duration.ToNanoseconds() / 1e9
