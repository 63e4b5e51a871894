"""Fast readers for the scheduler's per-task accounting in /proc.

Shared by the observer (sampling) and the executor (finding the tasks a policy applies to).
Everything here is written to be called for hundreds of threads a second: raw os.open/read,
bytes parsing, and a cache that skips a thread's larger files when its schedstat says it has
not run since the last look.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from schedcp.domain import sockdiag

PROC = "/proc"
# /proc/<pid>/stat `flags` bit for kernel threads (include/linux/sched.h).
PF_KTHREAD = 0x00200000
_POLICIES = {0: "SCHED_OTHER", 1: "SCHED_FIFO", 2: "SCHED_RR", 3: "SCHED_BATCH", 5: "SCHED_IDLE",
             6: "SCHED_DEADLINE", 7: "SCHED_EXT"}
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


def read_bytes(path: str) -> bytes | None:
    """A small file whole (up to 64 KiB in one read: the per-task files), or None when it is
    gone (the task exited) or unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 65536)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_table(path: str) -> bytes:
    """A table of any length, such as /proc/net/tcp (b"" when unreadable): a seq_file returns
    about a page per read whatever the buffer, so one read saw 27 of a busy server's sockets
    and missed its listening one."""
    try:
        with open(path, "rb", buffering=0) as table:
            return table.readall()
    except OSError:
        return b""


class ThreadCounters(NamedTuple):
    """Cumulative scheduler counters of one thread, as the kernel keeps them. (A NamedTuple:
    one is made per thread per scan, and tuples are the cheapest to make.)"""

    tid: int
    pid: int
    cpu_ns: int
    # Time spent runnable on a run queue, waiting for a CPU (schedstat run_delay).
    run_delay_ns: int
    # Number of times it got a CPU (schedstat pcount).
    runs: int
    voluntary: int
    involuntary: int
    # When these were read (time.monotonic()). A scan of a busy or emulated host can take a
    # good part of a second, so a thread read late in one scan and early in the next was
    # watched for a different span than the scans' own start times say.
    read_at: float = 0.0


@dataclass(slots=True)
class ProcessInfo:
    """What grouping and matching need to know about a process."""

    pid: int
    comm: str
    # Path in the hierarchy that holds the cpu controller (v1 `cpu` or the unified one).
    cgroup: str
    # Path in the unified (v2) hierarchy, where per-cgroup PSI lives.
    unified_cgroup: str
    kernel_thread: bool
    has_tty: bool
    uid: int
    num_threads: int
    # When it started, in seconds since boot (CLOCK_BOOTTIME): its age, and which processes
    # started together.
    start_s: float = 0.0
    # CPU time it has used since it started (user + system), when it was last read: with its
    # command line, how long a job of a batch runs.
    cpu_s: float = 0.0
    # Its parent: a server that forks a process per connection holds its listening socket there.
    ppid: int = 0
    _cmdline: str | None = field(default=None, repr=False)

    def cmdline(self) -> str:
        """The command line, read once and only when a matcher asks for it."""
        if self._cmdline is None:
            raw = read_bytes(f"{PROC}/{self.pid}/cmdline") or b""
            self._cmdline = raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
        return self._cmdline


def parse_stat(raw: bytes) -> tuple[str, list[bytes]]:
    """(comm, fields after comm) of a /proc stat line; comm may contain spaces and parens."""
    open_paren, close_paren = raw.index(b"("), raw.rindex(b")")
    return raw[open_paren + 1:close_paren].decode(errors="replace"), raw[close_paren + 2:].split()


def parse_cgroups(raw: bytes) -> tuple[str, str]:
    """(cpu controller path, unified path) from /proc/<pid>/cgroup."""
    cpu_path = unified = ""
    for line in raw.decode(errors="replace").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:
            unified = path
        elif "cpu" in controllers.split(","):
            cpu_path = path
    return cpu_path or unified, unified


def read_process(pid: int) -> ProcessInfo | None:
    stat = read_bytes(f"{PROC}/{pid}/stat")
    cgroups = read_bytes(f"{PROC}/{pid}/cgroup")
    if stat is None:
        return None
    try:
        comm, fields = parse_stat(stat)
        uid = os.stat(f"{PROC}/{pid}").st_uid
    except (ValueError, OSError):
        return None
    # fields[0] is field 3 of proc(5) (`state`): ppid is field 4, tty_nr 7, flags 9, utime 14,
    # stime 15, num_threads 20, starttime 22.
    cpu_path, unified = parse_cgroups(cgroups or b"")
    return ProcessInfo(
        pid=pid, comm=comm, cgroup=cpu_path, unified_cgroup=unified,
        kernel_thread=bool(int(fields[6]) & PF_KTHREAD), has_tty=int(fields[4]) != 0, uid=uid,
        num_threads=int(fields[17]), start_s=int(fields[19]) / _CLOCK_TICKS,
        cpu_s=(int(fields[11]) + int(fields[12])) / _CLOCK_TICKS, ppid=int(fields[1]),
    )


def list_processes(uid: int | None = None) -> list[ProcessInfo]:
    """Every process (of `uid`, when given) that is still there."""
    found = []
    for name in os.listdir(PROC):
        if name.isdigit() and (info := read_process(int(name))) is not None and uid in (None, info.uid):
            found.append(info)
    return found


def thread_ids(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"{PROC}/{pid}/task")]
    except OSError:
        return []


def _status_switches(raw: bytes) -> tuple[int, int]:
    voluntary = involuntary = 0
    start = raw.find(b"voluntary_ctxt_switches:")
    if start >= 0:
        voluntary = int(raw[start + 24:raw.index(b"\n", start)])
    start = raw.find(b"nonvoluntary_ctxt_switches:")
    if start >= 0:
        involuntary = int(raw[start + 27:raw.index(b"\n", start)])
    return voluntary, involuntary


def read_schedstat(pid: int, tid: int) -> tuple[int, int, int] | None:
    """(cpu_ns, run_delay_ns, runs) of one thread, or None when it exited."""
    raw = read_bytes(f"{PROC}/{pid}/task/{tid}/schedstat")
    if not raw:
        return None
    cpu_ns, run_delay_ns, runs = raw.split()
    return int(cpu_ns), int(run_delay_ns), int(runs)


TCP_LISTEN = "0A"
TCP_ESTABLISHED = "01"
UNIX_ACCEPTCON = 0x10000


class TcpSocket(NamedTuple):
    """One line of /proc/net/tcp or tcp6: the state and both ends as the kernel prints them
    (address in hex, as stored; port as a number)."""

    state: str
    local: tuple[str, int]
    remote: tuple[str, int]


def parse_tcp(tcp: bytes) -> dict[int, TcpSocket]:
    """The TCP sockets of /proc/net/tcp and tcp6 (concatenated), by inode."""
    found = {}
    for line in tcp.decode(errors="replace").splitlines():
        fields = line.split()
        if len(fields) > 9 and fields[9].isdigit() and fields[9] != "0":
            found[int(fields[9])] = TcpSocket(fields[3], _endpoint(fields[1]), _endpoint(fields[2]))
    return found


def _endpoint(text: str) -> tuple[str, int]:
    address, _, port = text.partition(":")
    return address, int(port, 16)


def _accepting_unix(unix: bytes) -> set[int]:
    """Inodes of the unix stream sockets flagged __SO_ACCEPTCON in /proc/net/unix."""
    inodes = set()
    for line in unix.decode(errors="replace").splitlines()[1:]:
        fields = line.split()
        if len(fields) > 6 and int(fields[3], 16) & UNIX_ACCEPTCON:
            inodes.add(int(fields[6]))
    inodes.discard(0)
    return inodes


class Sockets(enum.Enum):
    """What sockets a group's processes hold: whether anyone outside waits on what they do."""

    SERVES = "serves"  # one accepts connections: they serve requests
    TALKS = "talks"  # sockets, none accepting: a client, a peer, a bus
    NONE = "none"  # no socket at all: only files, pipes and timers wake them
    UNKNOWN = "unknown"  # some descriptors could not be read (another user's, without root)


@dataclass(frozen=True, slots=True)
class HeldSockets:
    """What sockets some processes hold (`kind`), and which (their inodes, to find who is
    connected to whom), as seen from `pid`: a live one of them, whose network namespace's
    tables were read."""

    kind: Sockets
    inodes: frozenset[int] = frozenset()
    pid: int = 0


class NetTables:
    """The TCP and unix socket tables of each network namespace, read once and kept: one profile
    looks up many groups' sockets, and on a host with thousands of connections each read of the
    tables is megabytes of text. Make one per profile (sockets come and go)."""

    def __init__(self) -> None:
        self._tcp: dict[str, dict[int, TcpSocket]] = {}
        self._listening: dict[str, set[int]] = {}
        self._unix: dict[str, dict[int, sockdiag.UnixSocket]] = {}

    def tcp(self, pid: int) -> dict[int, TcpSocket]:
        """The TCP sockets of `pid`'s network namespace, by inode."""
        return self._cached(self._tcp, pid, lambda: parse_tcp(_tcp_tables(pid)))

    def listening(self, pid: int) -> set[int]:
        """Inodes of the sockets accepting connections in `pid`'s network namespace."""
        def read() -> set[int]:
            tcp = {inode for inode, sock in self.tcp(pid).items() if sock.state == TCP_LISTEN}
            return tcp | _accepting_unix(read_table(f"{PROC}/{pid}/net/unix"))

        return self._cached(self._listening, pid, read)

    def unix(self, pid: int) -> dict[int, sockdiag.UnixSocket]:
        """The unix stream sockets of `pid`'s network namespace, by inode, with their peers; empty
        for another namespace than this process's (sock_diag answers for its caller's only) or
        where the kernel has no sock_diag for unix sockets."""
        def read() -> dict[int, sockdiag.UnixSocket]:
            if net_namespace(pid) != net_namespace(os.getpid()):
                return {}
            try:
                return sockdiag.unix_sockets()
            except OSError:
                return {}

        return self._cached(self._unix, pid, read)

    @staticmethod
    def _cached(cache: dict, pid: int, read: Callable[[], T]) -> T:
        """Read through `pid`, kept for its namespace only if `pid` was alive (in the same
        namespace) before and after: a process that exited meanwhile reads empty tables, and
        those must not stand for its namespace's other groups."""
        namespace = net_namespace(pid)
        if namespace in cache:
            return cache[namespace]
        found = read()
        if namespace and net_namespace(pid) == namespace:
            cache[namespace] = found
        return found


def sockets(pids: list[int], tables: NetTables | None = None) -> HeldSockets:
    """What sockets these processes hold, from their descriptors; listening sockets are looked
    up in the network namespace of the first one still alive (a group's list can start with a
    process that exited in the window), in `tables` when given. Only root sees other users'
    descriptors."""
    held: set[int] = set()
    unreadable = False
    for pid in pids:
        found = _socket_inodes(pid)
        if found is None:
            unreadable = True
        else:
            held |= found
    if not held:
        return HeldSockets(Sockets.UNKNOWN if unreadable or not pids else Sockets.NONE)
    alive = next((pid for pid in pids if net_namespace(pid)), pids[0])
    kind = Sockets.SERVES if held & (tables or NetTables()).listening(alive) else Sockets.TALKS
    return HeldSockets(kind, frozenset(held), alive)


def net_namespace(pid: int) -> str:
    """Which network namespace `pid` is in ("" when it is gone): sockets of two namespaces are
    not connected to each other even when their addresses match."""
    try:
        return os.readlink(f"{PROC}/{pid}/ns/net")
    except OSError:
        return ""


def _tcp_tables(pid: int) -> bytes:
    return b"".join(read_table(f"{PROC}/{pid}/net/{name}") for name in ("tcp", "tcp6"))


def _socket_inodes(pid: int) -> set[int] | None:
    """The inodes of the sockets a process holds; None when its descriptors cannot be read."""
    try:
        names = os.listdir(f"{PROC}/{pid}/fd")
    except FileNotFoundError:
        return set()  # it exited: it holds nothing
    except OSError:
        return None
    inodes = set()
    for name in names:
        try:
            target = os.readlink(f"{PROC}/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def host_cpu_idle_s() -> float:
    """CPU seconds all CPUs spent idle (or waiting for I/O) since boot (/proc/stat).

    A window's busy time is its capacity less this, not /proc/stat's busy fields: the kernel
    measures idle time exactly (NO_HZ), but charges busy time one tick per timer interrupt, and
    a loaded emulated CPU takes fewer interrupts than ticks passed (in `make e2e`, the busy
    fields said a quarter of the CPUs idled while the hogs' own counters had them busy)."""
    raw = read_bytes(f"{PROC}/stat") or b"cpu 0 0 0 0\n"
    ticks = [int(x) for x in raw[:raw.index(b"\n")].split()[1:]]
    # user nice system idle iowait ...
    return (ticks[3] + (ticks[4] if len(ticks) > 4 else 0)) / _CLOCK_TICKS


def cpu_stall_s() -> float:
    """Seconds since boot in which at least one runnable task waited for a CPU (PSI's cpu
    `some total`, kept in microseconds); 0 without PSI. A window's difference is its own share
    of contention, where `avg10` also remembers the tens of seconds before it."""
    return int(_pressure(f"{PROC}/pressure/cpu").get("some", {}).get("total", 0)) / 1e6


@dataclass(frozen=True, slots=True)
class SchedSettings:
    policy: str
    nice: int
    slice_us: float


def read_sched_settings(pid: int, tid: int | None = None) -> SchedSettings | None:
    """Policy, nice and EEVDF slice of a thread (the process's main thread by default)."""
    base = f"{PROC}/{pid}/task/{tid or pid}"
    stat = read_bytes(f"{base}/stat")
    if stat is None:
        return None
    _, fields = parse_stat(stat)
    # nice is field 19 and policy field 41 of proc(5); fields[] starts at field 3.
    nice, policy = int(fields[16]), int(fields[38])
    slice_us = 0.0
    sched = read_bytes(f"{base}/sched") or b""
    start = sched.find(b"se.slice")
    if start >= 0:
        line = sched[start:sched.index(b"\n", start)]
        slice_us = int(line.rsplit(b":", 1)[1]) / 1000.0
    return SchedSettings(_POLICIES.get(policy, f"policy {policy}"), nice, slice_us)


@dataclass(frozen=True)
class CgroupMounts:
    v1_cpu: str  # mount point of the v1 hierarchy with the cpu controller, or ""
    v2_root: str  # mount point of the unified hierarchy, or ""
    any_v1: bool


def cgroup_mounts(mounts: bytes | None = None) -> CgroupMounts:
    """Where the cgroup hierarchies are mounted (/proc/mounts)."""
    v1_cpu, v2_root, any_v1 = "", "", False
    for line in (mounts if mounts is not None else read_bytes(f"{PROC}/mounts") or b"").decode().splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        mount_point, fstype, options = fields[1], fields[2], fields[3].split(",")
        if fstype == "cgroup2" and not v2_root:
            v2_root = mount_point
        elif fstype == "cgroup":
            any_v1 = True
            if "cpu" in options and not v1_cpu:
                v1_cpu = mount_point
    return CgroupMounts(v1_cpu, v2_root, any_v1)


def cgroup2_mount(mounts: bytes | None = None) -> str:
    """Mount point of the unified (v2) cgroup hierarchy, where per-cgroup PSI lives; "" if none."""
    return cgroup_mounts(mounts).v2_root


def cpu_controller(mounts: bytes | None = None) -> tuple[str, int]:
    """(mount point, cgroup version) of the hierarchy holding the cpu controller; ("", 0) if none.
    A v2 hierarchy counts only if it offers `cpu`."""
    found = cgroup_mounts(mounts)
    controllers = read_bytes(f"{found.v2_root}/cgroup.controllers") if found.v2_root else None
    if controllers and b"cpu" in controllers.split():
        return found.v2_root, 2
    if found.v1_cpu:
        return found.v1_cpu, 1
    return "", 0


def _pressure(path: str) -> dict[str, dict[str, str]]:
    """A PSI file by line kind ("some", "full") and field ("avg10", "total", ...); {} if absent."""
    lines = (line.split() for line in (read_bytes(path) or b"").decode().splitlines())
    return {kind: dict(pair.partition("=")[::2] for pair in pairs) for kind, *pairs in lines}


def read_cpu_pressure(path: str) -> dict[str, float]:
    """`some_avg10`, `some_avg60`, `full_avg10`, `full_avg60` from a PSI file; {} if absent."""
    return {f"{kind}_{key}": float(value) for kind, fields in _pressure(path).items()
            for key, value in fields.items() if key in ("avg10", "avg60")}


@dataclass(slots=True)
class HostScan:
    """One pass over every visible thread."""

    taken_at: float
    # How long the pass took: the spread of its threads' read_at.
    took_s: float
    processes: dict[int, ProcessInfo]
    threads: dict[int, ThreadCounters]
    host_idle_s: float
    # Threads that ran within RECENT_S before this scan, whoever asked for the previous scans.
    active: set[int]
    stall_s: float = 0.0  # cpu_stall_s() at taken_at


class ProcfsScanner:
    """Scans /proc for threads' counters, cheaply enough to run every second.

    `uid` limits the scan to one user's processes: what an unprivileged observer may read
    in full. A thread whose schedstat is unchanged since the previous scan has not run, so
    its switch counters and its process's comm/cgroup are taken from the cache. One scanner
    may serve several overlapping windows: its cache only saves reads, it never decides what
    a window counts.
    """

    RECENT_S = 2.0

    def __init__(self, uid: int | None = None) -> None:
        self._uid = uid
        self._processes: dict[int, ProcessInfo] = {}
        self._threads: dict[int, ThreadCounters] = {}
        self._owners: dict[int, int] = {}
        self._last_ran: dict[int, float] = {}

    def scan(self) -> HostScan:
        taken_at = time.monotonic()
        # Read with taken_at, not after the pass: a window's idle time and its duration must
        # cover the same span.
        idle_s, stall_s = host_cpu_idle_s(), cpu_stall_s()
        processes: dict[int, ProcessInfo] = {}
        threads: dict[int, ThreadCounters] = {}
        ran_now: set[int] = set()
        owners: dict[int, int] = {}
        for name in os.listdir(PROC):
            if not name.isdigit():
                continue
            pid = int(name)
            if self._uid is not None:
                owner = self._owners.get(pid)
                owners[pid] = owner = _owner(pid) if owner is None else owner
                if owner != self._uid:
                    continue
            process = self._scan_process(pid, threads, ran_now)
            if process is not None:
                processes[pid] = process
        last_ran = {tid: self._last_ran[tid] for tid in threads if tid in self._last_ran}
        last_ran.update(dict.fromkeys(ran_now, taken_at))
        self._processes, self._threads, self._owners, self._last_ran = processes, threads, owners, last_ran
        active = {tid for tid, at in last_ran.items() if taken_at - at <= self.RECENT_S}
        return HostScan(taken_at, time.monotonic() - taken_at, processes, threads, idle_s, active, stall_s)

    def _scan_process(self, pid: int, threads: dict[int, ThreadCounters], ran_now: set[int]) -> ProcessInfo | None:
        known = self._processes.get(pid)
        # A single-threaded process's only thread is itself: no need to list its tasks, unless
        # it ran (it may have started threads).
        single = known is not None and known.num_threads == 1
        ran = self._scan_threads(pid, [pid] if single else thread_ids(pid), threads, ran_now)
        if single and ran:
            self._scan_threads(pid, [t for t in thread_ids(pid) if t != pid], threads, ran_now)
        if known is not None and not ran:
            return known
        return read_process(pid) or known

    def _scan_threads(self, pid: int, tids: list[int], out: dict[int, ThreadCounters], ran_now: set[int]) -> bool:
        """Read each thread's counters into `out`; True when any of them ran since last scan."""
        # Inlined reads: this loop runs for every thread on the host every interval.
        ran = False
        cache = self._threads
        for tid in tids:
            base = f"{PROC}/{pid}/task/{tid}/"
            try:
                fd = os.open(base + "schedstat", os.O_RDONLY)
            except OSError:
                continue
            try:
                cpu_ns, run_delay_ns, runs = map(int, os.read(fd, 256).split())
            except (OSError, ValueError):
                continue
            finally:
                os.close(fd)
            read_at = time.monotonic()
            previous = cache.get(tid)
            if previous is not None and previous.pid == pid and previous.runs == runs \
                    and previous.cpu_ns == cpu_ns and previous.run_delay_ns == run_delay_ns:
                out[tid] = previous._replace(read_at=read_at)  # untouched since the last scan, as most threads are
                continue
            # It ran (or waited, or is new): its switch counters moved too. A hog that was never
            # switched out still moves cpu_ns.
            ran = True
            ran_now.add(tid)
            voluntary, involuntary = _status_switches(read_bytes(base + "status") or b"")
            out[tid] = ThreadCounters(tid, pid, cpu_ns, run_delay_ns, runs, voluntary, involuntary, read_at)
        return ran


def _owner(pid: int) -> int:
    try:
        return os.stat(f"{PROC}/{pid}").st_uid
    except OSError:
        return -1
