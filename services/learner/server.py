"""The learner's gRPC servicer (thin: the work is in the domain modules)."""

from __future__ import annotations

from schedcp.domain import verdicts
from schedcp.runtime.config import Settings
from schedcp.runtime.errors import InvalidArgument, NotFound
from schedcp.runtime.service import GrpcService, ServiceContext
from schedcp.v1 import learner_pb2, learner_pb2_grpc
from services.learner import search, seeding
from services.learner.outcomes import OutcomeLedger
from services.learner.repository import PolicyRepository


class LearnerServicer(learner_pb2_grpc.LearnerServiceServicer):
    def __init__(self, repository: PolicyRepository, ledger: OutcomeLedger, settings: Settings) -> None:
        self._repository = repository
        self._ledger = ledger
        self._settings = settings

    async def GetPolicy(self, request, context):
        if request.version:
            found = [r for r in await self._repository.versions(request.name) if r.version == request.version]
            if not found:
                raise NotFound(f"policy {request.name!r} has no version {request.version!r}")
            record = found[-1]
        else:
            record = await self._repository.get(request.name)
        record.effects.extend(self._ledger.effect_stats(record.metadata.name))
        return record

    async def ListPolicies(self, request, context):
        response = learner_pb2.ListPoliciesResponse(policies=await self._repository.list(request.kind))
        for record in response.policies:  # copies: the repository's listing is shared
            record.effects.extend(self._ledger.effect_stats(record.metadata.name))
        return response

    async def SearchPolicies(self, request, context):
        return search.search(request, await self._repository.list(), self._ledger)

    async def PutPolicy(self, request, context):
        # Read per call: in the local stack the verifier may publish its key after we started.
        return await self._repository.put_verified(request, verdicts.trusted_keys(self._settings))

    async def History(self, request, context):
        if bool(request.policy_name) == bool(request.host_id):
            raise InvalidArgument("History needs exactly one of policy_name and host_id")
        return learner_pb2.LearnerHistoryResponse(
            outcomes=self._ledger.history(request.policy_name, request.host_id, request.limit or 100))


async def build(ctx: ServiceContext) -> list[GrpcService]:
    # Each is idempotent, and each is a JetStream request that a loaded or still-forming server
    # can time out at start (seen in CI: a 3-node cluster electing leaders beside busy CPUs).
    report = await ctx.bus.at_start("seeding the policy library", lambda: seeding.seed(ctx.bus))
    ctx.details["library"] = (f"{len(report.added) + len(report.updated) + len(report.unchanged)} policies "
                              f"({len(report.added)} added, {len(report.updated)} updated at start)")
    ledger = OutcomeLedger(ctx.bus)
    await ctx.bus.at_start("loading the outcomes", ledger.load)
    await ctx.bus.at_start("following the outcome stream", ledger.consume)
    servicer = LearnerServicer(PolicyRepository(ctx.bus), ledger, ctx.settings)
    return [GrpcService.of(servicer, learner_pb2, learner_pb2_grpc)]
