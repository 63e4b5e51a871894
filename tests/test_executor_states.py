"""Every way a deployment run ends (Executor._run's state machine), without a host: the backends,
the observer's measurements and the bus are fakes that record what the executor asked of them.

Each row deploys a candidate over a kept "previous" policy (or on a host running its defaults)
and breaks one step (or lets the canary's judgement decide), then checks the end: the
deployment's state and reason, whether the candidate was reverted, whether the previous policy
was applied again, the outcome the learner got, and which policy the host runs afterwards."""

from __future__ import annotations

import asyncio
import time
import types
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schedcp.domain import artifacts, sched_ext, verdicts
from schedcp.runtime import topology
from schedcp.runtime.config import Settings
from schedcp.v1 import common_pb2, deployment_pb2, executor_pb2, policy_pb2, verdict_pb2
from services.executor import canary
from services.executor.deployments import EventLog, Executor
from services.executor.native import ApplyReport, RevertReport
from services.verifier.signing import SigningKey

S = deployment_pb2
KERNEL = verdict_pb2.TargetKernel(release="6.99.0-test", btf_sha256="cd" * 32, arch="x86_64")
VERDICT_TTL_S = 3600


# --- fakes ---------------------------------------------------------------------------------
class FakeNative:
    """NativeBackend as the executor uses it; `in_force` is the deployment whose changes are on
    the host. `fail_next_apply` makes the next apply change something, then raise; with
    `fail_after` set, only once that many more applies have gone well."""

    def __init__(self, calls: list[tuple[str, str]]) -> None:
        self.calls = calls
        self.in_force = ""
        self.fail_next_apply: Exception | None = None
        self.fail_after = 0

    def journalled(self) -> int:
        return 1 if self.in_force else 0

    def apply(self, deployment_id: str, policy: policy_pb2.NativePolicy) -> ApplyReport:
        self.calls.append(("native.apply", deployment_id))
        self.in_force = deployment_id
        if self.fail_next_apply is not None and self.fail_after:
            self.fail_after -= 1
        elif self.fail_next_apply is not None:
            failure, self.fail_next_apply = self.fail_next_apply, None
            raise failure
        return ApplyReport(processes=2, threads=3)

    def rescan(self) -> ApplyReport:
        return ApplyReport()

    def revert(self) -> RevertReport:
        self.calls.append(("native.revert", self.in_force))
        self.in_force = ""
        return RevertReport()


class FakeSchedExt:
    """SchedExtBackend as the executor uses it. `started` is the deployment whose scheduler the
    executor last started and has not reverted; `active` is whether the kernel still runs it."""

    def __init__(self, calls: list[tuple[str, str]]) -> None:
        self.calls = calls
        self.started = ""
        self.active = False
        self.last_exit: dict = {}

    def kernel(self) -> verdict_pb2.TargetKernel:
        return KERNEL

    async def apply(self, deployment_id: str, artifact: policy_pb2.PolicyArtifact) -> str:
        self.calls.append(("scx.apply", deployment_id))
        self.started, self.active = deployment_id, True
        return "candidate_ops"

    def eject(self) -> None:
        """The kernel's watchdog throws the scheduler out (the loader reports it in last_exit)."""
        self.active = False
        self.last_exit = {"event": "exit", "by": "kernel", "kind_name": "SCX_EXIT_ERROR_STALL",
                          "reason": "runnable task stall"}

    async def wait_for_ejection(self) -> dict:
        await asyncio.Event().wait()  # the canary step notices the ejection first in these tests
        return self.last_exit

    async def revert(self) -> None:
        self.calls.append(("scx.revert", self.started))
        self.started, self.active = "", False


class FakeBus:
    """Keeps what is published; with `audit_down`, the audit stream refuses records."""

    def __init__(self) -> None:
        self.published: list[tuple[str, object]] = []
        self.audit_down = False

    async def publish(self, subject: str, message, *, msg_id: str | None = None, traced: bool = True) -> None:
        if self.audit_down and subject.split(".")[1] == topology.Kind.AUDIT.value:
            raise ConnectionError("no responders on the audit stream")
        self.published.append((subject, message))

    def outcomes(self, deployment_id: str) -> list[deployment_pb2.Outcome]:
        return [m for _, m in self.published if isinstance(m, deployment_pb2.Outcome)
                and m.deployment_id == deployment_id]


class Clock:
    """The time verdicts are checked at: the real time plus however long the test pretends passed."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def time(self) -> float:
        return time.time() + self.offset_s


# --- the table -----------------------------------------------------------------------------
@dataclass
class Row:
    name: str
    # What the observer measures, in order (baseline, canary, canary again; with rounds the
    # baseline and canary of each): the success metric's p99 in µs, (p99, CPU share of other
    # processes), or an exception it fails with.
    windows: list = field(default_factory=list)
    # Trouble outside the measurements: "expired" (the verdict expires during the baseline),
    # "audit" (the audit trail is down), "apply" (the backend fails half-way), "apply again" (it
    # does so when a round puts the policy back), "ejected" (the kernel ejects the scheduler
    # during the canary window numbered `at`).
    fault: str = ""
    at: int = 1
    report_only: bool = False
    backend: str = "native"
    # The canary's rounds, and whether a previous policy is in force (rounds need none).
    rounds: int = 0
    previous: bool = True
    # How many times the candidate is applied: once, none when the run ends before, and once
    # more for each round that puts it back.
    applies: int = 1
    # What must happen.
    state: int = S.DEPLOYMENT_STATE_UNSPECIFIED
    reason: str = ""
    # With state FAILED: the kind the planner decides on (NOT_APPLIED: it tries the next candidate).
    failure: int = S.DEPLOYMENT_FAILURE_UNSPECIFIED
    reverted: bool = False
    restored: bool = False
    # A message some event of the run says (an inconclusive judgement adding a round).
    said: str = ""
    outcome: int | None = None  # an OutcomeResult


OBSERVER_DOWN = ConnectionError("observer unreachable")
ROWS = [
    Row("baseline not measured", windows=[OBSERVER_DOWN], applies=0,
        state=S.DEPLOYMENT_STATE_FAILED, reason="baseline not measured: observer unreachable",
        failure=S.DEPLOYMENT_FAILURE_NOT_MEASURED),
    Row("verdict expired during the baseline", windows=[4000], fault="expired", applies=0,
        state=S.DEPLOYMENT_STATE_REFUSED, reason="verify the policy again"),
    Row("audit trail unavailable", windows=[4000], fault="audit", applies=0,
        state=S.DEPLOYMENT_STATE_FAILED, reason="the audit record could not be written",
        failure=S.DEPLOYMENT_FAILURE_DEPENDENCY),
    Row("could not apply", windows=[4000], fault="apply",
        state=S.DEPLOYMENT_STATE_FAILED, reason="could not apply: [Errno 1] Operation not permitted",
        failure=S.DEPLOYMENT_FAILURE_NOT_APPLIED, reverted=True, restored=True),
    Row("no metrics to judge", windows=None,
        state=S.DEPLOYMENT_STATE_KEPT, reason="the canary has no metrics to judge"),
    Row("canary not measured", windows=[4000, OBSERVER_DOWN],
        state=S.DEPLOYMENT_STATE_FAILED, reason="canary not measured: observer unreachable",
        failure=S.DEPLOYMENT_FAILURE_NOT_MEASURED, reverted=True, restored=True),
    Row("canary not measured again after foreign load", windows=[4000, (500, 0.6), OBSERVER_DOWN],
        state=S.DEPLOYMENT_STATE_FAILED, reason="canary not measured: observer unreachable",
        failure=S.DEPLOYMENT_FAILURE_NOT_MEASURED, reverted=True, restored=True),
    Row("ejected during the canary", windows=[4000, 500], fault="ejected", backend="sched_ext",
        state=S.DEPLOYMENT_STATE_EJECTED, reason="ejected by the kernel: SCX_EXIT_ERROR_STALL / runnable task stall",
        reverted=True, restored=True, outcome=S.OUTCOME_RESULT_EJECTED),
    Row("kept", windows=[4000, 500],
        state=S.DEPLOYMENT_STATE_KEPT, reason="runq_latency_p99_us 4000 -> 500 (88 % better)",
        outcome=S.OUTCOME_RESULT_KEPT),
    Row("kept after measuring again", windows=[4000, (3900, 0.6), 500],
        state=S.DEPLOYMENT_STATE_KEPT, reason="(88 % better)", outcome=S.OUTCOME_RESULT_KEPT),
    Row("kept, report only", windows=[4000, 3900], report_only=True,
        state=S.DEPLOYMENT_STATE_KEPT, reason="kept (report only) although: runq_latency_p99_us improved 2 %",
        outcome=S.OUTCOME_RESULT_KEPT),
    Row("rolled back", windows=[4000, 3900],
        state=S.DEPLOYMENT_STATE_ROLLED_BACK, reason="improved 2 % (4000 -> 3900), less than the 20 % required",
        reverted=True, restored=True, outcome=S.OUTCOME_RESULT_ROLLED_BACK),
    # Rounds: the policy goes off for each later baseline and on for its canary.
    Row("rounds asked for over a previous policy: one round", windows=[4000, 500], rounds=3,
        state=S.DEPLOYMENT_STATE_KEPT, reason="runq_latency_p99_us 4000 -> 500 (88 % better)",
        outcome=S.OUTCOME_RESULT_KEPT),
    Row("kept on the interval of 3 rounds", windows=[4000, 500, 4100, 450, 3900, 520], rounds=3, previous=False,
        applies=3, state=S.DEPLOYMENT_STATE_KEPT,
        reason="improved 88 % (95 % interval 84..90 %) over 3 rounds, at least the 20 % required (medians 4000 -> "
               "500; per round +88 %, +89 %, +87 %)", outcome=S.OUTCOME_RESULT_KEPT),
    Row("rolled back: clearly short over 3 rounds", windows=[4000, 3900, 4100, 4000, 3900, 4050], rounds=3,
        previous=False, applies=3, state=S.DEPLOYMENT_STATE_ROLLED_BACK,
        reason="improved 0 % (95 % interval -9..9 %) over 3 rounds, less than the 20 % required", reverted=True,
        outcome=S.OUTCOME_RESULT_ROLLED_BACK),
    # One round of three only 50 % better: the interval straddles the 20 % required, so a fourth
    # round is measured, which settles it.
    Row("inconclusive, then kept in an added round", windows=[4000, 500, 4000, 2000, 4000, 450, 4000, 520],
        rounds=3, previous=False, applies=4, said="inconclusive: runq_latency_p99_us improved 81 % (95 % interval "
                                                  "-52..98 %) over 3 rounds, straddling the 20 % required",
        state=S.DEPLOYMENT_STATE_KEPT, reason="(95 % interval 46..94 %) over 4 rounds, at least the 20 % required",
        outcome=S.OUTCOME_RESULT_KEPT),
    Row("inconclusive up to twice the rounds: rolled back", windows=[4000, 1000, 4000, 5000] * 2, rounds=2,
        previous=False, applies=4, said="adding round 4 (at most 4)", state=S.DEPLOYMENT_STATE_ROLLED_BACK,
        reason="inconclusive after 4 rounds, the most allowed: runq_latency_p99_us improved 44 %", reverted=True,
        outcome=S.OUTCOME_RESULT_ROLLED_BACK),
    Row("could not apply again in round 2", windows=[4000, 500, 4000], rounds=3, previous=False,
        fault="apply again", applies=2, state=S.DEPLOYMENT_STATE_FAILED,
        reason="could not apply again: [Errno 1] Operation not permitted", reverted=True,
        failure=S.DEPLOYMENT_FAILURE_NOT_APPLIED),
    Row("round baseline not measured", windows=[4000, 500, OBSERVER_DOWN], rounds=2, previous=False,
        state=S.DEPLOYMENT_STATE_FAILED, reason="baseline not measured: observer unreachable", reverted=True,
        failure=S.DEPLOYMENT_FAILURE_NOT_MEASURED),
    Row("ejected in round 2", windows=[4000, 500, 4000, 500], rounds=2, previous=False, fault="ejected", at=3,
        applies=2,
        backend="sched_ext", state=S.DEPLOYMENT_STATE_EJECTED,
        reason="ejected by the kernel: SCX_EXIT_ERROR_STALL / runnable task stall", reverted=True,
        outcome=S.OUTCOME_RESULT_EJECTED),
]


# --- the test ------------------------------------------------------------------------------
@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
async def test_every_way_a_deployment_ends(row: Row, tmp_path, monkeypatch):
    key = SigningKey(Ed25519PrivateKey.generate())
    calls: list[tuple[str, str]] = []
    native, scx, bus, clock = FakeNative(calls), FakeSchedExt(calls), FakeBus(), Clock()
    monkeypatch.setattr(sched_ext, "host_kernel", lambda: KERNEL)
    monkeypatch.setattr(verdicts, "time", types.SimpleNamespace(time=clock.time))
    settings = Settings(data_dir=tmp_path, host_id="testhost", trusted_verifier_keys=key.public_raw.hex())
    executor = Executor(settings, bus, native, EventLog(tmp_path / "events.jsonl"), scx)

    previous_id = ""
    if row.previous:
        previous = await deploy(executor, request(key, native_artifact("previous")))
        assert previous[-1].deployment.state == S.DEPLOYMENT_STATE_KEPT, [e.message for e in previous]
        previous_id = previous[-1].deployment.deployment_id
        calls.clear()

    windows = list(row.windows or [])

    async def measure(observer_addr: str, spec: S.CanarySpec, window_s: float) -> canary.Window:
        number = len(row.windows) - len(windows)  # 0: the baseline, then the canary
        if row.fault == "expired" and number == 0:
            clock.offset_s += 2 * VERDICT_TTL_S  # a baseline that outlives the verdict
        if row.fault == "ejected" and number == row.at:
            scx.eject()
        measured = windows.pop(0)
        if isinstance(measured, Exception):
            raise measured
        p99, foreign = measured if isinstance(measured, tuple) else (measured, 0.0)
        return canary.Window({canary.key(m): p99 for m in canary.metrics_of(spec)}, foreign)

    monkeypatch.setattr(canary, "measure", measure)
    bus.audit_down = row.fault == "audit"
    if row.fault in ("apply", "apply again"):
        native.fail_next_apply = OSError(1, "Operation not permitted")
        native.fail_after = int(row.fault == "apply again")
    artifact = sched_ext_artifact() if row.backend == "sched_ext" else native_artifact("candidate")
    events = await deploy(executor, request(key, artifact, canary_spec(row)))
    ended = events[-1].deployment
    candidate_id = ended.deployment_id

    assert ended.state == row.state, [e.message for e in events]
    assert row.reason in ended.reason and row.reason in events[-1].message
    assert ended.failure == row.failure, S.DeploymentFailure.Name(ended.failure)
    assert any(row.said in e.message for e in events), [e.message for e in events]
    assert not windows, "every measurement the row planned was taken"
    # Reverted at the end (a canary that alternates takes the policy off between rounds too).
    touched = [what for what, which in calls if which == candidate_id]
    assert bool(touched and touched[-1].endswith(".revert")) == row.reverted, calls
    restored = bool(previous_id) and ("native.apply", previous_id) in calls
    assert restored == row.restored, calls
    assert (executor.history(1)[0].message == "restored previous (the last known good)") == row.restored
    assert [o.result for o in bus.outcomes(candidate_id)] == ([row.outcome] if row.outcome is not None else [])
    # Whatever happened, the host runs one policy: the candidate if kept, else the previous one.
    running = [d for d in (native.in_force, scx.started if scx.active else "") if d]
    expected = candidate_id if row.state == S.DEPLOYMENT_STATE_KEPT else previous_id
    assert running == ([expected] if expected else []), calls
    # A canary that alternated took the policy off and put it back once per later round.
    assert sum(1 for what, which in calls if what.endswith(".apply") and which == candidate_id) == row.applies, calls
    await executor.close()


# --- helpers -------------------------------------------------------------------------------
async def deploy(executor: Executor, deploy_request: executor_pb2.DeployRequest) -> list[S.DeploymentEvent]:
    return [event async for event in executor.deploy(deploy_request, requested_by="tester")]


def native_artifact(name: str) -> policy_pb2.PolicyArtifact:
    rule = policy_pb2.NativeRule(match=[common_pb2.GroupMatcher(comm=f"{name}-batch")])
    return policy_pb2.PolicyArtifact(name=name, kind=policy_pb2.POLICY_KIND_NATIVE,
                                     native=policy_pb2.NativePolicy(rules=[rule]))


def sched_ext_artifact() -> policy_pb2.PolicyArtifact:
    return policy_pb2.PolicyArtifact(name="candidate", kind=policy_pb2.POLICY_KIND_SCHED_EXT,
                                     sched_ext=policy_pb2.SchedExtProgram(source="/* fifo */", object=b"\x7fELF"))


def request(key: SigningKey, artifact: policy_pb2.PolicyArtifact,
            spec: S.CanarySpec | None = None) -> executor_pb2.DeployRequest:
    claims = verdict_pb2.VerdictClaims(verdict_id=f"v-{artifact.name}", artifact_digest=artifacts.digest_of(artifact),
                                       kernel=KERNEL, approved=True)
    claims.issued_at.FromSeconds(int(time.time()))
    claims.expires_at.FromSeconds(int(time.time() + VERDICT_TTL_S))
    verdict = verdict_pb2.Verdict(signed=key.sign(claims), claims=claims)
    return executor_pb2.DeployRequest(artifact=artifact, verdict=verdict, canary=spec)


def canary_spec(row: Row) -> S.CanarySpec | None:
    """A latency canary (p99 of the probe 20 % better, or roll back); none for a row without metrics."""
    if row.windows is None:
        return None
    spec = S.CanarySpec(success_metric=common_pb2.MetricSpec(
        name="runq_latency_p99_us", groups=[common_pb2.GroupMatcher(comm="probe")],
        direction=common_pb2.DIRECTION_LOWER_IS_BETTER), min_improvement=0.2, report_only=row.report_only)
    spec.baseline_window.FromSeconds(1)
    spec.canary_window.FromSeconds(1)
    spec.rounds = row.rounds
    return spec
