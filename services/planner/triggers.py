"""Automatic tuning: follow the hosts' profiles and run a Tune when a host's workload drifted
since it was last tuned: another group dominates the CPU, or one of the main groups changed
class. Every host with SCHEDCP_PLANNER_AUTO, else only the hosts an operator opted in
(`schedcp tune HOST --auto`: key `auto.<host>` in the `schedcp_planner` bucket, see `set_auto`).
At most once per SCHEDCP_PLANNER_MIN_INTERVAL_S per host, and at most
SCHEDCP_PLANNER_MAX_CYCLES cycles at once (the rest wait). The cycle starts from the profile
that triggered it.

Replicas share one durable consumer as a queue group, so each profile reaches one of them;
a host is claimed in the `schedcp_planner` KV bucket by compare-and-set before it is tuned,
so two replicas that see two profiles of one host cannot both tune it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from schedcp.runtime import topology
from schedcp.runtime.bus import Bus, Delivery
from schedcp.v1 import profile_pb2

log = logging.getLogger(__name__)
# A queue subscription names its durable consumer after the queue: one name for both.
CONSUMER = QUEUE = "planner-auto"
MAIN_GROUPS = 5
MIN_CONFIDENCE = 0.5

TuneHost = Callable[[profile_pb2.WorkloadProfile], Awaitable[None]]


def workload_state(profile: profile_pb2.WorkloadProfile) -> dict:
    """What drift is measured on: the dominant group and the classes of the main groups."""
    groups = sorted(profile.groups, key=lambda g: g.features.cpu_share, reverse=True)
    main = [g for g in groups[:MAIN_GROUPS] if g.classification.confidence >= MIN_CONFIDENCE]
    return {"dominant": groups[0].name if groups else "",
            "classes": {g.name: int(g.classification.workload_class) for g in main}}


def drifted(before: dict | None, now: dict) -> str:
    """Why the workload changed ("" when it did not)."""
    if before is None:
        return "first profile seen"
    if before["dominant"] != now["dominant"]:
        return f"{now['dominant']} now dominates (was {before['dominant']})"
    changed = [name for name, cls in now["classes"].items() if name in before["classes"]
               and before["classes"][name] != cls]
    if changed:
        return f"{', '.join(changed)} changed class"
    return ""


def auto_key(host: str) -> str:
    """The opt-in key of one host (host ids have no dots, so it never names a host's record)."""
    return f"auto.{host}"


async def set_auto(bus: Bus, host: str, enabled: bool) -> None:
    """Opt a host in to (or out of) automatic tuning."""
    kv = await bus.kv(topology.PLANNER_BUCKET)
    if enabled:
        await kv.put(auto_key(host), b"1")
    else:
        with contextlib.suppress(KeyNotFoundError):
            await kv.delete(auto_key(host))


async def auto_enabled(bus: Bus, host: str) -> bool:
    kv = await bus.kv(topology.PLANNER_BUCKET)
    try:
        entry = await kv.get(auto_key(host))
    except KeyNotFoundError:
        return False
    return entry.value == b"1"


class DriftWatcher:
    """Tunes drifted hosts: all of them (`every_host`) or those opted in."""

    def __init__(self, bus: Bus, tune: TuneHost, min_interval_s: float, max_cycles: int = 128,
                 every_host: bool = True) -> None:
        self._bus = bus
        self._tune = tune
        self._every_host = every_host
        self._min_interval_s = min_interval_s
        self._slots = asyncio.Semaphore(max_cycles)
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        await self._bus.subscribe(topology.all_hosts(topology.Kind.PROFILE), profile_pb2.WorkloadProfile,
                                  self.on_profile, durable=CONSUMER, queue=QUEUE)

    async def on_profile(self, profile: profile_pb2.WorkloadProfile, delivery: Delivery | None = None) -> None:
        host = profile.host.host_id
        if not host or not (self._every_host or await auto_enabled(self._bus, host)):
            return
        now = workload_state(profile)
        kv = await self._bus.kv(topology.PLANNER_BUCKET)
        try:
            entry = await kv.get(host)
            record, revision = json.loads(entry.value), entry.revision
        except KeyNotFoundError:
            record, revision = None, 0
        why = drifted(record["state"] if record else None, now)
        if not why or (record and time.time() - record["tuned_at"] < self._min_interval_s):
            return
        claim = json.dumps({"state": now, "tuned_at": time.time(), "why": why}).encode()
        try:
            await (kv.update(host, claim, last=revision) if revision else kv.create(host, claim))
        except KeyWrongLastSequenceError:
            return  # another replica claimed this host first
        log.info("auto-tuning %s: %s", host, why)
        # Tune runs beside the consumer: a long cycle must not hold up other hosts' profiles.
        task = asyncio.create_task(self._run(profile), name=f"auto-tune {host}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, profile: profile_pb2.WorkloadProfile) -> None:
        async with self._slots:
            try:
                await self._tune(profile)
            except Exception:
                log.exception("auto-tuning %s failed", profile.host.host_id)
