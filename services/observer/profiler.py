"""Workload profiles and measurements, built from sampling windows."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from collections.abc import Callable
from typing import TypeVar

from google.protobuf import duration_pb2, timestamp_pb2

from schedcp.domain import matchers, procfs
from schedcp.runtime.errors import InvalidArgument, NotFound
from schedcp.v1 import host_pb2, observer_pb2, profile_pb2
from services.observer import classify, describe, grouping, jobs, peers, signature
from services.observer.sampling import (
    MEASURE_TICK,
    PROFILE_TICK,
    Sampler,
    Slice,
    ThreadActivity,
    Window,
    latency_of,
    response_of,
    wakeup_latency_of,
)

DEFAULT_WINDOW_S = 2.0
WINDOW_LIMITS_S = (0.1, 300.0)
MEASURE_LIMITS_S = (0.1, 600.0)
DEFAULT_MAX_GROUPS = 20
MAX_GROUPS_LIMIT = 1000
T = TypeVar("T")
log = logging.getLogger(__name__)


def seconds(duration: duration_pb2.Duration, name: str, limits: tuple[float, float], default: float) -> float:
    """A request's duration in seconds, defaulted when unset, refused outside `limits`."""
    value = duration.ToTimedelta().total_seconds()
    if value == 0 and not duration.nanos and not duration.seconds:
        return default
    low, high = limits
    if not low <= value <= high:
        raise InvalidArgument(f"{name} must be between {low:g} s and {high:g} s, got {value:g} s")
    return value


class Profiler:
    """Builds WorkloadProfiles and MeasureResponses with one Sampler."""

    def __init__(self, sampler: Sampler, facts: Callable[[], host_pb2.HostFacts]) -> None:
        self._sampler = sampler
        self._facts = facts
        self._jobs = jobs.JobHistory()
        self._lengths = jobs.JobLengths()

    async def profile(self, request: observer_pb2.GetProfileRequest) -> profile_pb2.WorkloadProfile:
        window_s = seconds(request.window, "window", WINDOW_LIMITS_S, DEFAULT_WINDOW_S)
        max_groups = _max_groups(request.max_groups)
        _check_enum(profile_pb2.DetailLevel, "detail", request.detail)
        _check_enum(profile_pb2.GroupingKind, "grouping", request.grouping)

        def sample_and_build(stop: threading.Event) -> profile_pb2.WorkloadProfile:
            window, _ = self._sampler.window(window_s, PROFILE_TICK, stop=stop)
            return self.build(window, request.detail, max_groups, request.grouping)

        return await _in_thread(sample_and_build)

    def build(self, window: Window, detail: int = 0, max_groups: int = DEFAULT_MAX_GROUPS,
              grouping_kind: int = 0) -> profile_pb2.WorkloadProfile:
        found = grouping.group_window(window, grouping_kind)
        self._lengths.record((window.processes[j.pid].comm, j) for j in window.jobs if j.pid in window.processes)
        tables = procfs.NetTables()
        held = {g.group_id: grouping.held_sockets(g, window, tables) for g in found}
        clients = peers.clients_of(held, tables)
        ended = {j.pid for j in window.jobs}
        groups = [self._group(g, window, held[g.group_id], clients.get(g.group_id, []), ended) for g in found]
        groups.sort(key=lambda g: g.features.cpu_share, reverse=True)
        capacity = max(window.duration_s * window.num_cpus, 1e-9)
        host_share = min(1.0, window.host_busy_s / capacity)
        pressure = procfs.read_cpu_pressure(f"{procfs.PROC}/pressure/cpu")
        start = timestamp_pb2.Timestamp()
        start.FromNanoseconds(int(window.started_at * 1e9))
        span = duration_pb2.Duration()
        span.FromNanoseconds(int(window.duration_s * 1e9))
        profile = profile_pb2.WorkloadProfile(
            profile_id=uuid.uuid4().hex,
            host=self._facts(),
            window_start=start,
            window=span,
            groups=_keep(groups, max_groups),
            # From every group, not just the ones kept, so max_groups does not change it.
            signature=signature.compute(groups, host_share, window.num_cpus,
                                        window.cpu_stall_s / max(window.duration_s, 1e-9)),
            cpu_pressure=profile_pb2.PressureStall(**pressure),
            sampler=window.source,
            sampler_note=self._sampler.note,
            host_cpu_share=host_share,
            kernel_cpu_share=grouping.kernel_cpu_s(window) / capacity,
            grouping=grouping_kind or profile_pb2.GROUPING_KIND_COMM,
        )
        profile.texts.extend(describe.texts(profile, detail))
        return profile

    def _group(self, group: grouping.Group, window: Window, held: procfs.HeldSockets,
               client_of: list[str], ended: set[int]) -> profile_pb2.WorkloadGroup:
        """One group's profile; `ended`: the processes that exited in the window."""
        features = grouping.features(group, window, held, client_of)
        features.job_seconds = self._lengths.typical(p.comm for p in group.processes.values())
        self._jobs.record(group.processes.values())
        # A service's processes are not jobs that end.
        long_jobs = [] if features.serves else jobs.long_jobs(list(group.processes.values()), self._jobs, ended)
        if long_jobs:
            jobs.time_runs(long_jobs, group.processes, self._lengths, ended)
        busiest = max(group.threads, key=lambda t: t.cpu_ns)
        settings = procfs.read_sched_settings(busiest.pid, busiest.tid)
        return profile_pb2.WorkloadGroup(
            group_id=group.group_id, name=group.name, kind=group.kind, matcher=group.matcher,
            pids=sorted(group.processes), cgroup=group.cgroup, features=features,
            classification=classify.classify(features),
            settings=profile_pb2.SchedSettings(policy=settings.policy, nice=settings.nice,
                                               slice_us=settings.slice_us) if settings else None,
            long_jobs=long_jobs,
        )

    async def measure(self, request: observer_pb2.MeasureRequest) -> observer_pb2.MeasureResponse:
        duration_s = seconds(request.duration, "duration", MEASURE_LIMITS_S, 0.0)
        if duration_s == 0.0:
            raise InvalidArgument("duration is required (how long to measure, e.g. 5 s)")
        compiled = matchers.compile_all(request.groups)

        def find_and_measure(stop: threading.Event) -> observer_pb2.MeasureResponse:
            processes = procfs.list_processes(self._sampler.uid)
            matched = {m.describe(): [p for p in processes if m.matches(p)] for m in compiled}
            # Nothing at all: a canary must not compare against nothing. Some groups missing is
            # a batch of jobs between two of them (a build's compilers): their jobs that start
            # during the window count.
            if not any(matched.values()):
                raise NotFound(f"no running process matches {', '.join(matched)}")
            watch = {tid for found in matched.values() for p in found for tid in procfs.thread_ids(p.pid)}
            window, _ = self._sampler.window(duration_s, MEASURE_TICK, watch, stop=stop)
            return _measurement(window, compiled, matched)

        return await _in_thread(find_and_measure)


async def _in_thread(work: Callable[[threading.Event], T]) -> T:
    """Run a sampling job in a worker thread; if the call is cancelled (the client went away,
    its deadline passed), stop the job's window instead of sampling on for nobody."""
    stop = threading.Event()
    try:
        return await asyncio.to_thread(work, stop)
    except asyncio.CancelledError:
        stop.set()
        raise


def _check_enum(enum, name: str, value: int) -> None:
    if value not in enum.values():
        names = ", ".join(enum.keys())
        raise InvalidArgument(f"{name} {value} is not one of {names}")


def _measurement(window: Window, compiled: list[matchers.Matcher],
                 matched: dict[str, list[procfs.ProcessInfo]]) -> observer_pb2.MeasureResponse:
    duration = max(window.duration_s, 1e-9)
    machine = duration * window.num_cpus
    own_s = sum(t.cpu_ns for t in window.threads.values() if t.pid == os.getpid()) / 1e9
    capacity = max(machine - own_s, 1e-9)
    response = observer_pb2.MeasureResponse(sampler=window.source, observer_cpu_share=own_s / machine)
    response.measured.FromNanoseconds(int(window.duration_s * 1e9))
    counted: set[int] = set()
    matched_cpu_ns = 0
    slices = window.slices or [Slice.whole(window)]
    whole_jobs = [j for j in window.jobs if j.started_in_window]
    running = window.running_jobs()
    for matcher in compiled:
        threads = grouping.select(window.threads.values(), window.processes, matcher)
        cpu_ns = sum(t.cpu_ns for t in threads)
        done = [(j.seconds, j.pid) for j in whole_jobs
                if (p := window.processes.get(j.pid)) is not None and matcher.matches(p)]
        started = [(age, pid) for pid, age in running.items() if matcher.matches(window.processes[pid])]
        jobs_cpu = _cpu_by_pid(threads)
        response.groups.append(observer_pb2.GroupMeasurement(
            matcher=matcher.source,
            matched_threads=sum(p.num_threads for p in matched[matcher.describe()]),
            runq_latency=latency_of(threads).to_stats(window.source),
            response=response_of(threads).to_stats(window.source),
            wakeup_latency=wakeup_latency_of(threads).to_stats(window.source),
            cpu_share=cpu_ns / 1e9 / capacity,
            cpu_seconds=cpu_ns / 1e9,
            wakeups_per_s=sum(t.wakeups for t in threads) / duration,
            runq_wait_per_s=sum(t.run_delay_ns for t in threads) / 1e9 / duration,
            idle_while_waiting_s=idle_while_waiting(slices, {t.tid for t in threads}),
            voluntary_switches=sum(t.voluntary for t in threads),
            involuntary_switches=sum(t.involuntary for t in threads),
            jobs_done=len(done),
            job_seconds=sum(seconds for seconds, _ in done) / len(done) if done else 0.0,
            longest_job_s=max((seconds for seconds, _ in done + started), default=0.0),
            largest_job_cpu_s=max((jobs_cpu.get(pid, 0) for _, pid in done + started), default=0) / 1e9,
        ))
        matched_cpu_ns += sum(t.cpu_ns for t in threads if t.tid not in counted)
        counted.update(t.tid for t in threads)
    response.foreign_cpu_share = max(0.0, window.host_busy_s - own_s - matched_cpu_ns / 1e9) / capacity
    # Where every CPU second went: a canary judged later is read against this line.
    shares = ", ".join(f"{matchers.describe(g.matcher)} {g.cpu_share:.3f}" for g in response.groups)
    log.info("measured %.1f s on %d CPUs: %s; the observer %.3f, others %.3f, idle %.3f of the CPUs",
             duration, window.num_cpus, shares,
             response.observer_cpu_share, response.foreign_cpu_share,
             window.host_idle_s / machine)
    return response


def _cpu_by_pid(threads: list[ThreadActivity]) -> dict[int, int]:
    """CPU nanoseconds per process in the window: a job's whole CPU when it started in it."""
    cpu: dict[int, int] = {}
    for t in threads:
        cpu[t.pid] = cpu.get(t.pid, 0) + t.cpu_ns
    return cpu


def idle_while_waiting(slices: list[Slice], tids: set[int]) -> float:
    """CPU seconds the host idled while these threads waited to run, slice by slice (the smaller
    of the two in each: which CPU idled and when in the slice is not known)."""
    return sum(max(0.0, min(part.host_idle_s, sum(part.work[t][1] for t in tids & part.work.keys()) / 1e9))
               for part in slices)


def _max_groups(requested: int) -> int:
    if requested > MAX_GROUPS_LIMIT:
        raise InvalidArgument(f"max_groups must be at most {MAX_GROUPS_LIMIT}, got {requested}")
    return requested or DEFAULT_MAX_GROUPS


def _keep(groups: list[profile_pb2.WorkloadGroup], max_groups: int) -> list[profile_pb2.WorkloadGroup]:
    """The busiest half by CPU and the most frequently waking half (latency-sensitive groups
    use little CPU), in CPU order."""
    if len(groups) <= max_groups:
        return groups
    by_cpu = groups[:(max_groups + 1) // 2]
    chosen = {g.group_id for g in by_cpu}
    for g in sorted(groups, key=lambda g: g.features.wakeups_per_s, reverse=True):
        if len(chosen) >= max_groups:
            break
        chosen.add(g.group_id)
    return [g for g in groups if g.group_id in chosen]

