"""What a rollout does to hosts and asks of the learner: one host's decision cycle for the
rollout's policy (the executor's canary judges it on that host), one host's rollback, and the
learner's statistics of the policy per host class and workload cluster."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from nats.errors import Error as NatsError

from schedcp.domain import params
from schedcp.runtime import rpc
from schedcp.runtime.config import Settings
from schedcp.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from schedcp.v1 import (
    common_pb2,
    cycle_pb2,
    deployment_pb2,
    executor_pb2,
    executor_pb2_grpc,
    learner_pb2,
    learner_pb2_grpc,
    planner_pb2,
    policy_pb2,
    rollout_pb2,
)
from services.planner.cycle import ALTERNATING_ROUNDS, LEARN_WAIT_S, Cycle
from services.planner.hosts import HostDirectory
from services.planner.planning import Planner

log = logging.getLogger(__name__)
H = rollout_pb2
DEPLOYED = {deployment_pb2.DEPLOYMENT_STATE_KEPT: H.ROLLOUT_HOST_RESULT_KEPT,
            deployment_pb2.DEPLOYMENT_STATE_ROLLED_BACK: H.ROLLOUT_HOST_RESULT_ROLLED_BACK,
            deployment_pb2.DEPLOYMENT_STATE_EJECTED: H.ROLLOUT_HOST_RESULT_ROLLED_BACK}
OUTCOMES = {deployment_pb2.OUTCOME_RESULT_KEPT: H.ROLLOUT_HOST_RESULT_KEPT,
            deployment_pb2.OUTCOME_RESULT_ROLLED_BACK: H.ROLLOUT_HOST_RESULT_ROLLED_BACK,
            deployment_pb2.OUTCOME_RESULT_EJECTED: H.ROLLOUT_HOST_RESULT_ROLLED_BACK}
# A deployment the executor has not judged yet, and how often a resumed rollout asks.
IN_FLIGHT = {deployment_pb2.DEPLOYMENT_STATE_CHECKING, deployment_pb2.DEPLOYMENT_STATE_BASELINE,
             deployment_pb2.DEPLOYMENT_STATE_APPLYING, deployment_pb2.DEPLOYMENT_STATE_CANARY}
STATUS_POLL_S = 1.0


@dataclass(frozen=True)
class ClassEffect:
    """The learner's outcomes of a policy in one class: how many, and their mean improvement."""

    outcomes: int = 0
    mean: float = 0.0


class Fleet:
    def __init__(self, cycle: Cycle, planner: Planner, hosts: HostDirectory, settings: Settings) -> None:
        self._cycle = cycle
        self._planner = planner
        self._hosts = hosts
        self._learner_addr = settings.learner_addr
        self._rpc_timeout_s = settings.rpc_timeout_s
        # A canary in flight when the planner stopped, on a host whose executor cannot say how it
        # stands: its baseline and canary windows for the rounds an alternating canary starts
        # with, and the learner's time to apply the outcome.
        self._canary_wait_s = 2 * settings.canary_window_s * ALTERNATING_ROUNDS + LEARN_WAIT_S

    def check_policy(self, name: str, host) -> None:
        """InvalidArgument for a policy the library does not have, FailedPrecondition for one the
        host cannot run (as `schedcp deploy` is told)."""
        self._planner.check_policy(name, host)

    async def deploy(self, host_id: str, rollout: rollout_pb2.Rollout,
                     started: Callable[[str], Awaitable[None]]) -> rollout_pb2.RolloutHost:
        """One decision cycle for the rollout's policy on the host, from its newest published
        profile when that is fresh (the cycle profiles the host otherwise); `started` is told
        the cycle's id as soon as it has one."""
        request = planner_pb2.TuneRequest(host_id=host_id, intent=rollout.intent, policy=rollout.policy,
                                          parameters=rollout.parameters)
        last, no_goal = None, False
        try:
            async for event in self._cycle.tune(request, await self._cycle.newest_published(host_id)):
                if last is None:
                    await started(event.cycle_id)
                last = event
                no_goal |= event.stage == cycle_pb2.CYCLE_STAGE_GOAL and event.status == common_pb2.STAGE_STATUS_SKIPPED
        except NatsError:
            raise  # the rollout's own state could not be read or stored: the step is retried
        except Exception as exc:  # whatever else stopped this host's cycle, the others go on
            if not isinstance(exc, grpc.aio.AioRpcError | InvalidArgument | NotFound | FailedPrecondition):
                log.exception("the rollout's cycle on %s failed", host_id)
            details = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc) or type(exc).__name__
            return H.RolloutHost(host_id=host_id, result=H.ROLLOUT_HOST_RESULT_FAILED, message=details,
                                 cycle_id=last.cycle_id if last else "")
        return result_of(host_id, last, no_goal)

    async def outcome_of(self, host_id: str, cycle_id: str) -> rollout_pb2.RolloutHost | None:
        """The result of a cycle a stopped planner left in flight, from the outcome the learner
        applied (its canary went on without the planner). Waited for while the host's executor
        still measures that cycle's deployment (its goal may ask for windows a minute long, and
        inconclusive rounds add more), then as long as the learner takes to apply an outcome (the
        cycle may never have deployed); when the executor cannot say, as long as the canary a
        cycle starts with takes. None without one."""
        wait = LEARN_WAIT_S
        while (measuring := await self._measuring(host_id, cycle_id)) is not False:
            if measuring is None:
                wait = self._canary_wait_s
                break
            await asyncio.sleep(STATUS_POLL_S)
        outcome, _ = await self._planner.applied_outcome(host_id, "", wait, cycle_id=cycle_id)
        if outcome is None:
            return None
        result = deployment_pb2.OutcomeResult.Name(outcome.result).removeprefix("OUTCOME_RESULT_").lower()
        told = f"judged while the planner restarted: {result}"
        return H.RolloutHost(host_id=host_id, cycle_id=cycle_id, deployment_id=outcome.deployment_id,
                             result=OUTCOMES[outcome.result], message=f"{told} ({outcome.reason})")

    async def _measuring(self, host_id: str, cycle_id: str) -> bool | None:
        """Whether the host's executor is still checking, measuring or applying the cycle's
        deployment; None when it cannot say."""
        try:
            host = await self._hosts.get(host_id)
            async with rpc.shared(host.executor_addr, self._rpc_timeout_s) as channel:
                status = await executor_pb2_grpc.ExecutorServiceStub(channel).Status(
                    executor_pb2.StatusRequest(host_id=host_id))
        except (NotFound, grpc.aio.AioRpcError):
            return None
        return status.current.cycle_id == cycle_id and status.current.state in IN_FLIGHT

    async def roll_back(self, host_id: str, reason: str) -> str:
        """Roll back what the host runs; "" when done, else why not."""
        try:
            host = await self._hosts.get(host_id)
            async with rpc.shared(host.executor_addr, self._rpc_timeout_s) as channel:
                await executor_pb2_grpc.ExecutorServiceStub(channel).Rollback(
                    executor_pb2.RollbackRequest(reason=reason, host_id=host_id))
        except NotFound as exc:
            return str(exc)
        except grpc.aio.AioRpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
        return ""

    async def effects(self, policy: str) -> list[policy_pb2.EffectStats]:
        """The learner's statistics of the policy, per parameters, workload cluster and host class."""
        async with rpc.shared(self._learner_addr, self._rpc_timeout_s) as channel:
            record = await learner_pb2_grpc.LearnerServiceStub(channel).GetPolicy(
                learner_pb2.GetPolicyRequest(name=policy))
        return list(record.effects)


def result_of(host_id: str, last: cycle_pb2.CycleEvent | None, no_goal: bool) -> rollout_pb2.RolloutHost:
    """A host's result from its cycle's last event."""
    host = H.RolloutHost(host_id=host_id, message=last.message if last else "the cycle reported nothing",
                         cycle_id=last.cycle_id if last else "")
    if last is not None and last.HasField("deployment"):
        host.deployment_id = last.deployment.deployment.deployment_id
        host.result = DEPLOYED.get(last.deployment.deployment.state, H.ROLLOUT_HOST_RESULT_FAILED)
    elif last is not None and last.status == common_pb2.STAGE_STATUS_SKIPPED:
        host.result = H.ROLLOUT_HOST_RESULT_NOTHING_TO_DO if no_goal else H.ROLLOUT_HOST_RESULT_ALREADY_RUNNING
    else:
        host.result = H.ROLLOUT_HOST_RESULT_FAILED
    return host


def class_effect(effects: list[policy_pb2.EffectStats], parameters, host_class: str, cluster: str) -> ClassEffect:
    """The outcomes of the policy with these parameters in one class, pooled."""
    mine = [e for e in effects if e.host_class == host_class and e.signature_cluster == cluster
            and params.within(parameters, e.parameters_key)]
    outcomes = sum(e.count - e.ejections for e in mine)
    if not outcomes:
        return ClassEffect(sum(e.count for e in mine), 0.0)
    return ClassEffect(sum(e.count for e in mine),
                       sum(e.mean_improvement * (e.count - e.ejections) for e in mine) / outcomes)


def proven_classes(effects: list[policy_pb2.EffectStats], parameters) -> list[str]:
    """`host class / workload cluster` of every class where the policy with these parameters is proven."""
    return sorted({f"{e.host_class} / {e.signature_cluster}" for e in effects
                   if e.proven and params.within(parameters, e.parameters_key)})
