"""The planner's view of the fleet: the host registry the observers keep in JetStream KV."""

from __future__ import annotations

import logging

from google.protobuf.message import DecodeError

from schedcp import topology
from schedcp.bus import Bus
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
