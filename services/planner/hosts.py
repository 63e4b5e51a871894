"""The planner's view of the fleet: the host registry the observers keep in JetStream KV."""

from __future__ import annotations

import logging

from google.protobuf.message import DecodeError

from schedcp import topology
from schedcp.bus import Bus
from schedcp.errors import InvalidArgument, NotFound
from schedcp.v1 import host_pb2

log = logging.getLogger(__name__)


class HostDirectory:
    """Reads host registrations; entries expire when a host's observer stops refreshing them."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def list(self) -> list[host_pb2.HostRegistration]:
        hosts = []
        for key, value in await self._bus.kv_entries(topology.HOSTS_BUCKET):
            registration = host_pb2.HostRegistration()
            try:
                registration.ParseFromString(value)
            except DecodeError:
                log.warning("host registry entry %r is not a HostRegistration; skipped", key)
                continue
            hosts.append(registration)
        return hosts

    async def get(self, host_id: str) -> host_pb2.HostRegistration:
        """The registration of `host_id`; a clear error naming the known hosts otherwise."""
        hosts = await self.list()
        known = ", ".join(sorted(h.host_id for h in hosts)) or "none"
        if not host_id:
            raise InvalidArgument(f"host_id is required (registered hosts: {known})")
        for host in hosts:
            if host.host_id == host_id:
                return host
        raise NotFound(f"host {host_id!r} is not registered (registered hosts: {known}); is its observer running?")
