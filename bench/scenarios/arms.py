"""What the suite compares on a scenario, each applied through the real stack and undone after:

- `default`: nothing changed;
- `schedcp`: one decision cycle with no intent (`Tune`, rules provider), whatever it keeps stays
  in force for the measurement;
- the oracle's arms: every library policy that applies on this host, with a small grid per
  parameter, aimed at the scenario's ground-truth groups (not at what schedcp understood), each
  verified by the verifier and deployed by the executor without a canary judgement.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from google.protobuf import json_format

from bench.scenarios.suite import Scenario
from schedcp.domain import artifacts, native_policies, params, policies
from schedcp.domain.policies import PolicyMetadata
from schedcp.runtime import rpc
from schedcp.runtime.config import Settings
from schedcp.v1 import (
    common_pb2,
    cycle_pb2,
    deployment_pb2,
    executor_pb2,
    executor_pb2_grpc,
    goal_pb2,
    host_pb2,
    observer_pb2,
    observer_pb2_grpc,
    planner_pb2,
    planner_pb2_grpc,
    policy_pb2,
    profile_pb2,
    verdict_pb2,
    verifier_pb2,
    verifier_pb2_grpc,
)

# Grid points per numeric parameter besides its default (spread over its range, geometric for
# ranges over two decades).
GRID_POINTS = 1
# What a labelled group the profile does not show is read as.
UNSEEN = "unseen"


@dataclass
class Arm:
    """One way to run a scenario: a name, and for oracle arms the artifact to deploy."""

    name: str
    artifact: policy_pb2.PolicyArtifact | None = None
    parameters: dict = field(default_factory=dict)
    verdict: verdict_pb2.Verdict | None = None


def grid(meta: PolicyMetadata) -> list[dict]:
    """The defaults, then each parameter moved alone over a few values of its range (the
    planner's search offers the same points: `params.variants`)."""
    return [{}, *params.variants(meta, GRID_POINTS)]


def oracle_arms(scenario: Scenario, host: host_pb2.HostFacts) -> list[Arm]:
    """Every library policy this host can run, aimed at the scenario's true groups."""
    arms: list[Arm] = []
    seen: set[bytes] = set()
    for meta in policies.library():
        if meta.kind == "sched_ext" and "sched_ext" not in host.backends:
            continue
        groups = true_groups(scenario, meta.group)
        if meta.kind == "native" and not groups:
            continue
        for point in grid(meta):
            artifact = _artifact(meta, point, groups, scenario)
            key = artifact.SerializeToString(deterministic=True)
            if key in seen:
                continue
            seen.add(key)
            label = ",".join(f"{k}={v}" for k, v in point.items())
            arms.append(Arm(f"{meta.name}({label})" if label else meta.name, artifact, point))
    return arms


def _artifact(meta: PolicyMetadata, point: dict, groups: list[common_pb2.GroupMatcher],
              scenario: Scenario) -> policy_pb2.PolicyArtifact:
    artifact = policy_pb2.PolicyArtifact(name=meta.name, origin=policy_pb2.POLICY_ORIGIN_LIBRARY)
    if meta.kind == "native":
        artifact.kind = policy_pb2.POLICY_KIND_NATIVE
        artifact.native.CopyFrom(native_policies.build(meta, point, groups))
        return artifact
    artifact.kind = policy_pb2.POLICY_KIND_SCHED_EXT
    artifact.sched_ext.CopyFrom(policies.sched_ext_program(meta))
    for name, value in point.items():
        artifact.parameters[name].CopyFrom(params.of(value))
    service = scenario.groups("service")
    if service and any(p.name == "boost_comm" for p in meta.parameters):
        artifact.parameters["boost_comm"].string_value = service[0]
    return artifact


def true_groups(scenario: Scenario, group: str) -> list[common_pb2.GroupMatcher]:
    """The groups a native policy's `group` means on this scenario: the batch it demotes, the
    service it protects, or the objective's targets (the service for latency, else the jobs)."""
    if group == "target" and scenario.groups("long"):
        roles: tuple[str, ...] = ("long",)  # makespan: the long jobs first
    elif group == "target":
        roles = ("service",) if scenario.objective == "tail_latency" else ("batch", "jobs")
    else:
        roles = {"batch": ("batch", "jobs"), "latency": ("service",)}.get(group, ())
    return [common_pb2.GroupMatcher(cmdline_regex=t.cmdline) if t.cmdline else common_pb2.GroupMatcher(comm=t.comm)
            for t in scenario.truth if t.role in roles]


async def _host(settings: Settings) -> host_pb2.HostFacts:
    async with rpc.channel(settings.observer_addr, settings.rpc_timeout_s) as channel:
        return (await observer_pb2_grpc.ObserverServiceStub(channel).HostInfo(observer_pb2.HostInfoRequest())).facts


def host_facts(settings: Settings) -> host_pb2.HostFacts:
    return asyncio.run(_host(settings))


ENDED = (deployment_pb2.DEPLOYMENT_STATE_KEPT, deployment_pb2.DEPLOYMENT_STATE_ROLLED_BACK,
         deployment_pb2.DEPLOYMENT_STATE_EJECTED, deployment_pb2.DEPLOYMENT_STATE_FAILED,
         deployment_pb2.DEPLOYMENT_STATE_REFUSED)


class NotApproved(RuntimeError):
    """The verifier did not approve an oracle arm's artifact (its summary says why)."""


async def _verify(settings: Settings, artifact: policy_pb2.PolicyArtifact) -> verdict_pb2.Verdict:
    facts = await _host(settings)
    target = verdict_pb2.TargetKernel(release=facts.kernel_release, btf_sha256=facts.btf_sha256, arch=facts.arch)
    verdict = None
    async with rpc.channel(settings.verifier_addr, settings.rpc_timeout_s) as channel:
        async for progress in verifier_pb2_grpc.VerifierServiceStub(channel).Verify(
                verifier_pb2.VerifyRequest(artifact=artifact, target=target)):
            if progress.HasField("verdict"):
                verdict = progress.verdict
    if verdict is None or not verdict.claims.approved:
        raise NotApproved(f"{artifact.name} was not approved: {verdict.summary if verdict else 'no verdict'}")
    return verdict


def verify(settings: Settings, arm: Arm) -> None:
    """The verifier's verdict for an oracle arm, kept on it (NotApproved if it refused): the suite
    verifies every arm before the scenario's load starts, so that the sandbox VM's run does not
    compete with the load (nor a loaded host with the sandbox's timing tests)."""
    arm.verdict = asyncio.run(_verify(settings, arm.artifact))


async def _deploy(settings: Settings, verdict: verdict_pb2.Verdict) -> int:
    # No metrics to judge: the executor keeps it, and the suite measures it by the programs' own numbers.
    request = executor_pb2.DeployRequest(artifact=verdict.artifact, verdict=verdict,
                                         goal=goal_pb2.OptimizationGoal(rationale="scenario suite: an oracle arm"))
    last = None
    async with rpc.channel(settings.executor_addr, settings.rpc_timeout_s) as channel:
        async for event in executor_pb2_grpc.ExecutorServiceStub(channel).Deploy(request):
            last = event
    return last.deployment.state if last else deployment_pb2.DEPLOYMENT_STATE_UNSPECIFIED


def deploy(settings: Settings, arm: Arm) -> None:
    if arm.verdict is None:
        verify(settings, arm)
    state = asyncio.run(_deploy(settings, arm.verdict))
    if state != deployment_pb2.DEPLOYMENT_STATE_KEPT:
        raise RuntimeError(f"{arm.name} was not applied ({deployment_pb2.DeploymentState.Name(state)})")


async def _tune(settings: Settings, budget: int) -> list[cycle_pb2.CycleEvent]:
    async with rpc.channel(settings.planner_addr, settings.rpc_timeout_s) as channel:
        stub = planner_pb2_grpc.PlannerServiceStub(channel)
        request = planner_pb2.TuneRequest(host_id=settings.host_id, provider="rules", budget=budget)
        return [e async for e in stub.Tune(request)]


def tune(settings: Settings, budget: int = 0) -> dict:
    """One decision cycle (`budget`: kept candidates compared, 0 for the planner's default);
    what it decided, in numbers and words."""
    started = time.monotonic()
    events = asyncio.run(_tune(settings, budget))
    result = events[-1]
    goal = next((e.goal for e in events if e.HasField("goal")), None)
    found = next((e.candidates for e in events if e.HasField("candidates")), None)
    kept = result.status == common_pb2.STAGE_STATUS_SUCCEEDED and result.HasField("deployment")
    verified = {e.verdict.artifact.digest: e.verdict.artifact for e in events if e.HasField("verdict")}
    deployed = verified.get(result.deployment.deployment.artifact_digest)
    return {"wall_s": round(time.monotonic() - started, 2),
            "objective": goal_pb2.Objective.Name(goal.objective).removeprefix("OBJECTIVE_").lower() if goal else "",
            "goal": goal.rationale if goal else "",
            "candidates": [artifacts.label(c.artifact) for c in found.candidates] if found else [],
            "policy": result.deployment.deployment.policy_name if kept else "",
            "parameters": params.pythons(deployed.parameters) if kept and deployed else {},
            "point": artifacts.label(deployed) if kept and deployed else "",
            "kept": kept, "result": result.message,
            # How every candidate's canary ended (the last one's is the result too).
            "tried": [f"{_trial(verified, e)}: {e.message}" for e in events
                      if e.HasField("deployment") and e.deployment.deployment.state in ENDED]}


def _trial(verified: dict[str, policy_pb2.PolicyArtifact], ended: cycle_pb2.CycleEvent) -> str:
    """The policy an ended canary measured, named with its parameter point."""
    artifact = verified.get(ended.deployment.deployment.artifact_digest)
    return artifacts.label(artifact) if artifact else ended.deployment.deployment.policy_name


async def _rollback(settings: Settings) -> None:
    async with rpc.channel(settings.executor_addr, settings.rpc_timeout_s) as channel:
        await executor_pb2_grpc.ExecutorServiceStub(channel).Rollback(executor_pb2.RollbackRequest(reason="scenario"))


def rollback(settings: Settings) -> None:
    asyncio.run(_rollback(settings))


async def _profile(settings: Settings, seconds: float) -> profile_pb2.WorkloadProfile:
    async with rpc.channel(settings.observer_addr, settings.rpc_timeout_s + seconds) as channel:
        request = observer_pb2.GetProfileRequest(detail=profile_pb2.DETAIL_LEVEL_DETAILED, max_groups=40)
        request.window.FromSeconds(int(seconds))
        return await observer_pb2_grpc.ObserverServiceStub(channel).GetProfile(request)


def profile(settings: Settings, seconds: float) -> profile_pb2.WorkloadProfile:
    return asyncio.run(_profile(settings, seconds))


def labelled_groups(scenario: Scenario, found: profile_pb2.WorkloadProfile, with_batch: bool = True) -> list[dict]:
    """The profile's groups that the scenario labels: true class, read class, confidence, features.
    A labelled group the profile does not show at all is a row too, read "unseen": left out, it
    would not count against the classification (procfs misses processes born and gone within a
    window). `with_batch` False: profiled without its
    batch, which is then not expected."""
    truth = {t.comm: t for t in scenario.truth
             if not t.cmdline and (with_batch or scenario.batch is None or t != scenario.batch.truth)}
    rows = []
    for group in found.groups:
        if group.name not in truth:
            continue
        rows.append({"group": group.name, "truth": truth[group.name].label,
                     "read": profile_pb2.WorkloadClass.Name(group.classification.workload_class)
                     .removeprefix("WORKLOAD_CLASS_").lower(),
                     "confidence": group.classification.confidence, "reason": group.classification.reason,
                     # Every feature, as the observer sent it: what the classifier's tests replay.
                     "features": json_format.MessageToDict(group.features, preserving_proto_field_name=True)})
    seen = {row["group"] for row in rows}
    for comm, unseen in truth.items():
        if comm not in seen:
            rows.append({"group": comm, "truth": unseen.label, "read": UNSEEN, "confidence": 0.0,
                         "reason": f"no group named {comm} in the profile ({found.sampler})", "features": {}})
    return rows

