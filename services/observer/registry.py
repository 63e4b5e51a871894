"""Keeps this host's entry in the host registry (JetStream KV) fresh while the observer runs.

The bucket has a TTL, so a host whose observer stops disappears from `ListHosts` by itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from google.protobuf import timestamp_pb2

from schedcp import __version__
from schedcp.runtime import topology
from schedcp.runtime.bus import Bus
from schedcp.v1 import host_pb2

log = logging.getLogger(__name__)


class HostRegistry:
    """Writes one HostRegistration under the host id, again every interval, with the workload
    cluster of the newest published profile (`workload_cluster`: "" while there is none)."""

    def __init__(self, bus: Bus, host_id: str, observer_addr: str, executor_addr: str,
                 facts: Callable[[], host_pb2.HostFacts], workload_cluster: Callable[[], str] = str) -> None:
        self._bus = bus
        self._facts = facts
        self._workload_cluster = workload_cluster
        self._entry = host_pb2.HostRegistration(
            host_id=host_id, observer_addr=observer_addr, executor_addr=executor_addr, version=__version__
        )
        self._entry.registered_at.GetCurrentTime()

    async def register(self) -> None:
        """Write the entry now, with fresh facts and last_seen."""
        entry = host_pb2.HostRegistration()
        entry.CopyFrom(self._entry)
        entry.facts.CopyFrom(self._facts())
        entry.workload_cluster = self._workload_cluster()
        now = timestamp_pb2.Timestamp()
        now.GetCurrentTime()
        entry.last_seen.CopyFrom(now)
        kv = await self._bus.kv(topology.HOSTS_BUCKET)
        await kv.put(entry.host_id, entry.SerializeToString())

    async def keep_registered(self, interval_s: float) -> None:
        while True:
            try:
                await self.register()
            except Exception as exc:  # NATS may be reconnecting; try again next interval
                log.warning("host registration not written: %s", exc)
            await asyncio.sleep(interval_s)
