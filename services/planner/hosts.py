"""The planner's view of the fleet: the host registry the observers keep in JetStream KV."""

from __future__ import annotations

import logging

from google.protobuf.message import DecodeError
from nats.js.errors import KeyNotFoundError

from schedcp.runtime import topology
from schedcp.runtime.bus import Bus
from schedcp.runtime.errors import InvalidArgument, NotFound
from schedcp.v1 import host_pb2

log = logging.getLogger(__name__)


class HostDirectory:
    """Reads host registrations; entries expire when a host's observer stops refreshing them."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def list(self) -> list[host_pb2.HostRegistration]:
        hosts = []
        for key, value in await self._bus.kv_entries(topology.HOSTS_BUCKET):
            registration = _parse(key, value)
            if registration is not None:
                hosts.append(registration)
        return hosts

    async def get(self, host_id: str) -> host_pb2.HostRegistration:
        """The registration of `host_id` (one KV read: a planner serves thousands of hosts); a
        clear error naming the known hosts otherwise."""
        if topology.is_kv_key(host_id):
            kv = await self._bus.kv(topology.HOSTS_BUCKET)
            try:
                entry = await kv.get(host_id)
            except KeyNotFoundError:
                entry = None
            registration = _parse(host_id, entry.value) if entry and entry.value else None
            if registration is not None:
                return registration
        known = ", ".join(sorted(h.host_id for h in await self.list())) or "none"
        if not host_id:
            raise InvalidArgument(f"host_id is required (registered hosts: {known})")
        raise NotFound(f"host {host_id!r} is not registered (registered hosts: {known}); is its observer running?")


def _parse(key: str, value: bytes) -> host_pb2.HostRegistration | None:
    registration = host_pb2.HostRegistration()
    try:
        registration.ParseFromString(value)
    except DecodeError:
        log.warning("host registry entry %r is not a HostRegistration; skipped", key)
        return None
    return registration
