"""Profiles the host continuously and publishes every window's profile on JetStream."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from schedcp.domain import hostclass
from schedcp.runtime import metrics, topology
from schedcp.runtime.bus import Bus
from schedcp.v1 import profile_pb2
from services.observer.profiler import Profiler
from services.observer.sampling import PROFILE_TICK, Sampler

log = logging.getLogger(__name__)


class ProfilePublisher:
    """Back-to-back windows of `interval_s` (each window starts where the last ended, so the
    host is scanned once per interval), each published on `schedcp.profile.<host>`."""

    def __init__(self, bus: Bus, host_id: str, sampler: Sampler, profiler: Profiler, interval_s: float) -> None:
        self._bus = bus
        self._subject = topology.subject(topology.Kind.PROFILE, host_id)
        self._sampler = sampler
        self._profiler = profiler
        self._interval_s = interval_s
        self.published = 0
        # The newest profile's workload cluster, for the host's registration (host classes).
        self.workload_cluster = ""

    async def run(self) -> None:
        # A thread of its own: long GetProfile/Measure windows in the shared pool cannot delay it.
        thread = ThreadPoolExecutor(1, thread_name_prefix="profile-publisher")
        loop = asyncio.get_running_loop()
        state = None
        try:
            while not self._sampler.stop.is_set():
                try:
                    if state is None:
                        state = await loop.run_in_executor(thread, self._sampler.begin)
                    cpu_before = time.process_time()
                    window, state = await loop.run_in_executor(
                        thread, self._sampler.window, self._interval_s, PROFILE_TICK, None, state)
                    profile = await loop.run_in_executor(thread, self._profiler.build, window,
                                                         profile_pb2.DETAIL_LEVEL_FULL)
                    metrics.WINDOW_CPU.labels(window.source).observe(time.process_time() - cpu_before)
                except Exception:  # one bad window (a /proc race, a map read) must not end profiling
                    log.exception("profiling failed; starting afresh in %.1f s", self._interval_s)
                    state = None
                    await asyncio.sleep(self._interval_s)
                    continue
                self.workload_cluster = hostclass.signature_cluster(profile.signature)
                await self._publish(profile)
        finally:
            # Never block the event loop on a window in progress: Sampler.close() ends it.
            thread.shutdown(wait=False, cancel_futures=True)

    async def _publish(self, profile: profile_pb2.WorkloadProfile) -> None:
        try:
            # Not traced: a profile every few seconds is not part of any decision cycle.
            await self._bus.publish(self._subject, profile, msg_id=profile.profile_id, traced=False)
            self.published += 1
            metrics.PROFILES_PUBLISHED.inc()
        except Exception as exc:  # NATS down or slow: keep profiling, the next one may get through
            log.warning("could not publish profile %s: %s", profile.profile_id, exc)
