"""The observer's gRPC servicer (thin: the work is in the domain modules)."""

from __future__ import annotations

import asyncio

from schedcp.service import GrpcService, ServiceContext
from schedcp.v1 import observer_pb2, observer_pb2_grpc
from services.observer import hostfacts
from services.observer.profiler import Profiler
from services.observer.publisher import ProfilePublisher
from services.observer.registry import HostRegistry
from services.observer.sampling import Sampler


class ObserverServicer(observer_pb2_grpc.ObserverServiceServicer):
    def __init__(self, host_id: str, profiler: Profiler) -> None:
        self._host_id = host_id
        self._profiler = profiler

    async def HostInfo(self, request, context):
        return observer_pb2.HostInfoResponse(facts=hostfacts.collect(self._host_id))

    async def GetProfile(self, request, context):
        return await self._profiler.profile(request)

    async def Measure(self, request, context):
        return await self._profiler.measure(request)


async def build(ctx: ServiceContext) -> list[GrpcService]:
    settings = ctx.settings
    # Compiling the BPF probes takes about a second; keep the event loop free meanwhile.
    sampler = await asyncio.to_thread(Sampler, settings.observer_mode)
    ctx.on_close(lambda: asyncio.to_thread(sampler.close))
    ctx.details["sampler"] = sampler.name + (f" ({sampler.note})" if sampler.note else "")
    profiler = Profiler(sampler, lambda: hostfacts.collect(settings.host_id))

    registry = HostRegistry(
        ctx.bus, settings.host_id, observer_addr=ctx.listen_addr, executor_addr=settings.executor_addr,
        facts=lambda: hostfacts.collect(settings.host_id),
    )
    await registry.register()
    ctx.spawn(registry.keep_registered(settings.heartbeat_interval_s), "host-registry")
    if settings.profile_interval_s > 0:
        publisher = ProfilePublisher(ctx.bus, settings.host_id, sampler, profiler, settings.profile_interval_s)
        ctx.spawn(publisher.run(), "profile-publisher")
    return [GrpcService.of(ObserverServicer(settings.host_id, profiler), observer_pb2, observer_pb2_grpc)]
