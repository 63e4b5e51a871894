"""The executor's native backend on this host, only on processes (and cgroups) the tests create:
CPU hogs under a unique name and a cyclictest latency probe. A verified batch-demotion policy
lowers the probe's tail latency and is kept; Rollback, an unhelpful canary, a clean shutdown
and a restart after kill -9 all put every original value back (read from /proc and the cgroup
files). Unsigned, altered, expired and wrong-kernel artifacts are refused with an event each."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import grpc
import pytest

from schedcp.domain import artifacts, native_policies, policies, procfs, sched_ext
from schedcp.runtime import rpc
from schedcp.v1 import (
    common_pb2,
    deployment_pb2,
    executor_pb2,
    executor_pb2_grpc,
    goal_pb2,
    policy_pb2,
    verdict_pb2,
    verifier_pb2,
    verifier_pb2_grpc,
)
from services.executor import native, procevents
from services.executor.journal import Journal
from services.executor.native import get_sched
from services.verifier.signing import SigningKey
from tests.conftest import latency_probe
from tests.test_services import call

S = deployment_pb2
SCHED_OTHER, SCHED_IDLE = 0, 5
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="restoring nice/policy of other processes needs root")


def policy_of(pid: int) -> tuple[int, int]:
    sched = get_sched(pid)
    return sched.policy, sched.nice


def cpu_cgroup(pid: int) -> str:
    return procfs.parse_cgroups(Path(f"/proc/{pid}/cgroup").read_bytes())[0]


def native_artifact(name: str, comm: str, **params) -> policy_pb2.PolicyArtifact:
    meta = policies.load(policies.LIBRARY / "native" / f"{name}.toml")
    return policy_pb2.PolicyArtifact(name=name, kind=policy_pb2.POLICY_KIND_NATIVE,
                                     native=native_policies.build(meta, params, [common_pb2.GroupMatcher(comm=comm)]))


def sign(key: SigningKey, artifact: policy_pb2.PolicyArtifact, ttl_s: float = 3600,
         kernel: verdict_pb2.TargetKernel | None = None) -> verdict_pb2.Verdict:
    """A verdict as the verifier signs it (its key, from the data dir the executor trusts)."""
    claims = verdict_pb2.VerdictClaims(verdict_id=uuid.uuid4().hex, artifact_digest=artifacts.digest_of(artifact),
                                       kernel=kernel or sched_ext.host_kernel(), approved=True)
    claims.issued_at.FromSeconds(int(time.time()))
    claims.expires_at.FromSeconds(int(time.time() + ttl_s))
    return verdict_pb2.Verdict(signed=key.sign(claims), claims=claims)


def canary(probe_pid: int, hog_comm: str, seconds: float = 3, min_improvement: float = 0.3) -> S.CanarySpec:
    probe = [common_pb2.GroupMatcher(pid=probe_pid)]
    spec = S.CanarySpec(
        success_metric=common_pb2.MetricSpec(name="runq_latency_p99_us", groups=probe,
                                             direction=common_pb2.DIRECTION_LOWER_IS_BETTER),
        min_improvement=min_improvement,
        guards=[goal_pb2.GuardConstraint(
            metric=common_pb2.MetricSpec(name="cpu_share", groups=[common_pb2.GroupMatcher(comm=hog_comm)],
                                         direction=common_pb2.DIRECTION_HIGHER_IS_BETTER),
            comparison=goal_pb2.COMPARISON_AT_LEAST, ratio_to_baseline=0.8, description="batch keeps 80 % of its CPU")])
    spec.baseline_window.FromSeconds(int(seconds))
    spec.canary_window.FromSeconds(int(seconds))
    return spec


async def deploy(addr: str, request: executor_pb2.DeployRequest, until_state: int | None = None) -> list:
    """Deploy's events; with `until_state`, stop reading once an event in that state arrives."""
    events = []
    async with rpc.channel(addr) as channel:
        async for event in executor_pb2_grpc.ExecutorServiceStub(channel).Deploy(request):
            events.append(event)
            if event.deployment.state == until_state:
                break
    return events


def executor_call(addr: str, method: str, request):
    return call(addr, lambda ch: getattr(executor_pb2_grpc.ExecutorServiceStub(ch), method)(request))


def test_a_verified_batch_demotion_is_kept_then_rolled_back_to_every_original(stack, hogs, workload):
    hog_pids = hogs()
    probe = latency_probe(workload)
    stack.start("verifier")
    artifact = native_artifact("batch_sched_idle", hogs.comm)
    # The premise: the hogs start as ordinary tasks (a demoted parent would make them idle
    # already, and the probe would never wait behind them).
    assert {policy_of(pid) for pid in [*hog_pids, probe.pid]} == {(SCHED_OTHER, 0)}, os.uname().release

    async def verified() -> verdict_pb2.Verdict:
        async with rpc.channel(stack.addr("verifier")) as channel:
            stub = verifier_pb2_grpc.VerifierServiceStub(channel)
            request = verifier_pb2.VerifyRequest(artifact=artifact, target=sched_ext.host_kernel())
            return [p async for p in stub.Verify(request)][-1].verdict

    verdict = asyncio.run(verified())
    assert verdict.claims.approved, verdict.summary
    time.sleep(1)  # let the probe settle before the baseline
    events = asyncio.run(deploy(stack.addr("executor"), executor_pb2.DeployRequest(
        artifact=verdict.artifact, verdict=verdict, canary=canary(probe.pid, hogs.comm), cycle_id="cycle1")))
    # (a canary disturbed by other processes' load is measured again: a repeated state)
    states = [e.deployment.state for i, e in enumerate(events) if i == 0 or e.deployment.state !=
              events[i - 1].deployment.state]
    assert states == [S.DEPLOYMENT_STATE_CHECKING, S.DEPLOYMENT_STATE_BASELINE, S.DEPLOYMENT_STATE_APPLYING,
                      S.DEPLOYMENT_STATE_CANARY, S.DEPLOYMENT_STATE_KEPT], (os.uname().release,
                                                                            [e.message for e in events])
    success = events[-1].metrics[0]
    assert success.metric.name == "runq_latency_p99_us" and success.satisfied and success.improvement >= 0.3, success
    assert all(policy_of(pid)[0] == SCHED_IDLE for pid in hog_pids)
    assert policy_of(probe.pid) == (SCHED_OTHER, 0)
    late = hogs(1)[0]  # started after the deployment: the rescan finds it
    deadline = time.monotonic() + 5
    while policy_of(late)[0] != SCHED_IDLE and time.monotonic() < deadline:
        time.sleep(0.2)
    assert policy_of(late)[0] == SCHED_IDLE

    status = executor_call(stack.addr("executor"), "Status", executor_pb2.StatusRequest())
    assert status.current.state == S.DEPLOYMENT_STATE_KEPT and status.journalled_changes == len(hog_pids) + 1
    rolled = executor_call(stack.addr("executor"), "Rollback", executor_pb2.RollbackRequest(reason="test"))
    assert "the host runs its defaults" in rolled.message
    assert all(policy_of(pid) == (SCHED_OTHER, 0) for pid in [*hog_pids, late])
    history = executor_call(stack.addr("executor"), "History", executor_pb2.HistoryRequest()).events
    assert history[-1].deployment.state == S.DEPLOYMENT_STATE_ROLLED_BACK


def test_an_unhelpful_canary_is_rolled_back_automatically(stack, hogs, workload):
    hog_pids = hogs()
    probe = latency_probe(workload)
    artifact = native_artifact("batch_sched_idle", hogs.comm)
    events = asyncio.run(deploy(stack.addr("executor"), executor_pb2.DeployRequest(
        artifact=artifact, verdict=sign(stack.key, artifact), canary=canary(probe.pid, hogs.comm, 2, 50.0))))
    last = events[-1]
    assert last.deployment.state == S.DEPLOYMENT_STATE_ROLLED_BACK, [e.message for e in events]
    assert "less than the 5000 % required" in last.message
    assert all(policy_of(pid) == (SCHED_OTHER, 0) for pid in hog_pids)


def test_a_cgroup_policy_moves_the_batch_and_rollback_moves_it_back(stack, hogs):
    root, _ = procfs.cpu_controller()
    if not root:
        pytest.skip("no cpu controller on this host")
    hog_pids = hogs(2)
    before = {pid: cpu_cgroup(pid) for pid in hog_pids}
    artifact = native_artifact("batch_idle_cgroup", hogs.comm)
    events = asyncio.run(deploy(stack.addr("executor"), executor_pb2.DeployRequest(
        artifact=artifact, verdict=sign(stack.key, artifact))))
    assert events[-1].deployment.state == S.DEPLOYMENT_STATE_KEPT, [e.message for e in events]
    target = f"/schedcp/{events[-1].deployment.deployment_id}-r0"
    assert {cpu_cgroup(pid) for pid in hog_pids} == {target}
    assert Path(root, target.lstrip("/"), "cpu.idle").read_text().strip() == "1"
    executor_call(stack.addr("executor"), "Rollback", executor_pb2.RollbackRequest())
    assert {pid: cpu_cgroup(pid) for pid in hog_pids} == before
    assert not Path(root, target.lstrip("/")).exists()


def test_kill_9_mid_deploy_then_restart_restores_the_originals(stack, hogs, workload):
    hog_pids = hogs(2)
    probe = latency_probe(workload)
    artifact = native_artifact("batch_sched_idle", hogs.comm, use_sched_idle=False, nice=15)
    spec = canary(probe.pid, hogs.comm, 1)
    spec.canary_window.FromSeconds(60)
    events = asyncio.run(deploy(stack.addr("executor"), executor_pb2.DeployRequest(
        artifact=artifact, verdict=sign(stack.key, artifact), canary=spec), until_state=S.DEPLOYMENT_STATE_CANARY))
    assert events[-1].deployment.state == S.DEPLOYMENT_STATE_CANARY
    assert all(policy_of(pid) == (SCHED_OTHER, 15) for pid in hog_pids)
    executor = stack.procs.pop("executor")
    executor.send_signal(signal.SIGKILL)
    executor.wait(10)
    assert all(policy_of(pid) == (SCHED_OTHER, 15) for pid in hog_pids)  # nobody undid it
    stack.start("executor")
    assert all(policy_of(pid) == (SCHED_OTHER, 0) for pid in hog_pids)
    status = executor_call(stack.addr("executor"), "Status", executor_pb2.StatusRequest())
    assert status.journalled_changes == 0 and not status.HasField("current")
    # The record of the killed deployment is closed, not left "in canary".
    last = executor_call(stack.addr("executor"), "History", executor_pb2.HistoryRequest()).events[-1]
    assert last.deployment.deployment_id == events[-1].deployment.deployment_id
    assert last.deployment.state == S.DEPLOYMENT_STATE_ROLLED_BACK
    assert "stopped without reverting" in last.message and "journal" in last.message


def test_a_clean_shutdown_restores_the_originals(stack, hogs):
    hog_pids = hogs(2)
    artifact = native_artifact("batch_sched_idle", hogs.comm)
    events = asyncio.run(deploy(stack.addr("executor"), executor_pb2.DeployRequest(
        artifact=artifact, verdict=sign(stack.key, artifact))))
    assert all(policy_of(pid)[0] == SCHED_IDLE for pid in hog_pids)
    code, output = stack.stop("executor")
    assert code == 0, output
    assert all(policy_of(pid) == (SCHED_OTHER, 0) for pid in hog_pids)
    stack.start("executor")  # a clean stop is recorded as such, not taken for a crash
    last = executor_call(stack.addr("executor"), "History", executor_pb2.HistoryRequest()).events[-1]
    assert last.deployment.deployment_id == events[-1].deployment.deployment_id
    assert last.deployment.state == S.DEPLOYMENT_STATE_ROLLED_BACK and last.message == "reverted: the executor stopped"


def test_unverified_artifacts_are_refused_with_an_event_each(stack, hogs, tmp_path):
    hog_pids = hogs(1)
    artifact = native_artifact("batch_sched_idle", hogs.comm)
    good = sign(stack.key, artifact)
    altered = policy_pb2.PolicyArtifact()
    altered.CopyFrom(artifact)
    altered.native.rules[0].match[0].comm = "sshd"  # one field changed after signing
    stranger = SigningKey.load_or_create(tmp_path / "stranger.pem")
    other_kernel = verdict_pb2.TargetKernel(release="6.1.0-99-amd64", btf_sha256="ee" * 32)
    cases = [
        ("unsigned", artifact, verdict_pb2.Verdict(), grpc.StatusCode.PERMISSION_DENIED, "without a signed verdict"),
        ("another key", artifact, sign(stranger, artifact), grpc.StatusCode.PERMISSION_DENIED, "not a trusted"),
        ("altered", altered, good, grpc.StatusCode.FAILED_PRECONDITION, "changed after verification"),
        ("expired", artifact, sign(stack.key, artifact, ttl_s=-10), grpc.StatusCode.FAILED_PRECONDITION, "expired"),
        ("wrong kernel", artifact, sign(stack.key, artifact, kernel=other_kernel), grpc.StatusCode.FAILED_PRECONDITION,
         "verify the policy for this kernel"),
    ]
    for name, art, verdict, code, words in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            asyncio.run(deploy(stack.addr("executor"), executor_pb2.DeployRequest(artifact=art, verdict=verdict)))
        assert caught.value.code() == code and words in caught.value.details(), (name, caught.value.details())
    assert policy_of(hog_pids[0]) == (SCHED_OTHER, 0)
    history = executor_call(stack.addr("executor"), "History", executor_pb2.HistoryRequest()).events
    refused = [e for e in history if e.deployment.state == S.DEPLOYMENT_STATE_REFUSED]
    assert len(refused) == len(cases) and all(e.message.startswith("refused: ") for e in refused)


def test_bad_canaries_get_a_clear_error(stack):
    artifact = native_artifact("batch_sched_idle", "nobody-here")
    spec = S.CanarySpec(success_metric=common_pb2.MetricSpec(name="happiness", groups=[common_pb2.GroupMatcher(pid=1)],
                                                             direction=common_pb2.DIRECTION_HIGHER_IS_BETTER))
    spec.baseline_window.FromSeconds(1)
    spec.canary_window.FromSeconds(1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        asyncio.run(deploy(stack.addr("executor"), executor_pb2.DeployRequest(
            artifact=artifact, verdict=sign(stack.key, artifact), canary=spec)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "metric 'happiness' is not measurable here" in caught.value.details()


def test_children_forked_after_the_deployment_are_restored_too(stack, hogs, workload, tmp_path):
    # A hog that forks another hog 3 s after it starts: the child inherits SCHED_IDLE from its
    # demoted parent, and must still get SCHED_OTHER back.
    parent = workload(str(tmp_path / hogs.comm), "-c",
                      f"sleep 3; {tmp_path / hogs.comm} -c 'while :; do :; done' & while :; do :; done").pid
    artifact = native_artifact("batch_sched_idle", hogs.comm)
    asyncio.run(deploy(stack.addr("executor"), executor_pb2.DeployRequest(
        artifact=artifact, verdict=sign(stack.key, artifact))))
    deadline = time.monotonic() + 15
    children: list[int] = []
    while time.monotonic() < deadline and not children:
        children = [p.pid for p in procfs.list_processes() if p.comm == hogs.comm and p.pid != parent]
        time.sleep(0.3)
    assert children and policy_of(children[0])[0] == SCHED_IDLE
    time.sleep(2)  # a rescan journals the child
    executor_call(stack.addr("executor"), "Rollback", executor_pb2.RollbackRequest())
    assert policy_of(parent) == (SCHED_OTHER, 0) and policy_of(children[0]) == (SCHED_OTHER, 0)


def process_events_or_skip() -> procevents.ProcEvents:
    try:
        return procevents.ProcEvents()
    except procevents.Unavailable as exc:
        pytest.skip(str(exc))


def test_a_process_gets_the_policy_as_it_starts_before_it_forks(stack, hogs, workload):
    """A matched program that forks a worker 50 ms after it starts: the worker inherits its
    parent's settings at that moment, so it is demoted only if the parent was before then. A
    rescan, once a second, comes that early about one time in twenty; the process events
    connector every time: two programs started 0.4 s apart must both be in time. The workers
    are not matched themselves (tail): they are stopped before the rollback, which restores only
    what was journalled."""
    process_events_or_skip().close()
    artifact = native_artifact("batch_sched_idle", hogs.comm)
    asyncio.run(deploy(stack.addr("executor"), executor_pb2.DeployRequest(
        artifact=artifact, verdict=sign(stack.key, artifact))))
    parents = []
    for _ in range(2):
        parents.append(workload(str(hogs.path), "-c", "sleep 0.05; tail -f /dev/null & wait").pid)
        time.sleep(0.4)
    deadline = time.monotonic() + 5
    workers: dict[int, int] = {}
    while time.monotonic() < deadline and len(workers) < len(parents):
        workers = {p.ppid: p.pid for p in procfs.list_processes() if p.comm == "tail" and p.ppid in parents}
        time.sleep(0.02)
    assert [policy_of(workers[parent])[0] for parent in parents if parent in workers] == [SCHED_IDLE] * 2
    for worker in workers.values():
        os.kill(worker, signal.SIGKILL)
    executor_call(stack.addr("executor"), "Rollback", executor_pb2.RollbackRequest())
    assert [policy_of(parent) for parent in parents] == [(SCHED_OTHER, 0)] * 2


def test_a_canary_disturbed_by_foreign_load_is_measured_again():
    from services.executor import canary as c

    quiet, busy = c.Window({}, 0.05), c.Window({}, 0.4)
    assert c.disturbed(quiet, busy) and not c.disturbed(busy, quiet) and not c.disturbed(quiet, c.Window({}, 0.1))


def test_process_events_tell_which_processes_started_a_program_and_close_promptly():
    events = process_events_or_skip()
    try:
        child = subprocess.Popen(["true"])
        child.wait()
        started = set()
        deadline = time.monotonic() + 5
        while child.pid not in started and time.monotonic() < deadline:
            started |= events.started(1.0) or set()
        assert child.pid in started
        # A wait in progress ends soon after close(), which then closes the socket.
        waiting = threading.Thread(target=events.started, args=(30.0,))
        waiting.start()
        time.sleep(0.2)
    finally:
        began = time.monotonic()
        events.close()
    waiting.join(5)
    assert not waiting.is_alive() and time.monotonic() - began < 1.0


def test_a_rule_that_sets_no_slice_keeps_a_default_slice_default(tmp_path, monkeypatch):
    """sched_getattr reports a default slice as a number; written back as that number it would
    become a custom slice (6.12+), fixed when the default moves. A rule that sets only nice, and
    its revert, must write 0 ("the default") for such a thread."""
    marker = f"schedcp-slice-{uuid.uuid4().hex[:8]}"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", marker])
    written: list[native.Sched] = []
    real = native.set_sched
    monkeypatch.setattr(native, "set_sched", lambda tid, sched: (written.append(sched), real(tid, sched)))
    try:
        backend = native.NativeBackend(Journal(tmp_path / "journal.jsonl"), None)
        rule = policy_pb2.NativeRule(match=[common_pb2.GroupMatcher(cmdline_regex=marker)], nice=5)
        assert backend.apply("slice-test", policy_pb2.NativePolicy(rules=[rule])).threads == 1
        assert get_sched(child.pid).nice == 5
        backend.revert()
        assert get_sched(child.pid).nice == 0
        assert [s.nice for s in written] == [5, 0] and all(s.runtime_ns == 0 for s in written), written
    finally:
        child.kill()
        child.wait()
