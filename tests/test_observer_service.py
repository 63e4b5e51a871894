"""The observer as a real process: GetProfile, Measure before/after a CPU hog, request
validation, and the profile stream on JetStream."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import signal
import time
import uuid

import grpc
import pytest

from schedcp.domain import procfs
from schedcp.runtime import rpc, topology
from schedcp.runtime.bus import Bus
from schedcp.v1 import common_pb2, observer_pb2, observer_pb2_grpc, profile_pb2
from tests.conftest import cpu_hogs, latency_probe


def observer_call(addr: str, method: str, request):
    async def go():
        async with rpc.channel(addr, default_timeout_s=60) as channel:
            return await getattr(observer_pb2_grpc.ObserverServiceStub(channel), method)(request)

    return asyncio.run(go())


def measure_request(seconds: float, *matchers: common_pb2.GroupMatcher) -> observer_pb2.MeasureRequest:
    request = observer_pb2.MeasureRequest(groups=matchers)
    request.duration.FromMilliseconds(int(seconds * 1000))
    return request


def profile_request(seconds: float, **fields) -> observer_pb2.GetProfileRequest:
    request = observer_pb2.GetProfileRequest(**fields)
    request.window.FromMilliseconds(int(seconds * 1000))
    return request


@pytest.fixture
def observer(services):
    services.start("observer")
    return services.addr("observer")


@pytest.mark.parametrize("mode", ["procfs", "bpf"])
def test_measure_shows_a_cpu_hog_raising_p99(services, workload, mode):
    services.env["SCHEDCP_OBSERVER_MODE"] = mode
    services.start("observer")
    probe = common_pb2.GroupMatcher(comm="cyclictest")
    latency_probe(workload)
    time.sleep(0.5)

    alone = observer_call(services.addr("observer"), "Measure", measure_request(3, probe))
    cpu_hogs(workload)
    time.sleep(0.5)
    with_hog = observer_call(services.addr("observer"), "Measure", measure_request(3, probe))

    for response in (alone, with_hog):
        assert response.sampler == mode
        (group,) = response.groups
        assert group.matched_threads >= 2 and group.runq_latency.samples > 1000
        assert group.matcher == probe
    before, after = alone.groups[0].runq_latency, with_hog.groups[0].runq_latency
    assert after.p99_us > before.p99_us, (before, after)
    # The waiting summed: with the hogs the probe waits longer in all, and (BPF sees every wait)
    # the sum is its waits' count times their mean.
    waited = [r.groups[0].runq_wait_per_s for r in (alone, with_hog)]
    assert waited[1] > waited[0] > 0, waited
    if mode == "bpf":
        seconds = with_hog.measured.ToNanoseconds() / 1e9
        assert waited[1] * seconds == pytest.approx(after.mean_us * after.samples / 1e6, rel=0.05)
    assert with_hog.foreign_cpu_share > alone.foreign_cpu_share


@pytest.mark.parametrize("mode", ["procfs", "bpf"])
def test_cpu_idle_while_a_group_waits_is_told_slice_by_slice(services, hogs, mode):
    """One hog (the other CPUs idle, nobody waits), then more hogs than CPUs (they wait, nothing
    idles), in one window: over the whole window the host idled and the hogs waited, but no CPU
    idled while they waited, and the slices say so. The later hogs exist from the start, stopped,
    so that procfs watches them too."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: a single hog leaves nothing idle")
    services.env["SCHEDCP_OBSERVER_MODE"] = mode
    services.start("observer")
    hogs(1)
    later = hogs(2 * os.cpu_count())
    for pid in later:
        os.kill(pid, signal.SIGSTOP)
    time.sleep(0.3)
    idle_before = procfs.host_cpu_idle_s()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        call = pool.submit(observer_call, services.addr("observer"), "Measure",
                           measure_request(3, common_pb2.GroupMatcher(comm=hogs.comm)))
        time.sleep(1.5)
        for pid in later:
            os.kill(pid, signal.SIGCONT)
        response = call.result()
    idle = procfs.host_cpu_idle_s() - idle_before
    (group,) = response.groups
    waited = group.runq_wait_per_s * response.measured.ToNanoseconds() / 1e9
    # One figure for the whole window would be the smaller of the two, about a second.
    assert min(idle, waited) > 0.5, (idle, waited)
    assert group.idle_while_waiting_s < 0.3 * min(idle, waited), (group.idle_while_waiting_s, idle, waited)


@pytest.mark.parametrize("mode", ["procfs", "bpf"])
def test_jobs_that_repeat_are_measured_by_their_length(services, workload, tmp_path, mode):
    """A loop of jobs, each `sleep 0.3` under a name of its own: Measure counts the jobs that
    started and ended in its window and their mean length, and a profile tells how long the
    program's jobs last. BPF sees each exit; procfs places it between two listings of /proc
    (0.1 s apart for Measure, a profile's tick apart for profiles)."""
    comm = f"job-{uuid.uuid4().hex[:8]}"
    (tmp_path / comm).symlink_to(shutil.which("sleep"))
    services.env["SCHEDCP_OBSERVER_MODE"] = mode
    services.start("observer")
    workload("sh", "-c", f"while :; do {tmp_path / comm} 0.3; done")
    time.sleep(0.5)

    response = observer_call(services.addr("observer"), "Measure",
                             measure_request(3, common_pb2.GroupMatcher(comm=comm)))
    profile = observer_call(services.addr("observer"), "GetProfile", profile_request(2))

    (group,) = response.groups
    (features,) = [g.features for g in profile.groups if g.name == comm]
    # Ten jobs back to back in 3 s, less one cut by each end of the window.
    assert 7 <= group.jobs_done <= 10, group
    measured, profiled = (0.05, 0.15) if mode == "procfs" else (0.0, 0.0)
    assert 0.3 - measured <= group.job_seconds < 0.35 + measured, group
    assert 0.3 - profiled <= features.job_seconds < 0.35 + profiled, features


@pytest.mark.parametrize("mode", ["procfs", "bpf"])
def test_the_longest_job_counts_one_still_running_by_its_age(services, workload, tmp_path, mode):
    """Short jobs end all through the window; a long one starts two seconds into it and still
    runs at its end: the longest job is that one's age then (about 3 s), not the short ones'
    length. A job that started before the window is not counted (part of it ran under whatever
    came before)."""
    comm = f"job-{uuid.uuid4().hex[:8]}"
    (tmp_path / comm).symlink_to(shutil.which("sleep"))
    services.env["SCHEDCP_OBSERVER_MODE"] = mode
    services.start("observer")
    workload(str(tmp_path / comm), "600")  # older than the window
    workload("sh", "-c", f"while :; do {tmp_path / comm} 0.2; done")
    time.sleep(0.5)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        call = pool.submit(observer_call, services.addr("observer"), "Measure",
                           measure_request(5, common_pb2.GroupMatcher(comm=comm)))
        time.sleep(2.0)
        started = time.monotonic()
        workload(str(tmp_path / comm), "600")
        (group,) = call.result().groups
        returned = time.monotonic()
    assert group.jobs_done >= 8 and group.job_seconds < 0.35, group
    assert 1.0 < group.longest_job_s <= returned - started + 0.01, group  # (starts are in 10 ms ticks)
    assert group.largest_job_cpu_s < 0.1, group  # they slept: time, not CPU


@pytest.mark.parametrize("mode", ["procfs", "bpf"])
def test_a_job_that_runs_whenever_it_can_has_about_its_age_of_cpu(services, workload, tmp_path, mode):
    """A CPU-bound job started in the window on a host with a CPU to spare: the largest job's CPU
    is about its time so far (jobs that slept have next to none: the test above)."""
    comm = f"spin-{uuid.uuid4().hex[:8]}"
    (tmp_path / comm).symlink_to(shutil.which("sh"))
    services.env["SCHEDCP_OBSERVER_MODE"] = mode
    services.start("observer")
    workload(str(tmp_path / comm), "-c", "sleep 600")  # older than the window: what Measure matches at first
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        call = pool.submit(observer_call, services.addr("observer"), "Measure",
                           measure_request(3, common_pb2.GroupMatcher(comm=comm)))
        time.sleep(1.0)
        workload(str(tmp_path / comm), "-c", "while :; do :; done")
        (group,) = call.result().groups
    assert group.longest_job_s > 1.0, group
    assert 0.5 < group.largest_job_cpu_s / group.longest_job_s < 1.1, group


def test_get_profile_over_grpc(observer, workload):
    latency_probe(workload)
    profile = observer_call(observer, "GetProfile", profile_request(
        1.5, detail=profile_pb2.DETAIL_LEVEL_DETAILED, grouping=profile_pb2.GROUPING_KIND_PROCESS))
    assert profile.host.host_id == "testhost" and profile.host.observer_modes == ["procfs"]
    assert profile.window.ToTimedelta().total_seconds() == pytest.approx(1.5, abs=0.3)
    assert [t.level for t in profile.texts] == [profile_pb2.DETAIL_LEVEL_SUMMARY, profile_pb2.DETAIL_LEVEL_DETAILED]
    assert profile.grouping == profile_pb2.GROUPING_KIND_PROCESS
    probe = next(g for g in profile.groups if g.name.startswith("cyclictest["))
    assert probe.kind == profile_pb2.GROUPING_KIND_PROCESS and probe.group_id == f"pid:{probe.matcher.pid}"
    # A group id from a profile names the same threads in a Measure, and is echoed as asked.
    same_group = common_pb2.GroupMatcher(group_id=probe.group_id)
    measured = observer_call(observer, "Measure", measure_request(0.5, same_group))
    assert measured.groups[0].matched_threads == probe.features.threads
    assert measured.groups[0].matcher == same_group


def test_max_groups_keeps_the_busiest_and_the_most_waking(observer, workload):
    latency_probe(workload)
    profile = observer_call(observer, "GetProfile", profile_request(1.0, max_groups=2))
    assert len(profile.groups) == 2
    # cyclictest uses little CPU but wakes a thousand times a second: it is kept.
    assert "cyclictest" in [g.name for g in profile.groups]


BAD_REQUESTS = [
    ("Measure", measure_request(1), "at least one group matcher"),
    ("Measure", measure_request(1, common_pb2.GroupMatcher()), "must set one of"),
    ("Measure", measure_request(1, common_pb2.GroupMatcher(pid=0)), "positive process id"),
    ("Measure", measure_request(1, common_pb2.GroupMatcher(comm="a-name-longer-than-15")), "1 to 15 bytes"),
    ("Measure", measure_request(1, common_pb2.GroupMatcher(comm_regex="(unclosed")), "not a valid regular expression"),
    ("Measure", measure_request(1, common_pb2.GroupMatcher(cgroup="relative/path")), "absolute cgroup path"),
    ("Measure", measure_request(1, common_pb2.GroupMatcher(group_id="nonsense")), "not a profile group id"),
    ("Measure", measure_request(0, common_pb2.GroupMatcher(pid=1)), "duration is required"),
    ("Measure", measure_request(9999, common_pb2.GroupMatcher(pid=1)), "between 0.1 s and 600 s"),
    ("GetProfile", profile_request(0.01), "between 0.1 s and 300 s"),
    ("GetProfile", profile_request(1, max_groups=100000), "max_groups must be at most"),
    ("GetProfile", profile_request(1, grouping=99), "grouping 99 is not one of"),
    ("GetProfile", profile_request(1, detail=-1), "detail -1 is not one of"),
]


@pytest.mark.parametrize(("method", "request_", "words"), BAD_REQUESTS, ids=[w for _, _, w in BAD_REQUESTS])
def test_bad_requests_are_invalid_argument(observer, method, request_, words):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        observer_call(observer, method, request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in caught.value.details()


def test_measure_of_nothing_running_is_not_found(observer):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        observer_call(observer, "Measure", measure_request(1, common_pb2.GroupMatcher(comm="no-such-task")))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "comm='no-such-task'" in caught.value.details()


def test_a_group_with_no_process_at_the_start_is_measured_beside_one_that_runs(observer, workload):
    """Jobs come and go: a group between two of its jobs is measured (as what ran meanwhile)."""
    sleeper = workload("sleep", "30")
    response = observer_call(observer, "Measure", measure_request(
        1, common_pb2.GroupMatcher(pid=sleeper.pid), common_pb2.GroupMatcher(comm="no-such-task")))
    gone = next(g for g in response.groups if g.matcher.comm == "no-such-task")
    assert gone.matched_threads == 0 and gone.cpu_seconds == 0


def test_profiles_are_published_on_jetstream(services, nats_server):
    services.env["SCHEDCP_PROFILE_INTERVAL_S"] = "0.5"
    services.start("observer")

    async def first_two() -> list[profile_pb2.WorkloadProfile]:
        bus = await Bus.connect(nats_server.url, "test")
        got: list[profile_pb2.WorkloadProfile] = []
        done = asyncio.Event()

        async def on_profile(profile, delivery) -> None:
            got.append(profile)
            if len(got) == 2:
                done.set()

        await bus.subscribe(topology.subject(topology.Kind.PROFILE, "testhost"), profile_pb2.WorkloadProfile,
                            on_profile, durable="test-profiles")
        try:
            await asyncio.wait_for(done.wait(), 15)
        finally:
            await bus.close()
        return got

    first, second = asyncio.run(first_two())
    assert first.host.host_id == second.host.host_id == "testhost"
    assert first.profile_id != second.profile_id
    # Back-to-back windows: the second starts where the first ended.
    first_end = first.window_start.ToNanoseconds() + first.window.ToNanoseconds()
    assert abs(second.window_start.ToNanoseconds() - first_end) < 50_000_000
    assert first.groups and first.texts and first.signature.values
