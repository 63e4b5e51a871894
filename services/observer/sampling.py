"""Sampling windows: what every thread did between two points in time.

Two sources fill the same `Window`:
- `ProcfsSource` (always available; an unprivileged observer sees its own user's tasks):
  cumulative schedstat/status counters at both ends. Run-queue latency per wakeup is not in
  procfs, so the threads that matter (those active just before the window, or the ones a
  Measure watches) are re-read every tick and each tick contributes its mean wait per run;
  percentiles are therefore of per-tick means, flatter than per-event ones.
- `BpfSource` (root): per-event counters from the sched tracepoints (bpf.py), exact log2
  histograms; procfs is read only for the processes that were active.

Consecutive windows can share their boundary (`previous=`), so a periodic profile costs one
scan per interval, not two. A window asked for slices (`Tick.slice_s`, Measure's) also
records what each thread ran and waited in each slice, with the host's idle time: whether CPUs
idled while work waited can only be told slice by slice, since a batch's phases (all its jobs
waiting, then one job left on idle CPUs) blur into one figure over a whole window.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from schedcp.domain import procfs
from schedcp.domain.procfs import HostScan, ProcessInfo
from schedcp.runtime.errors import StartupError
from services.observer.bpf import BpfCounters, BpfSampler, BpfUnavailable
from services.observer.histogram import Histogram

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ThreadActivity:
    """What one thread did during a window."""

    tid: int
    pid: int
    cpu_ns: int = 0
    run_delay_ns: int = 0
    runs: int = 0
    wakeups: int = 0
    voluntary: int = 0
    involuntary: int = 0
    # Run-queue waits in the window: a histogram (procfs), or for BPF the cumulative slot
    # counts at the end and at the start (`base`), subtracted when threads are combined
    # (latency_of), which is far cheaper than per thread.
    latency: Histogram | None = None
    slots: Sequence[int] = ()
    base: Sequence[int] = ()
    # Responses (wakeup to the next block): for BPF kept the same way as the slots above; from
    # procfs one sample per thread and window, its mean (procfs counts no single response).
    response: Histogram | None = None
    response_ns: int = 0
    response_slots: Sequence[int] = ()
    response_base: Sequence[int] = ()
    # The waits that began with a wakeup (BPF only), kept the same way as the slots above.
    wakeup_ns: int = 0
    wakeup_slots: Sequence[int] = ()
    wakeup_base: Sequence[int] = ()


@dataclass
class Window:
    """Every thread's activity between `started_at` and `started_at + duration_s`."""

    started_at: float  # wall clock, seconds since the epoch
    duration_s: float
    processes: dict[int, ProcessInfo]
    threads: dict[int, ThreadActivity]
    # CPU seconds the host's CPUs idled in the window (procfs.host_cpu_idle_s).
    host_idle_s: float
    source: str
    num_cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    # Consecutive parts of the window, when the source was asked for them; otherwise none.
    slices: list[Slice] = field(default_factory=list)
    # Processes that exited in the window and whose start is known.
    jobs: list[Job] = field(default_factory=list)
    # Seconds of the window in which some runnable task waited for a CPU (procfs.cpu_stall_s).
    cpu_stall_s: float = 0.0

    def running_jobs(self) -> dict[int, float]:
        """The processes that started in the window and still ran at its end, with their age then:
        jobs in progress, each under one policy, and each at least that long."""
        start_s = _boot_s_of_wall(self.started_at)
        end_s = start_s + self.duration_s
        ended = {job.pid for job in self.jobs}
        return {pid: end_s - process.start_s for pid, process in self.processes.items()
                if pid not in ended and start_s < process.start_s <= end_s}

    @property
    def host_busy_s(self) -> float:
        """CPU seconds the host's CPUs were busy: the window's capacity less their idle time
        (procfs.host_cpu_idle_s says why not /proc/stat's busy fields)."""
        return max(0.0, self.duration_s * self.num_cpus - self.host_idle_s)


@dataclass
class Slice:
    """A part of a window: the CPU seconds the host idled, and per thread that did anything,
    its CPU and run-queue wait in nanoseconds."""

    duration_s: float
    host_idle_s: float
    work: dict[int, tuple[int, int]]

    @classmethod
    def whole(cls, window: Window) -> Slice:
        """The whole window as one slice: for a source that records none."""
        return cls(window.duration_s, window.host_idle_s,
                   {tid: (t.cpu_ns, t.run_delay_ns) for tid, t in window.threads.items()})


@dataclass(frozen=True, slots=True)
class Job:
    """A process that exited in a window: how long it lived, and whether it also started in the
    window (only then did all of its life fall in it, under whatever policy was in force)."""

    pid: int
    born_ns: int  # its start, on the source's clock: with the pid, which process it was
    seconds: float
    started_in_window: bool


@dataclass(frozen=True)
class Tick:
    """How often a procfs window re-reads its watched threads, within a read budget; and how
    long a window's slices are (0: no slices)."""

    interval_s: float
    max_reads_per_s: float
    slice_s: float = 0.0

    def for_threads(self, n: int) -> float:
        return max(self.interval_s, n / self.max_reads_per_s)


# Periodic profiles run all the time: a small read budget. Measure is short and asked for: a large one.
PROFILE_TICK = Tick(0.25, 100)
# A quarter second: shorter than a batch's phases, long enough that /proc/stat's idle time (in
# 10 ms ticks) and the waits the kernel accounts when they end fall mostly in the slice they belong to.
MEASURE_TICK = Tick(0.01, 2000, slice_s=0.25)
# How often a procfs window lists /proc for processes that exited; for how long after its start
# a process's name is read again (it execs right after the fork that made it).
EXIT_LOOK_S = 0.1
COMM_SETTLE_S = 1.0
# A scan taking more than this part of its window is worth a line in the log.
SLOW_SCAN_SHARE = 0.02


class ProcfsSource:
    name = "procfs"

    def __init__(self, uid: int | None = None) -> None:
        self._uid = uid
        self._scanner = procfs.ProcfsScanner(uid)

    def begin(self) -> HostScan:
        return self._scanner.scan()

    def finish(self, start: HostScan, until: float, stop: threading.Event, tick: Tick,
               watch: set[int] | None = None) -> tuple[Window, HostScan]:
        watched = {tid: start.threads[tid] for tid in (watch if watch is not None else start.active)
                   if tid in start.threads}
        slices, exits = _Slicer(start, tick.slice_s), _Exits(start, self._uid)
        latencies, last = self._tick(watched, until, stop, tick, slices, exits)
        end = self._scanner.scan()
        exits.look(end.processes, end.taken_at)
        duration_s = end.taken_at - start.taken_at
        threads = {}
        for tid, after in end.threads.items():
            before = start.threads.get(tid)
            activity = _procfs_delta(before, after, duration_s)
            if activity is None:
                continue
            # What the ticks did not see (all of it for unwatched threads) is one mean sample.
            seen = last.get(tid, before)
            runs = after.runs - (seen.runs if seen else 0)
            activity.latency = latencies.get(tid) or Histogram()
            if runs > 0:
                activity.latency.add((after.run_delay_ns - (seen.run_delay_ns if seen else 0)) / runs, runs)
            activity.response = _mean_response(activity)
            threads[tid] = activity
        if max(start.took_s, end.took_s) > SLOW_SCAN_SHARE * duration_s:
            log.debug("procfs window of %.1f s: its scans took %.2f s and %.2f s (CPU times aligned per thread)",
                     duration_s, start.took_s, end.took_s)
        # Processes that exited in the window are known too: their jobs are matched by them.
        window = Window(_wall(start.taken_at), duration_s, {**exits.exited, **end.processes}, threads,
                        end.host_idle_s - start.host_idle_s, self.name,
                        slices=slices.finish(end, threads.keys()) if tick.slice_s else [], jobs=exits.jobs,
                        cpu_stall_s=end.stall_s - start.stall_s)
        return window, end

    @staticmethod
    def _tick(watched: dict[int, procfs.ThreadCounters], until: float, stop: threading.Event, tick: Tick,
              slices: _Slicer, exits: _Exits) -> tuple[dict[int, Histogram], dict[int, procfs.ThreadCounters]]:
        """Re-read watched threads' schedstat until `until`; each read adds its mean wait per run,
        and the reads at each slice's end cut it. Every EXIT_LOOK_S, whatever the reads' interval
        (many threads space them out), the processes that exited."""
        latencies: dict[int, Histogram] = {}
        interval = tick.for_threads(len(watched))
        last = dict(watched)  # as of each thread's last read that saw it run
        current = dict(watched)  # as of its last read: the slices' view
        read_at = time.monotonic() + interval
        while True:
            now = time.monotonic()
            wake = min(until, read_at, exits.looked_at + EXIT_LOOK_S)
            if now >= until or stop.wait(max(0.0, wake - now)) or (now := time.monotonic()) >= until:
                break  # the end scan reads the threads and lists the processes anyway
            if now >= read_at:
                _read_watched(last, current, latencies)
                read_at = now + interval
                if tick.slice_s and time.monotonic() >= slices.started_at + tick.slice_s:
                    slices.cut(current)
            if now >= exits.looked_at + EXIT_LOOK_S:
                exits.look()
        return latencies, last


def _read_watched(last: dict[int, procfs.ThreadCounters], current: dict[int, procfs.ThreadCounters],
                  latencies: dict[int, Histogram]) -> None:
    """One read of the watched threads: each that ran adds its mean wait per run since its last read."""
    for tid, seen in list(last.items()):
        stat = procfs.read_schedstat(seen.pid, tid)
        if stat is None:
            del last[tid]
            continue
        cpu_ns, delay, runs = stat
        current[tid] = procfs.ThreadCounters(tid, seen.pid, cpu_ns, delay, runs, 0, 0)
        # Only a read that saw new runs moves `last`: a wait added without a run (a queued task
        # migrated) is then counted with the next run rather than lost.
        if runs > seen.runs:
            latencies.setdefault(tid, Histogram()).add((delay - seen.run_delay_ns) / (runs - seen.runs),
                                                        runs - seen.runs)
            last[tid] = current[tid]


class _Slicer:
    """A procfs window's slices, cut at the ticks' reads of its watched threads. Threads that
    started during the window are not watched: they count in the last slice, cut at the end scan."""

    def __init__(self, start: HostScan, slice_s: float) -> None:
        self.started_at, self._idle = start.taken_at, start.host_idle_s
        # Each thread's counters where its current slice began; a thread born in the window
        # (or a thread id now naming another thread) starts from zero.
        self._mark = dict(start.threads) if slice_s else {}
        self.done: list[Slice] = []

    def cut(self, threads: dict[int, procfs.ThreadCounters], at: float | None = None,
            idle: float | None = None) -> None:
        at = time.monotonic() if at is None else at
        idle = procfs.host_cpu_idle_s() if idle is None else idle
        work = {}
        for tid, now in threads.items():
            before = self._mark.get(tid)
            if before is None or before.pid != now.pid or now.runs < before.runs or now.cpu_ns < before.cpu_ns:
                before = procfs.ThreadCounters(tid, now.pid, 0, 0, 0, 0, 0)
            if (now.cpu_ns, now.run_delay_ns) != (before.cpu_ns, before.run_delay_ns):
                work[tid] = (now.cpu_ns - before.cpu_ns, max(0, now.run_delay_ns - before.run_delay_ns))
            self._mark[tid] = now
        self.done.append(Slice(at - self.started_at, max(0.0, idle - self._idle), work))
        self.started_at, self._idle = at, idle

    def finish(self, end: HostScan, active: Iterable[int]) -> list[Slice]:
        """The last slice, to the end scan, of every thread active in the window."""
        self.cut({tid: end.threads[tid] for tid in active}, end.taken_at, end.host_idle_s)
        return self.done


class _Exits:
    """The processes that exited during a procfs window (procfs shows no exit): /proc is listed
    every EXIT_LOOK_S, and a process gone since the last listing exited between the two. Its
    start is its stat's; its exit is placed halfway between the listings, so a length is off by
    at most half of that either way. A process born in the window is read when first listed,
    and its name read again while it is young (a fork shows its parent's name until it execs).
    Kernel threads and (for an unprivileged observer) other users' processes are no jobs."""

    def __init__(self, start: HostScan, uid: int | None) -> None:
        self._uid = uid
        self._alive: dict[int, ProcessInfo] = {}
        self._young: set[int] = set()
        self._ignored: set[int] = set()  # listed once and not a job: not read again
        self._window_start_s = _boot_s(start.taken_at)
        self.looked_at = start.taken_at
        self.exited: dict[int, ProcessInfo] = {}
        self.jobs: list[Job] = []
        self._admit(start.processes.items(), self._window_start_s)

    def look(self, listed: dict[int, ProcessInfo] | None = None, at: float | None = None) -> None:
        """`listed`: every process now (a scan's), else /proc is listed here."""
        at = time.monotonic() if at is None else at
        pids = listed.keys() if listed is not None else _pids()
        ended_s = _boot_s((self.looked_at + at) / 2)
        # A pid listed again with another start is another process: the first one exited.
        reused = set() if listed is None else {pid for pid in self._alive.keys() & pids
                                               if listed[pid].start_s != self._alive[pid].start_s}
        for pid in (self._alive.keys() - pids) | reused:
            self._ended(self._alive.pop(pid), ended_s)
        self._ignored &= pids
        new = (pids - self._alive.keys()) - self._ignored
        now_s = _boot_s(at)
        if listed is not None:
            self._admit(((pid, listed[pid]) for pid in new), now_s)
        else:
            self._admit(((pid, procfs.read_process(pid)) for pid in new), now_s)
            self._rename_young(now_s)
        self.looked_at = at

    def _admit(self, found: Iterable[tuple[int, ProcessInfo | None]], now_s: float) -> None:
        for pid, process in found:
            if process is None or process.kernel_thread or self._uid not in (None, process.uid):
                self._ignored.add(pid)
                continue
            self._alive[pid] = process
            if now_s - process.start_s < COMM_SETTLE_S:
                self._young.add(pid)

    def _rename_young(self, now_s: float) -> None:
        for pid in list(self._young):
            process = self._alive.get(pid)
            if process is None or now_s - process.start_s >= COMM_SETTLE_S:
                self._young.discard(pid)
                continue
            comm = (procfs.read_bytes(f"{procfs.PROC}/{pid}/comm") or b"").strip().decode(errors="replace")
            if comm and comm != process.comm:
                self._alive[pid] = procfs.read_process(pid) or process

    def _ended(self, process: ProcessInfo, ended_s: float) -> None:
        self._young.discard(process.pid)
        if 0 < process.start_s < ended_s:
            self.exited[process.pid] = process
            self.jobs.append(Job(process.pid, int(process.start_s * 1e9), ended_s - process.start_s,
                                 process.start_s > self._window_start_s))


def _pids() -> set[int]:
    return {int(name) for name in os.listdir(procfs.PROC) if name.isdigit()}


def _boot_s(monotonic_at: float) -> float:
    """A time.monotonic() reading as seconds since boot (CLOCK_BOOTTIME), the clock of a
    process's start in /proc."""
    return monotonic_at + time.clock_gettime(time.CLOCK_BOOTTIME) - time.monotonic()


def _boot_s_of_wall(wall_at: float) -> float:
    """A time.time() reading as seconds since boot."""
    return wall_at + time.clock_gettime(time.CLOCK_BOOTTIME) - time.time()


def _mean_response(activity: ThreadActivity) -> Histogram:
    """A thread's mean response in the window, weighted by its count: every voluntary switch
    ends one stretch from a wakeup to the next block, and the stretches together took the CPU
    it used and the wait it had. Coarser than BPF's per-response histogram (a group's
    percentiles are over its threads' means; its mean is exact, and goals judge that), but it
    sees the same trade: a longer slice waits longer to run and is preempted less in the middle
    of the work."""
    out = Histogram()
    if activity.voluntary > 0:
        out.add((activity.cpu_ns + activity.run_delay_ns) / activity.voluntary, activity.voluntary)
    return out


def _over(cpu_ns: int, before: procfs.ThreadCounters | None, after: procfs.ThreadCounters,
          duration_s: float) -> int:
    """`cpu_ns`, used between the thread's two reads, as if used over `duration_s`. A thread
    born in the window has no first read: its time counts as it is."""
    span = after.read_at - before.read_at if before is not None and before.read_at else 0.0
    if span <= duration_s / 2:  # not two reads of one window's scans: nothing to align
        return cpu_ns
    return round(cpu_ns * duration_s / span)


def _counts_went_down(before, after) -> bool:
    """Cumulative counters only grow: if one went down, the thread id now names another thread.
    (Checked for every thread every window, hence plain comparisons.)"""
    return after.runs < before.runs or after.cpu_ns < before.cpu_ns or after.voluntary < before.voluntary \
        or after.involuntary < before.involuntary


def _procfs_delta(before: procfs.ThreadCounters | None, after: procfs.ThreadCounters,
                  duration_s: float) -> ThreadActivity | None:
    """What a thread did between two scans `duration_s` apart. Its CPU time is scaled to that
    duration from the span between its own two reads: a scan of a loaded emulated host took
    up to 0.7 s, and unscaled a saturated group's share of a 10 s window came out up to 5 %
    too high or too low depending on where in each scan its threads were read. (Counts are
    left as read.)"""
    if before is not None and (before.pid != after.pid or _counts_went_down(before, after)):
        before = None
    b = before or procfs.ThreadCounters(after.tid, after.pid, 0, 0, 0, 0, 0)
    if after.runs == b.runs and after.cpu_ns == b.cpu_ns:
        return None
    voluntary = after.voluntary - b.voluntary
    return ThreadActivity(
        tid=after.tid, pid=after.pid, cpu_ns=_over(after.cpu_ns - b.cpu_ns, before, after, duration_s),
        run_delay_ns=after.run_delay_ns - b.run_delay_ns, runs=after.runs - b.runs,
        # Every voluntary switch is a sleep that ended (or will end) in a wakeup.
        wakeups=voluntary, voluntary=voluntary, involuntary=after.involuntary - b.involuntary,
    )


@dataclass
class BpfState:
    taken_at: float
    counters: dict[int, BpfCounters]
    host_idle_s: float
    stall_s: float = 0.0  # procfs.cpu_stall_s() at taken_at


class BpfSource:
    name = "bpf"

    def __init__(self, sampler: BpfSampler) -> None:
        self._sampler = sampler
        self._processes: dict[int, ProcessInfo] = {}

    def begin(self) -> BpfState:
        return BpfState(time.monotonic(), self._sampler.read(), procfs.host_cpu_idle_s(), procfs.cpu_stall_s())

    def finish(self, start: BpfState, until: float, stop: threading.Event, tick: Tick,
               watch: set[int] | None = None) -> tuple[Window, BpfState]:
        slices, mark = [], start
        while tick.slice_s and (boundary := mark.taken_at + tick.slice_s) < until:
            if stop.wait(max(0.0, boundary - time.monotonic())):
                break
            now = self.begin()
            slices.append(_bpf_slice(mark, now))
            mark = now
        stop.wait(max(0.0, until - time.monotonic()))
        end = self.begin()
        if tick.slice_s:
            slices.append(_bpf_slice(mark, end))
        threads = {}
        for tid, after in end.counters.items():
            activity = _bpf_delta(start.counters.get(tid), after)
            if activity is not None:
                threads[tid] = activity
        processes = self._resolve_processes(threads, end.counters)
        threads = {tid: t for tid, t in threads.items() if t.pid in processes}
        window = Window(_wall(start.taken_at), end.taken_at - start.taken_at, processes, threads,
                        end.host_idle_s - start.host_idle_s, self.name, slices=slices, jobs=ended_jobs(start, end),
                        cpu_stall_s=end.stall_s - start.stall_s)
        return window, end

    def _resolve_processes(self, threads: dict[int, ThreadActivity],
                           counters: dict[int, BpfCounters]) -> dict[int, ProcessInfo]:
        """ProcessInfo for each active thread's process, re-read once per window (comm and
        cgroup can change); a process that already exited keeps its last known info, or, when it
        started and exited within the window, is known by the name the BPF program saw
        (exited_process): a compressor run in a loop, one at a time, otherwise showed only the
        run in progress at the end of the window."""
        found: dict[int, ProcessInfo] = {}
        for activity in threads.values():
            if not activity.pid:
                activity.pid = _tgid_of(activity.tid)
            pid = activity.pid
            if pid and pid not in found:
                info = procfs.read_process(pid) or self._processes.get(pid) or exited_process(pid, counters)
                if info is not None:
                    found[pid] = info
        self._processes = found
        return found


def exited_process(pid: int, counters: dict[int, BpfCounters]) -> ProcessInfo | None:
    """What is left to know of a process that exited before /proc was read: its name (its main
    thread's, as the BPF program saw it), nothing of its cgroup, user or start. Grouped by name
    like the others; a matcher on anything else does not match it."""
    main = counters.get(pid)
    if main is None or not main.comm:
        return None
    return ProcessInfo(pid=pid, comm=main.comm, cgroup="", unified_cgroup="", kernel_thread=False, has_tty=False,
                       uid=-1, num_threads=0)


def ended_jobs(start: BpfState, end: BpfState) -> list[Job]:
    """The processes (main threads) that exited after `start` was taken and by `end`, born after
    the program was loaded: consecutive windows sharing a boundary count each exit once."""
    begin_ns, end_ns = start.taken_at * 1e9, end.taken_at * 1e9
    return [Job(tid, c.born_ns, (c.exited_ns - c.born_ns) / 1e9, c.born_ns > begin_ns)
            for tid, c in end.counters.items()
            if c.tgid == tid and c.born_ns and begin_ns < c.exited_ns <= end_ns and c.exited_ns > c.born_ns]


def _bpf_slice(start: BpfState, end: BpfState) -> Slice:
    work = {}
    for tid, after in end.counters.items():
        before = start.counters.get(tid)
        if after is before:  # the sampler keeps an idle thread's record as it was
            continue
        if before is None or _counts_went_down(before, after):
            before = BpfCounters(after.tid, after.tgid)
        if after.cpu_ns != before.cpu_ns or after.runq_delay_ns != before.runq_delay_ns:
            work[tid] = (after.cpu_ns - before.cpu_ns, after.runq_delay_ns - before.runq_delay_ns)
    return Slice(end.taken_at - start.taken_at, max(0.0, end.host_idle_s - start.host_idle_s), work)


def _tgid_of(tid: int) -> int:
    raw = procfs.read_bytes(f"{procfs.PROC}/{tid}/status") or b""
    start = raw.find(b"\nTgid:")
    return int(raw[start + 6:raw.index(b"\n", start + 1)]) if start >= 0 else 0


def _bpf_delta(before: BpfCounters | None, after: BpfCounters) -> ThreadActivity | None:
    if before is not None and (_counts_went_down(before, after) or after.wakeups < before.wakeups):
        before = None
    if before is None:
        before = BpfCounters(after.tid, after.tgid)
    elif after.runs == before.runs and after.cpu_ns == before.cpu_ns and after.wakeups == before.wakeups:
        return None
    delay = after.runq_delay_ns - before.runq_delay_ns
    return ThreadActivity(
        tid=after.tid, pid=after.tgid,
        cpu_ns=after.cpu_ns - before.cpu_ns,
        run_delay_ns=delay,
        runs=after.runs - before.runs,
        wakeups=after.wakeups - before.wakeups,
        voluntary=after.voluntary - before.voluntary,
        involuntary=after.involuntary - before.involuntary,
        slots=after.runq_slots if after.runs != before.runs else (),
        base=before.runq_slots if after.runs != before.runs else (),
        response_ns=after.response_ns - before.response_ns,
        response_slots=after.response_slots if after.responses != before.responses else (),
        response_base=before.response_slots if after.responses != before.responses else (),
        wakeup_ns=after.wakeup_delay_ns - before.wakeup_delay_ns,
        wakeup_slots=after.wakeup_slots if after.wakeup_runs != before.wakeup_runs else (),
        wakeup_base=before.wakeup_slots if after.wakeup_runs != before.wakeup_runs else (),
    )


def latency_of(threads: Iterable[ThreadActivity]) -> Histogram:
    """The run-queue wait histogram of some threads together."""
    return _combined(threads, "latency", "slots", "base", "run_delay_ns")


def response_of(threads: Iterable[ThreadActivity]) -> Histogram:
    """The response histogram (wakeup to the next block) of some threads together."""
    return _combined(threads, "response", "response_slots", "response_base", "response_ns")


def wakeup_latency_of(threads: Iterable[ThreadActivity]) -> Histogram:
    """The histogram of the waits that began with a wakeup (BPF threads only: procfs cannot tell
    them from the waits after a preemption)."""
    return _add_slots(Histogram(), threads, "wakeup_slots", "wakeup_base", "wakeup_ns")


def _combined(threads: Iterable[ThreadActivity], histogram: str, slots: str, base: str, total: str) -> Histogram:
    """The threads' procfs histograms (attribute `histogram`) merged, plus the BPF threads' slots."""
    out = Histogram()
    from_bpf = []
    for thread in threads:
        if (own := getattr(thread, histogram)) is not None:
            out.merge(own)
        else:
            from_bpf.append(thread)
    return _add_slots(out, from_bpf, slots, base, total)


def _add_slots(out: Histogram, threads: Iterable[ThreadActivity], slots: str, base: str, total: str) -> Histogram:
    """`out` plus the threads' cumulative BPF slots (attribute `slots`) less those at the window's
    start (`base`), and their summed `total`."""
    rows, bases = [], []
    for thread in threads:
        if row := getattr(thread, slots):
            rows.append(row)
            if start := getattr(thread, base):
                bases.append(start)
            out.total_ns += getattr(thread, total)
    if rows:
        # Column sums in C (zip(*rows)), then one subtraction per slot.
        ends = map(sum, zip(*rows, strict=True))
        starts = map(sum, zip(*bases, strict=True)) if bases else itertools.repeat(0)
        for slot, (end, begin) in enumerate(zip(ends, starts, strict=False)):  # starts may be endless
            if end != begin:
                out.counts[slot] = out.counts.get(slot, 0) + end - begin
    return out


def _wall(monotonic_at: float) -> float:
    return time.time() - (time.monotonic() - monotonic_at)


class Sampler:
    """The observer's sampling source, chosen once at start.

    mode "bpf" requires BPF and refuses to start without it; "auto" uses BPF when it can
    and otherwise says once, in the log and in every profile's `sampler_note`, why it runs
    procfs-only; "procfs" never loads BPF.
    """

    def __init__(self, mode: str = "auto", prebuilt: Path | None = None, loader: Path | None = None) -> None:
        # Set once, at close: every window in progress ends and no new one waits.
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._open_windows: set[threading.Event] = set()
        self.note = ""
        self._bpf: BpfSampler | None = None
        # An unprivileged observer reads only its own user's tasks in full.
        self.uid = uid = None if os.geteuid() == 0 else os.getuid()
        if mode in ("auto", "bpf"):
            try:
                self._bpf = BpfSampler(prebuilt, loader)
            except BpfUnavailable as exc:
                if mode == "bpf":
                    raise StartupError(f"SCHEDCP_OBSERVER_MODE=bpf but {exc}") from exc
                self.note = f"procfs only: {exc}"
                log.warning("observer runs procfs-only: %s", exc)
            else:
                if self._bpf.fallback_reason:
                    self.note = f"probes loaded without BCC ({self._bpf.fallback_reason})"
        elif mode != "procfs":
            raise StartupError(f"SCHEDCP_OBSERVER_MODE must be auto, procfs or bpf, not {mode!r}")
        if mode == "procfs":
            self.note = "procfs only: SCHEDCP_OBSERVER_MODE=procfs"
        if uid is not None:
            self.note = (self.note + "; " if self.note else "") + f"unprivileged: only uid {uid}'s tasks are visible"
        self.source: ProcfsSource | BpfSource = BpfSource(self._bpf) if self._bpf else ProcfsSource(uid)

    @property
    def name(self) -> str:
        return self.source.name

    def window(self, duration_s: float, tick: Tick = PROFILE_TICK, watch: set[int] | None = None,
               previous=None, stop: threading.Event | None = None) -> tuple[Window, object]:
        """Sample for `duration_s` (blocking: run it in a worker thread). Pass the returned
        state as `previous` to start the next window where this one ended. Setting `stop`
        (or closing the sampler) ends the window early."""
        stop = stop or threading.Event()
        with self._lock:
            if self.stop.is_set():
                stop.set()
            self._open_windows.add(stop)
        try:
            start = previous if previous is not None else self.source.begin()
            return self.source.finish(start, time.monotonic() + duration_s, stop, tick, watch)
        finally:
            with self._lock:
                self._open_windows.discard(stop)

    def begin(self):
        return self.source.begin()

    def close(self) -> None:
        with self._lock:
            self.stop.set()
            for window in self._open_windows:
                window.set()
        if self._bpf is not None:
            self._bpf.close()
