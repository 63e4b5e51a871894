"""The executor's gRPC servicer (thin: the work is in the domain modules)."""

from __future__ import annotations

from schedcp import sched_ext
from schedcp.service import GrpcService, ServiceContext
from schedcp.v1 import executor_pb2, executor_pb2_grpc


class ExecutorServicer(executor_pb2_grpc.ExecutorServiceServicer):
    """Status is served here (nothing deployed yet: the backends land with the executor
    issue); Deploy, Rollback and History answer UNIMPLEMENTED until then."""

    def __init__(self, host_id: str) -> None:
        self._host_id = host_id

    async def Status(self, request, context):
        scx = sched_ext.read_state()
        return executor_pb2.StatusResponse(
            host_id=self._host_id, sched_ext=scx, backends=sched_ext.backends(scx)
        )


async def build(ctx: ServiceContext) -> list[GrpcService]:
    return [GrpcService.of(ExecutorServicer(ctx.settings.host_id), executor_pb2, executor_pb2_grpc)]
