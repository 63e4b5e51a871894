"""Plan: observe a host, infer the goal, list the candidates; nothing verified or deployed.
(Tune, the full cycle in cycle.py, builds on this.)"""

from __future__ import annotations

import logging
import uuid

import grpc

from schedcp import rpc
from schedcp.errors import InvalidArgument
from schedcp.v1 import (
    cycle_pb2,
    goal_pb2,
    host_pb2,
    learner_pb2,
    learner_pb2_grpc,
    observer_pb2,
    observer_pb2_grpc,
    planner_pb2,
    profile_pb2,
)
from services.planner import goals, synthesis
from services.planner.hosts import HostDirectory

log = logging.getLogger(__name__)
OBSERVE_WINDOW_S = 2.0
PROVIDERS = ("rules",)


class Planner:
    def __init__(self, hosts: HostDirectory, rpc_timeout_s: float, learner_addr: str) -> None:
        self._hosts = hosts
        self._rpc_timeout_s = rpc_timeout_s
        self._learner_addr = learner_addr

    async def plan(self, request: planner_pb2.PlanRequest) -> planner_pb2.PlanResponse:
        self.check_provider(request.provider)
        host = await self.host(request.host_id)
        profile = await self.observe(host.observer_addr)
        goal = goals.infer(profile, request.intent)
        return planner_pb2.PlanResponse(cycle_id=uuid.uuid4().hex, goal=goal,
                                        candidates=await self.candidates(goal, profile))

    async def candidates(self, goal: goal_pb2.OptimizationGoal,
                         profile: profile_pb2.WorkloadProfile) -> cycle_pb2.CandidateList:
        """Library candidates, ranked by the learner's outcomes for similar workloads. Without
        the learner the library order stands (and the log says why)."""
        found = synthesis.candidates(goal, profile)
        if not found.candidates:
            return found
        request = learner_pb2.SearchPoliciesRequest(signature=profile.signature, host=profile.host, goal=goal)
        try:
            async with rpc.channel(self._learner_addr, self._rpc_timeout_s) as channel:
                search = await learner_pb2_grpc.LearnerServiceStub(channel).SearchPolicies(request)
        except grpc.aio.AioRpcError as exc:
            log.warning("the learner could not rank the candidates (%s: %s); using the library order",
                        exc.code().name, exc.details())
            return found
        return synthesis.rank(found, search)

    def check_provider(self, provider: str) -> None:
        if provider not in ("", *PROVIDERS):
            raise InvalidArgument(f"goal provider {provider!r} is not available; use one of "
                                  f"{', '.join(PROVIDERS)} (empty for the default)")

    async def host(self, host_id: str) -> host_pb2.HostRegistration:
        return await self._hosts.get(host_id)

    async def observe(self, observer_addr: str) -> profile_pb2.WorkloadProfile:
        request = observer_pb2.GetProfileRequest(detail=profile_pb2.DETAIL_LEVEL_SUMMARY)
        request.window.FromMilliseconds(int(OBSERVE_WINDOW_S * 1000))
        async with rpc.channel(observer_addr, self._rpc_timeout_s + OBSERVE_WINDOW_S) as channel:
            return await observer_pb2_grpc.ObserverServiceStub(channel).GetProfile(request)
