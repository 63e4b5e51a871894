"""The policy repository: PolicyRecords in JetStream KV, keyed by policy name.

Searches read every record, and a planner serving a fleet searches many times a second; the
whole list is therefore read at most once per LIST_CACHE_S, by one caller while the others
wait for it (each read of the bucket's keys costs a JetStream consumer, and the server caps
them: the planner bench hit "maximum consumers limit reached" before this). This learner's own
writes are seen at once; another replica's within LIST_CACHE_S."""

from __future__ import annotations

import asyncio
import logging
import time

from google.protobuf import timestamp_pb2
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from schedcp.domain import artifacts, verdicts
from schedcp.runtime import topology
from schedcp.runtime.bus import Bus
from schedcp.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from schedcp.v1 import learner_pb2, policy_pb2, verifier_pb2

log = logging.getLogger(__name__)
LIST_CACHE_S = 1.0


class PolicyRepository:
    """Reads and writes policy records; the newest version of a name is the KV's latest value."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._listing: list[policy_pb2.PolicyRecord] | None = None
        self._listed_at = 0.0
        self._listing_lock = asyncio.Lock()

    async def get(self, name: str) -> policy_pb2.PolicyRecord:
        record, _ = await self.latest(name)
        if record is None:
            raise NotFound(f"no policy named {name!r} in the repository")
        return record

    async def latest(self, name: str) -> tuple[policy_pb2.PolicyRecord | None, int]:
        """The newest version of `name` and its KV revision; (None, 0) when there is none."""
        kv = await self._bus.kv(topology.POLICIES_BUCKET)
        try:
            entry = await kv.get(artifacts.check_name(name))
        except KeyNotFoundError:
            return None, 0
        return _parse(entry.value), entry.revision

    async def put(self, record: policy_pb2.PolicyRecord, after_revision: int) -> int:
        """Store a new version of a policy (the bucket keeps the last 64), only if the newest is
        still the one at `after_revision` (0: none yet); FailedPrecondition when someone else
        wrote in between. Returns the new KV revision."""
        kv = await self._bus.kv(topology.POLICIES_BUCKET)
        name, data = artifacts.check_name(record.metadata.name), record.SerializeToString(deterministic=True)
        try:
            revision = await (kv.update(name, data, last=after_revision) if after_revision else kv.create(name, data))
        except KeyWrongLastSequenceError:
            raise FailedPrecondition(f"policy {name!r} changed while this version was being stored; retry") from None
        self._listing = None
        return revision

    async def put_verified(self, request: learner_pb2.PutPolicyRequest,
                           trusted: list[verifier_pb2.TrustKey]) -> learner_pb2.PutPolicyResponse:
        """Store a verified policy (LLM-written or an operator's) as a new version: only with the
        verifier's signed approval of exactly this artifact (any kernel)."""
        artifact, metadata = request.artifact, request.metadata
        name = artifacts.check_name(artifact.name)
        if metadata.name and metadata.name != name:
            raise InvalidArgument(f"metadata names {metadata.name!r} but the artifact is {name!r}")
        if artifact.digest != artifacts.digest_of(artifact):
            raise InvalidArgument(f"artifact digest {artifact.digest!r} does not match its content")
        if not trusted:
            raise FailedPrecondition("no trusted verifier key: set SCHEDCP_TRUSTED_VERIFIER_KEYS (the verifier logs "
                                     "its public key at start)")
        claims = verdicts.check(request.verdict, trusted, artifact.digest)
        version = artifact.digest[:12]
        current, revision = await self.latest(name)
        if current is not None and current.version == version:
            return learner_pb2.PutPolicyResponse(policy=current, created=False)
        await artifacts.store(self._bus, artifact)
        now = timestamp_pb2.Timestamp()
        now.GetCurrentTime()
        record = policy_pb2.PolicyRecord(
            metadata=metadata, version=version, origin=artifact.origin or policy_pb2.POLICY_ORIGIN_LLM_WRITTEN,
            origin_cycle_id=artifact.origin_cycle_id, artifact_digest=artifact.digest,
            verdict_ids=[claims.verdict_id], created_at=current.created_at if current else now, updated_at=now)
        record.metadata.name, record.metadata.kind = name, artifact.kind
        await self.put(record, revision)
        return learner_pb2.PutPolicyResponse(policy=record, created=True)

    async def versions(self, name: str) -> list[policy_pb2.PolicyRecord]:
        """Every stored version of `name`, oldest first."""
        kv = await self._bus.kv(topology.POLICIES_BUCKET)
        try:
            entries = await kv.history(artifacts.check_name(name))
        except KeyNotFoundError:
            return []
        return [_parse(e.value) for e in entries if e.value]

    async def list(self, kind: int = policy_pb2.POLICY_KIND_UNSPECIFIED) -> list[policy_pb2.PolicyRecord]:
        async with self._listing_lock:
            if self._listing is None or time.monotonic() - self._listed_at > LIST_CACHE_S:
                entries = await self._bus.kv_entries(topology.POLICIES_BUCKET)
                self._listing, self._listed_at = [_parse(value) for _, value in entries], time.monotonic()
            records = self._listing
        return [r for r in records if kind in (policy_pb2.POLICY_KIND_UNSPECIFIED, r.metadata.kind)]


def _parse(data: bytes) -> policy_pb2.PolicyRecord:
    record = policy_pb2.PolicyRecord()
    record.ParseFromString(data)
    return record
