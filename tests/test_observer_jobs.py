"""Which jobs of a batch are long (services/observer/jobs.py): from the CPU a command line used
before, from the inputs the jobs differ in, and on this host with real jobs the test starts."""

from __future__ import annotations

import re
import time

import pytest

from schedcp.domain import matchers
from schedcp.domain.procfs import ProcessInfo
from schedcp.v1 import profile_pb2
from services.observer import jobs
from services.observer.jobs import JobHistory
from services.observer.sampling import Job
from tests.conftest import host_profile


def job(pid: int, cmdline: str, cpu_s: float = 0.2, comm: str = "xz") -> ProcessInfo:
    info = ProcessInfo(pid=pid, comm=comm, cgroup="/", unified_cgroup="/", kernel_thread=False, has_tty=False,
                       uid=0, num_threads=1, cpu_s=cpu_s)
    info._cmdline = cmdline
    return info


def batch(cpu_s: float = 0.2, shorts: int = 8) -> list[ProcessInfo]:
    return [job(100, "xz -c /data/long", cpu_s), *(job(101 + i, "xz -c /data/short", cpu_s) for i in range(shorts))]


def test_a_long_job_is_known_by_the_cpu_its_command_line_used_in_an_earlier_run():
    history = JobHistory()
    # The last run, seen near its end: the long job had used 7 s, the short ones 0.9 s.
    history.record(batch(cpu_s=0.9))
    history.record([job(90, "xz -c /data/long", 7.1)])
    # This run just started: every job has used as little CPU as the others.
    [found] = jobs.long_jobs(batch(cpu_s=0.3), history)
    assert found.pid == 100 and found.work_ratio == pytest.approx(7.1 / 0.9)
    assert "7.1 s of CPU" in found.evidence and "0.9 s" in found.evidence
    compiled = matchers.compile_matcher(found.matcher)
    assert compiled.matches(job(7, "xz -c /data/long")) and not compiled.matches(job(8, "xz -c /data/short"))
    assert not compiled.matches(job(9, "xz -c /data/longer"))


def test_a_long_job_lasts_as_long_as_its_program_s_longest_job_seen_to_end_or_its_age():
    """The batch's last run ended: its longest xz lived 11 s (the long job's previous run). This
    run's long job is 3 s old: 11 s. A run in progress older than any seen to end: its age; but
    not the age of one that already exited (its length is among those seen to end)."""
    history, lengths = JobHistory(), jobs.JobLengths()
    history.record([job(90, "xz -c /data/long", 7.1), job(91, "xz -c /data/short", 0.9)])
    lengths.record([("xz", Job(90, 1, 11.0, True)), ("xz", Job(91, 2, 4.5, True)), ("gzip", Job(92, 3, 40.0, True))])
    now_s = time.clock_gettime(time.CLOCK_BOOTTIME)
    running = batch(cpu_s=0.3)
    by_pid = {p.pid: p for p in running}
    [found] = jobs.long_jobs(running, history)

    def timed(start_s: float, ended: set[int], known: jobs.JobLengths = lengths) -> float:
        running[0].start_s = start_s
        jobs.time_runs([found], by_pid, known, ended)
        return found.seconds

    assert timed(now_s - 3.0, set()) == pytest.approx(11.0)
    assert timed(now_s - 20.0, set()) == pytest.approx(20.0, abs=0.5)
    assert timed(now_s - 20.0, set(), jobs.JobLengths()) == pytest.approx(20.0, abs=0.5)
    assert timed(now_s - 20.0, {found.pid}) == pytest.approx(11.0)


def test_without_a_past_run_equal_jobs_show_no_tail():
    assert jobs.long_jobs(batch(cpu_s=0.3), JobHistory()) == []


def compressing(folder) -> list[ProcessInfo]:
    """xz over one input ten times the size of the three others (pid 1 has the big one)."""
    (folder / "big").write_bytes(b"x" * 100_000)
    for name in ("a", "b", "c"):
        (folder / name).write_bytes(b"x" * 10_000)
    return [job(1, f"xz -c {folder}/big"), *(job(i, f"xz -c {folder}/{n}") for i, n in ((2, "a"), (3, "b"), (4, "c")))]


def test_a_long_job_is_known_by_its_input_file(tmp_path):
    [found] = jobs.long_jobs(compressing(tmp_path), JobHistory())
    assert found.pid == 1 and found.work_ratio == pytest.approx(10.0)
    assert "file sizes" in found.evidence


def test_a_batch_run_again_within_the_window_is_judged_on_the_run_still_running(tmp_path):
    # BPF reports the processes that exited in the window too; their command lines are gone.
    running, gone = compressing(tmp_path), [job(pid, "") for pid in (11, 12, 13, 14)]
    assert jobs.long_jobs([*gone, *running], JobHistory()) == []
    [found] = jobs.long_jobs([*gone, *running], JobHistory(), ended={11, 12, 13, 14})
    assert found.pid == 1 and "file sizes" in found.evidence


def test_a_long_job_is_known_by_a_number_it_was_given():
    procs = [job(1, "sim --steps=200000 --out r1"), *(job(i, f"sim --steps=20000 --out r{i}") for i in (2, 3, 4))]
    [found] = jobs.long_jobs([*procs], JobHistory())
    assert found.pid == 1 and "numbers" in found.evidence


@pytest.mark.parametrize("procs", [
    # Half the jobs long: no tail, two kinds of job.
    [job(1, "sim 1000"), job(2, "sim 1000"), job(3, "sim 10"), job(4, "sim 10")],
    # Too few jobs to be a batch.
    [job(1, "sim 1000"), job(2, "sim 10")],
    # Different programs under one name, not one program over different inputs.
    [job(1, "sim 1000"), job(2, "sim -v 10"), job(3, "sim -q -v 10")],
    # A zero among the numbers is not a size.
    [job(1, "sim 1000"), job(2, "sim 0"), job(3, "sim 0"), job(4, "sim 0")],
], ids=["half-long", "two-jobs", "different-arguments", "zero"])
def test_no_long_job_without_a_clear_tail(procs):
    assert jobs.long_jobs(procs, JobHistory()) == []


def test_the_history_forgets_the_oldest_command_lines_first():
    history = JobHistory(capacity=2)
    history.record([job(1, "a", 5.0), job(2, "b", 5.0)])
    history.record([job(3, "c", 5.0)])
    assert history.cpu_s(job(4, "a", 0.1)) == pytest.approx(0.1)
    assert history.cpu_s(job(5, "c", 0.1)) == pytest.approx(5.0)


def test_a_long_command_line_is_matched_by_its_end_within_the_limit():
    long_line = "render --scene " + "/very/long/path" * 30 + " --frames 900"
    matcher = jobs._matcher(long_line)
    assert len(matcher.cmdline_regex) <= matchers.REGEX_MAX_CHARS
    assert matchers.compile_matcher(matcher).matches(job(1, long_line))
    assert not matchers.compile_matcher(matcher).matches(job(2, long_line.replace("900", "90")))


def test_the_observer_reports_the_long_job_of_real_jobs_on_this_host(workload, tmp_path):
    """Four CPU-bound jobs of one program (a copy of sh under a name of its own), one given a
    number ten times the others': the profile names it as the batch's long job."""
    comm = f"job-{time.monotonic_ns() % 10**8}"
    (tmp_path / comm).symlink_to("/bin/sh")
    loop = "while :; do :; done"
    for size in (1000, 100, 100, 100):
        workload(str(tmp_path / comm), "-c", loop, comm, str(size))
    time.sleep(0.5)
    [group] = [g for g in host_profile(1.0).groups if g.name == comm]
    [long] = group.long_jobs
    assert long.cmdline.endswith(f"{comm} 1000"), long
    assert re.search(long.matcher.cmdline_regex, long.cmdline) and long.work_ratio == pytest.approx(10.0)
    assert isinstance(long, profile_pb2.LongJob)
