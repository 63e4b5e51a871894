"""The planner's gRPC servicer (thin: the work is in the domain modules)."""

from __future__ import annotations

from schedcp.service import GrpcService, ServiceContext
from schedcp.v1 import planner_pb2, planner_pb2_grpc
from services.planner.hosts import HostDirectory


class PlannerServicer(planner_pb2_grpc.PlannerServiceServicer):
    """ListHosts is served here; Tune and Plan answer UNIMPLEMENTED until goal inference and
    synthesis land."""

    def __init__(self, hosts: HostDirectory) -> None:
        self._hosts = hosts

    async def ListHosts(self, request, context):
        return planner_pb2.ListHostsResponse(hosts=await self._hosts.list())


async def build(ctx: ServiceContext) -> list[GrpcService]:
    return [GrpcService.of(PlannerServicer(HostDirectory(ctx.bus)), planner_pb2, planner_pb2_grpc)]
