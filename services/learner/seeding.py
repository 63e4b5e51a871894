"""Seeds the repository from the policy library (policies/), idempotently.

A policy's version is a digest of its library files (metadata and source), so starting the
learner again changes nothing, and an edited library file becomes a new version: the KV keeps
the old ones (bucket history). The artifact (source and default parameters) goes to the Object
Store under its own digest, which is what verdicts and deployments name.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import timestamp_pb2

from schedcp.domain import artifacts, policies
from schedcp.runtime.bus import Bus
from schedcp.runtime.errors import FailedPrecondition
from schedcp.v1 import common_pb2, policy_pb2
from services.learner.repository import PolicyRepository

log = logging.getLogger(__name__)

_KINDS = {"sched_ext": policy_pb2.POLICY_KIND_SCHED_EXT, "native": policy_pb2.POLICY_KIND_NATIVE}
_TYPES = {"int": policy_pb2.PARAM_TYPE_INT, "bool": policy_pb2.PARAM_TYPE_BOOL, "string": policy_pb2.PARAM_TYPE_STRING}


@dataclass
class SeedReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def param_value(value: int | bool | str) -> common_pb2.ParamValue:
    if isinstance(value, bool):
        return common_pb2.ParamValue(bool_value=value)
    if isinstance(value, int):
        return common_pb2.ParamValue(int_value=value)
    return common_pb2.ParamValue(string_value=value)


def metadata_message(meta: policies.PolicyMetadata) -> policy_pb2.PolicyMetadata:
    return policy_pb2.PolicyMetadata(
        name=meta.name, kind=_KINDS[meta.kind], description=meta.description, algorithm=meta.algorithm,
        use_cases=meta.use_cases, limitations=meta.limitations, goals=meta.goals,
        parameters=[policy_pb2.ParameterSpec(
            name=p.name, type=_TYPES[p.type], description=p.description, default_value=param_value(p.default),
            min=p.min, max=p.max, unit=p.unit) for p in meta.parameters],
        requirements=policy_pb2.KernelRequirements(
            min_kernel=meta.requires.min_kernel, needs_sched_ext=meta.requires.sched_ext, kfuncs=meta.requires.kfuncs),
    )


def library_artifact(meta: policies.PolicyMetadata, root: Path, version: str) -> policy_pb2.PolicyArtifact:
    artifact = policy_pb2.PolicyArtifact(
        name=meta.name, version=version, kind=_KINDS[meta.kind], origin=policy_pb2.POLICY_ORIGIN_LIBRARY,
        parameters={p.name: param_value(p.default) for p in meta.parameters},
    )
    if meta.kind == "sched_ext":
        artifact.sched_ext.CopyFrom(policies.sched_ext_program(meta, root))
    else:
        artifact.native.CopyFrom(policy_pb2.NativePolicy())  # a template: rules come per deployment
    artifact.digest = artifacts.digest_of(artifact)
    return artifact


def library_version(meta: policies.PolicyMetadata, root: Path) -> str:
    """12 hex digits of sha256 over the policy's library files."""
    digest = hashlib.sha256((root / meta.kind / f"{meta.name}.toml").read_bytes())
    if meta.kind == "sched_ext":
        digest.update(policies.source_of(meta, root).read_bytes())
    return digest.hexdigest()[:12]


async def seed(bus: Bus, root: Path = policies.LIBRARY) -> SeedReport:
    repo = PolicyRepository(bus)
    report = SeedReport()
    now = timestamp_pb2.Timestamp()
    now.GetCurrentTime()
    for meta in policies.library(root):
        version = library_version(meta, root)
        current, revision = await repo.latest(meta.name)
        if current is not None and current.version == version:
            report.unchanged.append(meta.name)
            continue
        artifact = library_artifact(meta, root, version)
        await artifacts.store(bus, artifact)
        record = policy_pb2.PolicyRecord(
            metadata=metadata_message(meta), version=version, origin=policy_pb2.POLICY_ORIGIN_LIBRARY,
            artifact_digest=artifact.digest, created_at=current.created_at if current else now, updated_at=now,
        )
        try:
            await repo.put(record, revision)
        except FailedPrecondition:  # another learner replica seeded it at the same moment
            report.unchanged.append(meta.name)
            continue
        (report.updated if current is not None else report.added).append(meta.name)
    log.info("policy library seeded: %d added, %d updated, %d unchanged",
             len(report.added), len(report.updated), len(report.unchanged))
    return report
