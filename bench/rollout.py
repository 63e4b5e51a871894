"""A rollout across a simulated fleet of two classes, where the policy helps one and hurts the other.

Real: nats-server (JetStream), the verifier, the learner and the planner as `schedcp up` starts
them. Simulated (bench/simfleet.py): the hosts, their profiles and their executors' canaries,
which measure nothing real: class `a` (2 CPUs) improves by 60 % under the policy, except every
40th host whose canary measures the opposite (noise the wave threshold must tolerate); class `b`
(64 CPUs, another kernel) gets 30 % worse. The policy is first proven on three hosts of class a
(three Tune calls naming it, as an operator's `schedcp deploy` does), then rolled out to every
host in waves 1, 5 %, 25 %, 100 %. Expected: class a completes, class b halts in its first wave.
With --restart the planner is restarted (SIGTERM) once a quarter of the hosts were deployed to,
and the rollout must go on from where it stood.

Writes bench/results/rollout.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

from bench.simfleet import SimClass, SimFleet, kept_hosts, serving
from bench.stack import running_stack
from schedcp.runtime import nats_auth, rpc
from schedcp.runtime.bus import Bus
from schedcp.runtime.config import Role
from schedcp.v1 import (
    deployment_pb2,
    planner_pb2,
    planner_pb2_grpc,
    rollout_pb2,
    rollout_pb2_grpc,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
POLICY = "batch_sched_idle"
HELPED = SimClass("a", cpus=2, kernel="6.1.0-sim-a", improvement=0.6, contrary_every=40)
HURT = SimClass("b", cpus=64, kernel="6.12.0-sim-b", improvement=-0.3)
R = rollout_pb2
ENDED = (R.ROLLOUT_STATE_COMPLETED, R.ROLLOUT_STATE_HALTED, R.ROLLOUT_STATE_ABORTED)
PROVING_HOSTS = 3


def proving_hosts(fleet: SimFleet, cls: SimClass) -> list[str]:
    """The class's last hosts: the rollout's last wave reaches them."""
    return sorted(h.host_id for h in fleet.hosts.values() if h.cls == cls)[-PROVING_HOSTS:]


async def prove(planner_addr: str, chosen: list[str]) -> None:
    """The policy deployed on these hosts by name (as `schedcp deploy` does), so that the learner
    calls it proven in their class."""
    async with rpc.channel(planner_addr, 60) as channel:
        stub = planner_pb2_grpc.PlannerServiceStub(channel)
        for host_id in chosen:
            async for _ in stub.Tune(planner_pb2.TuneRequest(host_id=host_id, policy=POLICY)):
                pass


async def get(planner_addr: str, rollout_id: str, with_hosts: bool = False) -> R.Rollout:
    async with rpc.channel(planner_addr, 30) as channel:
        return await rollout_pb2_grpc.RolloutServiceStub(channel).GetRollout(
            R.GetRolloutRequest(rollout_id=rollout_id, with_hosts=with_hosts))


async def wait_for(planner_addr: str, rollout_id: str, done, timeout_s: float) -> R.Rollout:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            rollout = await get(planner_addr, rollout_id)
            if done(rollout):
                return rollout
        except Exception as exc:  # the planner may be restarting
            if time.monotonic() > deadline:
                raise TimeoutError(f"rollout {rollout_id}: {exc}") from exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"rollout {rollout_id} not done after {timeout_s:g} s")
        await asyncio.sleep(0.5)


async def run(nats_url: str, planner_addr: str, per_class: int, waves: list[str], canary_s: float = 0.2,
              restart=None, classes: tuple[SimClass, ...] = (HELPED, HURT), follow_addr: str = "",
              **nats_options) -> dict:
    """Prove the policy on the first class, roll it out to every class, wait for the end;
    `restart()` (blocking) is called once a quarter of the hosts were deployed to, and from then
    on the rollout is followed on `follow_addr` when given (another planner replica). Returns
    what the report shows."""
    bus = await Bus.connect(nats_url, "bench-rollout", **nats_options)
    fleet = SimFleet(bus, canary_s=canary_s)
    for cls in classes:
        fleet.add(cls, per_class)
    try:
        proving = proving_hosts(fleet, classes[0])
        async with serving(fleet, observed=proving):
            started = time.monotonic()
            await prove(planner_addr, proving)
            proven_s = time.monotonic() - started
            async with rpc.channel(planner_addr, 60) as channel:
                rollout = await rollout_pb2_grpc.RolloutServiceStub(channel).StartRollout(
                    R.StartRolloutRequest(policy=POLICY, selector="all", waves=waves))
            began = time.monotonic()
            restarted_at = None
            if restart is not None:
                proving_deployments = sum(h.deployments for h in fleet.hosts.values())
                while (restarted_at := sum(h.deployments for h in fleet.hosts.values()) - proving_deployments
                       ) < len(fleet.hosts) // 4:
                    await asyncio.sleep(0.2)
                await asyncio.to_thread(restart)
                planner_addr = follow_addr or planner_addr
            await wait_for(planner_addr, rollout.rollout_id, lambda r: r.state in ENDED, 1800)
            seconds = time.monotonic() - began
            final = await get(planner_addr, rollout.rollout_id, with_hosts=True)
            async with rpc.channel(planner_addr, 30) as channel:
                audit = await planner_pb2_grpc.PlannerServiceStub(channel).ListAudit(
                    planner_pb2.ListAuditRequest(limit=1000))
            return report_of(fleet, classes, final, seconds, proven_s, restarted_at,
                             [r for r in audit.records if r.rollout_id == final.rollout_id])
    finally:
        await bus.close()


def report_of(fleet: SimFleet, simulated: tuple[SimClass, ...], rollout: R.Rollout, seconds: float, proven_s: float,
              restarted_at, audit: list[deployment_pb2.AuditRecord]) -> dict:
    classes = {}
    for cls in simulated:
        hosts = [h for h in fleet.hosts.values() if h.cls == cls]
        track = next(t for t in rollout.tracks if t.host_ids[0].startswith(f"sim-{cls.name}-"))
        classes[cls.name] = {
            "hosts": len(hosts), "improvement": cls.improvement, "host_class": track.host_class,
            "workload_cluster": track.workload_cluster,
            "state": R.RolloutState.Name(track.state).removeprefix("ROLLOUT_STATE_").lower(),
            "reason": track.reason, "waves": [{
                "number": w.number, "reach": w.reach, "hosts": w.hosts, "kept": w.kept, "rolled_back": w.rolled_back,
                "failed": w.failed, "skipped": w.skipped, "judgement": w.judgement, "trace_id": w.trace_id,
                "seconds": (w.ended_at.ToNanoseconds() - w.started_at.ToNanoseconds()) / 1e9 if w.done else None,
            } for w in track.waves],
            "running_it_at_the_end": kept_hosts(fleet, cls), "reverted": sum(h.reverted for h in rollout.hosts
                                                                             if h.host_id in track.host_ids),
            "deployments": sum(h.deployments for h in hosts), "rollbacks": sum(h.rollbacks for h in hosts),
            "hosts_deployed_twice": sum(h.deployments > 1 for h in hosts),
            "class_effect": {"outcomes": track.class_outcomes, "mean": track.class_mean_improvement},
        }
    started = rollout.created_at.ToNanoseconds()
    return {"hosts": len(fleet.hosts), "rollout_id": rollout.rollout_id,
            "state": R.RolloutState.Name(rollout.state).removeprefix("ROLLOUT_STATE_").lower(),
            "reason": rollout.reason, "seconds": seconds, "proving_s": proven_s, "waves": list(rollout.waves),
            "planner_restarted_after_deployments": restarted_at,
            "host_results": len(rollout.hosts), "classes": classes,
            "audit": [{"at_s": (r.at.ToNanoseconds() - started) / 1e9,
                       "action": deployment_pb2.AuditAction.Name(r.action).removeprefix("AUDIT_ACTION_").lower(),
                       "by": r.actor, "reason": r.reason, "trace_id": r.trace_id} for r in audit]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=1000, help="simulated hosts, half in each class")
    parser.add_argument("--waves", default="1,5%,25%,100%")
    parser.add_argument("--canary-s", type=float, default=2.0, help="how long a simulated canary takes")
    parser.add_argument("--concurrency", type=int, default=64, help="SCHEDCP_ROLLOUT_CONCURRENCY")
    parser.add_argument("--restart", action="store_true", help="restart the planner mid-rollout")
    args = parser.parse_args()
    roles = (Role.VERIFIER, Role.LEARNER, Role.PLANNER)
    with running_stack(roles=roles, SCHEDCP_GOAL_PROVIDER="rules", SCHEDCP_RATE_LIMIT_VERIFY_PER_MIN="0",
                       SCHEDCP_ROLLOUT_CONCURRENCY=str(args.concurrency)) as (stack, _, settings):
        restart = (lambda: asyncio.run(stack.restart(Role.PLANNER.value))) if args.restart else None
        result = asyncio.run(run(settings.nats_url, settings.planner_addr, args.hosts // 2, args.waves.split(","),
                                 args.canary_s, restart, **nats_auth.connect_options(settings)))
    result.update(date=time.strftime("%Y-%m-%d"), cpus=os.cpu_count(), concurrency=args.concurrency,
                  canary_s=args.canary_s)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "rollout.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "rollout.md").write_text(report(result))
    print(report(result))


def report(result: dict) -> str:
    lines = ["# A rollout across two classes of simulated hosts", "",
             f"{result['date']}, this {result['cpus']}-CPU machine running nats-server, the verifier, the learner "
             f"and the planner as `schedcp up` starts them; {result['hosts']} simulated hosts "
             "(bench/simfleet.py: registrations, profiles and executors in the bench process, canaries of "
             f"{result['canary_s']:g} s that measure nothing real). `{POLICY}` was proven on {PROVING_HOSTS} hosts "
             f"of class a ({result['proving_s']:.1f} s), then rolled out to every host in waves "
             f"{', '.join(result['waves'])}, at most {result['concurrency']} hosts at once.", "",
             f"Rollout {result['state']} in {result['seconds']:.1f} s: {result['reason']}", ""]
    if result["planner_restarted_after_deployments"] is not None:
        lines += [f"The planner was restarted (SIGTERM, then started again) after "
                  f"{result['planner_restarted_after_deployments']} deployments; the rollout went on from its "
                  "state in JetStream KV.", ""]
    lines += ["| class | hosts | policy's effect there | result | waves run | running it at the end | "
              "deployments | hosts deployed twice |", "|---|---|---|---|---|---|---|---|"]
    for name, c in result["classes"].items():
        lines.append(f"| {name} (`{c['host_class']}`) | {c['hosts']} | {c['improvement']:+.0%} | {c['state']} | "
                     f"{len(c['waves'])} | {c['running_it_at_the_end']} | {c['deployments']} | "
                     f"{c['hosts_deployed_twice']} |")
    lines += ["", "| class | wave | reach | hosts | kept | rolled back | failed | skipped | seconds | judgement |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name, c in result["classes"].items():
        for w in c["waves"]:
            took = f"{w['seconds']:.1f}" if w["seconds"] is not None else ""
            lines.append(f"| {name} | {w['number']} | {w['reach']} | {w['hosts']} | {w['kept']} | {w['rolled_back']} | "
                         f"{w['failed']} | {w['skipped']} | {took} | {w['judgement']} |")
    lines += ["", f"The audit trail has {len(result['audit'])} records for the rollout (`schedcp history`), each "
              "step with its own trace id:", ""]
    lines += [f"- {a['at_s']:7.1f} s {a['action']} ({a['by']}): {a['reason'][:200]}" for a in result["audit"]]
    lines += ["", "Skipped hosts already ran the policy (the three it was proven on, and after a restart the hosts "
              "whose canary was in flight). Reproduce: `python -m bench.rollout [--restart]`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
