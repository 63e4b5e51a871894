"""The verifier's gRPC servicer (thin: the work is in the domain modules)."""

from __future__ import annotations

from schedcp.service import GrpcService, ServiceContext
from schedcp.v1 import verifier_pb2, verifier_pb2_grpc
from services.verifier.signing import SigningKey


class VerifierServicer(verifier_pb2_grpc.VerifierServiceServicer):
    """GetTrustKey is served here; Verify and GetVerdict answer UNIMPLEMENTED until the stages
    land."""

    def __init__(self, key: SigningKey) -> None:
        self._key = key

    async def GetTrustKey(self, request, context):
        return self._key.trust_key()


async def build(ctx: ServiceContext) -> list[GrpcService]:
    key = SigningKey.load_or_create(ctx.settings.data_dir / "verifier" / "ed25519.pem")
    ctx.details["key_id"] = key.key_id
    return [GrpcService.of(VerifierServicer(key), verifier_pb2, verifier_pb2_grpc)]
