"""The learner's repository seeding against a real nats-server: every library policy with its
artifact, idempotent restarts, and an edited library file becoming a new version."""

from __future__ import annotations

import asyncio
import shutil

from schedcp import policies, topology
from schedcp.bus import Bus
from schedcp.v1 import learner_pb2, learner_pb2_grpc, policy_pb2
from services.learner import seeding
from services.learner.repository import PolicyRepository
from tests.test_services import call


async def revisions(url: str) -> dict[str, int]:
    bus = await Bus.connect(url, "test")
    try:
        kv = await bus.kv(topology.POLICIES_BUCKET)
        return {name: (await kv.get(name)).revision for name in await kv.keys()}
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
    assert seeding.artifact_digest(stored) == stored.digest == vtime.artifact_digest
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
