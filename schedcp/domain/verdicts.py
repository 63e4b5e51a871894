"""Checking a signed verdict before trusting it: the executor before it deploys, the learner
before it stores a policy. The verifier signs (services/verifier/signing.py); everyone else
only checks, with the public keys they trust.

Order matters: the signature is checked over the raw claim bytes before they are parsed, then
the claims are compared with what is about to happen (this artifact, this kernel, now).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.message import DecodeError

from schedcp.runtime import errors
from schedcp.runtime.config import Settings
from schedcp.v1 import verdict_pb2, verifier_pb2

log = logging.getLogger(__name__)


class UntrustedVerdict(errors.PermissionDenied):
    """The verdict is missing, unsigned, signed by a key nobody trusts, or altered."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class VerdictNotApplicable(errors.FailedPrecondition):
    """A genuine verdict that does not cover this deployment: another artifact, another kernel,
    expired, or a rejection."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def kernel_key(kernel: verdict_pb2.TargetKernel) -> str:
    """What identifies a kernel for verdicts: its BTF digest (the types programs are checked
    against), else its release."""
    return kernel.btf_sha256 or f"release-{kernel.release}"


def kernel_matches(claimed: verdict_pb2.TargetKernel, actual: verdict_pb2.TargetKernel) -> bool:
    if claimed.arch and actual.arch and claimed.arch != actual.arch:
        return False
    if claimed.btf_sha256 and actual.btf_sha256:
        return claimed.btf_sha256 == actual.btf_sha256
    return bool(claimed.release) and claimed.release == actual.release


def check(signed: verdict_pb2.SignedVerdict, trusted: Iterable[verifier_pb2.TrustKey], artifact_digest: str,
          kernel: verdict_pb2.TargetKernel | None = None, now: float | None = None) -> verdict_pb2.VerdictClaims:
    """The verdict's claims, if `signed` is a genuine approval of `artifact_digest` for `kernel`
    (skipped when None) that is valid at `now` (seconds since the epoch). Raises UntrustedVerdict
    or VerdictNotApplicable with a sentence saying which check failed."""
    claims = authentic_claims(signed, trusted)
    if claims.artifact_digest != artifact_digest:
        raise VerdictNotApplicable("digest_mismatch", f"verdict {claims.verdict_id} is for artifact "
                                   f"{claims.artifact_digest[:16]}..., not {artifact_digest[:16]}...: the artifact "
                                   "was changed after verification")
    if kernel is not None and not kernel_matches(claims.kernel, kernel):
        raise VerdictNotApplicable("wrong_kernel", f"verdict {claims.verdict_id} was issued for kernel "
                                   f"{claims.kernel.release or '?'} (BTF {claims.kernel.btf_sha256[:12] or '?'}), "
                                   f"this host runs {kernel.release} (BTF {kernel.btf_sha256[:12] or '?'}); "
                                   "verify the policy for this kernel")
    now = time.time() if now is None else now
    if not claims.expires_at.seconds:
        raise VerdictNotApplicable("expired", f"verdict {claims.verdict_id} has no expiry time; verify the policy "
                                   "again")
    if now >= claims.expires_at.ToSeconds():
        raise VerdictNotApplicable("expired", f"verdict {claims.verdict_id} expired at "
                                   f"{claims.expires_at.ToJsonString()}; verify the policy again")
    if claims.issued_at.ToSeconds() > now + 300:
        raise VerdictNotApplicable("not_yet_valid", f"verdict {claims.verdict_id} is issued in the future "
                                   f"({claims.issued_at.ToJsonString()}): check the clocks")
    if not claims.approved:
        raise VerdictNotApplicable("rejected", f"verdict {claims.verdict_id} rejects the artifact")
    return claims


def authentic_claims(signed: verdict_pb2.SignedVerdict,
                     trusted: Iterable[verifier_pb2.TrustKey]) -> verdict_pb2.VerdictClaims:
    """The claims, parsed only after the signature over their bytes checked out; UntrustedVerdict
    otherwise."""
    if not signed.claims or not signed.signature:
        raise UntrustedVerdict("unsigned", "the artifact comes without a signed verdict: only verified "
                               "policies are deployed")
    keys = {k.key_id: k.public_key for k in trusted}
    if signed.key_id not in keys:
        raise UntrustedVerdict("unknown_key", f"the verdict is signed by key {signed.key_id!r}, which is not a "
                               f"trusted verifier key (trusted: {', '.join(sorted(keys)) or 'none'})")
    try:
        Ed25519PublicKey.from_public_bytes(keys[signed.key_id]).verify(signed.signature, signed.claims)
    except (InvalidSignature, ValueError):
        raise UntrustedVerdict("bad_signature", "the verdict's signature does not match its claims: it was "
                               "altered or signed by another key") from None
    claims = verdict_pb2.VerdictClaims()
    try:
        claims.ParseFromString(signed.claims)
    except DecodeError:
        raise UntrustedVerdict("bad_signature", "the signed claims are not a VerdictClaims message") from None
    if claims.key_id != signed.key_id:
        raise UntrustedVerdict("bad_signature", "the claims name another key than the signature")
    return claims


def trusted_keys(settings: Settings) -> list[verifier_pb2.TrustKey]:
    """The verifier keys this process trusts: SCHEDCP_TRUSTED_VERIFIER_KEYS, else the public key of
    the verifier sharing this data dir (the local stack). Empty when neither exists."""
    hex_keys = [k.strip().lower() for k in settings.trusted_verifier_keys.split(",") if k.strip()]
    if not hex_keys:
        local = settings.data_dir / "verifier" / "ed25519.pub"
        hex_keys = [local.read_text().strip()] if local.exists() else []
    keys = []
    for key in hex_keys:
        try:
            keys.append(trust_key(bytes.fromhex(key)))
        except ValueError:
            log.warning("ignoring a verifier key that is not hex: %.20s", key)
    return keys


def trust_key(public_raw: bytes) -> verifier_pb2.TrustKey:
    return verifier_pb2.TrustKey(algorithm="ed25519", public_key=public_raw, key_id=key_id_of(public_raw))


def key_id_of(public_raw: bytes) -> str:
    """A key's id: the first 16 hex digits of the sha256 of the raw public key."""
    return hashlib.sha256(public_raw).hexdigest()[:16]
