"""The planner at fleet scale: decisions per second and decision latency when N simulated hosts
(N = 100, 1000) publish profiles, with the rules provider.

Real: nats-server (JetStream), the verifier, the learner and the planner in automatic mode,
started as `schedcp up` starts them. Simulated: the hosts. Each one is a registration in the
host registry and a profile published on `schedcp.profile.<host>` (a latency group beside a
contended batch group, so the rules provider wants to protect the latency group); their
executors are one in-process gRPC server that reports every deployment kept at once (no canary,
no outcome). So the bench measures the planner's decisions, not the hosts' canaries.

A decision is one automatic cycle: drift detected and the host claimed, the published profile,
the goal (the learner is asked for a reusable one first), the candidates ranked by the
learner, the first verified for the host's kernel (the verifier's cache answers after the
first host), the executor asked what runs and told to deploy, every step published on
`schedcp.cycle.<host>.<cycle>`. All N hosts publish at once (a burst, as when a fleet's
observers start together): decisions/s = N / (last result - first publish); latency per host =
its result event - its profile's publication (queueing included); service time = the cycle's
own first to last event. Sizes are interleaved, repeated; medians reported.
Writes bench/results/planner_fleet.{json,md,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import time
from pathlib import Path

import grpc

from bench.stack import running_stack
from schedcp.runtime import nats_auth, topology
from schedcp.runtime.bus import Bus
from schedcp.runtime.config import Role
from schedcp.v1 import (
    common_pb2,
    cycle_pb2,
    deployment_pb2,
    executor_pb2,
    executor_pb2_grpc,
    host_pb2,
    profile_pb2,
)
from services.observer import signature

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LATENCY, BATCH = profile_pb2.WORKLOAD_CLASS_LATENCY_SENSITIVE, profile_pb2.WORKLOAD_CLASS_BATCH
# Profiles the simulated hosts have in flight at once (each waits for JetStream's ack).
PUBLISHING = 256


class SimulatedExecutors(executor_pb2_grpc.ExecutorServiceServicer):
    """Every simulated host's executor: nothing runs until told, every deployment is kept."""

    def __init__(self) -> None:
        self.deployments = 0

    async def Status(self, request, context):
        return executor_pb2.StatusResponse(backends=["native"])

    async def Deploy(self, request, context):
        self.deployments += 1
        deployment = deployment_pb2.Deployment(
            deployment_id=f"sim-{self.deployments}", cycle_id=request.cycle_id, policy_name=request.artifact.name,
            artifact_digest=request.artifact.digest, backend="native", state=deployment_pb2.DEPLOYMENT_STATE_KEPT)
        yield deployment_pb2.DeploymentEvent(deployment=deployment, message="simulated host: kept")


def facts(host_id: str) -> host_pb2.HostFacts:
    f = host_pb2.HostFacts(host_id=host_id, hostname=host_id, kernel_release=platform.release(),
                           arch=platform.machine(), backends=["native"])
    f.cpu.logical_cpus = 2
    f.cgroup.cpu_idle_supported = True
    return f


def group(name: str, workload_class: int, demand: float, p99_us: float) -> profile_pb2.WorkloadGroup:
    g = profile_pb2.WorkloadGroup(group_id=f"comm:{name}", name=name, matcher=common_pb2.GroupMatcher(comm=name))
    g.classification.workload_class, g.classification.confidence = workload_class, 0.9
    g.features.demand, g.features.runq_latency.p99_us = demand, p99_us
    g.features.cpu_share, g.features.cpu_seconds = min(demand, 2.0) / 2, demand
    g.features.wakeups_per_s = 1000 if workload_class == LATENCY else 5
    return g


def profile(host_id: str, index: int, batch: str = "ffmpeg") -> profile_pb2.WorkloadProfile:
    # Workloads differ a little from host to host, as in a real fleet.
    groups = [group("nginx", LATENCY, 0.2, 2000 + index % 50 * 40), group(batch, BATCH, 3.0 + index % 7 * 0.2, 50)]
    p = profile_pb2.WorkloadProfile(profile_id=f"{host_id}-p1", host=facts(host_id), groups=groups,
                                    signature=signature.compute(groups, 1.0, 2, 0.9))
    p.window_start.GetCurrentTime()
    return p


async def run_fleet(nats_url: str, executors_addr: str, n: int, tag: str, **nats_options) -> dict:
    """Register n hosts, publish their profiles at once, wait for every cycle's result."""
    bus = await Bus.connect(nats_url, f"bench-fleet-{tag}", **nats_options)
    hosts = [f"sim-{tag}-{i:04d}" for i in range(n)]
    results: dict[str, dict] = {}
    published: dict[str, float] = {}
    first_event: dict[str, float] = {}
    from_published: set[str] = set()  # cycles that started from the profile that triggered them
    done = asyncio.Event()

    async def on_cycle(msg) -> None:
        event = cycle_pb2.CycleEvent()
        event.ParseFromString(msg.data)
        at = event.at.ToNanoseconds() / 1e9
        first_event.setdefault(event.cycle_id, at)
        if event.stage == cycle_pb2.CYCLE_STAGE_OBSERVE and event.message.startswith("the published profile"):
            from_published.add(event.cycle_id)
        if event.stage == cycle_pb2.CYCLE_STAGE_RESULT and event.host_id in published:
            results[event.host_id] = {"at": at, "status": event.status, "message": event.message,
                                      "service_s": at - first_event[event.cycle_id]}
            if len(results) == n:
                done.set()

    try:
        kv = await bus.kv(topology.HOSTS_BUCKET)
        for host in hosts:
            registration = host_pb2.HostRegistration(host_id=host, observer_addr="127.0.0.1:9",
                                                     executor_addr=executors_addr, facts=facts(host))
            await kv.put(host, registration.SerializeToString())
        await bus.nc.subscribe(topology.all_hosts(topology.Kind.CYCLE), cb=on_cycle)
        profiles = [profile(host, i) for i, host in enumerate(hosts)]
        # At once, as a fleet's observers starting together do: none waits for another's ack.
        in_flight = asyncio.Semaphore(PUBLISHING)

        async def publish(host: str, p: profile_pb2.WorkloadProfile) -> None:
            async with in_flight:
                published[host] = time.time()
                await bus.publish(topology.subject(topology.Kind.PROFILE, host), p, msg_id=p.profile_id,
                                  traced=False)

        await asyncio.gather(*(publish(host, p) for host, p in zip(hosts, profiles, strict=True)))
        with contextlib.suppress(TimeoutError):  # the report says how many were decided
            await asyncio.wait_for(done.wait(), timeout=60 + n * 0.5)
    finally:
        await bus.close()
    latencies = [r["at"] - published[h] for h, r in results.items()]
    kept = sum(r["status"] == common_pb2.STAGE_STATUS_SUCCEEDED for r in results.values())
    span = max(r["at"] for r in results.values()) - min(published.values()) if results else float("nan")
    return {"n": n, "decided": len(results), "kept": kept, "from_published_profile": len(from_published),
            "seconds": span,
            "decisions_per_s": len(results) / span if results else 0.0,
            "latency_p50_ms": 1000 * percentile(latencies, 50), "latency_p99_ms": 1000 * percentile(latencies, 99),
            "service_p50_ms": 1000 * percentile([r["service_s"] for r in results.values()], 50),
            "service_p99_ms": 1000 * percentile([r["service_s"] for r in results.values()], 99),
            "failures": sorted({r["message"] for r in results.values()
                                if r["status"] != common_pb2.STAGE_STATUS_SUCCEEDED})[:5]}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def with_executors(coro_factory):
    server = grpc.aio.server()
    executor_pb2_grpc.add_ExecutorServiceServicer_to_server(SimulatedExecutors(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        return await coro_factory(f"127.0.0.1:{port}")
    finally:
        await server.stop(grace=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args()
    runs: dict[int, list[dict]] = {n: [] for n in args.sizes}
    roles = (Role.VERIFIER, Role.LEARNER, Role.PLANNER)
    with running_stack(roles=roles, SCHEDCP_PLANNER_AUTO="true", SCHEDCP_PLANNER_MIN_INTERVAL_S="0",
                       SCHEDCP_GOAL_PROVIDER="rules",
                       # The simulated hosts measure nothing: a search (decision 55) would compare zeros.
                       SCHEDCP_TUNE_BUDGET="1",
                       # One planner verifying for a thousand hosts at once: a fleet's central
                       # verifier serves its planner without the per-client limit meant for tools.
                       SCHEDCP_RATE_LIMIT_VERIFY_PER_MIN="0") as (_, _, settings):
        for rep in range(args.repetitions):
            order = args.sizes if rep % 2 == 0 else list(reversed(args.sizes))
            for n in order:
                run = asyncio.run(with_executors(
                    lambda addr, n=n, rep=rep: run_fleet(settings.nats_url, addr, n, f"r{rep}n{n}",
                                                         **nats_auth.connect_options(settings))))
                runs[n].append(run)
                print(f"rep {rep + 1}: N={n}: {run['decided']}/{n} decided ({run['kept']} kept) in "
                      f"{run['seconds']:.1f} s: {run['decisions_per_s']:.1f}/s, "
                      f"latency p50 {run['latency_p50_ms']:.0f} ms "
                      f"p99 {run['latency_p99_ms']:.0f} ms, cycle p99 {run['service_p99_ms']:.0f} ms "
                      f"{run['failures'] or ''}", flush=True)
    keys = ("decisions_per_s", "latency_p50_ms", "latency_p99_ms", "service_p50_ms", "service_p99_ms", "seconds")
    summary = {n: {**{k: statistics.median(r[k] for r in rs) for k in keys},
                   "decided_all": all(r["decided"] == n for r in rs), "kept_all": all(r["kept"] == n for r in rs)}
               for n, rs in runs.items()}
    result = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "repetitions": args.repetitions,
              "summary": summary, "runs": runs}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "planner_fleet.json").write_text(json.dumps(result, indent=2) + "\n")
    write_report(result)


def write_report(result: dict) -> None:
    lines = ["# The planner at fleet scale: decisions per second and latency", "",
             f"{result['date']}, this {result['cpus']}-CPU machine running nats-server, the verifier, the learner and "
             "the planner (automatic mode, rules provider) as `schedcp up` starts them, plus the simulated hosts' "
             f"registrations, profiles and executors in the bench process. {result['repetitions']} runs per size, "
             "interleaved, medians. All hosts publish at once.", "",
             "| hosts | all decided | decisions/s | latency p50 (ms) | latency p99 (ms) | cycle p50 (ms) | "
             "cycle p99 (ms) | burst done in (s) |", "|---|---|---|---|---|---|---|---|"]
    for n, s in result["summary"].items():
        lines.append(f"| {n} | {'yes' if s['decided_all'] else 'NO'} | {s['decisions_per_s']:.1f} | "
                     f"{s['latency_p50_ms']:.0f} | {s['latency_p99_ms']:.0f} | {s['service_p50_ms']:.0f} | "
                     f"{s['service_p99_ms']:.0f} | {s['seconds']:.1f} |")
    lines += ["", "![decisions per second and latency](planner_fleet.png)", "",
              "Latency is from a host's profile being published to its cycle's result, so in a burst it is "
              "mostly queueing: the last host waits for every decision before it. The cycle columns are one "
              "cycle's own duration (its first to last event), which includes waiting for the shared learner, "
              "verifier and NATS while the other cycles run (at most SCHEDCP_PLANNER_MAX_CYCLES at once).", "",
              "Reproduce: `make bench` (or `python -m bench.planner_fleet --sizes 100 1000`).", ""]
    (RESULTS / "planner_fleet.md").write_text("\n".join(lines))
    plot(result)
    print((RESULTS / "planner_fleet.md").read_text())


def plot(result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(result["runs"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for n in sizes:
        rates = [r["decisions_per_s"] for r in result["runs"][n]]
        left.scatter([str(n)] * len(rates), rates, color="tab:blue")
    left.plot([str(n) for n in sizes], [result["summary"][n]["decisions_per_s"] for n in sizes], color="tab:blue")
    left.set_ylim(bottom=0)
    left.set_xlabel("simulated hosts")
    left.set_ylabel("decisions per second (runs, median line)")
    for key, label in (("latency_p99_ms", "latency p99 (publish -> result)"), ("service_p99_ms", "cycle p99")):
        right.plot([str(n) for n in sizes], [result["summary"][n][key] for n in sizes], marker="o", label=label)
    right.set_yscale("log")
    right.set_xlabel("simulated hosts")
    right.set_ylabel("ms (median of runs)")
    right.legend(fontsize=8)
    fig.suptitle("Planner: N hosts publish profiles at once (rules provider)")
    fig.tight_layout()
    fig.savefig(RESULTS / "planner_fleet.png", dpi=120)


if __name__ == "__main__":
    main()
