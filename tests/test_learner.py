"""The learner against a real nats-server: repository seeding (artifacts, idempotent restarts,
new versions), outcomes applied exactly once across a crash and duplicates, search ranking and
anti-patterns, dead-lettered malformed outcomes, PutPolicy, and a nats-server restart."""

from __future__ import annotations

import asyncio
import shutil
import time
import types
from pathlib import Path

import grpc
import pytest

from schedcp.domain import artifacts, params, policies
from schedcp.runtime import topology
from schedcp.runtime.bus import Bus
from schedcp.v1 import (
    common_pb2,
    deployment_pb2,
    goal_pb2,
    host_pb2,
    learner_pb2,
    learner_pb2_grpc,
    policy_pb2,
    profile_pb2,
    verdict_pb2,
)
from services.learner import search, seeding
from services.learner.repository import PolicyRepository
from services.verifier.signing import SigningKey
from tests.test_services import call


async def revisions(url: str) -> dict[str, int]:
    bus = await Bus.connect(url, "test")
    try:
        kv = await bus.kv(topology.POLICIES_BUCKET)
        return {name: (await kv.get(name)).revision for name in await bus.kv_keys(topology.POLICIES_BUCKET)}
    finally:
        await bus.close()


def test_the_learner_seeds_every_library_policy_with_its_artifact(services, nats_server):
    services.start("learner")
    listed = call(services.addr("learner"), lambda ch: learner_pb2_grpc.LearnerServiceStub(ch).ListPolicies(
        learner_pb2.ListPoliciesRequest())).policies
    library = {m.name: m for m in policies.library()}
    assert sorted(p.metadata.name for p in listed) == sorted(library)
    vtime = next(p for p in listed if p.metadata.name == "vtime")
    assert vtime.origin == policy_pb2.POLICY_ORIGIN_LIBRARY and len(vtime.version) == 12
    assert [s.name for s in vtime.metadata.parameters] == [p.name for p in library["vtime"].parameters]
    slice_us = vtime.metadata.parameters[0]
    assert (slice_us.default_value.int_value, slice_us.min, slice_us.max) == (3000, 100, 100000)

    async def artifact() -> policy_pb2.PolicyArtifact:
        bus = await Bus.connect(nats_server.url, "test")
        try:
            store = await bus.js.object_store(topology.ARTIFACTS_STORE.name)
            return policy_pb2.PolicyArtifact.FromString((await store.get(f"sha256-{vtime.artifact_digest}")).data)
        finally:
            await bus.close()

    stored = asyncio.run(artifact())
    assert artifacts.digest_of(stored) == stored.digest == vtime.artifact_digest
    assert stored.sched_ext.ops_name == "schedcp_vtime" and "vtime_enqueue" in stored.sched_ext.source

    # A restart finds everything current and writes nothing.
    before = asyncio.run(revisions(nats_server.url))
    services.stop("learner")
    services.start("learner")
    assert asyncio.run(revisions(nats_server.url)) == before


def test_an_edited_library_file_becomes_a_new_version_and_the_old_one_is_kept(nats_server, tmp_path):
    library = tmp_path / "policies"
    shutil.copytree(policies.LIBRARY, library)

    async def go():
        bus = await Bus.connect(nats_server.url, "test")
        await bus.ensure_topology()
        try:
            first = await seeding.seed(bus, library)
            toml = library / "sched_ext" / "fifo.toml"
            toml.write_text(toml.read_text().replace("default = 5000", "default = 4000"))
            second = await seeding.seed(bus, library)
            versions = await PolicyRepository(bus).versions("fifo")
        finally:
            await bus.close()
        return first, second, versions

    first, second, versions = asyncio.run(go())
    assert sorted(first.added) == sorted(m.name for m in policies.library(library))
    assert second.updated == ["fifo"] and "vtime" in second.unchanged and not second.added
    assert len(versions) == 2 and versions[0].version != versions[1].version
    assert versions[1].metadata.parameters[0].default_value.int_value == 4000
    assert versions[1].created_at == versions[0].created_at


def outcome(oid: str, policy: str, improvement: float, result=deployment_pb2.OUTCOME_RESULT_KEPT,
            signature=(0.9, 0.1, 0.8), host: str = "h1") -> deployment_pb2.Outcome:
    o = deployment_pb2.Outcome(
        outcome_id=oid, host_id=host, host_class="x86_64-2cpu-sched_ext", policy_name=policy,
        objective=goal_pb2.OBJECTIVE_TAIL_LATENCY, result=result,
        signature=profile_pb2.WorkloadSignature(version=1, dimensions=["a", "b", "c"], values=signature),
        success=deployment_pb2.MetricComparison(improvement=improvement))
    o.at.GetCurrentTime()
    return o


def with_goal(o: deployment_pb2.Outcome, rationale: str) -> deployment_pb2.Outcome:
    o.goal.objective, o.goal.rationale = o.objective, rationale
    return o


async def publish(url: str, outcomes, raw: list[bytes] = ()) -> None:
    bus = await Bus.connect(url, "test")
    await bus.ensure_topology()
    try:
        for i, o in enumerate(outcomes):
            # A fresh message id each time: duplicates must be caught by the learner, not JetStream.
            subject = topology.subject(topology.Kind.OUTCOME, o.host_id)
            await bus.publish(subject, o, msg_id=f"m{i}-{o.outcome_id}")
        for data in raw:
            await bus.js.publish(topology.subject(topology.Kind.OUTCOME, "h1"), data)
    finally:
        await bus.close()


def learner(addr: str, method: str, request):
    return call(addr, lambda ch: getattr(learner_pb2_grpc.LearnerServiceStub(ch), method)(request))


def wait_for_history(addr: str, policy: str, count: int, timeout_s: float = 20) -> list:
    deadline = time.monotonic() + timeout_s
    while True:
        got = learner(addr, "History", learner_pb2.LearnerHistoryRequest(policy_name=policy, limit=1000)).outcomes
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_every_outcome_counts_once_across_a_learner_crash_and_duplicates(services, nats_server):
    first = [outcome(f"o{i}", "vtime", 0.1) for i in range(30)]
    asyncio.run(publish(nats_server.url, first))
    services.start("learner")
    services.procs["learner"].kill()  # SIGKILL, mid-stream or not: it must not matter
    services.procs.pop("learner").wait()
    second = [outcome(f"o{i}", "vtime", 0.1) for i in range(30, 60)]
    duplicates = first[:10] + second[:5]
    asyncio.run(publish(nats_server.url, second + duplicates))
    services.start("learner")
    got = wait_for_history(services.addr("learner"), "vtime", 60)
    time.sleep(1.0)  # let any late redelivery arrive
    got = learner(services.addr("learner"), "History",
                  learner_pb2.LearnerHistoryRequest(policy_name="vtime", limit=1000)).outcomes
    ids = [o.outcome_id for o in got]
    assert sorted(ids) == sorted(f"o{i}" for i in range(60)), (len(ids), len(set(ids)))
    effects = learner(services.addr("learner"), "GetPolicy", learner_pb2.GetPolicyRequest(name="vtime")).effects
    assert sum(e.count for e in effects) == 60


def test_search_ranks_the_winner_first_and_returns_the_ejected_policy_to_avoid(services, nats_server):
    history = [outcome("w1", "latency_boost", 0.45), with_goal(outcome("w2", "latency_boost", 0.5), "w2's goal"),
               outcome("w3", "latency_boost", 0.4),
               outcome("v1", "vtime", 0.05),
               with_goal(outcome("v2", "vtime", -0.02, result=deployment_pb2.OUTCOME_RESULT_ROLLED_BACK), "v2's"),
               outcome("f1", "fifo", 0.0, result=deployment_pb2.OUTCOME_RESULT_EJECTED),
               # The same policy on a very different workload says nothing about this one.
               outcome("x1", "batch", 0.9, signature=(0.0, 0.9, 0.0))]
    asyncio.run(publish(nats_server.url, history))
    services.start("learner")
    wait_for_history(services.addr("learner"), "latency_boost", 3)
    host = host_pb2.HostFacts(backends=["sched_ext", "native"])
    request = learner_pb2.SearchPoliciesRequest(
        signature=profile_pb2.WorkloadSignature(version=1, dimensions=["a", "b", "c"], values=[0.85, 0.1, 0.8]),
        host=host, goal=goal_pb2.OptimizationGoal(objective=goal_pb2.OBJECTIVE_TAIL_LATENCY), limit=10)
    found = learner(services.addr("learner"), "SearchPolicies", request)
    names = [m.policy.metadata.name for m in found.matches]
    assert names[0] == "latency_boost" and found.matches[0].expected_improvement == pytest.approx(0.45, abs=0.01)
    # The goal a kept outcome served comes back for reuse; a rolled-back one's does not.
    assert found.matches[0].goal.rationale == "w2's goal"
    vtime = next(m for m in found.matches if m.policy.metadata.name == "vtime")
    assert not vtime.HasField("goal")
    assert 0 < vtime.confidence < found.matches[0].confidence and vtime.expected_improvement < 0.05
    assert "fifo" not in names and [(a.policy_name, a.ejections) for a in found.avoid] == [("fifo", 1)]
    assert "batch" not in names[:2]  # its only outcome is for another workload
    effects = learner(services.addr("learner"), "GetPolicy", learner_pb2.GetPolicyRequest(name="latency_boost")).effects
    assert [(e.count, e.proven) for e in effects] == [(3, True)]
    # A host without sched_ext gets only native policies.
    native_only = learner(services.addr("learner"), "SearchPolicies", learner_pb2.SearchPoliciesRequest(
        signature=request.signature, host=host_pb2.HostFacts(backends=["native"]), goal=request.goal, limit=10))
    assert {m.policy.metadata.kind for m in native_only.matches} == {policy_pb2.POLICY_KIND_NATIVE}


def test_search_answers_per_parameter_point_with_the_point(services, nats_server):
    """Two points of one policy measured on the same workload are two matches, each with its
    parameters, so the planner can deploy the one that won; strings (group names) are not part
    of a point."""
    tuned = [outcome(f"t{i}", "batch_sched_idle", 0.9) for i in range(2)]
    for o in tuned:
        o.parameters["use_sched_idle"].bool_value = False
        o.parameters["group_comm"].string_value = f"batch-{o.outcome_id}"
    history = [*tuned, outcome("d1", "batch_sched_idle", 0.3)]
    asyncio.run(publish(nats_server.url, history))
    services.start("learner")
    wait_for_history(services.addr("learner"), "batch_sched_idle", 3)
    request = learner_pb2.SearchPoliciesRequest(
        signature=profile_pb2.WorkloadSignature(version=1, dimensions=["a", "b", "c"], values=[0.9, 0.1, 0.8]),
        host=host_pb2.HostFacts(backends=["native"]),
        goal=goal_pb2.OptimizationGoal(objective=goal_pb2.OBJECTIVE_TAIL_LATENCY), limit=10)
    found = [m for m in learner(services.addr("learner"), "SearchPolicies", request).matches
             if m.policy.metadata.name == "batch_sched_idle" and m.confidence > 0]
    assert [params.key(m.parameters) for m in found] == ["use_sched_idle=false", ""], found
    assert found[0].expected_improvement == pytest.approx(0.9) and found[1].expected_improvement == pytest.approx(0.3)


def test_malformed_outcomes_are_dead_lettered_with_the_reason(services, nats_server):
    services.start("learner")
    bad = outcome("", "vtime", 0.1)
    asyncio.run(publish(nats_server.url, [bad], raw=[b"\xff\xff not protobuf"]))

    async def dead_letters() -> list[str]:
        bus = await Bus.connect(nats_server.url, "test")
        try:
            sub = await bus.js.pull_subscribe(topology.all_hosts(topology.Kind.DEADLETTER), "test-dl")
            reasons: list[str] = []
            deadline = time.monotonic() + 10
            while len(reasons) < 2 and time.monotonic() < deadline:
                try:
                    for msg in await sub.fetch(2, timeout=1):
                        reasons.append(msg.headers.get("Schedcp-Reason", ""))
                        await msg.ack()
                except TimeoutError:
                    pass
            return reasons
        finally:
            await bus.close()

    reasons = asyncio.run(dead_letters())
    assert any("lacks outcome_id" in r for r in reasons), reasons
    assert any("not a valid schedcp.v1.Outcome" in r for r in reasons), reasons


def test_put_policy_requires_a_signed_approval_of_that_artifact(services, tmp_path):
    # The verifier's key as the learner finds it in the shared data dir (the local stack's way).
    key = SigningKey.load_or_create(Path(services.env["SCHEDCP_DATA_DIR"]) / "verifier" / "ed25519.pem")
    stranger = SigningKey.load_or_create(tmp_path / "stranger.pem")
    services.start("learner")
    artifact = policy_pb2.PolicyArtifact(name="llm_boost", kind=policy_pb2.POLICY_KIND_SCHED_EXT,
                                         origin=policy_pb2.POLICY_ORIGIN_LLM_WRITTEN)
    artifact.sched_ext.source = "/* written by a model */"
    artifact.digest = artifacts.digest_of(artifact)
    meta = policy_pb2.PolicyMetadata(name="llm_boost", description="boost a service", goals=["latency"])
    addr = services.addr("learner")

    def put(verdict: verdict_pb2.SignedVerdict, art: policy_pb2.PolicyArtifact = artifact):
        return learner(addr, "PutPolicy", learner_pb2.PutPolicyRequest(artifact=art, metadata=meta, verdict=verdict))

    def refused(verdict: verdict_pb2.SignedVerdict, art: policy_pb2.PolicyArtifact = artifact) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            put(verdict, art)
        return caught.value

    assert refused(verdict_pb2.SignedVerdict()).code() == grpc.StatusCode.PERMISSION_DENIED
    assert refused(approval(stranger, artifact.digest)).code() == grpc.StatusCode.PERMISSION_DENIED
    assert refused(approval(key, artifact.digest, approved=False)).code() == grpc.StatusCode.FAILED_PRECONDITION
    tampered = policy_pb2.PolicyArtifact()
    tampered.CopyFrom(artifact)
    tampered.sched_ext.source += " changed"
    error = refused(approval(key, artifact.digest), tampered)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "does not match" in error.details()
    tampered.digest = artifacts.digest_of(tampered)
    error = refused(approval(key, artifact.digest), tampered)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "changed after verification" in error.details()
    put_, again = put(approval(key, artifact.digest)), put(approval(key, artifact.digest))
    assert put_.created and not again.created and put_.policy.version == again.policy.version
    got = learner(addr, "GetPolicy", learner_pb2.GetPolicyRequest(name="llm_boost"))
    assert got.origin == policy_pb2.POLICY_ORIGIN_LLM_WRITTEN and list(got.verdict_ids) == ["v1"]


def approval(key: SigningKey, digest: str, approved: bool = True) -> verdict_pb2.SignedVerdict:
    claims = verdict_pb2.VerdictClaims(verdict_id="v1", artifact_digest=digest, approved=approved)
    claims.issued_at.GetCurrentTime()
    claims.expires_at.FromSeconds(claims.issued_at.seconds + 3600)
    return key.sign(claims)


def test_the_repository_survives_a_nats_server_restart(services, nats_server):
    asyncio.run(publish(nats_server.url, [outcome("keep1", "vtime", 0.2)]))
    services.start("learner")
    wait_for_history(services.addr("learner"), "vtime", 1)
    services.stop("learner")
    nats_server.stop()
    nats_server.start()  # same JetStream store directory and port
    services.start("learner")
    listed = learner(services.addr("learner"), "ListPolicies", learner_pb2.ListPoliciesRequest()).policies
    assert {m.name for m in policies.library()} <= {p.metadata.name for p in listed}
    kept = learner(services.addr("learner"), "History", learner_pb2.LearnerHistoryRequest(policy_name="vtime"))
    assert [o.outcome_id for o in kept.outcomes] == ["keep1"]


def test_an_outcome_stored_but_not_counted_is_counted_on_redelivery(nats_server):
    """The create succeeded but its reply (or the fold after it) was lost: the redelivered
    outcome must be counted once, not dropped as a duplicate."""
    from services.learner.outcomes import OutcomeLedger

    async def go():
        bus = await Bus.connect(nats_server.url, "test")
        await bus.ensure_topology()
        try:
            lost = outcome("lost1", "vtime", 0.3)
            kv = await bus.kv(topology.OUTCOMES_BUCKET)
            await kv.create("lost1", lost.SerializeToString())  # stored, never folded
            ledger = OutcomeLedger(bus)
            first = await ledger.apply(lost)
            again = await ledger.apply(lost)
            return first, again, ledger
        finally:
            await bus.close()

    first, again, ledger = asyncio.run(go())
    assert (first, again) == (True, False)
    assert [o.outcome_id for o in ledger.history("vtime")] == ["lost1"] and ledger.duplicates == 1


def test_search_pools_the_canaries_intervals_into_the_evidence_a_reuse_is_judged_with():
    """Two kept canaries of one point, each with a 95 % interval over its rounds: the match carries
    their pooled estimate on the kept goal's metric, between the two and narrower than either; a
    one-round outcome has no interval, and a canary of another group's metric is no evidence of
    this one. (Unit level: the ledger's outcomes, no service.)"""
    metric = common_pb2.MetricSpec(name="response_p99_us", groups=[common_pb2.GroupMatcher(comm="nginx")],
                                   direction=common_pb2.DIRECTION_LOWER_IS_BETTER)
    elsewhere = common_pb2.MetricSpec()
    elsewhere.CopyFrom(metric)
    elsewhere.groups[0].comm = "redis"
    measured = [outcome(i, "long_slice", x) for i, x in (("a", 0.27), ("b", 0.15), ("c", 0.6), ("d", 0.9))]
    intervals = [(0.10, 0.42, 6, metric), (-0.06, 0.31, 6, metric), (0.0, 0.0, 1, metric), (0.8, 0.95, 6, elsewhere)]
    for o, (low, high, rounds, on) in zip(measured, intervals, strict=True):
        o.success.metric.CopyFrom(on)
        o.success.improvement_low, o.success.improvement_high, o.success.rounds = low, high, rounds
        o.success.confidence = 0.95 if rounds > 1 else 0.0
        o.goal.objective = o.objective
        o.goal.success_metric.CopyFrom(metric)
    record = policy_pb2.PolicyRecord(metadata=policy_pb2.PolicyMetadata(
        name="long_slice", kind=policy_pb2.POLICY_KIND_NATIVE, goals=["latency"]))
    request = learner_pb2.SearchPoliciesRequest(
        signature=profile_pb2.WorkloadSignature(version=1, dimensions=["a", "b", "c"], values=[0.9, 0.1, 0.8]),
        host=host_pb2.HostFacts(backends=["native"]), goal=goal_pb2.OptimizationGoal(
            objective=goal_pb2.OBJECTIVE_TAIL_LATENCY), limit=5)
    (match,) = search.search(request, [record], types.SimpleNamespace(outcomes=measured)).matches
    pooled = match.evidence  # a and b: c has no interval, d measured another group
    assert pooled.metric == metric and pooled.rounds == 12 and pooled.confidence == 0.95
    assert 0.15 < pooled.improvement < 0.27
    assert pooled.improvement_high - pooled.improvement_low < min(0.42 - 0.10, 0.31 + 0.06)
    assert match.expected_improvement == pytest.approx((0.27 + 0.15 + 0.6 + 0.9) / 4)  # the mean counts all
