"""The verifier's gRPC servicer (thin: the work is in the domain modules)."""

from __future__ import annotations

from schedcp.runtime.service import GrpcService, ServiceContext
from schedcp.toolchain.build import Toolchain
from schedcp.v1 import verifier_pb2, verifier_pb2_grpc
from services.verifier import footprint
from services.verifier.pipeline import Pipeline, PipelineOptions
from services.verifier.signing import SigningKey


class VerifierServicer(verifier_pb2_grpc.VerifierServiceServicer):
    def __init__(self, key: SigningKey, pipeline: Pipeline) -> None:
        self._key = key
        self._pipeline = pipeline

    async def Verify(self, request, context):
        async for progress in self._pipeline.verify(request):
            yield progress

    async def GetVerdict(self, request, context):
        return await self._pipeline.cache.get(request.verdict_id)

    async def GetTrustKey(self, request, context):
        return self._key.trust_key()


async def build(ctx: ServiceContext) -> list[GrpcService]:
    settings = ctx.settings
    key = SigningKey.load_or_create(settings.data_dir / "verifier" / "ed25519.pem")
    ctx.details["key_id"] = key.key_id
    ctx.details["vm_slots"] = str(settings.verifier_vm_slots)
    options = PipelineOptions(verdict_ttl_s=settings.verdict_ttl_s, vm_slots=settings.verifier_vm_slots,
                              memory_budget=footprint.Budget.of_mib(settings.verifier_memory_budget_mib))
    pipeline = Pipeline(key, ctx.bus, Toolchain(settings.cache_dir), options)
    return [GrpcService.of(VerifierServicer(key, pipeline), verifier_pb2, verifier_pb2_grpc)]
