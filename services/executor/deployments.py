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
import contextlib
import logging
import os
import platform
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import json_format

from schedcp import artifacts, sched_ext, topology, verdicts
from schedcp.bus import Bus
from schedcp.config import Settings
from schedcp.errors import FailedPrecondition, InvalidArgument
from schedcp.v1 import deployment_pb2, executor_pb2, policy_pb2
from services.executor import canary
from services.executor.native import NativeBackend

log = logging.getLogger(__name__)
S = deployment_pb2
RESCAN_INTERVAL_S = 1.0
HISTORY_LIMIT = 1000


@dataclass
class Applied:
    """A deployment in force, with the request that made it (to apply it again)."""

    deployment: deployment_pb2.Deployment
    request: executor_pb2.DeployRequest


class EventLog:
    """The host's deployment events, newest last, in a JSON-lines file that survives restarts."""

    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, event: deployment_pb2.DeploymentEvent) -> None:
        with self._path.open("a") as f:
            f.write(json_format.MessageToJson(event, indent=None) + "\n")

    def last(self, limit: int) -> list[deployment_pb2.DeploymentEvent]:
        try:
            lines = self._path.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json_format.Parse(line, deployment_pb2.DeploymentEvent()) for line in lines[-limit:]]


class Executor:
    def __init__(self, settings: Settings, bus: Bus, native: NativeBackend, events: EventLog) -> None:
        self._settings = settings
        self._bus = bus
        self._native = native
        self._events = events
        self._lock = asyncio.Lock()
        self._current: Applied | None = None
        self._previous: Applied | None = None
        self._rescan: asyncio.Task | None = None

    # --- the RPCs ----------------------------------------------------------------------------
    async def deploy(self, request: executor_pb2.DeployRequest) -> AsyncIterator[deployment_pb2.DeploymentEvent]:
        deployment = self._new_deployment(request)
        yield await self._event(deployment, "checking the verdict, the artifact's digest and this host's kernel")
        try:
            self._check(request, deployment)
        except (verdicts.UntrustedVerdict, verdicts.VerdictNotApplicable, FailedPrecondition) as exc:
            deployment.state, deployment.reason = S.DEPLOYMENT_STATE_REFUSED, str(exc)
            await self._event(deployment, f"refused: {exc}")
            raise
        if self._lock.locked():
            yield await self._event(deployment, "waiting for the deployment in progress to finish")
        async with self._lock:
            async for event in self._run(request, deployment):
                yield event

    async def rollback(self, reason: str) -> executor_pb2.RollbackResponse:
        async with self._lock:
            if self._current is None:
                return executor_pb2.RollbackResponse(message="nothing deployed: the host runs its defaults")
            rolled = self._current.deployment
            await self._revert()
            rolled.state, rolled.reason = S.DEPLOYMENT_STATE_ROLLED_BACK, reason or "rollback requested"
            await self._event(rolled, f"rolled back: {rolled.reason}")
            restored = await self._restore_previous()
            message = (f"rolled back {rolled.policy_name}; restored {restored.policy_name}" if restored
                       else f"rolled back {rolled.policy_name}; the host runs its defaults")
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
        """At start: undo changes a previous run left (killed mid-deploy, crashed, power loss)."""
        left = self._native.journalled()
        if left:
            report = await asyncio.to_thread(self._native.revert)
            log.warning("restored %d changes left by a previous run (%d threads gone since, %d errors: %s)",
                        report.restored, report.gone, len(report.errors), "; ".join(report.errors[:3]))
        return left

    async def close(self) -> None:
        """Clean shutdown: nothing schedcp changed outlives the executor."""
        async with self._lock:
            if self._current is not None:
                await self._revert()
                log.info("restored the host's settings at shutdown (%s was deployed)",
                         self._current.deployment.policy_name if self._current else "a policy")

    # --- steps -------------------------------------------------------------------------------
    def _new_deployment(self, request: executor_pb2.DeployRequest) -> deployment_pb2.Deployment:
        artifact = request.artifact
        if artifact.WhichOneof("body") is None:
            raise InvalidArgument("the artifact has no body (sched_ext or native)")
        canary.check_spec(request.canary)
        deployment = deployment_pb2.Deployment(
            deployment_id=uuid.uuid4().hex[:16], host_id=self._settings.host_id, cycle_id=request.cycle_id,
            policy_name=artifact.name, artifact_digest=artifacts.digest_of(artifact),
            verdict_id=request.verdict.claims.verdict_id, backend=artifact.WhichOneof("body"),
            state=S.DEPLOYMENT_STATE_CHECKING)
        deployment.started_at.GetCurrentTime()
        return deployment

    def _check(self, request: executor_pb2.DeployRequest, deployment: deployment_pb2.Deployment) -> None:
        trusted = verdicts.trusted_keys(self._settings)
        if not trusted:
            raise FailedPrecondition("no trusted verifier key: set SCHEDCP_TRUSTED_VERIFIER_KEYS")
        claims = verdicts.check(request.verdict.signed, trusted, deployment.artifact_digest, sched_ext.host_kernel())
        deployment.verdict_id = claims.verdict_id
        if request.artifact.digest and request.artifact.digest != deployment.artifact_digest:
            raise verdicts.VerdictNotApplicable("digest_mismatch", "the artifact's digest field does not match its "
                                                "content")
        if deployment.backend == "sched_ext":
            raise FailedPrecondition("the sched_ext backend is not available on this executor yet; deploy a "
                                     "native policy")

    async def _run(self, request: executor_pb2.DeployRequest,
                   deployment: deployment_pb2.Deployment) -> AsyncIterator[deployment_pb2.DeploymentEvent]:
        spec = request.canary
        measured = bool(canary.metrics_of(spec))
        baseline: dict[str, float] = {}
        if measured:
            deployment.state = S.DEPLOYMENT_STATE_BASELINE
            yield await self._event(deployment, f"measuring the baseline for {_seconds(spec.baseline_window):g} s")
            baseline = await canary.measure(self._settings.observer_addr, spec, _seconds(spec.baseline_window))
        deployment.state = S.DEPLOYMENT_STATE_APPLYING
        replaced = self._current
        if replaced is not None:
            deployment.previous_deployment_id = replaced.deployment.deployment_id
            await self._revert()
            self._previous = replaced
        try:
            report = await self._apply(deployment.deployment_id, request.artifact)
        except (OSError, FailedPrecondition, InvalidArgument) as exc:
            await self._revert()
            deployment.state, deployment.reason = S.DEPLOYMENT_STATE_FAILED, f"could not apply: {exc}"
            yield await self._event(deployment, deployment.reason)
            await self._restore_previous()
            return
        self._current = Applied(deployment, request)
        errors = (f" ({len(report.errors)} could not be changed: {'; '.join(report.errors[:3])})"
                  if report.errors else "")
        yield await self._event(deployment, f"applied to {report.threads} threads in {report.processes} "
                                            f"processes{errors}")
        if not measured:
            deployment.state, deployment.reason = S.DEPLOYMENT_STATE_KEPT, "kept: the canary has no metrics to judge"
            yield await self._event(deployment, deployment.reason)
            return
        deployment.state = S.DEPLOYMENT_STATE_CANARY
        yield await self._event(deployment, f"canary: measuring for {_seconds(spec.canary_window):g} s")
        observed = await canary.measure(self._settings.observer_addr, spec, _seconds(spec.canary_window))
        verdict = canary.judge(spec, baseline, observed)
        metrics = ([verdict.success] if verdict.success else []) + verdict.guards
        if verdict.keep or spec.report_only:
            deployment.state = S.DEPLOYMENT_STATE_KEPT
            deployment.reason = verdict.reason if verdict.keep else f"kept (report only) although: {verdict.reason}"
        else:
            await self._revert()
            deployment.state, deployment.reason = S.DEPLOYMENT_STATE_ROLLED_BACK, verdict.reason
        yield await self._event(deployment, deployment.reason, metrics)
        await self._publish_outcome(request, deployment, verdict)
        if deployment.state == S.DEPLOYMENT_STATE_ROLLED_BACK:
            await self._restore_previous()

    async def _apply(self, deployment_id: str, artifact: policy_pb2.PolicyArtifact):
        report = await asyncio.to_thread(self._native.apply, deployment_id, artifact.native)
        self._rescan = asyncio.create_task(self._rescan_loop(), name="native-rescan")
        return report

    async def _revert(self) -> None:
        if self._rescan is not None:
            self._rescan.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rescan
            self._rescan = None
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
            await self._apply(deployment.deployment_id, previous.request.artifact)
        except (verdicts.UntrustedVerdict, verdicts.VerdictNotApplicable, FailedPrecondition, OSError) as exc:
            await self._revert()
            await self._event(deployment, f"could not restore {deployment.policy_name}: {exc}; the host runs its "
                                          "defaults")
            return None
        self._current = previous
        await self._event(deployment, f"restored {deployment.policy_name} (the last known good)")
        return deployment

    async def _rescan_loop(self) -> None:
        """Tasks started after the deployment get the policy too."""
        while True:
            await asyncio.sleep(RESCAN_INTERVAL_S)
            report = await asyncio.to_thread(self._native.rescan)
            if report.threads:
                log.info("applied the policy to %d new threads", report.threads)

    async def _event(self, deployment: deployment_pb2.Deployment, message: str,
                     metrics: list[deployment_pb2.MetricComparison] | None = None) -> deployment_pb2.DeploymentEvent:
        deployment.updated_at.GetCurrentTime()
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

    async def _publish_outcome(self, request: executor_pb2.DeployRequest, deployment: deployment_pb2.Deployment,
                               verdict: canary.Judgement) -> None:
        result = S.OUTCOME_RESULT_KEPT if deployment.state == S.DEPLOYMENT_STATE_KEPT else S.OUTCOME_RESULT_ROLLED_BACK
        outcome = deployment_pb2.Outcome(
            outcome_id=deployment.deployment_id, cycle_id=deployment.cycle_id, deployment_id=deployment.deployment_id,
            host_id=deployment.host_id, host_class=host_class(deployment.backend),
            policy_name=deployment.policy_name, artifact_digest=deployment.artifact_digest,
            parameters=request.artifact.parameters, signature=request.signature, objective=request.goal.objective,
            guards=verdict.guards, result=result, reason=deployment.reason, canary_window=request.canary.canary_window)
        if verdict.success is not None:
            outcome.success.CopyFrom(verdict.success)
        outcome.at.GetCurrentTime()
        try:
            await self._bus.publish(topology.subject(topology.Kind.OUTCOME, self._settings.host_id,
                                                     deployment.deployment_id), outcome, msg_id=outcome.outcome_id)
        except Exception as exc:
            log.warning("could not publish the outcome of %s: %s", deployment.deployment_id, exc)


def host_class(backend: str) -> str:
    """Coarse host class for the learner's statistics, e.g. "x86_64-2cpu-native"."""
    return f"{platform.machine()}-{os.cpu_count() or 1}cpu-{backend}"


def _seconds(duration) -> float:
    return duration.ToNanoseconds() / 1e9
