"""The observer's engine on this host, with real workloads (stress-ng, cyclictest) that the
tests start and kill: classification, procfs and BPF agreeing, and unprivileged operation."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from schedcp.runtime.errors import StartupError
from schedcp.toolchain.build import BuildError, Toolchain
from schedcp.v1 import profile_pb2
from services.observer import bpf, hostfacts, prebuilt
from services.observer.bpf_maps import BpfUnavailable
from services.observer.profiler import Profiler
from services.observer.sampling import PROFILE_TICK, Sampler
from tests.conftest import cpu_hogs, host_profile, latency_probe

C = profile_pb2


def make_sampler(mode: str, prebuilt: Path | None = None, loader: Path | None = None) -> Sampler:
    """A sampler in `mode`; BPF tests are skipped where BPF cannot run, except in CI."""
    try:
        return Sampler(mode, prebuilt, loader)
    except StartupError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"BPF sampling must work in CI: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def prebuilt_probes(tmp_path_factory) -> tuple[Path, Path]:
    """The probes compiled ahead of time and the host's loader, as a host without BCC runs them."""
    toolchain = Toolchain()
    try:
        return prebuilt.compile_object(tmp_path_factory.mktemp("probes") / "runqlat.bpf.o", toolchain), \
            toolchain.loader(static=False)
    except BuildError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"cannot build the prebuilt probes here: {exc}")


def hide_bcc(monkeypatch) -> None:
    """This host as one without BCC: its import fails as it would where it is not installed."""
    def missing():
        raise BpfUnavailable("BCC is not installed (this test hides it)")
    monkeypatch.setattr(bpf, "_import_bcc", missing)


@pytest.fixture
def busy_host(workload) -> list[subprocess.Popen]:
    """A batch workload and a latency probe sharing this host's CPUs (their process groups)."""
    groups = [cpu_hogs(workload), latency_probe(workload)]
    time.sleep(1.0)  # let stress-ng fork its workers
    return groups


def _stopped(pgids: set[int]) -> bool:
    """Every thread of these process groups is stopped (state T), none still on its way there."""
    for stat in Path("/proc").glob("[0-9]*/task/*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[2]) in pgids and fields[0] not in ("T", "t"):
            return False
    return True


@contextlib.contextmanager
def frozen(groups: list[subprocess.Popen]) -> Iterator[None]:
    """The test's own process groups stopped while the block runs, then continued: reads taken in
    it, one after another, all see the same counters. A wait that ends between two reads taken
    while the workload runs is counted whole by one and not at all by the other."""
    pgids = {g.pid for g in groups}
    for pgid in pgids:
        os.killpg(pgid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 5.0
        while not _stopped(pgids):
            assert time.monotonic() < deadline, "the workload did not stop within 5 s"
            time.sleep(0.005)
        yield
    finally:
        for pgid in pgids:
            os.killpg(pgid, signal.SIGCONT)


@pytest.mark.parametrize("mode", ["procfs", "bpf"])
def test_profile_tells_batch_from_latency_sensitive(busy_host, mode):
    sampler = make_sampler(mode)
    try:
        window, _ = sampler.window(3.0)
        profile = Profiler(sampler, lambda: hostfacts.collect("testhost")).build(window, C.DETAIL_LEVEL_FULL)
    finally:
        sampler.close()
    groups = {g.name: g for g in profile.groups}
    batch, latency = groups["stress-ng-cpu"], groups["cyclictest"]

    assert profile.sampler == mode
    assert batch.classification.workload_class == C.WORKLOAD_CLASS_BATCH, batch
    assert latency.classification.workload_class == C.WORKLOAD_CLASS_LATENCY_SENSITIVE, latency
    assert batch.classification.confidence > 0.5 and latency.classification.confidence > 0.5
    assert batch.features.cpu_share > 10 * latency.features.cpu_share
    assert latency.features.wakeups_per_s > 500  # cyclictest wakes every millisecond
    assert latency.features.runq_latency.source == mode and latency.features.runq_latency.samples > 0
    response = latency.features.response
    if mode == "bpf":
        # Every wakeup ends in a block (cyclictest sleeps again): about as many responses as
        # wakeups, and each at least the wait before it ran.
        assert response.samples > 0.5 * latency.features.wakeups_per_s * window.duration_s, response
        assert response.p50_us >= latency.features.runq_latency.p50_us
        # cyclictest runs microseconds per wakeup: nearly all its waits begin with one, a part of
        # the batch's (preempted far more often than it sleeps).
        woken, waits = latency.features.wakeup_latency, latency.features.runq_latency
        assert 0.9 * waits.samples <= woken.samples <= waits.samples, (woken, waits)
        assert batch.features.wakeup_latency.samples < 0.5 * batch.features.runq_latency.samples, batch.features
    else:
        # One mean per thread and window, weighted by its stretches (voluntary switches): at least
        # the mean wait before each run, as every stretch starts with one.
        assert response.samples > 0.5 * latency.features.wakeups_per_s * window.duration_s, response
        assert response.mean_us >= latency.features.runq_latency.mean_us
        assert latency.features.wakeup_latency.samples == 0  # procfs cannot tell a wait's cause
    assert batch.matcher.comm == "stress-ng-cpu" and batch.group_id == "comm:stress-ng-cpu"
    dims = dict(zip(profile.signature.dimensions, profile.signature.values, strict=True))
    assert dims["cpu_fraction_batch"] > dims["cpu_fraction_latency"] > 0
    assert dims["latency_groups"] > 0 and dims["batch_groups"] > 0

    texts = {t.level: t.text for t in profile.texts}
    assert set(texts) == {C.DETAIL_LEVEL_SUMMARY, C.DETAIL_LEVEL_DETAILED, C.DETAIL_LEVEL_FULL}
    assert len(texts[C.DETAIL_LEVEL_SUMMARY]) < len(texts[C.DETAIL_LEVEL_DETAILED]) < len(texts[C.DETAIL_LEVEL_FULL])
    for text in texts.values():
        assert "stress-ng-cpu" in text and "cyclictest" in text
    assert batch.classification.reason in texts[C.DETAIL_LEVEL_FULL]


def windows_together(first: Sampler, second: Sampler, workload: list[subprocess.Popen], seconds: float = 3.0):
    """Both samplers' windows over the same seconds (and the same threads); closes both. Each
    boundary is read while the workload is stopped: read while it ran, the second sampler's
    reads came tens of ms after the first's (a busy host, a window to build), and a long wait
    that ended in between counted in one window only (cyclictest's waits read 2.4 % apart)."""
    try:
        stop = threading.Event()
        with frozen(workload):
            starts = first.begin(), second.begin()
        time.sleep(seconds)
        with frozen(workload):
            return tuple(sampler.source.finish(start, 0, stop, PROFILE_TICK)[0]
                         for sampler, start in zip((first, second), starts, strict=True))
    finally:
        first.close()
        second.close()


def totals(window, comm: str, histograms: bool = False) -> dict[str, int]:
    """A group's counters summed over its threads; with `histograms`, the BPF histograms' counts
    of run-queue waits, responses and waits after a wakeup too."""
    threads = [t for t in window.threads.values() if window.processes[t.pid].comm == comm]
    summed = {"runs": sum(t.runs for t in threads), "wakeups": sum(t.wakeups for t in threads),
              "wait_ns": sum(t.run_delay_ns for t in threads), "cpu": sum(t.cpu_ns for t in threads)}
    if histograms:
        summed["waits"] = sum(sum(t.slots) - sum(t.base or [0]) for t in threads)
        summed["responses"] = sum(sum(t.response_slots) - sum(t.response_base or [0]) for t in threads)
        summed["woken"] = sum(sum(t.wakeup_slots) - sum(t.wakeup_base or [0]) for t in threads)
    return summed


def test_procfs_and_bpf_agree_on_cpu_runs_and_waits(busy_host):
    """Both sources over the same window and the same threads. CPU time is the kernel's own
    accounting in both (schedstat's sum_exec_runtime, the BPF program's sched_stat_runtime), so
    it agrees within 2 % (the two snapshots are taken a moment apart), as do run counts and long
    waits (PLATFORM.md: schedstat run_delay and BPF run-queue sums within 1 %). Short waits are
    left out: schedstat ends a wait at the run-queue clock taken at the start of __schedule, the
    tracepoint after the next task was picked, a few microseconds that are most of a wait of the
    probe's."""
    bpf_sampler = make_sampler("bpf")
    procfs_window, bpf_window = windows_together(Sampler("procfs"), bpf_sampler, busy_host)
    batch_p, batch_b = totals(procfs_window, "stress-ng-cpu"), totals(bpf_window, "stress-ng-cpu")
    probe_p, probe_b = totals(procfs_window, "cyclictest"), totals(bpf_window, "cyclictest")
    for by_procfs, by_bpf in ((batch_p, batch_b), (probe_p, probe_b)):
        assert by_bpf["runs"] == pytest.approx(by_procfs["runs"], rel=0.02)
        assert by_bpf["cpu"] == pytest.approx(by_procfs["cpu"], rel=0.02)
    assert batch_b["wait_ns"] == pytest.approx(batch_p["wait_ns"], rel=0.02)


def test_prebuilt_probes_count_what_bccs_count(busy_host, prebuilt_probes, monkeypatch):
    """The same probes loaded both ways at once, over the same window: the prebuilt object (CO-RE,
    loaded by schedcp-loader, read through the descriptor it hands over) sees the same runs,
    wakeups, CPU time and responses as BCC's compilation of the same source."""
    bcc_sampler = make_sampler("bpf")
    hide_bcc(monkeypatch)
    prebuilt_sampler = make_sampler("bpf", *prebuilt_probes)
    bcc_window, prebuilt_window = windows_together(bcc_sampler, prebuilt_sampler, busy_host)
    assert prebuilt_sampler.note == "probes loaded without BCC (BCC is not installed (this test hides it))"

    for comm in ("stress-ng-cpu", "cyclictest"):
        by_bcc = totals(bcc_window, comm, histograms=True)
        by_prebuilt = totals(prebuilt_window, comm, histograms=True)
        assert by_bcc["runs"] > 0 and by_bcc["cpu"] > 0, (comm, by_bcc)
        for counter, value in by_bcc.items():
            assert by_prebuilt[counter] == pytest.approx(value, rel=0.02), (comm, counter, by_bcc, by_prebuilt)
    # cyclictest wakes 1000 times a second and blocks again after each.
    assert totals(prebuilt_window, "cyclictest", histograms=True)["responses"] > 1000


def test_without_bcc_or_probes_the_observer_says_both_reasons(monkeypatch, tmp_path):
    hide_bcc(monkeypatch)
    with pytest.raises(StartupError) as raised:
        Sampler("bpf", tmp_path / "missing.bpf.o", Path("/bin/true"))
    assert "BCC is not installed" in str(raised.value) and "missing.bpf.o do not exist" in str(raised.value)


def _run_unprivileged(uid: int) -> dict:
    """Fork, drop to `uid`, start a CPU-bound child of our own, profile, and report back."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        result = {}
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            import subprocess

            spinner = subprocess.Popen(["sh", "-c", "while :; do :; done"])
            try:
                try:
                    Sampler("bpf")
                    result["bpf_error"] = ""
                except StartupError as exc:
                    result["bpf_error"] = str(exc)
                sampler = Sampler("auto")
                window, _ = sampler.window(1.5)
                profile = Profiler(sampler, lambda: hostfacts.collect("testhost")).build(window)
                result.update(
                    sampler=profile.sampler, note=profile.sampler_note,
                    uids=sorted({p.uid for p in window.processes.values()}),
                    groups={g.name: g.classification.workload_class for g in profile.groups},
                    spinner_seen=spinner.pid in window.processes,
                )
            finally:
                spinner.kill()
        except BaseException as exc:  # report anything to the parent
            result["error"] = repr(exc)
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(data)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_processes_that_start_and_exit_within_a_window_count_for_their_group(workload):
    """One short CPU job after another (a compressor run in a loop): with BPF every run in the
    window counts, by the name the probes saw, not only the one still running at its end."""
    workload("sh", "-c", "while true; do timeout 0.25 yes > /dev/null; done")
    time.sleep(1.0)
    sampler = make_sampler("bpf")
    try:
        window, _ = sampler.window(3.0)
        profile = Profiler(sampler, lambda: hostfacts.collect("testhost")).build(window)
    finally:
        sampler.close()
    jobs = next(g for g in profile.groups if g.name == "yes")
    # Each run lives 0.25 s: at most one is alive at the end. Together they kept about one CPU
    # busy (less each run's start and teardown).
    assert jobs.features.cpu_seconds > 0.5 * window.duration_s, jobs.features
    assert len(jobs.pids) > 4, jobs.pids


def test_unprivileged_observer_sees_its_own_tasks_through_procfs():
    nobody = 65534
    result = _run_unprivileged(nobody)
    assert "error" not in result, result
    assert "root" in result["bpf_error"]  # says why BPF is not possible
    assert result["sampler"] == "procfs"
    assert "unprivileged" in result["note"] and "root" in result["note"]
    assert result["uids"] == [nobody]
    assert result["spinner_seen"]
    assert result["groups"]["sh"] == C.WORKLOAD_CLASS_BATCH


FORKING_SERVER = """
import os, socket, sys, time
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
for _ in range(3):
    if os.fork() == 0:
        listener.close()  # as postgres and sshd do: the connection process does not accept
        end = time.time() + 60
        while time.time() < end:
            sum(range(20000))
            time.sleep(0.002)
        os._exit(0)
time.sleep(60)  # the listener itself stays idle: it is not in the window's group
"""


def test_a_server_that_forks_per_connection_serves_though_its_listener_is_idle(workload, tmp_path):
    """Its workers (started together, like jobs) closed the listening socket; their idle parent
    of the same name holds it. The group serves: it is a service, not a batch of jobs."""
    comm = f"srv-{time.monotonic_ns() % 10**8}"
    (tmp_path / comm).symlink_to(sys.executable)
    workload(str(tmp_path / comm), "-c", FORKING_SERVER)
    time.sleep(1.0)
    [group] = [g for g in host_profile(2.0).groups if g.name == comm]
    assert group.features.processes == 3, group  # the workers only: the listener did not run
    assert group.features.serves
