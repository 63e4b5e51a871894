"""Jobs: which jobs of a batch are long (the evidence a makespan goal needs), and how long each
program's jobs last (JobLengths: what a throughput goal's canary windows are sized by).

A batch's makespan is set by its longest job, and under fair sharing the long job waits behind
the short ones; running it first needs to know which it is before it has run. Two kinds of
evidence, both about the command line that started the job:

- what that command line used before: the observer remembers, per program and command line,
  the most CPU a process so started was seen to use (`JobHistory`). A batch that runs again
  (nightly jobs, a CI pipeline, a build, a benchmark loop) is known from its last run; a job
  that has been running for longer than the others (started earlier, in a stream) is known by
  the CPU it has used so far;
- what it was given: the arguments the jobs differ in, files by their size and numbers by their
  value. One program over an input ten times larger runs about ten times longer (compressing,
  hashing, encoding, a simulation's step count); a number that is not a size (a seed) can
  mislead, which is why measured CPU comes first.

A job is long when its estimate is at least LONG_FACTOR times the median job's of its program,
and fewer than half the jobs are.
"""

from __future__ import annotations

import os
import re
import stat
import statistics
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from schedcp.domain import matchers, procfs
from schedcp.domain.procfs import ProcessInfo
from schedcp.v1 import common_pb2, profile_pb2
from services.observer.sampling import Job

LONG_FACTOR = 3.0
# Fewer jobs than this are not a batch with a tail.
MIN_JOBS = 3
HISTORY_MAX = 4096
# Recent process lifetimes kept per program: enough for a median over a few runs of a batch.
LENGTHS_KEPT = 64
# A past run shorter than this says nothing about length (it may have been seen only as it started).
MIN_EVIDENCE_CPU_S = 0.5
CMDLINE_SHOWN = 120
_NUMBER = re.compile(r"[+]?\d+(\.\d+)?([eE][+-]?\d+)?")


class JobHistory:
    """The most CPU seen used by a process of each (program, command line), most recent last.
    Bounded: the oldest command lines are forgotten first. The periodic profiles and GetProfile
    build in different threads: a lock keeps updates whole."""

    def __init__(self, capacity: int = HISTORY_MAX) -> None:
        self._capacity = capacity
        self._cpu_s: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, processes: Iterable[ProcessInfo]) -> None:
        keyed = [((p.comm, p.cmdline()), p.cpu_s) for p in processes]
        with self._lock:
            for key, cpu_s in keyed:
                if not key[1]:
                    continue  # a kernel thread or a zombie: no command line to know it by
                self._cpu_s[key] = max(self._cpu_s.pop(key, 0.0), cpu_s)
                if len(self._cpu_s) > self._capacity:
                    self._cpu_s.popitem(last=False)

    def cpu_s(self, process: ProcessInfo) -> float:
        key = (process.comm, process.cmdline())
        with self._lock:
            return max(self._cpu_s.get(key, 0.0), process.cpu_s)


class JobLengths:
    """How long each program's processes lived, start to exit: the last LENGTHS_KEPT that ended,
    per program name (the exits the sampler saw). Windows may overlap (GetProfile beside the
    periodic profiles): an exit is kept once, by its process id and start. Bounded like
    JobHistory; locked for the same reason."""

    def __init__(self, capacity: int = HISTORY_MAX) -> None:
        self._capacity = capacity
        self._lengths: OrderedDict[str, OrderedDict[tuple[int, int], float]] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, ended: Iterable[tuple[str, Job]]) -> None:
        """`ended`: (program name, job) for processes that exited."""
        with self._lock:
            for comm, job in ended:
                lengths = self._lengths.pop(comm, None) or OrderedDict()
                lengths[(job.pid, job.born_ns)] = job.seconds
                while len(lengths) > LENGTHS_KEPT:
                    lengths.popitem(last=False)
                self._lengths[comm] = lengths
                if len(self._lengths) > self._capacity:
                    self._lengths.popitem(last=False)

    def typical(self, comms: Iterable[str]) -> float:
        """The median length of these programs' recent processes; 0 when none was seen to end."""
        with self._lock:
            seen = [s for comm in set(comms) for s in self._lengths.get(comm, {}).values()]
        return statistics.median(seen) if seen else 0.0

    def longest(self, comm: str) -> float:
        """The longest of this program's recent processes; 0 when none was seen to end."""
        with self._lock:
            return max(self._lengths.get(comm, {}).values(), default=0.0)


@dataclass(frozen=True)
class _Estimate:
    """Each job's estimated work (in `unit`) and how that was found."""

    work: dict[int, float]
    unit: str
    basis: str


def long_jobs(processes: Sequence[ProcessInfo], history: JobHistory,
              ended: Collection[int] = ()) -> list[profile_pb2.LongJob]:
    """The long jobs among these processes (one program or several: each program is its own
    batch), with the evidence; empty when no program's jobs show a clear tail. Those in `ended`
    exited in the window: a batch that ran again within it is judged on the run still running
    (the ended run's command lines are gone, and mixed with the new run's they look like two
    programs)."""
    found: list[profile_pb2.LongJob] = []
    by_program: dict[str, list[ProcessInfo]] = {}
    for process in processes:
        if process.pid not in ended:
            by_program.setdefault(process.comm, []).append(process)
    for jobs in by_program.values():
        if len(jobs) >= MIN_JOBS:
            found += _long_of(jobs, history)
    return found


def time_runs(found: Iterable[profile_pb2.LongJob], processes: dict[int, ProcessInfo], lengths: JobLengths,
              ended: set[int]) -> None:
    """Set how long a run of each long job lasts: its program's longest job seen to end (the long
    job's last run, when the batch repeats), or, when more, the age of this run if it still runs
    (`ended`: the processes that exited, whose age now would overstate their length)."""
    now_s = time.clock_gettime(time.CLOCK_BOOTTIME)
    for job in found:
        process = processes[job.pid]
        running = process.start_s > 0 and job.pid not in ended
        job.seconds = max(lengths.longest(process.comm), now_s - process.start_s if running else 0.0)


def _long_of(jobs: list[ProcessInfo], history: JobHistory) -> list[profile_pb2.LongJob]:
    for estimate in (_measured(jobs, history), _inputs(jobs)):
        if estimate is None:
            continue
        median = statistics.median(estimate.work.values())
        long = [p for p in jobs if median > 0 and estimate.work[p.pid] >= LONG_FACTOR * median]
        if long and len(long) < len(jobs) / 2:
            return [_long_job(p, estimate, median) for p in long]
    return []


def _measured(jobs: list[ProcessInfo], history: JobHistory) -> _Estimate | None:
    work = {p.pid: history.cpu_s(p) for p in jobs}
    if max(work.values()) < MIN_EVIDENCE_CPU_S:
        return None
    return _Estimate(work, "s of CPU", "CPU used by this command line (in earlier runs or so far)")


def _inputs(jobs: list[ProcessInfo]) -> _Estimate | None:
    """Work from the arguments the jobs differ in: the product of each differing argument's
    size (file) or value (number), as a multiple of its median."""
    argvs = [p.cmdline().split(" ") for p in jobs]
    if len({len(a) for a in argvs}) != 1:
        return None  # not one program run over different inputs
    work = dict.fromkeys((p.pid for p in jobs), 1.0)
    what = []
    for position in range(len(argvs[0])):
        values = [a[position].rpartition("=")[2] for a in argvs]
        if len(set(values)) == 1:
            continue
        sizes = _sizes(jobs, values)
        if sizes is None:
            continue
        median = statistics.median(sizes)
        for process, size in zip(jobs, sizes, strict=True):
            work[process.pid] *= size / median
        what.append("file sizes" if not _NUMBER.fullmatch(values[0]) else "numbers")
    if not what:
        return None
    return _Estimate(work, "x the median input", f"the {' and '.join(sorted(set(what)))} on their command lines")


def _sizes(jobs: list[ProcessInfo], values: list[str]) -> list[float] | None:
    """Every value as a positive number, or every value as a non-empty regular file's size."""
    if all(_NUMBER.fullmatch(v) for v in values):
        numbers = [float(v) for v in values]
        return numbers if min(numbers) > 0 else None
    sizes = [_file_size(p.pid, v) for p, v in zip(jobs, values, strict=True)]
    return None if any(s is None for s in sizes) else sizes


def _file_size(pid: int, path: str) -> float | None:
    # Relative paths are the job's own: resolve them from its working directory.
    full = path if os.path.isabs(path) else os.path.join(f"{procfs.PROC}/{pid}/cwd", path)
    try:
        found = os.stat(full)
    except OSError:
        return None
    return float(found.st_size) if found.st_size > 0 and stat.S_ISREG(found.st_mode) else None


def _long_job(process: ProcessInfo, estimate: _Estimate, median: float) -> profile_pb2.LongJob:
    cmdline = process.cmdline()
    ratio = estimate.work[process.pid] / median
    if estimate.unit == "s of CPU":
        evidence = (f"{estimate.work[process.pid]:.1f} s of CPU against a median job's {median:.1f} s, from the "
                    f"{estimate.basis}")
    else:
        evidence = f"{ratio:.0f}x the median job's work, from {estimate.basis}"
    return profile_pb2.LongJob(pid=process.pid, cmdline=cmdline[:CMDLINE_SHOWN], matcher=_matcher(cmdline),
                               work_ratio=ratio, evidence=evidence)


def _matcher(cmdline: str) -> common_pb2.GroupMatcher:
    """The exact command line, anchored (its reruns match, its siblings do not); a long one by
    as much of its end as fits the matchers' length limit (the inputs are usually last)."""
    pattern = "^" + re.escape(cmdline) + "$"
    tail = cmdline
    while len(pattern) > matchers.REGEX_MAX_CHARS:
        tail = tail[len(tail) // 4:]
        pattern = re.escape(tail) + "$"
    return common_pb2.GroupMatcher(cmdline_regex=pattern)
