"""Verdicts kept in the `schedcp_verdicts` KV bucket: by id (GetVerdict) and by what was asked
(the artifact as sent, and the kernel), so the same question is answered once.

Keys: `id.<verdict_id>` holds the Verdict; `for.<request digest>.<kernel>` holds the id of the
latest verdict for that question, asked of these very rules: the kernel part also hashes the
verifier's own code (RULES), which the signed claims carry too, so a verdict reached before a
rule changed is not served after it, whatever the bucket's keys say.
Whoever can write the bucket is not trusted: a cached verdict is served only if its signature
checks out with the key the verifier holds now, its displayed claims are the signed ones, it
answers this very question, and it has not expired.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

from nats.js.errors import KeyNotFoundError

from schedcp import domain, toolchain
from schedcp.domain import artifacts, verdicts
from schedcp.runtime import topology
from schedcp.runtime.bus import Bus
from schedcp.runtime.errors import InvalidArgument, NotFound
from schedcp.v1 import verdict_pb2, verifier_pb2

log = logging.getLogger(__name__)
_ID_CHARS = set("0123456789abcdef")
# The rules a verdict is reached by: the verifier's sources (stages, checks, bounds), the
# toolchain that builds and reads the object and the domain rules they use. A new rule (the
# raw-read pass of SCX016, say) must not leave an approval it would refuse in the cache for its
# week; a change that alters no rule costs one verification more per question. The clang,
# libbpf and sandbox kernel versions are not in it (docs/verifier.md).
_SOURCES = (Path(__file__).parent, Path(toolchain.__file__).parent, Path(domain.__file__).parent)
RULES = hashlib.sha256(b"".join(path.read_bytes() for folder in _SOURCES
                                for path in sorted(folder.glob("*.py")))).hexdigest()[:16]


class VerdictCache:
    def __init__(self, bus: Bus, trust_key: verifier_pb2.TrustKey) -> None:
        self._bus = bus
        self._trust = trust_key

    async def lookup(self, request_digest: str, kernel: verdict_pb2.TargetKernel) -> verdict_pb2.Verdict | None:
        """A still-valid verdict for this question, or None."""
        verdict_id = await self._get(_question_key(request_digest, kernel))
        if verdict_id is None:
            return None
        try:
            verdict = await self.get(verdict_id.decode())
        except NotFound:
            return None
        try:
            claims = verdicts.authentic_claims(verdict.signed, [self._trust])
        except verdicts.UntrustedVerdict:
            log.warning("cached verdict %s does not verify with this verifier's key; ignoring it", verdict_id)
            return None
        if (claims != verdict.claims or claims.request_digest != request_digest or claims.rules != RULES
                or not verdicts.kernel_matches(claims.kernel, kernel)
                or claims.artifact_digest != artifacts.digest_of(verdict.artifact)
                or claims.expires_at.ToSeconds() <= time.time() + 60):
            return None
        return verdict

    async def put(self, verdict: verdict_pb2.Verdict) -> None:
        kv = await self._bus.kv(topology.VERDICTS_BUCKET)
        verdict_id = verdict.claims.verdict_id
        await kv.put(f"id.{verdict_id}", verdict.SerializeToString(deterministic=True))
        await kv.put(_question_key(verdict.request_digest, verdict.claims.kernel), verdict_id.encode())

    async def get(self, verdict_id: str) -> verdict_pb2.Verdict:
        if not verdict_id or not set(verdict_id) <= _ID_CHARS or len(verdict_id) > 64:
            raise InvalidArgument(f"verdict id {verdict_id!r} is not a verdict id (lower-case hex)")
        data = await self._get(f"id.{verdict_id}")
        if data is None:
            raise NotFound(f"no verdict {verdict_id} (verdicts are kept {topology.VERDICTS_BUCKET.ttl_s / 86400:g} "
                           "days)")
        verdict = verdict_pb2.Verdict()
        verdict.ParseFromString(data)
        return verdict

    async def _get(self, key: str) -> bytes | None:
        kv = await self._bus.kv(topology.VERDICTS_BUCKET)
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            return None
        return entry.value or None


def _question_key(request_digest: str, kernel: verdict_pb2.TargetKernel) -> str:
    # KV keys allow [-/_=.a-zA-Z0-9]: a release like "6.18.12+deb13" does not fit, its hash does.
    kernel_part = hashlib.sha256(f"{verdicts.kernel_key(kernel)}|{RULES}".encode()).hexdigest()[:32]
    return f"for.{request_digest}.{kernel_part}"
