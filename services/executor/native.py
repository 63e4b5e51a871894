"""The native backend: a NativePolicy applied to the threads of matched processes with the
kernel's own knobs, every change journalled first (journal.py) and undone on revert.

Per thread: scheduling policy, nice and EEVDF slice together with sched_setattr (one call, so
changing the policy cannot silently reset a custom slice), and CPU affinity. Per process: a
move into a cgroup that schedcp creates for the rule, with cpu.idle or a weight (cgroup v2
cpu.weight, v1 cpu.shares). Threads and processes started later are picked up by rescan(), and
a process that starts a program by apply_to() as it starts (the executor's process events).

Never touched, whatever the policy says: real-time threads, and the processes of
schedcp/domain/protected.py (init, kernel threads, system daemons, schedcp itself).
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from schedcp.domain import matchers, procfs, protected
from schedcp.runtime.errors import FailedPrecondition
from schedcp.v1 import policy_pb2
from services.executor.journal import Change, Journal

log = logging.getLogger(__name__)

SCHED_OTHER, SCHED_BATCH, SCHED_IDLE = 0, 3, 5
POLICY_OF = {policy_pb2.SCHED_POLICY_OTHER: SCHED_OTHER, policy_pb2.SCHED_POLICY_BATCH: SCHED_BATCH,
             policy_pb2.SCHED_POLICY_IDLE: SCHED_IDLE}
_SYSCALLS = {"x86_64": (314, 315), "aarch64": (274, 275)}  # sched_setattr, sched_getattr


class _SchedAttr(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("sched_policy", ctypes.c_uint32), ("sched_flags", ctypes.c_uint64),
                ("sched_nice", ctypes.c_int32), ("sched_priority", ctypes.c_uint32),
                ("sched_runtime", ctypes.c_uint64), ("sched_deadline", ctypes.c_uint64),
                ("sched_period", ctypes.c_uint64), ("sched_util_min", ctypes.c_uint32),
                ("sched_util_max", ctypes.c_uint32)]


_libc = ctypes.CDLL(None, use_errno=True)


SCHED_FLAG_RESET_ON_FORK = 0x01


@dataclass(frozen=True)
class Sched:
    """A thread's normal-class settings. runtime_ns 0 means the kernel's default slice; flags
    keeps SCHED_FLAG_RESET_ON_FORK, which sched_setattr would otherwise clear."""

    policy: int
    nice: int
    runtime_ns: int
    flags: int = 0


def get_sched(tid: int) -> Sched:
    attr = _SchedAttr()
    _syscall(1, tid, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    return Sched(attr.sched_policy, attr.sched_nice, attr.sched_runtime, attr.sched_flags & SCHED_FLAG_RESET_ON_FORK)


def set_sched(tid: int, sched: Sched) -> None:
    attr = _SchedAttr(size=ctypes.sizeof(_SchedAttr), sched_policy=sched.policy, sched_nice=sched.nice,
                      sched_runtime=sched.runtime_ns, sched_flags=sched.flags)
    _syscall(0, tid, ctypes.byref(attr), 0)


def _syscall(which: int, *args) -> None:
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        raise FailedPrecondition(f"sched_setattr is not wired up for {platform.machine()}")
    if _libc.syscall(numbers[which], *args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def thread_start_time(pid: int, tid: int) -> int:
    """Start time of a thread in clock ticks since boot; 0 if it is gone."""
    raw = procfs.read_bytes(f"{procfs.PROC}/{pid}/task/{tid}/stat")
    if raw is None:
        return 0
    return int(procfs.parse_stat(raw)[1][19])  # field 22 of proc(5)


def parent_pid(pid: int) -> int:
    raw = procfs.read_bytes(f"{procfs.PROC}/{pid}/stat")
    return int(procfs.parse_stat(raw)[1][1]) if raw else 0  # field 4 of proc(5)


class CgroupTree:
    """The hierarchy holding the cpu controller; schedcp's cgroups live under <root>/schedcp."""

    def __init__(self, root: str, version: int) -> None:
        self.root, self.version = Path(root), version

    def create(self, name: str) -> str:
        """Create schedcp/<name> (path relative to the root, as /proc/<pid>/cgroup shows it)."""
        parent = self.root / "schedcp"
        if self.version == 2:
            self._delegate_cpu(self.root)
        parent.mkdir(exist_ok=True)
        if self.version == 2:
            self._delegate_cpu(parent)
        (parent / name).mkdir(exist_ok=True)
        return f"/schedcp/{name}"

    def configure(self, path: str, idle: bool | None, weight: int | None) -> None:
        directory = self.root / path.lstrip("/")
        if idle is not None:
            (directory / "cpu.idle").write_text("1" if idle else "0")
        if weight is not None:
            if self.version == 2:
                (directory / "cpu.weight").write_text(str(weight))
            else:  # v1 shares: 1024 is the default, as cpu.weight 100 is
                (directory / "cpu.shares").write_text(str(max(2, weight * 1024 // 100)))

    def move(self, pid: int, path: str) -> None:
        (self.root / path.lstrip("/") / "cgroup.procs").write_text(str(pid))

    def members(self, path: str) -> list[int]:
        try:
            return [int(x) for x in (self.root / path.lstrip("/") / "cgroup.procs").read_text().split()]
        except FileNotFoundError:
            return []

    def remove(self, path: str) -> None:
        directory = self.root / path.lstrip("/")
        if directory.exists():
            directory.rmdir()
        parent = directory.parent
        if parent.name == "schedcp" and parent.exists() and not any(p.is_dir() for p in parent.iterdir()):
            parent.rmdir()

    def _delegate_cpu(self, directory: Path) -> None:
        control = directory / "cgroup.subtree_control"
        if "cpu" not in control.read_text().split():
            control.write_text("+cpu")


@dataclass
class ApplyReport:
    processes: int = 0
    threads: int = 0
    errors: list[str] = field(default_factory=list)
    # What was done, when it is not threads in processes (a sched_ext scheduler).
    detail: str = ""


@dataclass
class RevertReport:
    restored: int = 0
    gone: int = 0
    errors: list[str] = field(default_factory=list)


class NativeBackend:
    """Applies one NativePolicy at a time. apply, rescan and revert may run in worker threads:
    a lock keeps them one at a time, and a rescan after a revert finds nothing to do.

    Tasks started after the deployment inherit the changed settings (and cgroup) from their
    parent, so their journalled original is their process's or parent process's original, not
    what they show. A restore happens only where the value is still the one schedcp applied:
    a task that changed itself since, or was moved by someone else, is left alone."""

    def __init__(self, journal: Journal, cgroups: CgroupTree | None) -> None:
        self._journal = journal
        self._cgroups = cgroups
        self._lock = threading.Lock()
        self._deployment_id = ""
        self._rules: list[tuple[policy_pb2.NativeRule, list[matchers.Matcher]]] = []
        self._rule_cgroups: dict[int, str] = {}
        self._done: set[tuple[str, int, int]] = set()
        # Pre-deployment values by process, for threads and children that inherit changed ones.
        self._originals: dict[tuple[str, int], object] = {}
        # sched_getattr reports the effective slice, custom or not (see _unpinned).
        self._default_runtime_ns = get_sched(os.getpid()).runtime_ns

    def _unpinned(self, sched: Sched) -> Sched:
        """`sched` with a slice equal to the default written as 0: setting it as a number would
        make it custom (on 6.12+), fixed when the default moves with the CPUs online, so a rule
        that sets no slice, and a restore, would change what they only meant to keep."""
        return replace(sched, runtime_ns=0) if sched.runtime_ns == self._default_runtime_ns else sched

    @property
    def active(self) -> bool:
        return bool(self._deployment_id)

    def journalled(self) -> int:
        return len(self._journal)

    def apply(self, deployment_id: str, policy: policy_pb2.NativePolicy) -> ApplyReport:
        rules = [(rule, matchers.compile_all(rule.match)) for rule in policy.rules]
        if any(_sets_cgroup(r) for r, _ in rules) and self._cgroups is None:
            raise FailedPrecondition("the policy sets cgroup cpu knobs but this host has no cpu controller "
                                     "(cgroup v2 with cpu delegated, or v1 cpu)")
        with self._lock:
            if self.active:
                raise FailedPrecondition(f"deployment {self._deployment_id} is still applied; revert it first")
            self._deployment_id, self._rules = deployment_id, rules
        return self.rescan()

    def rescan(self) -> ApplyReport:
        """Apply the active policy to matched threads not yet changed (new ones included)."""
        return self._apply_matched(procfs.list_processes)

    def apply_to(self, pids: Iterable[int]) -> ApplyReport:
        """Apply the active policy to these processes if it matches them (ones that just started
        a program: procevents.py), before they fork workers that would inherit the old settings."""
        return self._apply_matched(lambda: filter(None, map(procfs.read_process, pids)))

    def _apply_matched(self, processes: Callable[[], Iterable[procfs.ProcessInfo]]) -> ApplyReport:
        """`processes` is called under the lock: a revert in between leaves nothing to do."""
        report = ApplyReport()
        with self._lock:
            if not self.active:
                return report
            for process in processes():
                if protected.reason_protected(process):
                    continue
                for number, (rule, compiled) in enumerate(self._rules):
                    if any(m.matches(process) for m in compiled):
                        report.processes += 1
                        report.threads += self._apply_rule(number, rule, process, compiled, report.errors)
        return report

    def revert(self) -> RevertReport:
        """Undo every journalled change, newest first. Changes that could not be undone (an
        error, not a task that is gone) stay in the journal for the next attempt."""
        report = RevertReport()
        with self._lock:
            failed: list[Change] = []
            homes: dict[str, str] = {}  # rule cgroup -> where its processes came from
            for change in reversed(self._journal.changes()):
                try:
                    restored = self._restore(change, homes)
                except Exception as exc:
                    failed.append(change)
                    report.errors.append(f"{change.kind} of {change.tid or change.pid or change.target}: "
                                         f"{getattr(exc, 'strerror', None) or exc}")
                    continue
                if restored:
                    report.restored += 1
                else:
                    report.gone += 1
            self._journal.replace(list(reversed(failed)))
            self._deployment_id, self._rules, self._rule_cgroups = "", [], {}
            self._done.clear()
            self._originals.clear()
        return report

    def _apply_rule(self, number: int, rule: policy_pb2.NativeRule, process: procfs.ProcessInfo,
                    compiled: list[matchers.Matcher], errors: list[str]) -> int:
        # Look again right before acting: the pid may have been reused since the listing.
        fresh = procfs.read_process(process.pid)
        if fresh is None or fresh.comm != process.comm or protected.reason_protected(fresh) \
                or not any(m.matches(fresh) for m in compiled):
            return 0
        try:
            if _is_realtime(fresh.pid):
                return 0
            if _sets_cgroup(rule):
                self._move_to_rule_cgroup(number, rule, fresh)
            changed = 0
            for tid in procfs.thread_ids(fresh.pid):
                changed += self._apply_thread(rule, fresh.pid, tid)
            return changed
        except OSError as exc:
            errors.append(f"pid {process.pid} ({process.comm}): {exc.strerror or exc}")
            return 0

    def _apply_thread(self, rule: policy_pb2.NativeRule, pid: int, tid: int) -> int:
        start = thread_start_time(pid, tid)
        if not start or _is_realtime(tid):
            return 0
        changed = 0
        if (rule.policy or rule.HasField("nice") or rule.HasField("slice_us")) and self._first("sched", tid, start):
            current = get_sched(tid)
            original = self._original("sched", pid, current)
            wanted = Sched(POLICY_OF.get(rule.policy, current.policy),
                           rule.nice if rule.HasField("nice") else current.nice,
                           rule.slice_us * 1000 if rule.HasField("slice_us") else current.runtime_ns, current.flags)
            self._journal.record(Change(self._deployment_id, "sched", pid, tid, start, _values(original),
                                        applied=_values(wanted)))
            set_sched(tid, self._unpinned(wanted))
            changed = 1
        if rule.cpus and self._first("affinity", tid, start):
            current = sorted(os.sched_getaffinity(tid))
            wanted = sorted(_cpulist(rule.cpus))
            self._journal.record(Change(self._deployment_id, "affinity", pid, tid, start,
                                        self._original("affinity", pid, current), applied=wanted))
            os.sched_setaffinity(tid, wanted)
            changed = 1
        return changed

    def _move_to_rule_cgroup(self, number: int, rule: policy_pb2.NativeRule, process: procfs.ProcessInfo) -> None:
        if number not in self._rule_cgroups:
            name = f"{self._deployment_id}-r{number}"
            self._journal.record(Change(self._deployment_id, "cgroup_dir", target=f"/schedcp/{name}"))
            path = self._cgroups.create(name)
            self._cgroups.configure(path, rule.cgroup_cpu_idle if rule.HasField("cgroup_cpu_idle") else None,
                                    rule.cgroup_cpu_weight if rule.HasField("cgroup_cpu_weight") else None)
            self._rule_cgroups[number] = path
        target = self._rule_cgroups[number]
        start = thread_start_time(process.pid, process.pid)
        if not start or not self._first("cgroup", process.pid, start):
            return
        # A child forked after the move is already in the target: its home is its parent's.
        original = self._original("cgroup", process.pid, process.cgroup)
        if original == target:
            return
        self._journal.record(Change(self._deployment_id, "cgroup", process.pid, process.pid, start, original,
                                    target, applied=target))
        if process.cgroup != target:
            self._cgroups.move(process.pid, target)

    def _original(self, kind: str, pid: int, current: object) -> object:
        """The value before the deployment: the process's first recorded one, else its parent's
        (a child inherits changed settings), else what it shows now."""
        for owner in (pid, parent_pid(pid)):
            if (kind, owner) in self._originals:
                value = self._originals[(kind, owner)]
                self._originals.setdefault((kind, pid), value)
                return value
        self._originals[(kind, pid)] = current
        return current

    def _first(self, kind: str, tid: int, start: int) -> bool:
        """True once per (setting, thread): later rescans leave an already changed thread alone."""
        key = (kind, tid, start)
        if key in self._done:
            return False
        self._done.add(key)
        return True

    def _restore(self, change: Change, homes: dict[str, str]) -> bool:
        """Put one original back; False when its task is gone or changed by someone else since."""
        if change.kind == "cgroup_dir":
            if self._cgroups is not None:
                # Processes forked into it after the last rescan go where the rule's others came from.
                for pid in self._cgroups.members(change.target):
                    self._cgroups.move(pid, homes.get(change.target, "/"))
                self._cgroups.remove(change.target)
            return True
        if thread_start_time(change.pid, change.tid) != change.start_time:
            return False
        if change.kind == "sched":
            now = get_sched(change.tid)
            if change.applied is not None and _values(now) != change.applied:
                return False
            set_sched(change.tid, self._unpinned(Sched(*change.original)))
        elif change.kind == "affinity":
            if change.applied is not None and sorted(os.sched_getaffinity(change.tid)) != change.applied:
                return False
            os.sched_setaffinity(change.tid, change.original)
        elif change.kind == "cgroup" and self._cgroups is not None:
            homes[change.target] = change.original
            current = procfs.read_process(change.pid)
            if current is None or current.cgroup != change.applied:
                return False
            self._cgroups.move(change.pid, change.original)
        return True


def _values(sched: Sched) -> list[int]:
    return [sched.policy, sched.nice, sched.runtime_ns, sched.flags]


def _sets_cgroup(rule: policy_pb2.NativeRule) -> bool:
    return rule.HasField("cgroup_cpu_idle") or rule.HasField("cgroup_cpu_weight")


def _is_realtime(tid: int) -> bool:
    """Real-time and deadline threads are never changed (or moved)."""
    try:
        return get_sched(tid).policy not in (SCHED_OTHER, SCHED_BATCH, SCHED_IDLE)
    except OSError:
        return True


def _cpulist(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus
