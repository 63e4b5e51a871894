"""The five services as real processes against a real nats-server: health, reflection,
service info, one real RPC each, clean errors, and a graceful stop."""

import asyncio
import os
import platform
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from schedcp import __version__
from schedcp.cli.probe import probe
from schedcp.domain import policies
from schedcp.runtime import rpc, topology
from schedcp.runtime.bus import Bus
from schedcp.v1 import (
    executor_pb2,
    executor_pb2_grpc,
    host_pb2,
    info_pb2,
    info_pb2_grpc,
    learner_pb2,
    learner_pb2_grpc,
    observer_pb2,
    observer_pb2_grpc,
    planner_pb2,
    planner_pb2_grpc,
    policy_pb2,
    verifier_pb2,
    verifier_pb2_grpc,
)

ROLES = {
    "observer": "schedcp.v1.ObserverService",
    "planner": "schedcp.v1.PlannerService",
    "executor": "schedcp.v1.ExecutorService",
    "verifier": "schedcp.v1.VerifierService",
    "learner": "schedcp.v1.LearnerService",
}


def call(addr: str, rpc_fn):
    """Run one async call against `addr` with schedcp's client channel."""

    async def go():
        async with rpc.channel(addr, default_timeout_s=10) as channel:
            return await rpc_fn(channel)

    return asyncio.run(go())


@pytest.fixture
def stack(services):
    services.start(*ROLES)
    return services


def test_health_reflection_and_info_on_every_service(stack):
    for role, service_name in ROLES.items():
        addr = stack.addr(role)
        for name in ("", service_name):
            check = call(addr, lambda ch, n=name: health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=n)))
            assert check.status == health_pb2.HealthCheckResponse.SERVING, (role, name)
        with grpc.insecure_channel(addr) as channel:
            listed = set(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert {service_name, "schedcp.v1.InfoService", "grpc.health.v1.Health",
                "grpc.reflection.v1alpha.ServerReflection"} <= listed, role
        info = call(addr, lambda ch: info_pb2_grpc.InfoServiceStub(ch).GetServiceInfo(
            info_pb2.GetServiceInfoRequest()))
        assert (info.role, info.version, info.host_id, info.listen_addr) == (role, __version__, "testhost", addr)
        assert info.details["nats"] == "connected"
        assert info.pid == stack.procs[role].pid


def test_a_service_answering_at_another_ones_address_is_not_reported_serving(stack):
    # Two services given one address: the one that could not listen must not look up.
    status = asyncio.run(probe("planner", stack.addr("observer"), timeout_s=5))
    assert not status.serving and status.health == "ERROR"
    assert status.error == f"the observer answers at {stack.addr('observer')}, not the planner: two services " \
                           "were given one address"


def test_observer_reports_this_host_and_registers_it(stack):
    facts = call(stack.addr("observer"), lambda ch: observer_pb2_grpc.ObserverServiceStub(ch).HostInfo(
        observer_pb2.HostInfoRequest())).facts
    assert facts.kernel_release == platform.release()
    assert facts.cpu.logical_cpus == os.cpu_count()
    assert facts.btf_present == Path("/sys/kernel/btf/vmlinux").exists()
    has_scx = Path("/sys/kernel/sched_ext/state").exists()
    assert (facts.sched_ext.state != host_pb2.SCHED_EXT_STATE_UNSUPPORTED) == has_scx
    assert ("sched_ext" in facts.backends) == has_scx
    hosts = call(stack.addr("planner"), lambda ch: planner_pb2_grpc.PlannerServiceStub(ch).ListHosts(
        planner_pb2.ListHostsRequest())).hosts
    assert [(h.host_id, h.observer_addr, h.executor_addr) for h in hosts] == [
        ("testhost", stack.addr("observer"), stack.addr("executor"))]
    assert hosts[0].facts.kernel_release == platform.release()
    one = call(stack.addr("planner"), lambda ch: planner_pb2_grpc.PlannerServiceStub(ch).ListHosts(
        planner_pb2.ListHostsRequest(host_ids=["testhost"]))).hosts
    assert [h.host_id for h in one] == ["testhost"] and one[0].facts == hosts[0].facts
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        call(stack.addr("planner"), lambda ch: planner_pb2_grpc.PlannerServiceStub(ch).ListHosts(
            planner_pb2.ListHostsRequest(host_ids=["testhost", "nohost"])))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "'nohost' is not registered (registered hosts: testhost)" in caught.value.details()


def test_executor_status_reads_sched_ext_state(stack):
    status = call(stack.addr("executor"), lambda ch: executor_pb2_grpc.ExecutorServiceStub(ch).Status(
        executor_pb2.StatusRequest()))
    assert status.host_id == "testhost"
    has_scx = Path("/sys/kernel/sched_ext/state").exists()
    assert (status.sched_ext.state == host_pb2.SCHED_EXT_STATE_UNSUPPORTED) == (not has_scx)
    assert not status.HasField("current"), "nothing was deployed"


def test_verifier_serves_the_key_it_keeps_on_disk(stack):
    key = call(stack.addr("verifier"), lambda ch: verifier_pb2_grpc.VerifierServiceStub(ch).GetTrustKey(
        verifier_pb2.GetTrustKeyRequest()))
    key_file = Path(stack.env["SCHEDCP_DATA_DIR"]) / "verifier" / "ed25519.pem"
    assert key_file.stat().st_mode & 0o077 == 0, "the private key is readable only by its owner"
    private = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert (key.algorithm, key.public_key) == ("ed25519", raw)
    # A restart keeps the same key, so executors keep trusting it.
    stack.stop("verifier")
    stack.start("verifier")
    again = call(stack.addr("verifier"), lambda ch: verifier_pb2_grpc.VerifierServiceStub(ch).GetTrustKey(
        verifier_pb2.GetTrustKeyRequest()))
    assert again.public_key == key.public_key


def test_learner_reads_the_repository_and_rejects_bad_names(stack, nats_server):
    async def put_record() -> None:
        bus = await Bus.connect(nats_server.url, "test")
        record = policy_pb2.PolicyRecord(metadata=policy_pb2.PolicyMetadata(
            name="batch_idle", kind=policy_pb2.POLICY_KIND_NATIVE), version="1")
        await (await bus.kv(topology.POLICIES_BUCKET)).put("batch_idle", record.SerializeToString())
        await bus.close()

    asyncio.run(put_record())
    stub = learner_pb2_grpc.LearnerServiceStub
    got = call(stack.addr("learner"), lambda ch: stub(ch).GetPolicy(learner_pb2.GetPolicyRequest(name="batch_idle")))
    assert got.metadata.kind == policy_pb2.POLICY_KIND_NATIVE
    listed = call(stack.addr("learner"), lambda ch: stub(ch).ListPolicies(learner_pb2.ListPoliciesRequest(
        kind=policy_pb2.POLICY_KIND_SCHED_EXT)))
    # The learner seeded the library's sched_ext policies; the native record put above is not listed.
    assert sorted(p.metadata.name for p in listed.policies) == sorted(
        m.name for m in policies.library() if m.kind == "sched_ext")
    for name, code, words in [("../etc/passwd", grpc.StatusCode.INVALID_ARGUMENT, "is invalid"),
                              ("nope", grpc.StatusCode.NOT_FOUND, "no policy named 'nope'")]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            call(stack.addr("learner"), lambda ch, n=name: stub(ch).GetPolicy(learner_pb2.GetPolicyRequest(name=n)))
        assert caught.value.code() == code
        assert words in caught.value.details()


def test_sigterm_stops_every_service_cleanly(stack):
    for role in ROLES:
        code, output = stack.stop(role)
        assert code == 0, output
        assert "stopped" in output.splitlines()[-1]
        assert "Traceback" not in output


def test_every_service_sends_heartbeats(stack, nats_server):
    async def collect() -> set[str]:
        bus = await Bus.connect(nats_server.url, "test")
        roles: set[str] = set()
        done = asyncio.Event()

        async def on_heartbeat(info: info_pb2.ServiceInfo, delivery) -> None:
            roles.add(info.role)
            if roles == set(ROLES):
                done.set()

        await bus.subscribe(topology.all_hosts(topology.Kind.HEARTBEAT), info_pb2.ServiceInfo, on_heartbeat)
        try:
            await asyncio.wait_for(done.wait(), 10)
        finally:
            await bus.close()
        return roles

    assert asyncio.run(collect()) == set(ROLES)
