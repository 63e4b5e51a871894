"""Leases: which planner replica runs which cycle or rollout, so that a replica that dies (SIGKILL,
a lost machine: no chance to record anything) leaves neither a cycle open nor a rollout unrun.

Rollouts (rollout.py) hold leases under `rollout.<id>` the same way; another replica takes an
expired one over and resumes the rollout from its stored state.


A replica holds a lease on every cycle it runs: key `cycle.<id>` in the schedcp_planner bucket
({"replica", "host", "expires"}), renewed every third of the lease while the cycle runs and
deleted once the cycle's result is recorded. Every replica also sweeps the bucket: a lease that
expired (its holder stopped renewing it) is taken over by compare-and-set, so one replica wins,
and the cycle is closed with a result that names the replica that stopped and says what becomes
of a deployment it had started: nothing is left half-done there, because the host's executor
runs the canary on its own, keeps or rolls back, and publishes the outcome for the learner.

Expiry is judged on the wall clocks of the replicas: a lease of LEASE_S tolerates clocks a few
seconds apart. A replica stalled for longer than a lease (not dead) would find its cycle closed
by another and then record a second result; the lease is long enough that only a frozen
process does that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from schedcp.runtime import tasks, topology
from schedcp.runtime.bus import Bus
from schedcp.v1 import common_pb2, cycle_pb2

log = logging.getLogger(__name__)
LEASE_S = 15.0
PREFIX = "cycle."
ROLLOUT_PREFIX = "rollout."


def replica_name() -> str:
    """This process among the planner's replicas: machine, pid and a random part (pids recur)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class LeaseTable:
    """Leases under one prefix of the schedcp_planner bucket: {"replica", "expires", ...}."""

    def __init__(self, bus: Bus, prefix: str, lease_s: float, replica: str) -> None:
        self._bus = bus
        self.prefix = prefix
        self.lease_s = lease_s
        self.replica = replica
        self.held: dict[str, dict] = {}  # id -> what the lease says besides owner and expiry

    async def _kv(self):
        return await self._bus.kv(topology.PLANNER_BUCKET)

    def _record(self, info: dict) -> bytes:
        return json.dumps({**info, "replica": self.replica, "expires": time.time() + self.lease_s}).encode()

    async def hold(self, key: str, **info) -> None:
        self.held[key] = info
        await (await self._kv()).put(self.prefix + key, self._record(info))

    async def renew(self) -> None:
        kv = await self._kv()
        for key, info in list(self.held.items()):
            await kv.put(self.prefix + key, self._record(info))

    async def release(self, key: str) -> None:
        if self.held.pop(key, None) is None:
            return
        with contextlib.suppress(Exception):  # an expired lease would only be taken over, harmlessly late
            await (await self._kv()).delete(self.prefix + key)

    async def claim(self, key: str, if_absent: bool = False, **info) -> dict | None:
        """Take the lease if its holder let it expire (or, `if_absent`, if nobody holds it): the
        record it replaced ({} when there was none), or None when another replica holds it or
        won the race. Without `if_absent` a lease gone meanwhile stays gone: the replica that
        took it over has done its work and released it."""
        kv = await self._kv()
        try:
            entry = await kv.get(self.prefix + key)
        except KeyNotFoundError:
            if not if_absent:
                return None
            entry = None
        try:
            if entry is None:
                await kv.create(self.prefix + key, self._record(info))
                before = {}
            else:
                before = json.loads(entry.value)
                if before["replica"] == self.replica or time.time() < before["expires"]:
                    return None
                await kv.update(self.prefix + key, self._record(info), last=entry.revision)
        except KeyWrongLastSequenceError:
            return None  # created, renewed or taken by another replica meanwhile
        self.held[key] = info
        return before

    async def keep(self, sweep: Callable[[], Awaitable[object]], what: str) -> None:
        """Every third of a lease: renew the leases held, then `sweep` (take over what others let
        expire). Runs until cancelled."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self.renew()
                await sweep()
            except Exception as exc:  # NATS away for a while: the next round tries again
                log.warning("could not renew or sweep %s leases: %s", what, exc)

    async def expired(self) -> list[tuple[str, dict]]:
        """The leases of other replicas that expired: (key, record)."""
        found = []
        for key, value in await self._bus.kv_entries(topology.PLANNER_BUCKET, self.prefix):
            record = json.loads(value)
            if record["replica"] != self.replica and time.time() >= record["expires"]:
                found.append((key.removeprefix(self.prefix), record))
        return found


class CycleLeases:
    """Holds this replica's cycle leases and closes the cycles of replicas that stopped."""

    def __init__(self, bus: Bus, lease_s: float = LEASE_S, replica: str = "") -> None:
        self._bus = bus
        self.table = LeaseTable(bus, PREFIX, lease_s, replica or replica_name())
        self.replica = self.table.replica
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.table.keep(self.sweep, "cycle"), name="cycle leases")

    async def close(self) -> None:
        """Stop renewing and sweeping. Leases still held are left to expire: a planner that
        stops records its open cycles' ends itself (Cycle.close), which releases them."""
        await tasks.stop([self._task], "cycle leases")

    async def hold(self, cycle_id: str, host_id: str) -> None:
        await self.table.hold(cycle_id, host=host_id)

    async def release(self, cycle_id: str) -> None:
        """The cycle's result is recorded: nobody needs to close it."""
        await self.table.release(cycle_id)

    async def sweep(self) -> list[str]:
        """Close the cycles whose leases expired; returns their ids."""
        closed = []
        for cycle_id, record in await self.table.expired():
            if await self.table.claim(cycle_id, host=record["host"], closing=record["replica"]) is None:
                continue  # renewed, released or taken by another replica meanwhile
            await self._close(cycle_id, record)
            await self.table.release(cycle_id)
            closed.append(cycle_id)
        return closed

    async def _close(self, cycle_id: str, record: dict) -> None:
        stopped = time.strftime("%H:%M:%S", time.localtime(record["expires"] - self.table.lease_s))
        message = (f"closed by planner replica {self.replica}: replica {record['replica']}, which ran this cycle, "
                   f"stopped renewing its lease after {stopped} (it died or lost NATS); a deployment it had started "
                   "goes on without it: the host's executor judges its canary, keeps or rolls it back and "
                   "publishes the outcome for the learner (`schedcp history` shows it)")
        event = cycle_pb2.CycleEvent(cycle_id=cycle_id, host_id=record["host"], stage=cycle_pb2.CYCLE_STAGE_RESULT,
                                     status=common_pb2.STAGE_STATUS_FAILED, message=message)
        event.at.GetCurrentTime()
        await self._bus.publish(topology.subject(topology.Kind.CYCLE, record["host"], cycle_id), event,
                                msg_id=f"{cycle_id}-closed")
        log.warning("cycle %s on %s: %s", cycle_id[:8], record["host"], message)
