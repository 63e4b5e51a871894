"""Signed verdicts: what the executor and the learner check before trusting one. A verdict
whose artifact changed by one byte, whose claims were altered, that another key signed, that
expired, or that was issued for another kernel is refused, each with its own reason."""

from __future__ import annotations

import time

import pytest

from schedcp.domain import artifacts, verdicts
from schedcp.v1 import policy_pb2, verdict_pb2
from services.verifier.signing import SigningKey

KERNEL = verdict_pb2.TargetKernel(release="6.18.12+deb13-cloud-amd64", btf_sha256="ab" * 32, arch="x86_64")


@pytest.fixture
def key(tmp_path) -> SigningKey:
    return SigningKey.load_or_create(tmp_path / "key.pem")


@pytest.fixture
def artifact() -> policy_pb2.PolicyArtifact:
    return artifacts.sealed(policy_pb2.PolicyArtifact(
        name="fifo", kind=policy_pb2.POLICY_KIND_SCHED_EXT,
        sched_ext=policy_pb2.SchedExtProgram(source="/* a scheduler */", object=b"\x7fELF" + bytes(64))))


def approve(key: SigningKey, digest: str, ttl_s: float = 3600, approved: bool = True,
            kernel: verdict_pb2.TargetKernel = KERNEL) -> verdict_pb2.SignedVerdict:
    claims = verdict_pb2.VerdictClaims(verdict_id="ab12", artifact_digest=digest, kernel=kernel, approved=approved)
    now = time.time()
    claims.issued_at.FromSeconds(int(now))
    claims.expires_at.FromSeconds(int(now + ttl_s))
    return key.sign(claims)


def test_a_genuine_verdict_for_this_artifact_and_kernel_is_trusted(key, artifact):
    claims = verdicts.check(approve(key, artifact.digest), [key.trust_key()], artifact.digest, KERNEL)
    assert claims.approved and claims.artifact_digest == artifact.digest and claims.key_id == key.key_id


def test_an_artifact_altered_by_one_byte_no_longer_matches(key, artifact):
    signed = approve(key, artifact.digest)
    altered = policy_pb2.PolicyArtifact()
    altered.CopyFrom(artifact)
    obj = bytearray(altered.sched_ext.object)
    obj[10] ^= 1
    altered.sched_ext.object = bytes(obj)
    with pytest.raises(verdicts.VerdictNotApplicable, match="changed after verification") as caught:
        verdicts.check(signed, [key.trust_key()], artifacts.digest_of(altered), KERNEL)
    assert caught.value.reason == "digest_mismatch"


def test_altered_claims_break_the_signature(key, artifact):
    signed = approve(key, artifact.digest, approved=False)
    claims = verdict_pb2.VerdictClaims.FromString(signed.claims)
    claims.approved = True  # someone turns a rejection into an approval
    signed.claims = claims.SerializeToString()
    with pytest.raises(verdicts.UntrustedVerdict, match="does not match its claims") as caught:
        verdicts.check(signed, [key.trust_key()], artifact.digest, KERNEL)
    assert caught.value.reason == "bad_signature"


def test_a_verdict_signed_by_another_key_is_refused(key, artifact, tmp_path):
    other = SigningKey.load_or_create(tmp_path / "other.pem")
    with pytest.raises(verdicts.UntrustedVerdict, match="not a trusted verifier key") as caught:
        verdicts.check(approve(other, artifact.digest), [key.trust_key()], artifact.digest, KERNEL)
    assert caught.value.reason == "unknown_key"
    # Another key's signature presented under the trusted key's id.
    forged = approve(other, artifact.digest)
    forged.key_id = key.key_id
    with pytest.raises(verdicts.UntrustedVerdict) as caught:
        verdicts.check(forged, [key.trust_key()], artifact.digest, KERNEL)
    assert caught.value.reason == "bad_signature"


def test_an_expired_verdict_is_refused(key, artifact):
    signed = approve(key, artifact.digest, ttl_s=60)
    verdicts.check(signed, [key.trust_key()], artifact.digest, KERNEL, now=time.time() + 30)
    with pytest.raises(verdicts.VerdictNotApplicable, match="expired") as caught:
        verdicts.check(signed, [key.trust_key()], artifact.digest, KERNEL, now=time.time() + 61)
    assert caught.value.reason == "expired"


def test_a_verdict_for_another_kernel_is_refused(key, artifact):
    other = verdict_pb2.TargetKernel(release="6.12.1", btf_sha256="cd" * 32)
    with pytest.raises(verdicts.VerdictNotApplicable, match="verify the policy for this kernel") as caught:
        verdicts.check(approve(key, artifact.digest), [key.trust_key()], artifact.digest, other)
    assert caught.value.reason == "wrong_kernel"


def test_a_signed_rejection_is_genuine_but_not_an_approval(key, artifact):
    with pytest.raises(verdicts.VerdictNotApplicable, match="rejects") as caught:
        verdicts.check(approve(key, artifact.digest, approved=False), [key.trust_key()], artifact.digest, KERNEL)
    assert caught.value.reason == "rejected"


def test_no_verdict_at_all_is_refused(key, artifact):
    with pytest.raises(verdicts.UntrustedVerdict, match="without a signed verdict"):
        verdicts.check(verdict_pb2.SignedVerdict(), [key.trust_key()], artifact.digest, KERNEL)


def test_the_signing_key_survives_a_restart_and_stays_private(tmp_path):
    first = SigningKey.load_or_create(tmp_path / "k.pem")
    again = SigningKey.load_or_create(tmp_path / "k.pem")
    assert again.key_id == first.key_id and again.public_raw == first.public_raw
    assert (tmp_path / "k.pem").stat().st_mode & 0o077 == 0
