"""Content addressing of policy artifacts: what verdicts, deployments and the repository name."""

from __future__ import annotations

import hashlib
import re

from nats.js.errors import ObjectNotFoundError

from schedcp.domain import params
from schedcp.runtime import topology
from schedcp.runtime.bus import Bus
from schedcp.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from schedcp.v1 import policy_pb2

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}", re.ASCII)


def check_name(name: str) -> str:
    """A policy name, if valid: it names KV keys, files and log lines, so no paths or spaces."""
    if not _NAME.fullmatch(name):
        raise InvalidArgument(f"policy name {name!r} is invalid: use 1-64 lower-case letters, digits, '-' or '_'")
    return name


def digest_of(artifact: policy_pb2.PolicyArtifact) -> str:
    """sha256 (hex) over the artifact's deterministic serialisation with `digest` left empty."""
    unsigned = policy_pb2.PolicyArtifact()
    unsigned.CopyFrom(artifact)
    unsigned.digest = ""
    return hashlib.sha256(unsigned.SerializeToString(deterministic=True)).hexdigest()


def sealed(artifact: policy_pb2.PolicyArtifact) -> policy_pb2.PolicyArtifact:
    """A copy with `digest` set to its content's digest."""
    copy = policy_pb2.PolicyArtifact()
    copy.CopyFrom(artifact)
    copy.digest = digest_of(copy)
    return copy


def label(artifact: policy_pb2.PolicyArtifact) -> str:
    """The policy's name with the point it is tuned to, `batch_idle_cgroup(idle=false)`: a
    search tries one policy at several points, and its events must tell them apart."""
    point = params.key(artifact.parameters)
    return f"{artifact.name}({point})" if point else artifact.name


def store_key(digest: str) -> str:
    """The artifact's name in the Object Store."""
    return f"sha256-{digest}"


async def store(bus: Bus, artifact: policy_pb2.PolicyArtifact) -> None:
    """Keep the artifact in the Object Store under its digest (what deployments fetch)."""
    objects = await bus.js.object_store(topology.ARTIFACTS_STORE.name)
    await objects.put(store_key(artifact.digest), artifact.SerializeToString(deterministic=True))


async def fetch(bus: Bus, digest: str) -> policy_pb2.PolicyArtifact:
    """The stored artifact with this digest, checked against it; NotFound when absent."""
    objects = await bus.js.object_store(topology.ARTIFACTS_STORE.name)
    try:
        result = await objects.get(store_key(digest))
    except ObjectNotFoundError:
        raise NotFound(f"no stored artifact has digest {digest}") from None
    artifact = policy_pb2.PolicyArtifact()
    artifact.ParseFromString(result.data)
    if digest_of(artifact) != digest:
        raise FailedPrecondition(f"the stored artifact {digest[:16]}... does not match its digest")
    return artifact
