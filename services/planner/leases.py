"""Cycle leases: which planner replica runs which cycle, so that a replica that dies mid-cycle
(SIGKILL, a lost machine: no chance to record the end of its cycles) does not leave them open.

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

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError

from schedcp.runtime import topology
from schedcp.runtime.bus import Bus
from schedcp.v1 import common_pb2, cycle_pb2

log = logging.getLogger(__name__)
LEASE_S = 15.0
PREFIX = "cycle."


def replica_name() -> str:
    """This process among the planner's replicas: machine, pid and a random part (pids recur)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class CycleLeases:
    """Holds this replica's cycle leases and closes the cycles of replicas that stopped."""

    def __init__(self, bus: Bus, lease_s: float = LEASE_S, replica: str = "") -> None:
        self._bus = bus
        self.lease_s = lease_s
        self.replica = replica or replica_name()
        self._held: dict[str, str] = {}  # cycle id -> host
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._keep(), name="cycle leases")

    async def close(self) -> None:
        """Stop renewing and sweeping. Leases still held are left to expire: a planner that
        stops records its open cycles' ends itself (Cycle.close), which releases them."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def hold(self, cycle_id: str, host_id: str) -> None:
        self._held[cycle_id] = host_id
        await self._write(cycle_id, host_id)

    async def release(self, cycle_id: str) -> None:
        """The cycle's result is recorded: nobody needs to close it."""
        if self._held.pop(cycle_id, None) is None:
            return
        kv = await self._bus.kv(topology.PLANNER_BUCKET)
        with contextlib.suppress(Exception):  # an expired lease would only be closed again, harmlessly late
            await kv.delete(PREFIX + cycle_id)

    async def _write(self, cycle_id: str, host_id: str) -> None:
        kv = await self._bus.kv(topology.PLANNER_BUCKET)
        record = {"replica": self.replica, "host": host_id, "expires": time.time() + self.lease_s}
        await kv.put(PREFIX + cycle_id, json.dumps(record).encode())

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                for cycle_id, host_id in list(self._held.items()):
                    await self._write(cycle_id, host_id)
                await self.sweep()
            except Exception as exc:  # NATS away for a while: the next round tries again
                log.warning("could not renew or sweep cycle leases: %s", exc)

    async def sweep(self) -> list[str]:
        """Close the cycles whose leases expired; returns their ids."""
        kv = await self._bus.kv(topology.PLANNER_BUCKET)
        try:
            keys = [k for k in await kv.keys() if k.startswith(PREFIX)]
        except NoKeysError:
            return []
        closed = []
        for key in keys:
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                continue  # released meanwhile
            record = json.loads(entry.value)
            if record["replica"] == self.replica or time.time() < record["expires"] or record.get("closing"):
                continue
            try:
                await kv.update(key, json.dumps({**record, "closing": self.replica}).encode(), last=entry.revision)
            except KeyWrongLastSequenceError:
                continue  # renewed, released or taken by another replica meanwhile
            cycle_id = key.removeprefix(PREFIX)
            await self._close(cycle_id, record)
            with contextlib.suppress(Exception):
                await kv.delete(key)
            closed.append(cycle_id)
        return closed

    async def _close(self, cycle_id: str, record: dict) -> None:
        stopped = time.strftime("%H:%M:%S", time.localtime(record["expires"] - self.lease_s))
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
