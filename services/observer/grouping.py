"""Threads into groups, and each group's scheduling features over a window."""

from __future__ import annotations

import functools
import os
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from schedcp.domain import matchers, procfs, protected
from schedcp.domain.procfs import ProcessInfo
from schedcp.v1 import common_pb2, profile_pb2
from services.observer.sampling import ThreadActivity, Window, latency_of, response_of, wakeup_latency_of

NS = 1e9
# A group's sockets (whether it serves requests, whether it holds any) are looked up (its
# descriptors read) only when it uses at least this share of the host's CPU: idle daemons do not
# need it, and the scan costs.
SOCKETS_MIN_CPU_SHARE = 0.01


@dataclass
class Group:
    """Threads that belong together (one application, one container...)."""

    group_id: str
    name: str
    kind: int  # profile_pb2.GroupingKind
    matcher: common_pb2.GroupMatcher
    processes: dict[int, ProcessInfo] = field(default_factory=dict)
    threads: list[ThreadActivity] = field(default_factory=list)

    @property
    def cgroup(self) -> str:
        """The cgroup all the group's processes share, or "" when they differ."""
        paths = {p.cgroup for p in self.processes.values()}
        return paths.pop() if len(paths) == 1 else ""


def _key(kind: int, process: ProcessInfo) -> tuple[str, str, common_pb2.GroupMatcher]:
    if kind == profile_pb2.GROUPING_KIND_PROCESS:
        return (matchers.group_id("pid", process.pid), f"{process.comm}[{process.pid}]",
                common_pb2.GroupMatcher(pid=process.pid))
    if kind == profile_pb2.GROUPING_KIND_CGROUP:
        path = process.cgroup or "/"
        return matchers.group_id("cgroup", path), path, common_pb2.GroupMatcher(cgroup=path)
    return matchers.group_id("comm", process.comm), process.comm, common_pb2.GroupMatcher(comm=process.comm)


def group_window(window: Window, kind: int) -> list[Group]:
    """Groups of user-space threads that did something in the window. Kernel threads and the
    processes no policy may change (schedcp itself, init, the host's daemons: protected.py) are
    left out: a goal about them could not be served (see kernel_cpu_s)."""
    kind = kind or profile_pb2.GROUPING_KIND_COMM
    groups: dict[str, Group] = {}
    for thread in window.threads.values():
        process = window.processes.get(thread.pid)
        if process is None or process.kernel_thread or _protected(process):
            continue
        gid, name, matcher = _key(kind, process)
        group = groups.get(gid)
        if group is None:
            group = groups[gid] = Group(gid, name, kind, matcher)
        group.processes[process.pid] = process
        group.threads.append(thread)
    return list(groups.values())


# Whether a process is protected, by what identifies it: reason_protected reads its command
# line, which is worth doing once per process, not once per thread and window.
_PROTECTED: dict[tuple, bool] = {}
_PROTECTED_MAX = 8192


def _protected(process: ProcessInfo) -> bool:
    key = (process.pid, process.start_s, process.comm, process.cgroup, process.unified_cgroup)
    found = _PROTECTED.get(key)
    if found is None:
        if len(_PROTECTED) >= _PROTECTED_MAX:
            _PROTECTED.clear()
        found = _PROTECTED[key] = bool(protected.reason_protected(process))
    return found


def kernel_cpu_s(window: Window) -> float:
    return sum(t.cpu_ns for t in window.threads.values()
               if (p := window.processes.get(t.pid)) is not None and p.kernel_thread) / NS


@functools.cache
def _cgroup2_root() -> str:
    return procfs.cgroup2_mount()


def _cgroup_pressure(group: Group) -> float:
    """PSI of the group's own unified cgroup; 0 when its processes do not share one below the root."""
    paths = {p.unified_cgroup for p in group.processes.values()}
    root = _cgroup2_root()
    if len(paths) != 1 or not root:
        return 0.0
    path = paths.pop()
    if path in ("", "/"):
        return 0.0
    return procfs.read_cpu_pressure(os.path.join(root, path.lstrip("/"), "cpu.pressure")).get("some_avg10", 0.0)


def held_sockets(group: Group, window: Window, tables: procfs.NetTables) -> procfs.HeldSockets:
    """The sockets a group's processes (and its listening parents) hold; looked up only for
    groups using SOCKETS_MIN_CPU_SHARE of the host or more (walking descriptors costs).
    `tables`: the profile's socket tables."""
    duration = max(window.duration_s, 1e-9)
    cpu_s = sum(t.cpu_ns for t in group.threads) / NS
    if cpu_s < SOCKETS_MIN_CPU_SHARE * duration * window.num_cpus:
        return procfs.HeldSockets(procfs.Sockets.UNKNOWN)
    return procfs.sockets(_with_listeners(group), tables)


def features(group: Group, window: Window, held: procfs.HeldSockets,
             client_of: list[str]) -> profile_pb2.GroupFeatures:
    """`held`: held_sockets(group, window); `client_of`: the groups it sends requests to."""
    threads = group.threads
    duration = max(window.duration_s, 1e-9)
    cpu_ns = sum(t.cpu_ns for t in threads)
    wait_ns = sum(t.run_delay_ns for t in threads)
    switches = sum(t.voluntary + t.involuntary for t in threads)
    voluntary = sum(t.voluntary for t in threads)
    wakeups = sum(t.wakeups for t in threads)
    return profile_pb2.GroupFeatures(
        cpu_share=cpu_ns / NS / (duration * window.num_cpus),
        wakeups_per_s=wakeups / duration,
        voluntary_ratio=voluntary / switches if switches else 0.0,
        # A burst ends at a switch; a thread that never switched ran the whole window at once.
        mean_burst_us=cpu_ns / max(switches, 1) / 1000,
        runq_latency=latency_of(threads).to_stats(window.source),
        response=response_of(threads).to_stats(window.source, with_buckets=False),
        wakeup_latency=wakeup_latency_of(threads).to_stats(window.source, with_buckets=False),
        threads=sum(p.num_threads for p in group.processes.values()),
        active_threads=sum(1 for t in threads if t.runs or t.cpu_ns),
        cpu_seconds=cpu_ns / NS,
        cpu_pressure_some_avg10=_cgroup_pressure(group),
        demand=(cpu_ns + wait_ns) / NS / duration,
        has_tty=any(p.has_tty for p in group.processes.values()),
        # A group that never woke did all its work in one go: its CPU time is one unit.
        cpu_per_wakeup_us=cpu_ns / 1000 / max(wakeups, 1),
        wait_share=wait_ns / (cpu_ns + wait_ns) if cpu_ns + wait_ns else 0.0,
        **_lifetimes(group, window),
        serves=held.kind is procfs.Sockets.SERVES,
        socketless=held.kind is procfs.Sockets.NONE,
        client_of=client_of,
    )


def _with_listeners(group: Group) -> list[int]:
    """The group's processes and their parents of the same name: a server that forks a process
    per connection (postgres, sshd, Apache's prefork) holds its listening socket in the parent,
    which may not have run in the window and so is not in the group."""
    pids = list(group.processes)
    for ppid in {p.ppid for p in group.processes.values() if p.ppid > 1} - set(pids):
        parent = procfs.read_process(ppid)
        if parent is not None and any(p.comm == parent.comm for p in group.processes.values()):
            pids.append(ppid)
    return pids


def _lifetimes(group: Group, window: Window) -> dict:
    """How many processes, how old, how close together they started, how many started in the window."""
    starts = sorted(p.start_s for p in group.processes.values() if p.start_s)
    if not starts:
        return {"processes": len(group.processes)}
    boot_wall = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    window_start = window.started_at - boot_wall
    window_end = window_start + window.duration_s
    return {"processes": len(group.processes), "median_age_s": max(0.0, window_end - statistics.median(starts)),
            "start_spread_s": starts[-1] - starts[0],
            "spawns_per_s": sum(s >= window_start for s in starts) / max(window.duration_s, 1e-9)}


def select(threads: Iterable[ThreadActivity], processes: dict[int, ProcessInfo],
           matcher: matchers.Matcher) -> list[ThreadActivity]:
    return [t for t in threads if (p := processes.get(t.pid)) is not None and matcher.matches(p)]
