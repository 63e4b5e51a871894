"""The observer's gRPC servicer (thin: the work is in the domain modules)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from schedcp.runtime.service import GrpcService, ServiceContext
from schedcp.v1 import observer_pb2, observer_pb2_grpc
from services.observer import hostfacts
from services.observer.profiler import Profiler
from services.observer.publisher import ProfilePublisher
from services.observer.registry import HostRegistry
from services.observer.sampling import Sampler


class ObserverServicer(observer_pb2_grpc.ObserverServiceServicer):
    def __init__(self, facts, profiler: Profiler) -> None:
        self._facts = facts
        self._profiler = profiler

    async def HostInfo(self, request, context):
        return observer_pb2.HostInfoResponse(facts=self._facts())

    async def GetProfile(self, request, context):
        return await self._profiler.profile(request)

    async def Measure(self, request, context):
        return await self._profiler.measure(request)


async def build(ctx: ServiceContext) -> list[GrpcService]:
    settings = ctx.settings
    # Compiling the BPF probes takes about a second; keep the event loop free meanwhile.
    prebuilt = Path(settings.observer_bpf_object) if settings.observer_bpf_object else None
    loader = Path(settings.loader_path) if settings.loader_path else None
    sampler = await asyncio.to_thread(Sampler, settings.observer_mode, prebuilt, loader)

    async def close_sampler() -> None:
        sampler.close()  # quick: ends windows in progress, detaches the probes

    ctx.on_close(close_sampler)
    ctx.details["sampler"] = sampler.name + (f" ({sampler.note})" if sampler.note else "")
    modes = ["procfs", "bpf"] if sampler.name == "bpf" else ["procfs"]

    def facts():
        return hostfacts.collect(settings.host_id, observer_modes=modes)

    profiler = Profiler(sampler, facts)
    publisher = ProfilePublisher(ctx.bus, settings.host_id, sampler, profiler, settings.profile_interval_s)
    registry = HostRegistry(
        ctx.bus, settings.host_id, observer_addr=settings.observer_advertise_addr or ctx.listen_addr,
        executor_addr=settings.executor_advertise_addr or settings.executor_addr,
        facts=facts, workload_cluster=lambda: publisher.workload_cluster,
    )
    await registry.register()
    ctx.spawn(registry.keep_registered(settings.heartbeat_interval_s), "host-registry")
    if settings.profile_interval_s > 0:
        ctx.spawn(publisher.run(), "profile-publisher")
    return [GrpcService.of(ObserverServicer(facts, profiler), observer_pb2, observer_pb2_grpc)]
