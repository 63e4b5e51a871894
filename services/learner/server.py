"""The learner's gRPC servicer (thin: the work is in the domain modules)."""

from __future__ import annotations

from schedcp.service import GrpcService, ServiceContext
from schedcp.v1 import learner_pb2, learner_pb2_grpc
from services.learner import seeding
from services.learner.repository import PolicyRepository


class LearnerServicer(learner_pb2_grpc.LearnerServiceServicer):
    """GetPolicy and ListPolicies read the repository (seeded from the library at start);
    outcome ingestion, search and PutPolicy land with the learner issue and answer
    UNIMPLEMENTED until then."""

    def __init__(self, repository: PolicyRepository) -> None:
        self._repository = repository

    async def GetPolicy(self, request, context):
        return await self._repository.get(request.name)

    async def ListPolicies(self, request, context):
        return learner_pb2.ListPoliciesResponse(policies=await self._repository.list(request.kind))


async def build(ctx: ServiceContext) -> list[GrpcService]:
    report = await seeding.seed(ctx.bus)
    ctx.details["library"] = (f"{len(report.added) + len(report.updated) + len(report.unchanged)} policies "
                              f"({len(report.added)} added, {len(report.updated)} updated at start)")
    return [GrpcService.of(LearnerServicer(PolicyRepository(ctx.bus)), learner_pb2, learner_pb2_grpc)]
