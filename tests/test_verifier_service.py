"""The verifier as a service: Verify streams each stage and ends in a signed verdict that the
executor's check accepts with the key from GetTrustKey; the same question is answered from the
cache; identical requests in flight share one sandbox run; rejections are signed too; bad
requests get INVALID_ARGUMENT or FAILED_PRECONDITION with a sentence."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from schedcp.cli.main import _artifact_from_file, _verify_source
from schedcp.domain import artifacts, native_policies, policies, verdicts
from schedcp.runtime import rpc
from schedcp.runtime.bus import Bus
from schedcp.v1 import common_pb2, policy_pb2, verdict_pb2, verifier_pb2, verifier_pb2_grpc
from services.verifier import verdict_cache
from tests.test_services import call

FIFO = policies.load(policies.LIBRARY / "sched_ext" / "fifo.toml")


def sched_ext_artifact(source: str, name: str = "fifo", **params: int) -> policy_pb2.PolicyArtifact:
    artifact = policy_pb2.PolicyArtifact(name=name, sched_ext=policy_pb2.SchedExtProgram(source=source))
    for key, value in params.items():
        artifact.parameters[key].int_value = value
    return artifact


async def verify(addr: str, artifact: policy_pb2.PolicyArtifact, **fields) -> list[verifier_pb2.VerifyProgress]:
    async with rpc.channel(addr, default_timeout_s=600) as channel:
        stub = verifier_pb2_grpc.VerifierServiceStub(channel)
        return [p async for p in stub.Verify(verifier_pb2.VerifyRequest(artifact=artifact, **fields))]


def trust_key(addr: str) -> verifier_pb2.TrustKey:
    return call(addr, lambda ch: verifier_pb2_grpc.VerifierServiceStub(ch).GetTrustKey(
        verifier_pb2.GetTrustKeyRequest()))


@pytest.fixture
def verifier(services):
    services.start("verifier")
    return services.addr("verifier")


def test_a_library_policy_is_approved_and_the_verdict_checks_out(verifier, nats_server):
    artifact = sched_ext_artifact(policies.source_of(FIFO).read_text(), slice_us=4000)
    artifact.sched_ext.object = b"an object the verifier must not trust"

    async def twice_at_once():
        return await asyncio.gather(verify(verifier, artifact), verify(verifier, artifact))

    first, second = asyncio.run(twice_at_once())
    if not first[-1].verdict.cached:  # whichever ran the stages
        first, second = second, first
    ran, shared = second, first
    stages_seen = [p.stage for p in ran if p.status == common_pb2.STAGE_STATUS_SUCCEEDED and p.HasField("result")]
    assert stages_seen == [verdict_pb2.VERIFY_STAGE_STATIC, verdict_pb2.VERIFY_STAGE_COMPILE,
                           verdict_pb2.VERIFY_STAGE_KERNEL_VERIFIER, verdict_pb2.VERIFY_STAGE_DYNAMIC]
    verdict = ran[-1].verdict
    assert verdict.claims.approved and verdict.summary.startswith("approved"), verdict.summary
    assert "identical verification" in shared[0].message
    assert shared[-1].verdict.claims.verdict_id == verdict.claims.verdict_id

    # What the executor will do: check the signature with the trusted key, against the artifact.
    verified = verdict.artifact
    assert verified.sched_ext.object.startswith(b"\x7fELF") and verified.sched_ext.ops_name == FIFO.ops_name
    assert verified.parameters["slice_us"].int_value == 4000
    claims = verdicts.check(verdict.signed, [trust_key(verifier)], artifacts.digest_of(verified),
                            verdict.claims.kernel)
    assert claims.stages_passed == list(verdict.claims.stages_passed)
    # What a cached copy must match to be served, signed: the rules and the question asked.
    assert claims.rules == verdict_cache.RULES and claims.request_digest == verdict.request_digest
    assert claims.expires_at.ToSeconds() - claims.issued_at.ToSeconds() == pytest.approx(7 * 86400, abs=2)
    dynamic = next(s for s in verdict.stages if s.stage == verdict_pb2.VERIFY_STAGE_DYNAMIC)
    assert {"wakeup_p99_us", "eevdf_p99_us", "fairness_min_max_ratio", "forks"} <= set(dynamic.measurements)

    # GetVerdict, the artifact store, and the cache (no VM boot: it answers at once).
    fetched = call(verifier, lambda ch: verifier_pb2_grpc.VerifierServiceStub(ch).GetVerdict(
        verifier_pb2.GetVerdictRequest(verdict_id=claims.verdict_id)))
    assert fetched.signed == verdict.signed

    async def stored():
        bus = await Bus.connect(nats_server.url, "test")
        try:
            return await artifacts.fetch(bus, verified.digest)
        finally:
            await bus.close()

    assert asyncio.run(stored()) == verified
    started = time.monotonic()
    again = asyncio.run(verify(verifier, artifact))
    assert len(again) == 1 and again[0].verdict.cached and time.monotonic() - started < 10
    assert again[0].verdict.claims.verdict_id == claims.verdict_id
    fresh = asyncio.run(verify(verifier, sched_ext_artifact("int x;"), no_cache=True))
    assert not fresh[-1].verdict.cached


def test_a_rejection_is_signed_and_says_where_and_why(verifier):
    source = policies.source_of(FIFO).read_text().replace("    .timeout_ms = 5000,\n", "")
    progress = asyncio.run(verify(verifier, sched_ext_artifact(source)))
    verdict = progress[-1].verdict
    assert not verdict.claims.approved and list(verdict.claims.stages_passed) == []
    assert verdict.summary.startswith("rejected at static: SCX007"), verdict.summary
    assert [s.stage for s in verdict.stages] == [verdict_pb2.VERIFY_STAGE_STATIC, verdict_pb2.VERIFY_STAGE_SIGN]
    assert not verdict.artifact.sched_ext.object
    expiry = verdict.claims.expires_at.ToSeconds() - verdict.claims.issued_at.ToSeconds()
    assert expiry == pytest.approx(3600, abs=2)
    with pytest.raises(verdicts.VerdictNotApplicable, match="rejects"):
        verdicts.check(verdict.signed, [trust_key(verifier)], verdict.artifact.digest)


def test_native_policies_are_checked_and_signed(verifier):
    meta = policies.load(policies.LIBRARY / "native" / "batch_sched_idle.toml")
    good = policy_pb2.PolicyArtifact(name=meta.name, native=native_policies.build(
        meta, {}, [common_pb2.GroupMatcher(comm="stress-ng-cpu")]))
    host_kernel = verdict_pb2.TargetKernel(release="6.1.0-28-amd64", btf_sha256="12" * 32)
    approved = asyncio.run(verify(verifier, good, target=host_kernel))[-1].verdict
    assert approved.claims.approved and approved.claims.kernel == host_kernel
    assert list(approved.claims.stages_passed) == [verdict_pb2.VERIFY_STAGE_NATIVE_CHECKS]
    bad = policy_pb2.PolicyArtifact(name="demote-init", native=policy_pb2.NativePolicy(rules=[policy_pb2.NativeRule(
        match=[common_pb2.GroupMatcher(pid=1)], policy=policy_pb2.SCHED_POLICY_IDLE)]))
    rejected = asyncio.run(verify(verifier, bad, target=host_kernel))[-1].verdict
    assert not rejected.claims.approved and "NAT010" in rejected.summary and "pid 1" in rejected.summary


@pytest.mark.parametrize(("artifact", "target", "code", "words"), [
    (policy_pb2.PolicyArtifact(name="x"), None, grpc.StatusCode.INVALID_ARGUMENT, "has no body"),
    (sched_ext_artifact("int x;", name="../../etc/passwd"), None, grpc.StatusCode.INVALID_ARGUMENT,
     "policy name '../../etc/passwd' is invalid"),
    (sched_ext_artifact("int x;", **{"bad name": 1}), None, grpc.StatusCode.INVALID_ARGUMENT, "not a C identifier"),
    (sched_ext_artifact("int x;"), verdict_pb2.TargetKernel(release="5.15.0-91-generic"),
     grpc.StatusCode.FAILED_PRECONDITION, "no sandbox kernel matches the target kernel 5.15.0-91-generic"),
], ids=["no body", "path in name", "bad parameter", "unknown kernel"])
def test_bad_requests_get_a_clear_error(verifier, artifact, target, code, words):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        asyncio.run(verify(verifier, artifact, **({"target": target} if target else {})))
    assert caught.value.code() == code and words in caught.value.details(), caught.value.details()


def test_get_verdict_names_what_is_missing(verifier):
    for verdict_id, code in (("0" * 32, grpc.StatusCode.NOT_FOUND), ("../x", grpc.StatusCode.INVALID_ARGUMENT)):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            call(verifier, lambda ch, v=verdict_id: verifier_pb2_grpc.VerifierServiceStub(ch).GetVerdict(
                verifier_pb2.GetVerdictRequest(verdict_id=v)))
        assert caught.value.code() == code


def test_schedcp_verify_says_whose_policy_it_checks(tmp_path):
    source = policies.source_of(FIFO).read_text()
    own = tmp_path / "mine.bpf.c"
    own.write_text(source)
    library_path, library_origin, library_goals = _verify_source("fifo")
    library = _artifact_from_file(library_path, library_origin, "", [], library_goals)
    mine = _artifact_from_file(*_verify_source(str(own))[:2], "mine", [])
    assert (library.origin, mine.origin) == (policy_pb2.POLICY_ORIGIN_LIBRARY, policy_pb2.POLICY_ORIGIN_OPERATOR)
    assert library.sched_ext.source == mine.sched_ext.source == source
    assert (list(library.sched_ext.goals), list(mine.sched_ext.goals)) == (FIFO.goals, [])


def test_a_cached_verdict_answers_only_the_rules_it_was_reached_by(monkeypatch):
    """A new rule must not leave an approval it would refuse in the cache for its week."""
    kernel = verdict_pb2.TargetKernel(release="6.18.12+deb13-cloud-amd64", arch="x86_64")
    before = verdict_cache._question_key("abc", kernel)
    assert verdict_cache._question_key("abc", kernel) == before  # the same question, the same key
    monkeypatch.setattr(verdict_cache, "RULES", "another-set-of-rules")
    assert verdict_cache._question_key("abc", kernel) != before

