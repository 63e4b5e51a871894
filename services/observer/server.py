"""The observer's gRPC servicer (thin: the work is in the domain modules)."""

from __future__ import annotations

from schedcp.service import GrpcService, ServiceContext
from schedcp.v1 import observer_pb2, observer_pb2_grpc
from services.observer import hostfacts
from services.observer.registry import HostRegistry


class ObserverServicer(observer_pb2_grpc.ObserverServiceServicer):
    """HostInfo is served here; GetProfile and Measure answer UNIMPLEMENTED until the
    workload analysis engine lands."""

    def __init__(self, host_id: str) -> None:
        self._host_id = host_id

    async def HostInfo(self, request, context):
        return observer_pb2.HostInfoResponse(facts=hostfacts.collect(self._host_id))


async def build(ctx: ServiceContext) -> list[GrpcService]:
    settings = ctx.settings
    registry = HostRegistry(
        ctx.bus, settings.host_id, observer_addr=ctx.listen_addr, executor_addr=settings.executor_addr,
        facts=lambda: hostfacts.collect(settings.host_id),
    )
    await registry.register()
    ctx.spawn(registry.keep_registered(settings.heartbeat_interval_s), "host-registry")
    return [GrpcService.of(ObserverServicer(settings.host_id), observer_pb2, observer_pb2_grpc)]
