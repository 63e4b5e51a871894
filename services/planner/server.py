"""The planner's gRPC servicer (thin: the work is in the domain modules)."""

from __future__ import annotations

from schedcp.runtime import tls
from schedcp.runtime.bus import Bus
from schedcp.runtime.config import Settings
from schedcp.runtime.service import GrpcService, ServiceContext
from schedcp.v1 import planner_pb2, planner_pb2_grpc, profile_pb2, rollout_pb2, rollout_pb2_grpc
from services.planner import audit, llm, triggers
from services.planner.cycle import Cycle
from services.planner.fleet import Fleet
from services.planner.hosts import HostDirectory
from services.planner.leases import CycleLeases
from services.planner.planning import Planner
from services.planner.rollout import Rollouts
from services.planner.triggers import DriftWatcher


class PlannerServicer(planner_pb2_grpc.PlannerServiceServicer):
    def __init__(self, hosts: HostDirectory, planner: Planner, cycle: Cycle, bus: Bus, settings: Settings) -> None:
        self._hosts = hosts
        self._settings = settings
        self._bus = bus
        self._planner = planner
        self._cycle = cycle

    async def Tune(self, request, context):
        async for event in self._cycle.tune(request):
            yield event

    async def Plan(self, request, context):
        return await self._planner.plan(request)

    async def SetAuto(self, request, context):
        host = await self._hosts.get(request.host_id)
        await triggers.set_auto(self._bus, host.host_id, request.enabled)
        return planner_pb2.SetAutoResponse(host_id=host.host_id, enabled=request.enabled,
                                           message=self._auto_message(host.host_id, request.enabled))

    def _auto_message(self, host: str, enabled: bool) -> str:
        interval = f"at most every {self._settings.planner_min_interval_s:g} s"
        if self._settings.planner_auto:
            return f"this planner tunes every host automatically (SCHEDCP_PLANNER_AUTO), {host} included, {interval}"
        if enabled:
            return (f"automatic tuning on for {host}: tuned on its next profile, then whenever its workload "
                    f"changes, {interval}; `schedcp history {host}` shows what was done")
        return f"automatic tuning off for {host}"

    async def ListHosts(self, request, context):
        if request.host_ids:
            return planner_pb2.ListHostsResponse(hosts=[await self._hosts.get(host) for host in request.host_ids])
        return planner_pb2.ListHostsResponse(hosts=await self._hosts.list())

    async def ListAudit(self, request, context):
        return planner_pb2.ListAuditResponse(records=await audit.newest(self._bus, request.host_id, request.limit))

    async def LlmStatus(self, request, context):
        return await llm.status(self._settings, request)


class RolloutServicer(rollout_pb2_grpc.RolloutServiceServicer):
    def __init__(self, rollouts: Rollouts) -> None:
        self._rollouts = rollouts

    async def StartRollout(self, request, context):
        return await self._rollouts.start(request, tls.caller(context))

    async def GetRollout(self, request, context):
        return await self._rollouts.get(request.rollout_id, request.with_hosts)

    async def ListRollouts(self, request, context):
        return rollout_pb2.ListRolloutsResponse(rollouts=await self._rollouts.list())

    async def PauseRollout(self, request, context):
        return await self._rollouts.pause(request.rollout_id, tls.caller(context))

    async def ResumeRollout(self, request, context):
        return await self._rollouts.resume(request.rollout_id, tls.caller(context))

    async def AbortRollout(self, request, context):
        return await self._rollouts.abort(request.rollout_id, tls.caller(context), request.reason)

    async def ApproveRollout(self, request, context):
        return await self._rollouts.approve(request.rollout_id, tls.caller(context))


async def build(ctx: ServiceContext) -> list[GrpcService]:
    hosts = HostDirectory(ctx.bus)
    planner = Planner(hosts, ctx.settings, ctx.bus)
    leases = CycleLeases(ctx.bus, ctx.settings.planner_lease_s)
    await leases.start()
    ctx.on_close(leases.close)
    cycle = Cycle(planner, ctx.bus, ctx.settings.verifier_addr, ctx.settings.canary_window_s, ctx.settings.tune_budget,
                  leases)
    ctx.on_close(cycle.close)
    fleet = Fleet(cycle, planner, hosts, ctx.settings)
    rollouts = Rollouts(ctx.bus, hosts, fleet, ctx.settings, leases.replica)
    ctx.on_close(rollouts.close)

    async def tune_host(profile: profile_pb2.WorkloadProfile) -> None:
        # The events are published on schedcp.cycle.<host>; a kept policy may make a proposal.
        await rollouts.after_automatic_cycle(
            [e async for e in cycle.tune(planner_pb2.TuneRequest(host_id=profile.host.host_id), profile)])

    # Always watching: without SCHEDCP_PLANNER_AUTO only the hosts opted in are tuned.
    watcher = DriftWatcher(ctx.bus, tune_host, ctx.settings.planner_min_interval_s, ctx.settings.planner_max_cycles,
                           every_host=ctx.settings.planner_auto)
    await ctx.bus.at_start("following the profile stream", watcher.start)
    ctx.on_close(watcher.close)
    ctx.details["auto"] = (f"every host, at most every {ctx.settings.planner_min_interval_s:g} s per host"
                           if ctx.settings.planner_auto else "hosts opted in (schedcp tune HOST --auto)")
    await rollouts.resume_all()
    servicer = PlannerServicer(hosts, planner, cycle, ctx.bus, ctx.settings)
    return [GrpcService.of(servicer, planner_pb2, planner_pb2_grpc),
            GrpcService.of(RolloutServicer(rollouts), rollout_pb2, rollout_pb2_grpc)]
