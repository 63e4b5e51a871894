"""Cycle leases against a real nats-server: a replica that stops renewing (killed: no chance to
record its cycles' ends) has its open cycles closed by another replica, once, with a result that
says so; a lease still renewed is left alone; a released one is gone. And the drill with real
planner processes: one killed mid-cycle, the other closes the cycle."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time

import grpc
import pytest

from schedcp.runtime import rpc, topology
from schedcp.runtime.bus import Bus
from schedcp.v1 import common_pb2, cycle_pb2, learner_pb2, learner_pb2_grpc, planner_pb2, planner_pb2_grpc
from services.planner.leases import PREFIX, CycleLeases
from tests.conftest import cpu_hogs, latency_probe
from tests.test_planner import wait_registered
from tests.test_services import call

LEASE_S = 1.0


@pytest.fixture
async def buses(nats_server):
    opened = [await Bus.connect(nats_server.url, f"test-replica-{i}") for i in range(3)]
    await opened[0].ensure_topology()
    yield opened
    for bus in opened:
        await bus.close()


async def results(bus: Bus, host: str) -> list[cycle_pb2.CycleEvent]:
    """The result events on the cycle stream for one host."""
    info = await bus.js.stream_info("SCHEDCP_CYCLES")
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        with contextlib.suppress(Exception):
            raw = await bus.js.get_msg("SCHEDCP_CYCLES", seq)
            event = cycle_pb2.CycleEvent.FromString(raw.data)
            if event.host_id == host and event.stage == cycle_pb2.CYCLE_STAGE_RESULT:
                found.append(event)
    return found


async def lease_keys(bus: Bus) -> list[str]:
    return [key for key, _ in await bus.kv_entries(topology.PLANNER_BUCKET, PREFIX)]


async def test_a_dead_replicas_cycle_is_closed_once_by_another(buses):
    dead, first, second = (CycleLeases(bus, LEASE_S, replica=name) for bus, name in zip(buses, "ABC", strict=True))
    await dead.hold("c-dead", "h1")  # and never renews: killed
    alive = first
    await alive.hold("c-alive", "h2")
    await asyncio.sleep(LEASE_S * 1.5)
    await alive.hold("c-alive", "h2")  # renewed, as its running replica does every third of the lease
    # Two replicas sweep at once: the compare-and-set lets one of them close it.
    closed = await asyncio.gather(second.sweep(), first.sweep())
    assert sorted(c for found in closed for c in found) == ["c-dead"], closed
    [event] = await results(buses[0], "h1")
    assert (event.cycle_id, event.status) == ("c-dead", common_pb2.STAGE_STATUS_FAILED)
    assert "replica A, which ran this cycle, stopped renewing its lease" in event.message, event.message
    assert "the host's executor judges its canary" in event.message
    assert await results(buses[0], "h2") == [] and await lease_keys(buses[0]) == [PREFIX + "c-alive"]
    await alive.release("c-alive")
    assert await lease_keys(buses[0]) == []


async def test_the_sweep_runs_by_itself_within_a_lease_or_two(buses):
    dead, survivor = CycleLeases(buses[0], LEASE_S, replica="A"), CycleLeases(buses[1], LEASE_S, replica="B")
    await dead.hold("c1", "h1")
    await survivor.start()
    try:
        for _ in range(40):
            if await results(buses[2], "h1"):
                break
            await asyncio.sleep(0.1)
        [event] = await results(buses[2], "h1")
        assert "closed by planner replica B" in event.message
    finally:
        await survivor.close()


def test_a_cycle_whose_planner_is_killed_is_closed_by_the_other_replica(services, workload, nats_server):
    """Two planner processes (leases of 2 s); a Tune of this host (a probe behind CPU hogs) on one
    of them, killed with SIGKILL when the cycle reaches its deployment. The other records the
    cycle's end within a few leases; the deployment goes on at the executor, whose outcome
    reaches the learner."""
    cpu_hogs(workload)
    latency_probe(workload)
    services.env.update(SCHEDCP_PLANNER_LEASE_S="2", SCHEDCP_GOAL_PROVIDER="rules")
    services.start("observer", "verifier", "executor", "learner", "planner")
    services.start_replica("planner")
    wait_registered(services.addr("planner"))
    killed = services.procs.pop("planner")
    events = tune_until_killed(services.addr("planner"), killed)
    cycle_id = events[0].cycle_id

    async def closed_by_the_other() -> list[cycle_pb2.CycleEvent]:
        bus = await Bus.connect(nats_server.url, "test-drill")
        try:
            for _ in range(100):
                found = [e for e in await results(bus, "testhost") if e.cycle_id == cycle_id]
                if found:
                    return found
                await asyncio.sleep(0.2)
            return []
        finally:
            await bus.close()

    [end] = asyncio.run(closed_by_the_other())
    assert "closed by planner replica" in end.message and "stopped renewing its lease" in end.message, end
    deployment_id = next(e.deployment.deployment.deployment_id for e in events
                         if e.deployment.deployment.deployment_id)
    deadline = time.monotonic() + 120  # the executor's canary goes on: up to 6 rounds of 5 s windows
    while time.monotonic() < deadline:
        outcomes = call(services.addr("learner"), lambda ch: learner_pb2_grpc.LearnerServiceStub(ch).History(
            learner_pb2.LearnerHistoryRequest(host_id="testhost"))).outcomes
        if deployment_id in [o.deployment_id for o in outcomes]:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"no outcome of {deployment_id} reached the learner")


def tune_until_killed(addr: str, planner: subprocess.Popen) -> list[cycle_pb2.CycleEvent]:
    """Tune on `addr` until the cycle's deployment has started, then SIGKILL the planner."""
    async def run() -> list[cycle_pb2.CycleEvent]:
        events = []
        async with rpc.channel(addr, default_timeout_s=300) as channel:
            with contextlib.suppress(grpc.aio.AioRpcError):  # the planner dies mid-stream
                async for event in planner_pb2_grpc.PlannerServiceStub(channel).Tune(
                        planner_pb2.TuneRequest(host_id="testhost")):
                    events.append(event)
                    if event.deployment.deployment.deployment_id:
                        planner.kill()
                        planner.wait()
        return events

    events = asyncio.run(run())
    assert planner.returncode == -signal.SIGKILL, [e.message for e in events]
    return events
