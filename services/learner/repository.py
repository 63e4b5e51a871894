"""The policy repository: PolicyRecords in JetStream KV, keyed by policy name."""

from __future__ import annotations

import logging
import re

from nats.js.errors import KeyNotFoundError

from schedcp import topology
from schedcp.bus import Bus
from schedcp.errors import InvalidArgument, NotFound
from schedcp.v1 import policy_pb2

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidArgument(
            f"policy name {name!r} is invalid: use 1-64 lower-case letters, digits, '-' or '_'"
        )
    return name


class PolicyRepository:
    """Reads and writes policy records; the newest version of a name is the KV's latest value."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def get(self, name: str) -> policy_pb2.PolicyRecord:
        kv = await self._bus.kv(topology.POLICIES_BUCKET)
        try:
            entry = await kv.get(check_name(name))
        except KeyNotFoundError:
            raise NotFound(f"no policy named {name!r} in the repository") from None
        return _parse(entry.value)

    async def latest(self, name: str) -> policy_pb2.PolicyRecord | None:
        """The newest version of `name`, or None when the repository has no such policy."""
        try:
            return await self.get(name)
        except NotFound:
            return None

    async def put(self, record: policy_pb2.PolicyRecord) -> int:
        """Store a new version of a policy (the bucket keeps earlier ones); its KV revision."""
        kv = await self._bus.kv(topology.POLICIES_BUCKET)
        return await kv.put(check_name(record.metadata.name), record.SerializeToString(deterministic=True))

    async def versions(self, name: str) -> list[policy_pb2.PolicyRecord]:
        """Every stored version of `name`, oldest first."""
        kv = await self._bus.kv(topology.POLICIES_BUCKET)
        try:
            entries = await kv.history(check_name(name))
        except KeyNotFoundError:
            return []
        return [_parse(e.value) for e in entries if e.value]

    async def list(self, kind: int = policy_pb2.POLICY_KIND_UNSPECIFIED) -> list[policy_pb2.PolicyRecord]:
        records = [_parse(value) for _, value in await self._bus.kv_entries(topology.POLICIES_BUCKET)]
        return [r for r in records if kind in (policy_pb2.POLICY_KIND_UNSPECIFIED, r.metadata.kind)]


def _parse(data: bytes) -> policy_pb2.PolicyRecord:
    record = policy_pb2.PolicyRecord()
    record.ParseFromString(data)
    return record
