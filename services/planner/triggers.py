"""Automatic tuning: follow the hosts' profiles and run a Tune when a host's workload drifted
since it was last tuned: another group dominates the CPU, or one of the main groups changed
class. Every host with SCHEDCP_PLANNER_AUTO, else only the hosts an operator opted in
(`schedcp tune HOST --auto`: key `auto.<host>` in the `schedcp_planner` bucket, see `set_auto`).
At most once per SCHEDCP_PLANNER_MIN_INTERVAL_S per host, and at most
SCHEDCP_PLANNER_MAX_CYCLES cycles at once (the rest wait). The cycle starts from the profile
that triggered it, or from the host's newest one when it waited for a slot until that went stale;
its trace continues the profile's.

Replicas share one durable consumer as a queue group, so each profile reaches one of them;
a host is claimed in the `schedcp_planner` KV bucket by compare-and-set before it is tuned,
so two replicas that see two profiles of one host cannot both tune it. Each replica follows
that bucket's host records with a KV watch, so a profile that did not drift, as nearly every
one of a fleet's does, costs no request (at 10,000 hosts a profile every 5 s, a read per
profile was more than the planner could do). A record the watch has not delivered yet only
costs a claim that fails (and a read, so the next profile finds it). Opt-ins are read per
profile, so one takes effect from the very next profile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from schedcp.runtime import tasks, telemetry, topology
from schedcp.runtime.bus import Bus, Delivery
from schedcp.v1 import profile_pb2

log = logging.getLogger(__name__)
# A queue subscription names its durable consumer after the queue: one name for both.
CONSUMER = QUEUE = "planner-auto"
MAIN_GROUPS = 5
MIN_CONFIDENCE = 0.5
# Claims of drifted hosts in flight at once (each a JetStream round trip beside the consumer).
MAX_CLAIMS = 256

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
        self._claims = asyncio.Semaphore(MAX_CLAIMS)
        self._tasks: set[asyncio.Task] = set()
        # The bucket's host records as last seen: host -> (record, revision).
        self._records: dict[str, tuple[dict, int]] = {}
        self._watcher = None
        self._caught_up = False  # the watch delivered what the bucket held when it started

    async def start(self) -> None:
        if self._watcher is None:  # tried again when JetStream was slow to answer
            kv = await self._bus.kv(topology.PLANNER_BUCKET)
            # Host ids are one token; leases and opt-ins have dotted keys.
            self._watcher = await kv.watch("*")
            self._follow()
        await self._bus.subscribe(topology.all_hosts(topology.Kind.PROFILE), profile_pb2.WorkloadProfile,
                                  self.on_profile, durable=CONSUMER, queue=QUEUE, traced=False)

    async def close(self) -> None:
        """Stop following, and the automatic cycles still running (the planner's Cycle.close then
        records their ends)."""
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await self._watcher.stop()
        await tasks.stop(list(self._tasks), "automatic cycles")

    def _follow(self) -> None:
        async def follow() -> None:
            try:
                async for entry in self._watcher:
                    if entry is None:  # the bucket's contents at start are all delivered
                        self._caught_up = True
                    else:
                        self._on_record(entry)
            except Exception as exc:  # NATS closed: the planner is stopping
                log.debug("stopped following the planner's host records: %s", exc)
            finally:
                # What it delivered may go stale from now on: read records again.
                self._caught_up = False

        self._spawn(follow(), "following the planner's host records")

    def _on_record(self, entry) -> None:
        if entry.operation in ("DEL", "PURGE") or not entry.value:
            self._records.pop(entry.key, None)
        elif entry.revision > self._records.get(entry.key, (None, 0))[1]:
            try:
                self._records[entry.key] = (json.loads(entry.value), entry.revision)
            except ValueError:
                log.warning("planner record %r is not JSON; read again when its host's profile comes", entry.key)
                self._records.pop(entry.key, None)

    async def on_profile(self, profile: profile_pb2.WorkloadProfile, delivery: Delivery | None = None) -> None:
        host = profile.host.host_id
        if not host or not (self._every_host or await auto_enabled(self._bus, host)):
            return
        now = workload_state(profile)
        record, revision = await self._record(host)
        why = drifted(record["state"] if record else None, now)
        if not why or (record and time.time() - record["tuned_at"] < self._min_interval_s):
            return
        # The claim (a round trip to JetStream) and the cycle run beside the consumer, which reads
        # the next profile meanwhile: one at a time, a fleet starting together would be claimed at
        # the speed of one round trip each. At most MAX_CLAIMS claims are in flight.
        await self._claims.acquire()
        self._spawn(self._claim(profile, {"state": now, "tuned_at": time.time(), "why": why}, revision, delivery),
                    f"claim {host}")

    async def _claim(self, profile: profile_pb2.WorkloadProfile, claim: dict, revision: int,
                     delivery: Delivery | None) -> None:
        """Claim the host by compare-and-set on its record (of two replicas that saw its drift,
        one wins), then tune it."""
        host = profile.host.host_id
        try:
            kv = await self._bus.kv(topology.PLANNER_BUCKET)
            encoded = json.dumps(claim).encode()
            try:
                revision = await (kv.update(host, encoded, last=revision) if revision else kv.create(host, encoded))
            except KeyWrongLastSequenceError:
                await self._read(host)  # another replica claimed it first (or the watch is behind)
                return
        except Exception as exc:  # NATS away: the host's next profile tries again
            log.warning("could not claim %s for automatic tuning: %s", host, exc or type(exc).__name__)
            return
        finally:
            self._claims.release()
        if revision > self._records.get(host, (None, 0))[1]:
            self._records[host] = (claim, revision)
        log.info("auto-tuning %s: %s", host, claim["why"])
        # Its trace continues the profile's (profiles that did not drift have no span at all).
        parent = telemetry.extract(delivery.headers) if delivery is not None else None
        await self._run(profile, parent)

    async def _record(self, host: str) -> tuple[dict | None, int]:
        """The host's record and its revision (0: none): as the watch delivered it, or read
        from the bucket while the watch has not caught up yet."""
        if self._caught_up:
            return self._records.get(host, (None, 0))
        return await self._read(host)

    async def _read(self, host: str) -> tuple[dict | None, int]:
        kv = await self._bus.kv(topology.PLANNER_BUCKET)
        try:
            self._on_record(await kv.get(host))
        except KeyNotFoundError:
            self._records.pop(host, None)
        return self._records.get(host, (None, 0))

    def _spawn(self, coro, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, profile: profile_pb2.WorkloadProfile, parent) -> None:
        host = profile.host.host_id
        async with self._slots:
            with telemetry.tracer().start_as_current_span(f"auto-tune {host}", context=parent,
                                                          attributes={"schedcp.host_id": host}):
                try:
                    await self._tune(profile)
                except Exception:
                    log.exception("auto-tuning %s failed", host)
