"""The observer's pure parts: histogram percentiles, matchers, classification rules."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from schedcp.domain import matchers, procfs
from schedcp.domain.procfs import ProcessInfo, Sockets, parse_cgroups, parse_stat, sockets
from schedcp.runtime.errors import InvalidArgument
from schedcp.v1 import common_pb2, profile_pb2
from services.observer import hostfacts, peers
from services.observer.classify import classify
from services.observer.histogram import Histogram, slot_bounds_ns, slot_of
from services.observer.profiler import _measurement, idle_while_waiting
from services.observer.sampling import Slice, ThreadActivity, Window

C = profile_pb2


def test_histogram_percentiles_fall_in_the_right_bucket_and_the_mean_is_exact():
    h = Histogram()
    h.add(5_000, 990)       # 5 us
    h.add(5_000_000, 10)    # 5 ms: the slowest 1 %
    lower, upper = slot_bounds_ns(slot_of(5_000))
    assert lower <= h.percentile_ns(0.50) < upper
    assert lower <= h.percentile_ns(0.99) <= upper
    slow_lower, slow_upper = slot_bounds_ns(slot_of(5_000_000))
    assert slow_lower <= h.percentile_ns(0.999) <= slow_upper
    stats = h.to_stats("test")
    assert stats.samples == 1000
    assert stats.mean_us == pytest.approx((990 * 5 + 10 * 5000) / 1000)
    assert stats.max_us * 1000 == slow_upper
    assert sum(b.count for b in stats.histogram) == 1000


def test_empty_histogram_has_no_percentiles():
    stats = Histogram().to_stats("bpf")
    assert stats.samples == 0 and stats.p99_us == 0 and stats.source == "bpf"


def process(pid=10, comm="nginx", cgroup="/system.slice/nginx.service", cmdline="nginx -g daemon off;"):
    info = ProcessInfo(pid=pid, comm=comm, cgroup=cgroup, unified_cgroup=cgroup, kernel_thread=False,
                       has_tty=False, uid=0, num_threads=1)
    info._cmdline = cmdline
    return info


@pytest.mark.parametrize(("matcher", "matches"), [
    (common_pb2.GroupMatcher(pid=10), True),
    (common_pb2.GroupMatcher(pid=11), False),
    (common_pb2.GroupMatcher(comm="nginx"), True),
    (common_pb2.GroupMatcher(comm="ngin"), False),
    (common_pb2.GroupMatcher(comm_regex="ngi.x"), True),
    (common_pb2.GroupMatcher(comm_regex="ngi"), False),  # full match
    (common_pb2.GroupMatcher(cgroup="/system.slice"), True),  # descendants match
    (common_pb2.GroupMatcher(cgroup="/system.slice/nginx.service/"), True),
    (common_pb2.GroupMatcher(cgroup="/system.sl"), False),  # a prefix is not a parent
    (common_pb2.GroupMatcher(cmdline_regex="daemon off"), True),  # search
    (common_pb2.GroupMatcher(group_id="comm:nginx"), True),
    (common_pb2.GroupMatcher(group_id="pid:10"), True),
    (common_pb2.GroupMatcher(group_id="cgroup:/system.slice/nginx.service"), True),
    (common_pb2.GroupMatcher(group_id="comm:sshd"), False),
])
def test_matchers(matcher, matches):
    assert matchers.compile_matcher(matcher).matches(process()) is matches


def test_a_group_id_names_its_group_again():
    for kind, key in (("comm", "cyclictest"), ("pid", 42), ("cgroup", "/a/b")):
        matcher = matchers.matcher_for_group_id(matchers.group_id(kind, key))
        assert getattr(matcher, kind) == key


def test_matcher_errors_say_what_is_wrong():
    with pytest.raises(InvalidArgument, match="group_id 'pid:x'"):
        matchers.compile_matcher(common_pb2.GroupMatcher(group_id="pid:x"))
    with pytest.raises(InvalidArgument, match="longer than 256"):
        matchers.compile_matcher(common_pb2.GroupMatcher(cmdline_regex="a" * 300))


def test_proc_parsers_handle_awkward_names():
    comm, fields = parse_stat(b"42 (my (odd) name) S 1 42 42 0 -1 4194560 0 0")
    assert comm == "my (odd) name" and fields[0] == b"S"
    assert parse_cgroups(b"12:cpu,cpuacct:/batch\n1:name=systemd:/\n0::/user.slice\n") == ("/batch", "/user.slice")
    assert parse_cgroups(b"0::/kubepods/pod1\n") == ("/kubepods/pod1", "/kubepods/pod1")


def features(**values) -> profile_pb2.GroupFeatures:
    defaults = dict(active_threads=1, threads=1, cpu_share=0.0, demand=0.0, wakeups_per_s=0.0,
                    voluntary_ratio=1.0, mean_burst_us=0.0)
    return profile_pb2.GroupFeatures(**{**defaults, **values})


@pytest.mark.parametrize(("name", "f", "expected"), [
    ("four CPU hogs", features(active_threads=4, demand=3.9, cpu_share=0.98, voluntary_ratio=0.0,
                               mean_burst_us=3000, cpu_per_wakeup_us=4e6), C.WORKLOAD_CLASS_BATCH),
    ("hogs starved by contention", features(active_threads=40, demand=39, cpu_share=0.5, voluntary_ratio=0.0,
                                            mean_burst_us=1500, cpu_per_wakeup_us=5e4), C.WORKLOAD_CLASS_BATCH),
    ("a 1 kHz probe", features(wakeups_per_s=1000, cpu_share=0.004, demand=0.01, mean_burst_us=8,
                               cpu_per_wakeup_us=8), C.WORKLOAD_CLASS_LATENCY_SENSITIVE),
    # The service beside batch: its workers wait to run most of the time (demand near 1
    # per thread), but still block after each 2.5 ms request.
    ("request workers starved by batch", features(active_threads=4, demand=3.8, cpu_share=0.3, wakeups_per_s=240,
                                                  voluntary_ratio=0.55, mean_burst_us=900, cpu_per_wakeup_us=2500,
                                                  wait_share=0.8), C.WORKLOAD_CLASS_LATENCY_SENSITIVE),
    ("a shell", features(has_tty=True, wakeups_per_s=3, cpu_share=0.001, mean_burst_us=200, cpu_per_wakeup_us=200),
     C.WORKLOAD_CLASS_INTERACTIVE),
    ("an idle daemon", features(wakeups_per_s=1, cpu_share=0.0001, mean_burst_us=50, cpu_per_wakeup_us=50),
     C.WORKLOAD_CLASS_BACKGROUND),
    # Measured by the observer on the 2-CPU test host, beside a compile (bzip2'd text, 265 MB):
    # worker threads handing each other ms-long blocks, preempted in them as often as they
    # block. Without the socket evidence they read as latency-sensitive (confidence 0.2-0.6).
    ("pigz -p 4, contended", features(active_threads=6, demand=4.2, cpu_share=0.39, wakeups_per_s=180,
                                      voluntary_ratio=0.35, cpu_per_wakeup_us=4328, wait_share=0.81,
                                      socketless=True), C.WORKLOAD_CLASS_BATCH),
    ("zstd -T4, contended", features(active_threads=14, demand=2.9, cpu_share=0.41, wakeups_per_s=410,
                                     voluntary_ratio=0.42, cpu_per_wakeup_us=2039, wait_share=0.71,
                                     socketless=True), C.WORKLOAD_CLASS_BATCH),
    # redis-benchmark beside a compile (tests/data/scenario_features.json, kv_build): a load
    # generator always has its next request ready, so it blocked in a quarter of its switches and
    # read latency-sensitive at 0.14. Its connections reach redis-server's listening socket.
    ("a local server's client, contended", features(active_threads=1, demand=0.79, cpu_share=0.22,
                                                     wakeups_per_s=3628, voluntary_ratio=0.255, cpu_per_wakeup_us=121,
                                                     wait_share=0.44, client_of=["comm:redis-server"]),
     C.WORKLOAD_CLASS_LATENCY_SENSITIVE),
    # rt-app beside CPU batch (tests/data/scenario_features.json): periodic work holds no socket
    # either, and still blocks after nearly every unit of it.
    ("rt-app periodic tasks, contended", features(active_threads=4, demand=1.44, cpu_share=0.12, wakeups_per_s=860,
                                                  voluntary_ratio=0.84, cpu_per_wakeup_us=547, wait_share=0.68,
                                                  socketless=True), C.WORKLOAD_CLASS_LATENCY_SENSITIVE),
])
def test_classification_rules(name, f, expected):
    result = classify(f)
    assert result.workload_class == expected, (name, result)
    assert 0.5 < result.confidence <= 1.0 and result.reason


SOCKET_HOLDERS = {
    Sockets.SERVES: "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); time.sleep(60)",
    Sockets.TALKS: "import socket, time; pair = socket.socketpair(); time.sleep(60)",
    Sockets.NONE: "import os, time; pipe = os.pipe(); time.sleep(60)",
}


@pytest.mark.parametrize("expected", list(SOCKET_HOLDERS))
def test_what_sockets_a_process_holds_is_read_from_its_descriptors(workload, expected):
    proc = workload(sys.executable, "-c", SOCKET_HOLDERS[expected])
    deadline = time.monotonic() + 10
    while (found := sockets([proc.pid]).kind) is not expected and time.monotonic() < deadline:
        time.sleep(0.05)  # until the interpreter has started and made its socket
    assert found is expected


def test_a_server_whose_group_lists_an_exited_process_first_still_serves(workload):
    """A group's processes can start with one that exited in the window (a forking server's
    short-lived worker): listening sockets are looked up where a live one runs."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    server = workload(sys.executable, "-c", SERVER, "127.0.0.1", stdout=subprocess.PIPE, text=True)
    server.stdout.readline()
    held = sockets([gone.pid, server.pid])
    assert held.kind is Sockets.SERVES and held.pid == server.pid


def test_no_processes_hold_unknown_sockets_not_none():
    assert sockets([]).kind is Sockets.UNKNOWN


def test_a_long_tcp_table_is_read_to_its_end():
    """/proc/net/tcp is a seq_file: one read returns about a page (27 sockets) whatever the
    buffer. A busy server's listening socket can be past it."""
    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(100)]
    try:
        table = procfs.NetTables().tcp(os.getpid())
        inodes = [os.fstat(s.fileno()).st_ino for s in listeners]
        assert all(table[inode].state == procfs.TCP_LISTEN for inode in inodes)
        assert {table[inode].local[1] for inode in inodes} == {s.getsockname()[1] for s in listeners}
    finally:
        for s in listeners:
            s.close()


# A listener on argv[1]: an IPv4 or IPv6 address (port chosen by the kernel), or a unix socket's
# path ("@name": abstract). It prints where it listens and accepts one connection.
SERVER = """import socket, sys, time
where = sys.argv[1]
if where.startswith(("/", "@")):
    s = socket.socket(socket.AF_UNIX); s.bind(where.replace("@", "\\0", 1)); address = where
else:
    s = socket.socket(socket.AF_INET6 if where == "::" else socket.AF_INET); s.bind((where, 0))
    address = "127.0.0.1:%d" % s.getsockname()[1]
s.listen(); print(address, flush=True); conn, _ = s.accept(); time.sleep(60)"""
CLIENT = """import socket, sys, time
where = sys.argv[1]
if where.startswith(("/", "@")):
    c = socket.socket(socket.AF_UNIX); c.connect(where.replace("@", "\\0", 1))
else:
    host, port = where.split(":"); c = socket.create_connection((host, int(port)))
print("connected", flush=True); time.sleep(60)"""


@pytest.mark.parametrize("bound", ["127.0.0.1", "0.0.0.0", "::", "unix", "@abstract"])
def test_a_group_connected_to_a_local_listener_is_its_client(workload, bound, tmp_path):
    """Real processes: a server listening on `bound` (an address, a unix socket's path or an
    abstract name), a client connected to it (over IPv4 when it is an address), and a bystander
    holding a socket pair. Only the client is anyone's client."""
    where = {"unix": str(tmp_path / "server.sock"), "@abstract": f"@schedcp-test-{os.getpid()}"}.get(bound, bound)
    server = workload(sys.executable, "-c", SERVER, where, stdout=subprocess.PIPE, text=True)
    address = server.stdout.readline().strip()
    client = workload(sys.executable, "-c", CLIENT, address, stdout=subprocess.PIPE, text=True)
    assert client.stdout.readline().strip() == "connected"
    bystander = workload(sys.executable, "-c", SOCKET_HOLDERS[Sockets.TALKS])
    deadline = time.monotonic() + 10
    while sockets([bystander.pid]).kind is not Sockets.TALKS and time.monotonic() < deadline:
        time.sleep(0.05)
    tables = procfs.NetTables()
    held = {name: sockets([proc.pid], tables) for name, proc in (("server", server), ("client", client),
                                                                  ("bystander", bystander))}
    assert held["server"].kind is Sockets.SERVES
    assert peers.clients_of(held, tables) == {"client": ["server"]}


def test_tables_read_through_a_process_that_exited_meanwhile_are_not_kept(workload):
    """A process that exits while its namespace's tables are read leaves them empty: they must not
    stand for the namespace's other groups."""
    sleeper = workload("sleep", "60")
    tables = procfs.NetTables()

    def read_while_it_exits() -> set[int]:
        sleeper.kill()
        sleeper.wait()
        return set()

    with socket.create_server(("127.0.0.1", 0)) as listener:
        assert procfs.NetTables._cached(tables._listening, sleeper.pid, read_while_it_exits) == set()
        assert os.fstat(listener.fileno()).st_ino in tables.listening(os.getpid())


def test_a_profiles_socket_tables_are_read_once_per_namespace():
    """Every group of a profile is looked up in the same tables: a listener opened after they were
    read is not in them (one read, not one per group), and fresh tables see it."""
    tables = procfs.NetTables()
    assert tables.listening(os.getpid()) is tables.listening(os.getpid())
    with socket.create_server(("127.0.0.1", 0)) as late:
        inode = os.fstat(late.fileno()).st_ino
        assert inode not in tables.listening(os.getpid()) and inode not in tables.tcp(os.getpid())
        assert inode in procfs.NetTables().listening(os.getpid())


def test_a_reused_thread_id_counts_from_zero():
    from schedcp.domain.procfs import ThreadCounters
    from services.observer.sampling import _procfs_delta

    old = ThreadCounters(tid=7, pid=7, cpu_ns=9_000, run_delay_ns=500, runs=90, voluntary=80, involuntary=10)
    new = ThreadCounters(tid=7, pid=7, cpu_ns=1_000, run_delay_ns=100, runs=3, voluntary=2, involuntary=1)
    delta = _procfs_delta(old, new, 10.0)
    assert (delta.cpu_ns, delta.runs, delta.voluntary) == (1_000, 3, 2)
    other_process = new._replace(pid=8, cpu_ns=20_000, runs=200)
    assert _procfs_delta(old, other_process, 10.0).cpu_ns == 20_000


def test_a_slice_counts_a_reused_thread_id_from_zero():
    from schedcp.domain.procfs import HostScan, ThreadCounters
    from services.observer.sampling import _Slicer

    old = ThreadCounters(tid=7, pid=7, cpu_ns=9_000, run_delay_ns=500, runs=90, voluntary=0, involuntary=0)
    slicer = _Slicer(HostScan(0.0, 0.0, {}, {7: old}, host_idle_s=1.0, active=set()), slice_s=0.25)
    slicer.cut({7: old._replace(cpu_ns=9_500, run_delay_ns=700, runs=91)}, at=0.25, idle=1.1)
    slicer.cut({7: old._replace(pid=8, cpu_ns=1_000, run_delay_ns=300, runs=3)}, at=0.5, idle=1.1)
    assert [part.work[7] for part in slicer.done] == [(500, 200), (1_000, 300)]
    assert [part.host_idle_s for part in slicer.done] == pytest.approx([0.1, 0.0])


def test_a_wait_added_without_a_run_reaches_the_procfs_histogram(monkeypatch):
    """The kernel can add to a thread's run_delay without a run (a queued task that migrates):
    that wait is counted with the thread's next run, not lost between two reads."""
    import threading

    from schedcp.domain.procfs import HostScan, ThreadCounters
    from services.observer import sampling
    from services.observer.sampling import MEASURE_TICK, ProcfsSource, _Exits, _Slicer

    ms = 1_000_000
    reads = iter([(10 * ms, 50 * ms, 0), (20 * ms, 60 * ms, 1)])
    last_read = (20 * ms, 60 * ms, 1)
    monkeypatch.setattr(procfs, "read_schedstat", lambda pid, tid: next(reads, last_read))
    monkeypatch.setattr(sampling, "EXIT_LOOK_S", 3600.0)  # no listing of this host's /proc
    watched = {1: ThreadCounters(1, 1, 0, 0, 0, 0, 0)}
    start = HostScan(time.monotonic(), 0.0, {}, watched, host_idle_s=0.0, active=set())
    latencies, last = ProcfsSource._tick(watched, time.monotonic() + 0.3, threading.Event(), MEASURE_TICK,
                                         _Slicer(start, 0.0), _Exits(start, None))
    assert latencies[1].samples == 1 and latencies[1].total_ns == pytest.approx(60 * ms)
    assert last[1].run_delay_ns == 60 * ms


def test_cpu_time_is_aligned_to_the_window_from_each_threads_own_reads():
    from schedcp.domain.procfs import ThreadCounters
    from services.observer.sampling import _procfs_delta

    # A saturated thread read 0.9 s into the first scan and 0.1 s into the last of a 10 s
    # window was watched for 9.2 s: 9.2 s of CPU is a full CPU over the window.
    before = ThreadCounters(7, 7, cpu_ns=0, run_delay_ns=0, runs=1, voluntary=0, involuntary=0, read_at=100.9)
    after = before._replace(cpu_ns=9_200_000_000, runs=50, read_at=110.1)
    assert _procfs_delta(before, after, 10.0).cpu_ns == 10_000_000_000
    # Born in the window: its time since birth counts as it is.
    assert _procfs_delta(None, after, 10.0).cpu_ns == 9_200_000_000


def test_a_scan_stamps_every_thread_within_the_pass():
    from schedcp.domain.procfs import ProcfsScanner

    scanner = ProcfsScanner()
    for scan in (scanner.scan(), scanner.scan()):  # the second serves unchanged threads from the cache
        stamps = [t.read_at for t in scan.threads.values()]
        assert os.getpid() in scan.threads
        assert scan.taken_at <= min(stamps) and max(stamps) <= scan.taken_at + scan.took_s


def test_a_windows_busy_time_covers_what_its_threads_ran():
    import subprocess
    import sys

    from services.observer.sampling import Sampler

    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        window, _ = Sampler("procfs").window(1.0)
    finally:
        hog.kill()
        hog.wait()
    ran_s = sum(t.cpu_ns for t in window.threads.values()) / 1e9
    # The hog ran in the window (how much depends on what else this host runs meanwhile).
    assert sum(t.cpu_ns for t in window.threads.values() if t.pid == hog.pid) > 0
    # Busy time is the window's capacity less the CPUs' idle time: at least what the visible
    # threads ran (kernel work adds to it), at most the capacity.
    assert 0.9 * ran_s <= window.host_busy_s <= window.duration_s * window.num_cpus, (ran_s, window.host_busy_s)


@pytest.mark.skipif(not os.path.exists("/proc/pressure/cpu"), reason="this kernel has no PSI")
def test_a_windows_cpu_stall_is_the_time_a_task_waited_for_a_cpu_in_it():
    from services.observer.sampling import Sampler

    before, _ = Sampler("procfs").window(1.0)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(3 * (os.cpu_count() or 1))]
    try:
        busy, _ = Sampler("procfs").window(1.0)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    # Three runnable hogs per CPU: some task waited for a CPU nearly all the window long.
    assert busy.cpu_stall_s >= 0.5 * busy.duration_s, busy.cpu_stall_s
    assert 0.0 <= before.cpu_stall_s <= before.duration_s + 0.05, before.cpu_stall_s


def test_bpf_deltas_combine_into_one_histogram():
    from services.observer.bpf import BpfCounters
    from services.observer.histogram import SLOTS
    from services.observer.sampling import _bpf_delta, latency_of

    def counters(tid, slot_counts, runs, delay):
        slots = [0] * SLOTS
        for slot, count in slot_counts.items():
            slots[slot] = count
        return BpfCounters(tid, 1, tuple(slots), delay, runs, runs, 10 * runs, runs, 0)

    a0, a1 = counters(1, {12: 5}, 5, 5_000), counters(1, {12: 7, 20: 1}, 8, 1_009_000)
    b1 = counters(2, {14: 4}, 4, 40_000)  # a new thread: everything is in the window
    threads = [_bpf_delta(a0, a1), _bpf_delta(None, b1)]
    combined = latency_of(threads)
    assert combined.counts == {12: 2, 20: 1, 14: 4}
    assert combined.total_ns == (1_009_000 - 5_000) + 40_000
    assert _bpf_delta(a1, a1) is None  # nothing happened
    assert _bpf_delta(a1, a0).runs == 5  # counters went down: a new thread with that id


def test_max_groups_keeps_the_busiest_half_and_the_most_waking():
    from services.observer.profiler import _keep

    def group(name, cpu, wakeups):
        return profile_pb2.WorkloadGroup(group_id=name, features=profile_pb2.GroupFeatures(
            cpu_share=cpu, wakeups_per_s=wakeups))

    groups = [group("hog", 0.9, 0), group("build", 0.5, 5), group("db", 0.1, 50), group("probe", 0.01, 1000)]
    assert [g.group_id for g in _keep(groups, 2)] == ["hog", "probe"]
    assert [g.group_id for g in _keep(groups, 3)] == ["hog", "build", "probe"]
    assert _keep(groups, 10) == groups


def test_a_measurement_leaves_the_observers_own_cpu_out_of_the_shares():
    own = os.getpid()
    window = Window(started_at=0.0, duration_s=2.0, num_cpus=2, source="procfs", host_idle_s=0.5,
                    processes={own: process(own, "python3"), 10: process(10, "stress-ng-cpu")},
                    threads={own: ThreadActivity(own, own, cpu_ns=1_000_000_000),
                             10: ThreadActivity(10, 10, cpu_ns=2_000_000_000)})
    batch = matchers.compile_matcher(common_pb2.GroupMatcher(comm="stress-ng-cpu"))
    response = _measurement(window, [batch], {batch.describe(): [window.processes[10]]})
    # 4 CPU-seconds in the window, 1 of them the observer's: the batch had 2 of the 3 left.
    assert response.observer_cpu_share == pytest.approx(0.25)
    assert response.groups[0].cpu_share == pytest.approx(2 / 3)
    assert response.foreign_cpu_share == pytest.approx(0.5 / 3)


def test_idle_while_waiting_counts_a_slice_only_for_what_it_had_of_both():
    """A batch's end (one job, a CPU idle, nobody waiting) beside its start (every CPU busy, jobs
    waiting): over the whole window both look large, slice by slice no CPU idled while one waited.
    Only the third slice lost CPU: 0.2 s idle while 0.5 s were waited."""
    ms = 1_000_000
    slices = [Slice(0.25, host_idle_s=0.25, work={1: (250 * ms, 0)}),
              Slice(0.25, host_idle_s=0.0, work={1: (100 * ms, 400 * ms), 2: (150 * ms, 350 * ms), 9: (1, 900 * ms)}),
              Slice(0.25, host_idle_s=0.2, work={2: (250 * ms, 500 * ms)})]
    assert idle_while_waiting(slices, {1, 2}) == pytest.approx(0.2)
    assert idle_while_waiting(slices, {1}) == 0.0
    whole = Window(started_at=0.0, duration_s=0.75, num_cpus=2, source="procfs", host_idle_s=0.45, processes={},
                   threads={1: ThreadActivity(1, 1, cpu_ns=350 * ms, run_delay_ns=400 * ms),
                            2: ThreadActivity(2, 2, cpu_ns=400 * ms, run_delay_ns=850 * ms)})
    assert idle_while_waiting([Slice.whole(whole)], {1, 2}) == pytest.approx(0.45)


@pytest.mark.parametrize(("duration_s", "stop_after_s"), [(1.1, None), (0.3, None), (0.1, None), (2.0, 0.6)])
def test_a_bpf_windows_slices_add_up_to_the_window(monkeypatch, duration_s, stop_after_s):
    """Quarter-second slices (the last one short when they do not divide the window, or when it
    is stopped early): their lengths, waits and idle time add up to the window's, none counted
    twice or lost at the end."""
    import threading

    from services.observer.bpf import BpfCounters
    from services.observer.sampling import MEASURE_TICK, BpfSource

    started = time.monotonic()

    class Sampler:  # one thread running all along, waiting 10 ms of every 100 ms
        def read(self):
            elapsed = time.monotonic() - started
            return {1: BpfCounters(1, 1, runs=int(elapsed * 100) + 1, cpu_ns=int(elapsed * 1e9),
                                   runq_delay_ns=int(elapsed * 1e8), wakeups=1)}

    monkeypatch.setattr(procfs, "host_cpu_idle_s", lambda: (time.monotonic() - started) * 0.5)
    source, stop = BpfSource(Sampler()), threading.Event()
    if stop_after_s:
        threading.Timer(stop_after_s, stop.set).start()
    start = source.begin()
    window, end = source.finish(start, time.monotonic() + duration_s, stop, MEASURE_TICK)
    assert window.slices
    assert sum(part.duration_s for part in window.slices) == pytest.approx(window.duration_s)
    assert sum(part.host_idle_s for part in window.slices) == pytest.approx(window.host_idle_s)
    waited = end.counters[1].runq_delay_ns - start.counters[1].runq_delay_ns
    assert sum(part.work[1][1] for part in window.slices if 1 in part.work) == waited


def test_a_window_counts_each_exit_once_and_knows_which_jobs_it_saw_whole():
    """Four processes against a window from 10 s to 20 s: one born and ended in it (whole), one
    born before (ended in it, not whole), one ended after (next window's), a thread (not a
    process), and one whose start the BPF program never saw. Consecutive windows sharing their
    boundary count an exit at it once."""
    from services.observer.bpf import BpfCounters
    from services.observer.sampling import BpfState, ended_jobs

    s = 10**9
    counters = {1: BpfCounters(1, 1, born_ns=12 * s, exited_ns=15 * s),
                2: BpfCounters(2, 2, born_ns=5 * s, exited_ns=20 * s),
                3: BpfCounters(3, 3, born_ns=12 * s, exited_ns=21 * s),
                4: BpfCounters(4, 1, born_ns=12 * s, exited_ns=13 * s),
                5: BpfCounters(5, 5, born_ns=0, exited_ns=14 * s)}
    first, second = (BpfState(10.0, counters, 0.0), BpfState(20.0, counters, 0.0)), \
        (BpfState(20.0, counters, 0.0), BpfState(30.0, counters, 0.0))
    jobs = sorted(ended_jobs(*first), key=lambda j: j.pid)
    assert [(j.pid, j.seconds, j.started_in_window) for j in jobs] == [(1, 3.0, True), (2, 15.0, False)]
    assert [j.pid for j in ended_jobs(*second)] == [3]


def test_job_lengths_are_kept_once_per_process_and_told_as_the_median():
    from services.observer.jobs import LENGTHS_KEPT, JobLengths
    from services.observer.sampling import Job

    lengths = JobLengths(capacity=2)
    run = [("hackbench", Job(pid, 7, seconds, True)) for pid, seconds in ((1, 3.0), (2, 3.2), (3, 9.0))]
    lengths.record(run)
    lengths.record(run[:1])  # an overlapping window saw the first exit again
    assert lengths.typical(["hackbench"]) == 3.2
    assert lengths.typical(["xz"]) == 0.0
    lengths.record(("hackbench", Job(100 + i, 7, 1.0, True)) for i in range(LENGTHS_KEPT))
    assert lengths.typical(["hackbench"]) == 1.0  # only the latest are kept
    lengths.record([("xz", Job(9, 7, 4.0, True)), ("gzip", Job(8, 7, 2.0, True))])
    assert lengths.typical(["hackbench", "xz", "gzip"]) == 3.0  # the oldest program was forgotten


def test_procfs_places_an_exit_between_the_listings_that_saw_the_process_and_did_not(monkeypatch):
    """A process alive at a window's start scan and one born in the window (its start in its
    stat), both gone by a listing 1 s later: each exited halfway between that listing and the
    one before; only the one born in the window is whole. A kernel thread is no job, whether
    at the start or born later; a pid listed with another start is a new process."""
    from schedcp.domain.procfs import HostScan
    from services.observer import sampling
    from services.observer.sampling import _Exits

    now = time.monotonic()
    boot_now = sampling._boot_s(now)
    old = process(10, "xz")
    old.start_s = boot_now - 5.0
    kthread, later_kthread = process(12, "kworker/0:1"), process(13, "kworker/1:1")
    kthread.kernel_thread = later_kthread.kernel_thread = True
    start = HostScan(now, 0.0, {10: old, 12: kthread}, {}, host_idle_s=0.0, active=set())
    exits = _Exits(start, None)
    young = process(11, "hackbench")
    young.start_s = boot_now + 0.2
    exits.look({10: old, 11: young, 13: later_kthread}, now + 0.5)
    exits.look({}, now + 1.5)
    jobs = {j.pid: j for j in exits.jobs}
    assert set(jobs) == {10, 11} and set(exits.exited) == {10, 11}
    assert jobs[10].seconds == pytest.approx(5.0 + 1.0, abs=0.01) and not jobs[10].started_in_window
    assert jobs[11].seconds == pytest.approx(0.8, abs=0.01) and jobs[11].started_in_window
    reused = process(11, "sh")
    reused.start_s = boot_now + 2.0
    exits.look({11: reused}, now + 2.5)
    again = process(11, "sh")
    again.start_s = boot_now + 2.6
    exits.look({11: again}, now + 3.5)
    assert [round(j.seconds, 2) for j in exits.jobs if j.pid == 11] == [0.8, 1.0]


@pytest.mark.parametrize(("release", "supported"), [("6.1.0-13-amd64", True), ("5.10.0-28-amd64", False)])
def test_a_cgroup_v2_root_offers_cpu_idle_below_it_from_5_15(tmp_path, monkeypatch, release, supported):
    """A v2 root never shows cpu.idle itself (its children do, since 5.15): the fleet's guests
    once read 'unsupported' and never got batch_idle_cgroup as a candidate."""
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    monkeypatch.setattr(hostfacts.platform, "release", lambda: release)
    info = hostfacts.cgroup_info(f"cgroup2 {tmp_path} cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n")
    assert (info.cpu_controller_path, info.cpu_controller_version) == (str(tmp_path), 2)
    assert info.cpu_idle_supported == supported


def test_periodic_work_and_request_work_beside_the_same_batch_are_not_alike():
    """Their winning policies differ (vtime: rt-app's wakeup p99 -78 %, pgbench's p99 50x worse in
    the VM), so a kept outcome of the one must not be reused, unsearched, for the other."""
    from services.learner.search import similarity
    from services.observer import signature

    def workload(name: str, serves: bool) -> profile_pb2.WorkloadSignature:
        latency = profile_pb2.WorkloadGroup(name=name)
        latency.classification.workload_class = profile_pb2.WORKLOAD_CLASS_LATENCY_SENSITIVE
        latency.features.cpu_seconds, latency.features.wakeups_per_s, latency.features.serves = 1.0, 500, serves
        batch = profile_pb2.WorkloadGroup(name="stress-ng-cpu")
        batch.classification.workload_class = profile_pb2.WORKLOAD_CLASS_BATCH
        batch.features.cpu_seconds, batch.features.demand = 3.0, 4.0
        return signature.compute([latency, batch], host_cpu_share=1.0, num_cpus=2, cpu_stall_share=0.9)

    periodic, server = workload("rt-app", serves=False), workload("postgres", serves=True)
    assert similarity(periodic, workload("rt-app", serves=False)) == 1.0
    assert similarity(periodic, server) < 0.05
