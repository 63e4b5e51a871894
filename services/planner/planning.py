"""Plan: observe a host, infer the goal, list the candidates; nothing verified or deployed.
(Tune, the full cycle in cycle.py, builds on this.)"""

from __future__ import annotations

import logging
import uuid

import grpc

from schedcp import rpc
from schedcp.config import Settings
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
from services.planner.llm import LlmClient, OpenAIGoals, Usage

log = logging.getLogger(__name__)
OBSERVE_WINDOW_S = 2.0
PROVIDERS = ("rules", "openai")


class Planner:
    def __init__(self, hosts: HostDirectory, settings: Settings) -> None:
        self._hosts = hosts
        self._settings = settings
        self._rpc_timeout_s = settings.rpc_timeout_s
        self._learner_addr = settings.learner_addr
        self.llm = LlmClient(settings)
        self._openai = OpenAIGoals(settings)

    async def plan(self, request: planner_pb2.PlanRequest) -> planner_pb2.PlanResponse:
        self.check_provider(request.provider)
        host = await self.host(request.host_id)
        profile = await self.observe(host.observer_addr)
        usage = Usage()
        goal = await self.goal(profile, request.intent, request.provider, usage)
        return planner_pb2.PlanResponse(cycle_id=uuid.uuid4().hex, goal=goal,
                                        candidates=await self.candidates(goal, profile), llm_usage=usage.message())

    async def goal(self, profile: profile_pb2.WorkloadProfile, intent: str, provider: str,
                   usage: Usage) -> goal_pb2.OptimizationGoal:
        """The goal from the requested provider (the configured one when empty)."""
        if self.provider_of(provider) == "openai":
            return await self._openai.infer(profile, intent, usage)
        return goals.infer(profile, intent)

    def provider_of(self, requested: str) -> str:
        return requested or self._settings.goal_provider

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
