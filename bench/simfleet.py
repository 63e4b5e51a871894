"""Simulated hosts in classes, for rollouts at fleet scale (bench/rollout.py, tests/test_rollout.py).

Each host is a registration in the host registry (facts of its class, its workload cluster), a
profile published on `schedcp.profile.<host>` (so a cycle starts from it: no observer exists
for these hosts) and its part of one in-process gRPC executor that plays every host's executor,
telling them apart by the host id every planner call names. A Deploy behaves as a real executor's
does, without touching any kernel: the deployment goes on in a task of its own (a caller that goes
away does not stop it), is in force during its canary, is judged against the canary's
`min_improvement` with the improvement its class was given (a policy that helps one class and
hurts another), publishes an Outcome for the learner and is kept or rolled back; Status shows
what is in force, Rollback takes it off. No canary measures anything real: canaries of 1000
hosts cannot run on one machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import time
from dataclasses import dataclass, field

import grpc

from bench.planner_fleet import BATCH, LATENCY, group
from schedcp.domain import hostclass
from schedcp.runtime import topology
from schedcp.runtime.bus import Bus
from schedcp.v1 import (
    deployment_pb2,
    executor_pb2,
    executor_pb2_grpc,
    host_pb2,
    observer_pb2_grpc,
    profile_pb2,
)
from services.observer import signature

D = deployment_pb2
# A host registration lives 60 s in its bucket; observers refresh it, and so does the simulation.
REFRESH_S = 15.0


@dataclass(frozen=True)
class SimClass:
    """Hosts alike in hardware and kernel, and what a deployed policy does to them."""

    name: str
    cpus: int
    kernel: str
    improvement: float
    # Every n-th host of the class (n > 1) measures the opposite: a noisy canary.
    contrary_every: int = 0

    def facts(self, host_id: str) -> host_pb2.HostFacts:
        f = host_pb2.HostFacts(host_id=host_id, hostname=host_id, kernel_release=self.kernel, arch="x86_64",
                               backends=["native"], btf_present=True,
                               btf_sha256=hashlib.sha256(self.kernel.encode()).hexdigest())
        f.cpu.logical_cpus, f.cpu.numa_nodes = self.cpus, 1
        f.cgroup.cpu_idle_supported = True
        return f


@dataclass
class SimHost:
    host_id: str
    cls: SimClass
    index: int
    current: D.Deployment | None = None
    deployments: int = 0
    rollbacks: int = 0
    # Only hosts given an observer of their own (`serving(observed=...)`) can be profiled on demand.
    observer_addr: str = "127.0.0.1:9"

    @property
    def improvement(self) -> float:
        n = self.cls.contrary_every
        return -self.cls.improvement if n > 1 and self.index % n == n - 1 else self.cls.improvement

    def profile(self) -> profile_pb2.WorkloadProfile:
        """A latency group beside batch work that wants more CPUs than the class has: the rules
        protect the latency group (they leave a host with a CPU to spare alone)."""
        groups = [group("nginx", LATENCY, 0.2, 3000), group("ffmpeg", BATCH, 1.5 * self.cls.cpus, 50)]
        facts = self.cls.facts(self.host_id)
        p = profile_pb2.WorkloadProfile(profile_id=f"{self.host_id}-{time.time_ns()}", host=facts,
                                        groups=groups, signature=signature.compute(groups, 1.0, self.cls.cpus, 0.9))
        p.window_start.GetCurrentTime()
        return p

    def registration(self, executor_addr: str) -> host_pb2.HostRegistration:
        return host_pb2.HostRegistration(host_id=self.host_id, observer_addr=self.observer_addr,
                                         executor_addr=executor_addr, facts=self.cls.facts(self.host_id),
                                         workload_cluster=hostclass.signature_cluster(self.profile().signature))


@dataclass
class SimFleet(executor_pb2_grpc.ExecutorServiceServicer):
    """The hosts of every class and the one executor that plays theirs."""

    bus: Bus
    canary_s: float = 0.2
    hosts: dict[str, SimHost] = field(default_factory=dict)
    addr: str = ""
    _ids: itertools.count = field(default_factory=itertools.count)
    _tasks: set[asyncio.Task] = field(default_factory=set)

    def add(self, cls: SimClass, count: int) -> list[SimHost]:
        added = [SimHost(f"sim-{cls.name}-{i:04d}", cls, i) for i in range(count)]
        self.hosts.update((h.host_id, h) for h in added)
        return added

    async def publish(self) -> None:
        """Every host's registration and a fresh profile."""
        kv = await self.bus.kv(topology.HOSTS_BUCKET)
        for host in self.hosts.values():
            await kv.put(host.host_id, host.registration(self.addr).SerializeToString())
            p = host.profile()
            await self.bus.publish(topology.subject(topology.Kind.PROFILE, host.host_id), p, msg_id=p.profile_id,
                                   traced=False)

    async def keep_fresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            await self.publish()

    # --- the executor of every host --------------------------------------------------------------
    async def Status(self, request, context):
        host = await self._host(request.host_id, context)
        return executor_pb2.StatusResponse(host_id=host.host_id, current=host.current, backends=["native"])

    async def Rollback(self, request, context):
        host = await self._host(request.host_id, context)
        restored, host.current = host.current, None
        host.rollbacks += 1
        return executor_pb2.RollbackResponse(message=f"simulated host {host.host_id}: rolled back ({request.reason})",
                                             restored=restored)

    async def Deploy(self, request, context):
        host = await self._host(request.host_id, context)
        events: asyncio.Queue[D.DeploymentEvent | None] = asyncio.Queue()
        # A task of its own, as a real executor's: the caller going away does not stop it.
        task = asyncio.create_task(self._deploy(host, request, events))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        while (event := await events.get()) is not None:
            yield event

    async def _deploy(self, host: SimHost, request: executor_pb2.DeployRequest,
                      events: asyncio.Queue) -> None:
        host.deployments += 1
        deployment = D.Deployment(deployment_id=f"sim{next(self._ids)}", host_id=host.host_id,
                                  cycle_id=request.cycle_id, policy_name=request.artifact.name,
                                  artifact_digest=request.artifact.digest, backend="native",
                                  state=D.DEPLOYMENT_STATE_CANARY)
        host.current = deployment
        await events.put(D.DeploymentEvent(deployment=deployment, message="simulated host: canary"))
        await asyncio.sleep(self.canary_s)
        change = host.improvement
        kept = change >= request.canary.min_improvement
        ended = D.Deployment()
        ended.CopyFrom(deployment)
        ended.state = D.DEPLOYMENT_STATE_KEPT if kept else D.DEPLOYMENT_STATE_ROLLED_BACK
        host.current = ended if kept else None
        success = D.MetricComparison(metric=request.canary.success_metric, baseline=1000.0,
                                     observed=1000.0 * (1 - change), improvement=change, rounds=1)
        await self._outcome(host, request, ended, success)
        told = f"simulated host: {change:+.0%} ({'kept' if kept else 'rolled back'})"
        await events.put(D.DeploymentEvent(deployment=ended, metrics=[success], message=told))
        await events.put(None)

    async def _outcome(self, host: SimHost, request, deployment: D.Deployment, success: D.MetricComparison) -> None:
        result = D.OUTCOME_RESULT_KEPT if deployment.state == D.DEPLOYMENT_STATE_KEPT else D.OUTCOME_RESULT_ROLLED_BACK
        outcome = D.Outcome(outcome_id=f"{deployment.deployment_id}-{D.OutcomeResult.Name(result).lower()}",
                            cycle_id=deployment.cycle_id,
                            deployment_id=deployment.deployment_id, host_id=host.host_id,
                            host_class=hostclass.of(host.cls.facts(host.host_id)), policy_name=deployment.policy_name,
                            artifact_digest=deployment.artifact_digest, parameters=request.artifact.parameters,
                            signature=request.signature, objective=request.goal.objective, success=success,
                            result=result, goal=request.goal)
        outcome.at.GetCurrentTime()
        await self.bus.publish(topology.subject(topology.Kind.OUTCOME, host.host_id, deployment.deployment_id),
                               outcome, msg_id=outcome.outcome_id, traced=False)

    async def _host(self, host_id: str, context) -> SimHost:
        if host_id not in self.hosts:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"no simulated host {host_id!r}")
        return self.hosts[host_id]


class SimObserver(observer_pb2_grpc.ObserverServiceServicer):
    """One simulated host's observer: its profile on demand (a Tune call profiles the host)."""

    def __init__(self, host: SimHost) -> None:
        self._host = host

    async def GetProfile(self, request, context):
        return self._host.profile()


async def _server(add, servicer) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    add(servicer, server)
    addr = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    return server, addr


@contextlib.asynccontextmanager
async def serving(fleet: SimFleet, observed: list[str] = ()):
    """The fleet's executor on a free loopback port, an observer for each `observed` host, the
    hosts registered and kept fresh."""
    server, fleet.addr = await _server(executor_pb2_grpc.add_ExecutorServiceServicer_to_server, fleet)
    servers = [server]
    for host_id in observed:
        host = fleet.hosts[host_id]
        observer, host.observer_addr = await _server(observer_pb2_grpc.add_ObserverServiceServicer_to_server,
                                                     SimObserver(host))
        servers.append(observer)
    await fleet.publish()
    refresher = asyncio.create_task(fleet.keep_fresh())
    try:
        yield fleet
    finally:
        refresher.cancel()
        for each in servers:
            await each.stop(grace=None)


def kept_hosts(fleet: SimFleet, cls: SimClass) -> int:
    return sum(1 for h in fleet.hosts.values() if h.cls == cls and h.current is not None
               and h.current.state == D.DEPLOYMENT_STATE_KEPT)

