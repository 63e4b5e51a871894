"""The verifier's Ed25519 signing key: created on first start, kept private on disk.

Executors trust verdicts signed by this key; its public half is served by GetTrustKey.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schedcp.domain import verdicts
from schedcp.runtime.errors import StartupError
from schedcp.v1 import verdict_pb2, verifier_pb2

log = logging.getLogger(__name__)


class SigningKey:
    """An Ed25519 key pair loaded from (or created at) a PEM file readable only by its owner."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self.public_raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_id = verdicts.key_id_of(self.public_raw)

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        if path.exists():
            try:
                key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            except (ValueError, TypeError, OSError) as exc:
                raise StartupError(f"signing key {path} is unreadable or not a PEM key ({exc}); "
                                   "restore it from backup or delete it to make a new one "
                                   "(executors must then trust the new key)") from exc
            if not isinstance(key, Ed25519PrivateKey):
                raise StartupError(f"signing key {path} is not an Ed25519 key")
            return cls(key).publish(path)
        key = Ed25519PrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        signer = cls(key)
        log.info("created a new signing key %s at %s", signer.key_id, path)
        return signer.publish(path)

    def publish(self, private_path: Path) -> SigningKey:
        """Write the public key (hex) beside the private one, for services sharing the data dir."""
        public_path = private_path.with_suffix(".pub")
        public_path.write_text(self.public_raw.hex() + "\n")
        log.info("verdicts are signed with key %s (public key %s, also in %s)", self.key_id, self.public_raw.hex(),
                 public_path)
        return self

    def sign(self, claims: verdict_pb2.VerdictClaims) -> verdict_pb2.SignedVerdict:
        """Serialise the claims once (naming this key) and sign exactly those bytes."""
        claims.key_id = self.key_id
        data = claims.SerializeToString(deterministic=True)
        return verdict_pb2.SignedVerdict(claims=data, signature=self._private.sign(data), key_id=self.key_id)

    def trust_key(self) -> verifier_pb2.TrustKey:
        return verdicts.trust_key(self.public_raw)
