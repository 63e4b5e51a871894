"""The local stack's NATS cluster mode: three nats-servers (`SCHEDCP_NATS_URL` lists three,
`SCHEDCP_NATS_REPLICAS=3`), the streams and buckets replicated on all of them. One node killed
with SIGKILL mid-stream loses nothing, and comes back to a current replica; killed in the middle
of a decision cycle's canary, the cycle completes and its records are all there."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from schedcp.cli.stack import LocalStack, ephemeral_env, nats_node_names
from schedcp.runtime import nats_auth, rpc, topology
from schedcp.runtime.bus import Bus
from schedcp.runtime.config import Role, Settings
from schedcp.runtime.errors import StartupError
from schedcp.v1 import (
    common_pb2,
    cycle_pb2,
    deployment_pb2,
    learner_pb2,
    learner_pb2_grpc,
    planner_pb2,
    planner_pb2_grpc,
)
from tests.conftest import cpu_hogs, latency_probe
from tests.test_audit import audit
from tests.test_planner import wait_registered
from tests.test_services import call

NODES = 3


def cluster_settings(tmp_path, nodes: int = NODES, **overrides) -> Settings:
    fields = {name.removeprefix("SCHEDCP_").lower(): value for name, value in ephemeral_env(nats_nodes=nodes).items()}
    return Settings(data_dir=tmp_path / "data", **{**fields, **overrides})


async def operator_bus(stack: LocalStack, settings: Settings) -> Bus:
    operator = settings.model_copy(update={
        "nats_user": nats_auth.OPERATOR,
        "nats_password_file": str(nats_auth.password_file(stack.auth_dir, nats_auth.OPERATOR))})
    return await Bus.connect(settings.nats_url, "test-cluster", replicas=settings.nats_replicas,
                             **nats_auth.connect_options(operator))


async def outcomes_stored(bus: Bus) -> set[str]:
    info = await bus.js.stream_info("SCHEDCP_OUTCOMES")
    found = set()
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        raw = await bus.js.get_msg("SCHEDCP_OUTCOMES", seq)
        found.add(deployment_pb2.Outcome.FromString(raw.data).outcome_id)
    return found


async def replicas_current(bus: Bus, deadline_s: float = 20.0) -> list[str]:
    """The names of the stream's replicas, once every one is current (or at the deadline)."""
    deadline = time.monotonic() + deadline_s
    while True:
        cluster = (await bus.js.stream_info("SCHEDCP_OUTCOMES")).cluster
        if all(peer.current for peer in cluster.replicas) or time.monotonic() > deadline:
            return sorted([cluster.leader, *(p.name for p in cluster.replicas if p.current)])
        await asyncio.sleep(0.2)


def test_a_cluster_loses_nothing_when_the_node_a_client_uses_is_killed(tmp_path):
    settings = cluster_settings(tmp_path)
    stack = LocalStack(settings)

    async def exercise() -> None:
        bus = await operator_bus(stack, settings)
        try:
            await bus.ensure_topology()
            assert (await bus.js.stream_info("SCHEDCP_OUTCOMES")).config.num_replicas == NODES
            subject = topology.subject(topology.Kind.OUTCOME, "h1")
            sent = [f"before-{i}" for i in range(10)] + [f"after-{i}" for i in range(10)]
            for outcome_id in sent[:10]:
                await bus.publish(subject, deployment_pb2.Outcome(outcome_id=outcome_id))
            ports = [int(url.rsplit(":", 1)[1]) for url in settings.nats_url.split(",")]
            victim = nats_node_names(NODES)[ports.index(bus.nc.connected_url.port)]
            os.kill(next(c for c in stack.running() if c.name == victim).pid, signal.SIGKILL)
            # Published while the client reconnects and the stream elects a leader: each is
            # sent again until acknowledged, and stored once.
            for outcome_id in sent[10:]:
                await bus.publish(subject, deployment_pb2.Outcome(outcome_id=outcome_id))
            assert await outcomes_stored(bus) == set(sent)
            assert (await bus.js.stream_info("SCHEDCP_OUTCOMES")).state.messages == len(sent)
            await stack.restart(victim)
            # Back, it catches up: all three replicas current again.
            assert len(await replicas_current(bus)) == NODES
        finally:
            await bus.close()

    try:
        asyncio.run(stack.start(roles=()))
        assert sorted(c.name for c in stack.running()) == [*sorted(nats_node_names(NODES)), "tracestore"]
        asyncio.run(exercise())
    finally:
        stack.stop()
    assert stack.running() == []


@pytest.mark.parametrize(("nodes", "replicas", "says"), [(2, 3, "names 2 servers"),
                                                          (3, 1, "unless SCHEDCP_NATS_REPLICAS=3")])
def test_a_cluster_the_stack_cannot_make_safe_is_refused(tmp_path, nodes, replicas, says):
    stack = LocalStack(cluster_settings(tmp_path, nodes, nats_replicas=replicas))
    with pytest.raises(StartupError, match=says):
        asyncio.run(stack.start(roles=()))
    assert stack.running() == []


def test_a_cycle_completes_and_keeps_its_records_when_a_nats_node_dies_mid_canary(tmp_path, workload):
    """All five services on a 3-node cluster; a Tune of this host (rules provider: a probe behind
    CPU hogs); when the canary starts, the first node is killed with SIGKILL. The cycle reaches
    its result, and the deployment's audit records and its outcome (both published after the
    kill) are stored and read back."""
    settings = cluster_settings(tmp_path, host_id="testhost", observer_mode="procfs", goal_provider="rules")
    stack = LocalStack(settings)

    async def tune_and_kill() -> list[cycle_pb2.CycleEvent]:
        events, killed = [], False
        async with rpc.channel(settings.planner_addr, default_timeout_s=300) as channel:
            async for event in planner_pb2_grpc.PlannerServiceStub(channel).Tune(
                    planner_pb2.TuneRequest(host_id="testhost")):
                events.append(event)
                if not killed and event.stage == cycle_pb2.CYCLE_STAGE_DEPLOY:
                    os.kill(next(c for c in stack.running() if c.name == nats_node_names(NODES)[0]).pid,
                            signal.SIGKILL)
                    killed = True
        assert killed, [e.message for e in events]
        return events

    try:
        asyncio.run(stack.start())
        wait_registered(settings.planner_addr)
        # The workload only once the stack is up: eight CPU hogs on two CPUs while a new cluster
        # elects its leaders timed a service's JetStream request out during its start (in CI).
        cpu_hogs(workload)
        latency_probe(workload)
        events = asyncio.run(tune_and_kill())
        result = events[-1]
        assert result.stage == cycle_pb2.CYCLE_STAGE_RESULT, [e.message for e in events]
        assert result.status != common_pb2.STAGE_STATUS_FAILED, [e.message for e in events]
        deployment = result.deployment.deployment
        assert deployment.deployment_id, result.message
        records = [r for r in audit(settings.planner_addr, "testhost") if r.deployment_id == deployment.deployment_id]
        actions = {r.action for r in records}
        # The deploy record came before the kill, the keep or rollback after it.
        assert deployment_pb2.AUDIT_ACTION_DEPLOY in actions, records
        assert actions & {deployment_pb2.AUDIT_ACTION_KEEP, deployment_pb2.AUDIT_ACTION_ROLLBACK}, records
        outcomes = call(settings.addr(Role.LEARNER), lambda ch: learner_pb2_grpc.LearnerServiceStub(ch).History(
            learner_pb2.LearnerHistoryRequest(policy_name=deployment.policy_name))).outcomes
        assert deployment.deployment_id in [o.deployment_id for o in outcomes], outcomes
    finally:
        stack.stop()
