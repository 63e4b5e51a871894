"""`make e2e`: the fleet end to end. Two micro-VM hosts on the pinned sched_ext kernel,
each with its own observer and executor, and the central plane on this machine (harness/fleet.py)
as a fleet runs it to survive losing any part: a 3-node JetStream cluster (every stream and KV
bucket replicated on all three), two planner replicas, the verifier and the learner. Each VM runs
a 1 kHz latency probe beside CPU batch.

1. The planner tunes each host: goal inference from the VM's profile, a library sched_ext policy
   with parameters for the goal, verification (static checks, the kernel's verifier and dynamic
   tests in the verifier's own sandbox VM, a signed verdict), deployment by the VM's executor
   with a canary, the outcome to the learner.
2. Evidence: /sys/kernel/sched_ext/state and root/ops read inside each VM, the outcomes in the
   learner, and each cycle's trace holding spans from both sides of the VM boundary.
3. Drills, each a SIGKILL, each with what it must leave behind:
   - the executor in one VM (the kernel goes back to the fair class by itself; the restarted
     executor closes the deployment's record);
   - the planner replica running a cycle, mid-canary (the other replica closes the cycle's
     record within a lease; the executor finishes the deployment alone; its outcome reaches the
     learner);
   - the verifier as a cycle starts, back a few seconds after the cycle first asks it, and the
     learner while the canary runs, back when the cycle waits for it (the cycle completes with
     a verdict; the outcome is applied once the learner is back);
   - the planner replica running a rollout of the proven policy to both hosts, mid-canary (the
     other replica takes the rollout over within a lease and completes it; no host deployed
     twice; every cycle record closed);
   - the nats-server leading the cycle stream, mid-canary (the cycle completes through the other
     two; no audit record, outcome, policy or rollout lost, before or after the node is back).
4. The end state: both VMs on a verified sched_ext policy that their executor reports in force.

Prints every step's evidence, and a report (`--report`, JSON). Exits 1 at the first check that
fails, saying what was expected and where the logs are.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from harness.fleet import Central, Fleet, FleetError, VmHost
from schedcp.cli import tracestore
from schedcp.domain import evidence, params
from schedcp.runtime import bus as busmod
from schedcp.runtime import nats_auth, rpc, topology
from schedcp.runtime.config import Role
from schedcp.runtime.errors import StartupError
from schedcp.toolchain.build import BuildError
from schedcp.v1 import (
    common_pb2,
    cycle_pb2,
    deployment_pb2,
    executor_pb2,
    executor_pb2_grpc,
    learner_pb2,
    learner_pb2_grpc,
    planner_pb2,
    planner_pb2_grpc,
    policy_pb2,
    rollout_pb2,
    rollout_pb2_grpc,
)
from services.planner.verdict_memo import MEMO_S

HOSTS = ("vm-a", "vm-b")
S = deployment_pb2
C = cycle_pb2
R = rollout_pb2
# The central plane as a fleet runs it when it must survive losing any part: a 3-node JetStream
# cluster (every stream and bucket on all three), two planner replicas; leases short enough for
# the drills to see a takeover in seconds.
CENTRAL = Central(nats_nodes=3, planner_replicas=2, planner_lease_s=6.0)
# A lease expires, then a sweep (every third of a lease) of the surviving replica finds it.
TAKEOVER_TIMEOUT_S = 3 * CENTRAL.planner_lease_s + 30
# How long the cycle meets a dead verifier before it is started again (it then takes seconds more).
VERIFIER_DOWN_S = 3.0
# The newest events of an executor's history read to tell which deployments are new (a
# deployment has a handful of events).
HISTORY_EVENTS = 100
FALLBACK_TIMEOUT_S = 30.0
SETTLE_TIMEOUT_S = 300.0
CYCLES_PER_HOST = 3
# A drill that needs a proven policy waits this long for the learner, then has the hosts run
# their policy once more, at most PROOF_ROUNDS times.
PROOF_WAIT_S = 20.0
PROOF_ROUNDS = 3
# Spans are exported in batches every 500 ms; the guests' exporters run on emulated CPUs.
TRACE_SETTLE_S = 5.0


class CheckFailed(Exception):
    """A check of the run failed; the message says what was expected and what was seen."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def say(text: str) -> None:
    print(text, flush=True)


@dataclass
class CycleRun:
    """One Tune call's events, and how the call ended."""

    host: str
    events: list[cycle_pb2.CycleEvent] = field(default_factory=list)
    error: str = ""

    @property
    def cycle_id(self) -> str:
        return self.events[0].cycle_id if self.events else ""

    @property
    def trace_id(self) -> str:
        return next((e.trace_id for e in self.events if e.trace_id), "")

    @property
    def result(self) -> cycle_pb2.CycleEvent | None:
        return next((e for e in reversed(self.events) if e.stage == C.CYCLE_STAGE_RESULT), None)

    @property
    def deployment(self) -> deployment_pb2.Deployment | None:
        found = [e.deployment.deployment for e in self.events if e.HasField("deployment")]
        return found[-1] if found else None

    @property
    def verdict(self):
        found = [e.verdict for e in self.events if e.HasField("verdict") and e.verdict.claims.approved]
        return found[-1] if found else None


def canary_margins(run: CycleRun) -> list[dict]:
    """The kept canary's comparisons with their intervals; for each guard, its limit and the
    margin by which the interval's worse end cleared it (how near the fleet's canaries come to
    rolling back a policy that helps)."""
    judged = [e.deployment for e in run.events if e.HasField("deployment") and e.deployment.metrics]
    goal = next((e.goal for e in run.events if e.HasField("goal")), None)
    if not judged:
        return []
    figures = []
    for c in judged[-1].metrics:
        ratio = c.observed / c.baseline if c.baseline else 0.0
        # The improvement's interval as a ratio of canary to baseline; a canary of one round has none.
        interval = (tuple(sorted(evidence.ratio(c.metric, i) for i in (c.improvement_low, c.improvement_high)))
                    if c.rounds > 1 else None)
        figure = {"metric": c.metric.name, "baseline": c.baseline, "observed": c.observed, "ratio": ratio,
                  "improvement": c.improvement, "interval": interval, "rounds": c.rounds,
                  "confidence": c.confidence, "satisfied": c.satisfied}
        spread = (f"{c.confidence:.0%} interval x{interval[0]:.3f}..x{interval[1]:.3f}, {c.rounds} rounds"
                  if interval else "one round, no interval")
        text = f"{c.metric.name} {c.baseline:.4g} -> {c.observed:.4g} (x{ratio:.3f}; {spread})"
        guard = next((g for g in goal.guards if g.metric == c.metric), None) if goal else None
        if guard is not None:
            figure["limit"] = guard.ratio_to_baseline
            worse_end = interval[0] if interval else ratio  # guards are at-least bounds
            figure["margin"] = worse_end / guard.ratio_to_baseline - 1
            text = f"guard {text}, limit x{guard.ratio_to_baseline:g}: margin {figure['margin']:+.1%}"
        else:
            text = f"success {text}"
        figures.append({**figure, "text": text})
    return figures


async def tune(fleet: Fleet, host: str, on_event: Callable[[cycle_pb2.CycleEvent], None] = lambda _: None,
               policy: policy_pb2.PolicyArtifact | None = None) -> CycleRun:
    """A Tune of `host` through the first planner replica (the stack's own `planner`), of `policy`
    with its parameters when given."""
    run = CycleRun(host)
    request = planner_pb2.TuneRequest(host_id=host, budget=1)
    if policy is not None:
        request.policy = policy.name
        for name, value in policy.parameters.items():
            request.parameters[name].CopyFrom(value)
    try:
        async with rpc.channel(fleet.planner_addrs[0]) as channel:
            stub = planner_pb2_grpc.PlannerServiceStub(channel)
            # One kept trial per host: this run checks the fleet (a verified sched_ext scheduler in
            # every VM's kernel, the drills), not the search, which tests/test_planner.py covers.
            async for event in stub.Tune(request):
                run.events.append(event)
                say(f"    {host} {_stage(event)}: {event.message}")
                on_event(event)
    except grpc.aio.AioRpcError as exc:
        run.error = f"{exc.code().name}: {exc.details()}"
        say(f"    {host}: the Tune call ended with {run.error}")
    return run


def _stage(event: cycle_pb2.CycleEvent) -> str:
    stage = C.CycleStage.Name(event.stage).removeprefix("CYCLE_STAGE_").lower()
    return f"{stage} {common_pb2.StageStatus.Name(event.status).removeprefix('STAGE_STATUS_').lower()}"


async def executor_call(host: VmHost, method: str, request):
    async with rpc.channel(host.executor_addr) as channel:
        return await getattr(executor_pb2_grpc.ExecutorServiceStub(channel), method)(request)


async def outcomes(fleet: Fleet, host: str) -> list[deployment_pb2.Outcome]:
    async with rpc.channel(fleet.settings.learner_addr) as channel:
        response = await learner_pb2_grpc.LearnerServiceStub(channel).History(
            learner_pb2.LearnerHistoryRequest(host_id=host, limit=1000))
    return list(response.outcomes)


async def audit(fleet: Fleet, host: str = "") -> list[deployment_pb2.AuditRecord]:
    return list((await fleet.planner_call("ListAudit", planner_pb2.ListAuditRequest(host_id=host, limit=1000))).records)


async def rollout_call(fleet: Fleet, method: str, request, addr: str = ""):
    """A rollout call to the planner replica at `addr` (else the first that answers)."""
    if not addr:
        return await fleet.planner_call(method, request, rollout_pb2_grpc.RolloutServiceStub)
    async with rpc.channel(addr) as channel:
        return await getattr(rollout_pb2_grpc.RolloutServiceStub(channel), method)(request)


async def until_or_none(probe: Callable, timeout_s: float, interval_s: float = 1.0):
    """`until`, but None after `timeout_s`."""
    try:
        return await until("", probe, timeout_s, interval_s)
    except CheckFailed:
        return None


def in_canary(event: cycle_pb2.CycleEvent) -> bool:
    return event.HasField("deployment") and event.deployment.deployment.state == S.DEPLOYMENT_STATE_CANARY


async def until(what: str, probe: Callable, timeout_s: float, interval_s: float = 1.0):
    """Poll `probe` (a coroutine function; errors count as not yet) until it returns something
    true; CheckFailed naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            if result := await probe():
                return result
        except (grpc.aio.AioRpcError, OSError, FleetError) as exc:
            last = exc
        await asyncio.sleep(interval_s)
    raise CheckFailed(f"{what}: not within {timeout_s:.0f} s" + (f" (last error: {last})" if last else ""))


class Scenario:
    """The steps, in order; each prints its evidence and fills `report`."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.hosts = {h.name: h for h in fleet.hosts}
        self.report: dict = {"hosts": list(self.hosts), "steps": {}}
        self.runs: dict[str, CycleRun] = {}
        # What each host's kernel must run now: the policy its last kept cycle (or rollout) deployed.
        self.in_force: dict[str, policy_pb2.PolicyArtifact] = {}
        self.started = time.monotonic()
        self.verified_at = 0.0  # when a cycle was last verified (a planner remembers approvals)

    async def _tune(self, host: str, on_event: Callable[[cycle_pb2.CycleEvent], None] = lambda _: None,
                    policy: policy_pb2.PolicyArtifact | None = None) -> CycleRun:
        run = await tune(self.fleet, host, on_event, policy)
        verified = [e.at.ToNanoseconds() / 1e9 for e in run.events if e.stage == C.CYCLE_STAGE_VERIFY]
        self.verified_at = max([self.verified_at, *verified])
        return run

    def step(self, title: str) -> dict:
        say(f"\n== {title}")
        self.report["steps"][title] = entry = {"started_s": round(time.monotonic() - self.started, 1)}
        return entry

    async def run(self) -> dict:
        await self.tune_every_host()
        await self.outcomes_in_the_learner()
        await self.traces_cross_the_vm_boundary()
        await self.kill_an_executor(self.hosts[HOSTS[0]])
        await self.kill_a_planner_replica_mid_canary(self.hosts[HOSTS[0]])
        await self.kill_the_verifier_and_the_learner_mid_cycle(self.hosts[HOSTS[1]])
        await self.kill_the_replica_running_a_rollout()
        await self.kill_a_nats_node_mid_canary(self.hosts[HOSTS[1]])
        await self.end_state()
        self.report["total_s"] = round(time.monotonic() - self.started, 1)
        return self.report

    async def tune_every_host(self) -> None:
        entry = self.step("the planner tunes each host")
        for host in self.hosts.values():
            entry[host.name] = await self._tune_until_kept(host)

    async def _tune_until_kept(self, host: VmHost) -> dict:
        """Cycles on `host` until one keeps a policy (at most CYCLES_PER_HOST). A cycle that keeps
        nothing is the product working: the VMs and the central services share this machine's
        two CPUs, a VM whose emulated CPUs stall during its canary can come near the tenth of the
        batch's share the guard allows (the worst seen 0.976 -> 0.901, during the planner restart),
        and a stalled sandbox VM can miss the sched_ext watchdog in the verifier's dynamic test.
        Every extra cycle is reported."""
        await host.start_workload(lambda line: say(f"  {line}"))
        for attempt in range(1, CYCLES_PER_HOST + 1):
            run = await self._tune(host.name)
            result = run.result
            kept = result is not None and result.status == common_pb2.STAGE_STATUS_SUCCEEDED
            if kept or run.error or attempt == CYCLES_PER_HOST:
                break
            why = result.message if result else "no result"
            say(f"  {host.name}: the cycle kept nothing ({why}); another cycle")
            self.report.setdefault("retried", []).append({"host": host.name, "reason": why})
        self.runs[host.name] = run
        kept = await self._kept_and_enabled(host, run)
        self.in_force[host.name] = run.verdict.artifact
        return kept

    async def _kept_and_enabled(self, host: VmHost, run: CycleRun) -> dict:
        result, verdict = run.result, run.verdict
        check(not run.error and result is not None and result.status == common_pb2.STAGE_STATUS_SUCCEEDED,
              f"{host.name}: the cycle kept no policy ({run.error or (result.message if result else 'no result')})")
        artifact = verdict.artifact
        check(artifact.WhichOneof("body") == "sched_ext",
              f"{host.name}: the planner chose {artifact.name}, not a sched_ext scheduler")
        state, ops = host.sched_ext()
        check(state == "enabled" and ops == artifact.sched_ext.ops_name,
              f"{host.name}: the kernel shows sched_ext {state!r} with ops {ops!r}, expected enabled with "
              f"{artifact.sched_ext.ops_name!r}")
        values = {k: params.text(v) for k, v in artifact.parameters.items()}
        say(f"  {host.name}: /sys/kernel/sched_ext/state = {state}, root/ops = {ops}")
        say(f"  {host.name}: {artifact.name} {values}, verdict {verdict.claims.verdict_id} signed by key "
            f"{verdict.claims.key_id}, deployment {run.deployment.deployment_id}: {result.message}")
        margins = canary_margins(run)
        for margin in margins:
            say(f"  {host.name}: {margin['text']}")
        return {"cycle_id": run.cycle_id, "trace_id": run.trace_id, "policy": artifact.name, "parameters": values,
                "verdict_id": verdict.claims.verdict_id, "deployment_id": run.deployment.deployment_id,
                "state": state, "ops": ops, "result": result.message, "canary": margins}

    async def outcomes_in_the_learner(self) -> None:
        entry = self.step("outcomes in the learner")
        for name, run in self.runs.items():
            wanted = run.deployment.deployment_id
            found = await until(f"the learner's outcome of {name}'s deployment {wanted}",
                                lambda name=name, wanted=wanted: self._outcome(name, wanted), 60)
            result = S.OutcomeResult.Name(found.result).removeprefix("OUTCOME_RESULT_").lower()
            check(found.result == S.OUTCOME_RESULT_KEPT, f"{name}: the learner has {result}, expected kept")
            success = found.success
            say(f"  {name}: outcome {found.outcome_id}: {found.policy_name} {result}, {success.metric.name} "
                f"{success.baseline:.4g} -> {success.observed:.4g} ({100 * success.improvement:+.0f} %)")
            entry[name] = {"outcome_id": found.outcome_id, "result": result, "metric": success.metric.name,
                           "baseline": success.baseline, "observed": success.observed}

    async def _outcome(self, host: str, deployment_id: str) -> deployment_pb2.Outcome | None:
        return next((o for o in await outcomes(self.fleet, host) if o.deployment_id == deployment_id), None)

    async def traces_cross_the_vm_boundary(self) -> None:
        entry = self.step("one trace per cycle, with spans from both sides of the VM boundary")
        for name, run in self.runs.items():
            await until(f"{name}'s cycle trace with its root and spans from inside the VM",
                        lambda name=name, run=run: self._trace(name, run.trace_id), 60, 2.0)
            await asyncio.sleep(TRACE_SETTLE_S)  # the last batches of spans, from both sides
            spans = tracestore.find_trace(tracestore.stored_spans(self.fleet.trace_dir), run.trace_id)
            roots = [s for s in spans if not s["parent_span_id"]]
            check(len(roots) == 1 and roots[0]["host_id"] == "central",
                  f"{name}: the trace has {len(roots)} roots, expected one: the planner's Tune")
            by = Counter(f"{s['service']}@{s['host_id']}" for s in spans)
            inside = {s["service"] for s in spans if s["host_id"] == name}
            check({"schedcp-observer", "schedcp-executor"} <= inside,
                  f"{name}: spans from inside the VM come only from {sorted(inside)}")
            say(f"  {name}: trace {run.trace_id}: {len(spans)} spans, root {roots[0]['name']}; "
                + ", ".join(f"{k} {v}" for k, v in sorted(by.items())))
            entry[name] = {"trace_id": run.trace_id, "spans": len(spans), "by_service": dict(by)}

    async def _trace(self, host: str, trace_id: str) -> list[dict] | None:
        """The trace once it holds its root (the Tune span, exported when the cycle ended) and
        the VM's executor spans (exported from inside the VM)."""
        spans = tracestore.find_trace(tracestore.stored_spans(self.fleet.trace_dir), trace_id)
        executor_spans = [s for s in spans if s["host_id"] == host and s["service"] == "schedcp-executor"]
        has_root = any(not s["parent_span_id"] for s in spans)
        return spans if executor_spans and has_root else None

    async def kill_an_executor(self, host: VmHost) -> None:
        entry = self.step(f"fault: kill -9 the executor in {host.name}")
        deployment_id = self.runs[host.name].deployment.deployment_id
        before = host.ask("state")
        killed = host.ask("kill", role=Role.EXECUTOR.value, signal=9)
        started = time.monotonic()
        after = await until(f"{host.name}'s kernel back on the fair class",
                            lambda: self._fair(host), FALLBACK_TIMEOUT_S, 0.1)
        fallback_s = time.monotonic() - started
        say(f"  {host.name}: executor pid {killed['pid']} killed (status {killed['status']}); sched_ext "
            f"{before['state']} ({before['ops']}) -> {after['state']} in {fallback_s:.1f} s, "
            f"loaders left: {after['loaders'] or 'none'}")
        host.ask("start", role=Role.EXECUTOR.value)
        status = await until(f"{host.name}'s executor serving again",
                             lambda: executor_call(host, "Status", executor_pb2.StatusRequest()), SETTLE_TIMEOUT_S, 2)
        check(not status.HasField("current") and status.journalled_changes == 0,
              f"{host.name}: the restarted executor reports {status.current.policy_name or 'changes'} in force")
        history = await executor_call(host, "History", executor_pb2.HistoryRequest(limit=5))
        last = history.events[-1]
        check(last.deployment.deployment_id == deployment_id
              and last.deployment.state == S.DEPLOYMENT_STATE_ROLLED_BACK,
              f"{host.name}: the killed deployment's record was not closed (last event: {last.message})")
        records = await until(f"the audit record of {deployment_id}'s end",
                              lambda: self._audited(host.name, deployment_id, S.AUDIT_ACTION_ROLLBACK), 60)
        say(f"  {host.name}: restarted executor: nothing in force, record closed: {last.message!r}; audit: "
            f"{records[-1].action and S.AuditAction.Name(records[-1].action)} by {records[-1].actor}")
        entry.update(fallback_s=round(fallback_s, 2), before=before["state"], after=after["state"],
                     closing_event=last.message)

    async def _fair(self, host: VmHost) -> dict | None:
        state = host.ask("state")
        return state if state["state"] == "disabled" and not state["loaders"] else None

    async def _audited(self, host: str, deployment_id: str, action: int) -> list | None:
        records = [r for r in await audit(self.fleet, host) if r.deployment_id == deployment_id and r.action == action]
        return records or None

    async def kill_a_planner_replica_mid_canary(self, host: VmHost) -> None:
        entry = self.step(f"fault: kill -9 the planner replica running {host.name}'s cycle, mid-canary")
        canary = asyncio.Event()
        task = asyncio.create_task(self._tune(host.name, lambda e: in_canary(e) and canary.set()))
        await self._wait(canary, f"{host.name}: the cycle never reached its canary")
        killed = self.fleet.stack.kill(Role.PLANNER.value)
        killed_at = time.time()
        say(f"  planner replica {killed.pid} killed (SIGKILL) mid-canary; the other replica serves on")
        run = await task
        closing = await until(f"the other replica closing cycle {run.cycle_id[:8]}'s record",
                              lambda: self._closed_by_another_replica(host.name, run.cycle_id), TAKEOVER_TIMEOUT_S, 0.5)
        takeover_s = closing.at.ToNanoseconds() / 1e9 - killed_at
        say(f"  {host.name}: the cycle's record closed {takeover_s:.1f} s after the kill (lease "
            f"{CENTRAL.planner_lease_s:g} s): {closing.message[:110]}...")
        ended = await self._finished_alone(host, run)
        await self.fleet.stack.restart(Role.PLANNER.value)
        say("  the killed replica started again")
        entry.update(takeover_s=round(takeover_s, 1), cycle_record=closing.message, **ended)
        await self._retune_unless_kept(host, run, ended, entry)

    async def _wait(self, event: asyncio.Event, failure: str) -> None:
        try:
            await asyncio.wait_for(event.wait(), SETTLE_TIMEOUT_S)
        except TimeoutError:
            raise CheckFailed(failure) from None

    async def _closed_by_another_replica(self, host: str, cycle_id: str) -> cycle_pb2.CycleEvent | None:
        last = await self._last_cycle_event(host, cycle_id)
        return last if last.stage == C.CYCLE_STAGE_RESULT and "closed by planner replica" in last.message else None

    async def _finished_alone(self, host: VmHost, run: CycleRun) -> dict:
        """The deployment a cycle started, finished by the host's executor without the planner:
        ended, its outcome in the learner, the kernel as the ending says."""
        deployment_id = run.deployment.deployment_id
        ended = await until(f"{host.name}'s executor finishing {deployment_id} without the planner",
                            lambda: self._ended(host, deployment_id), SETTLE_TIMEOUT_S, 2)
        state = S.DeploymentState.Name(ended.deployment.state).removeprefix("DEPLOYMENT_STATE_").lower()
        outcome = await until(f"the learner's outcome of {deployment_id}",
                              lambda: self._outcome(host.name, deployment_id), 60)
        kernel, ops = host.sched_ext()
        expected = ("enabled", run.verdict.artifact.sched_ext.ops_name) if ended.deployment.state == \
            S.DEPLOYMENT_STATE_KEPT else ("disabled", "")
        check((kernel, ops) == expected, f"{host.name}: the kernel shows {kernel} {ops!r} after the deployment "
                                         f"ended {state}, expected {expected}")
        say(f"  {host.name}: the executor finished {deployment_id} alone: {state} ({ended.message}); learner: "
            f"outcome {outcome.outcome_id}; sched_ext {kernel} ({ops or 'fair class'})")
        return {"deployment_id": deployment_id, "ended": state, "outcome": outcome.outcome_id, "kernel": kernel}

    async def _retune_unless_kept(self, host: VmHost, run: CycleRun, ended: dict, entry: dict) -> None:
        if ended["ended"] == "kept":
            self.runs[host.name], self.in_force[host.name] = run, run.verdict.artifact
            return
        # A drill's own load on this machine stalls the VMs' CPUs: a canary measured through it
        # may well fail. The host is tuned again.
        say(f"  {host.name}: tuned again")
        entry["tuned_again"] = await self._tune_until_kept(host)

    async def kill_the_verifier_and_the_learner_mid_cycle(self, host: VmHost) -> None:
        entry = self.step(f"fault: kill -9 the verifier, then the learner, during {host.name}'s cycle")
        await self._roll_back(host, "e2e: a fresh cycle for the verifier and learner drill")
        # A planner remembers an approval for a minute: the cycle must need the verifier.
        if (wait := MEMO_S + 1 - (time.time() - self.verified_at)) > 0:
            say(f"  waiting {wait:.0f} s: the planner remembers the last approval for {MEMO_S:g} s")
            await asyncio.sleep(wait)
        stack = self.fleet.stack
        killed = stack.kill(Role.VERIFIER.value)
        say(f"  verifier {killed.pid} killed (SIGKILL) as the cycle starts")
        # The verifier comes back a while after the cycle first needs it; the learner, killed
        # when the canary starts, once the cycle waits for it to apply the outcome.
        asked_while_down: list[bool] = []
        restarts: dict[str, asyncio.Task] = {}

        def watch(event: cycle_pb2.CycleEvent) -> None:
            if event.stage == C.CYCLE_STAGE_VERIFY and not asked_while_down:
                asked_while_down.append(event.status == common_pb2.STAGE_STATUS_STARTED)
                restarts[Role.VERIFIER.value] = asyncio.create_task(self._start_again(Role.VERIFIER.value,
                                                                                      VERIFIER_DOWN_S))
            if in_canary(event) and Role.LEARNER.value not in restarts:
                say(f"    learner {stack.kill(Role.LEARNER.value).pid} killed (SIGKILL) while the canary runs")
                restarts[Role.LEARNER.value] = asyncio.create_task(self._start_again(Role.LEARNER.value, 0,
                                                                                     after=learning))
            if event.stage == C.CYCLE_STAGE_LEARN and event.status == common_pb2.STAGE_STATUS_STARTED:
                learning.set()

        learning = asyncio.Event()
        run = await self._tune(host.name, watch)
        learning.set()  # a cycle that ended without a learn stage: the learner comes back now
        await asyncio.gather(*restarts.values())
        if Role.VERIFIER.value not in restarts:  # the cycle ended before it needed one
            await self._start_again(Role.VERIFIER.value, 0)
        verdicts = [e for e in run.events if e.stage == C.CYCLE_STAGE_VERIFY and e.verdict.summary]
        unreached = [e.message for e in verdicts if "UNAVAILABLE" in e.verdict.summary]
        check(run.result is not None and not run.error and run.verdict is not None and not unreached
              and asked_while_down[0], f"{host.name}: the cycle did not get through the verifier's restart: "
              f"{unreached or run.error or (run.result.message if run.result else 'no result')}")
        check(Role.LEARNER.value in restarts, f"{host.name}: the cycle never reached its canary "
                                              f"({run.result.message})")
        deployment_id = run.deployment.deployment_id
        outcome = await until(f"the restarted learner applying the outcome of {deployment_id}",
                              lambda: self._outcome(host.name, deployment_id), 120)
        learned = next((e.message for e in run.events if e.stage == C.CYCLE_STAGE_LEARN
                        and e.status != common_pb2.STAGE_STATUS_STARTED), "")
        say(f"  {host.name}: the verifier was asked while it was down and answered once it served again "
            f"({verdicts[0].message[:60]}...); the cycle ended: {run.result.message[:80]}...")
        say(f"  learner: outcome {outcome.outcome_id} applied after its restart; the cycle's learn stage: "
            f"{learned[:100]}")
        entry.update(verdict=verdicts[0].message,
                     result=run.result.message, outcome=outcome.outcome_id, learn=learned)
        kept = run.result.status == common_pb2.STAGE_STATUS_SUCCEEDED
        await self._retune_unless_kept(host, run, {"ended": "kept" if kept else "not kept"}, entry)

    async def _start_again(self, name: str, after_s: float, after: asyncio.Event | None = None) -> None:
        """Start a killed service again `after_s` seconds from now (or from when `after` is set)."""
        if after is not None:
            await after.wait()
        await asyncio.sleep(after_s)
        started = time.monotonic()
        await self.fleet.stack.restart(name)
        say(f"    {name} started again (serving after {time.monotonic() - started:.1f} s)")

    async def _roll_back(self, host: VmHost, reason: str) -> None:
        rolled = await executor_call(host, "Rollback", executor_pb2.RollbackRequest(reason=reason))
        check(host.sched_ext()[0] == "disabled", f"{host.name}: still on sched_ext after a rollback")
        say(f"  {host.name}: {rolled.message}")

    async def kill_the_replica_running_a_rollout(self) -> None:
        entry = self.step("fault: kill -9 the planner replica running a rollout, mid-canary")
        proven = await self._a_proven_policy()
        for host in self.hosts.values():
            await self._roll_back(host, "e2e: the hosts a rollout takes the proven policy to")
        before = {name: await self._deployment_ids(host) for name, host in self.hosts.items()}
        asked = self.fleet.planner_addrs[1]
        rollout = await rollout_call(self.fleet, "StartRollout", R.StartRolloutRequest(
            policy=proven.name, parameters=proven.parameters, selector="all", waves=["1", "100%"]), asked)
        rid = rollout.rollout_id
        say(f"  rollout {rid} of {proven.name} {params.pythons(proven.parameters)} started on the replica at {asked}")
        try:
            canary = await until("a host of the rollout's first wave in its canary", self._a_canary, SETTLE_TIMEOUT_S,
                                 0.5)
        except CheckFailed as exc:
            raise CheckFailed(f"{exc}; the rollout: {await self._rollout_said(rid)}") from exc
        killed = self.fleet.stack.kill(f"{Role.PLANNER.value}-2")
        killed_at = time.time()
        say(f"  {canary}'s canary runs: the replica running the rollout ({killed.pid}) killed (SIGKILL)")
        resumed = await until(f"another replica resuming rollout {rid}",
                              lambda: self._rollout_audit(rid, S.AUDIT_ACTION_ROLLOUT_RESUME), TAKEOVER_TIMEOUT_S)
        takeover_s = resumed.at.ToNanoseconds() / 1e9 - killed_at
        say(f"  taken over {takeover_s:.1f} s after the kill by {resumed.actor}: {resumed.reason[:100]}")
        final = await until(f"rollout {rid}'s end", lambda: self._rollout_ended(rid), 2 * SETTLE_TIMEOUT_S, 2)
        hosts = {h.host_id: h for h in final.hosts}
        check(final.state == R.ROLLOUT_STATE_COMPLETED and set(hosts) == set(self.hosts)
              and all(h.result == R.ROLLOUT_HOST_RESULT_KEPT for h in hosts.values()),
              f"rollout {rid} ended {R.RolloutState.Name(final.state)} ({final.reason}); hosts: "
              + "; ".join(f"{h.host_id} {R.RolloutHostResult.Name(h.result)} {h.message}" for h in final.hosts))
        for name, host in self.hosts.items():
            await self._deployed_once_and_closed(host, hosts[name], proven, before[name])
        await self.fleet.stack.restart(f"{Role.PLANNER.value}-2")
        say("  the killed replica started again")
        entry.update(rollout_id=rid, takeover_s=round(takeover_s, 1), resumed_by=resumed.actor,
                     hosts={n: h.deployment_id for n, h in hosts.items()})

    async def _a_proven_policy(self) -> policy_pb2.PolicyArtifact:
        """A policy the hosts run that the learner calls proven in their class. Proof takes three
        outcomes in one workload cell, and the same workload's outcomes can straddle a cell's edge
        (cpu_pressure 0.79-1.00 around 0.875, two and two, in one run): while nothing is proven,
        every host runs the policy it has once more (at most PROOF_ROUNDS times)."""
        for round_ in range(PROOF_ROUNDS):
            if proven := await until_or_none(self._proven_in_force, PROOF_WAIT_S):
                return proven
            say(f"  no policy proven yet: each host runs the one it has once more ({round_ + 1} of {PROOF_ROUNDS})")
            await asyncio.gather(*(self._once_more(host) for host in self.hosts.values()))
        return await until("a policy the learner calls proven in the hosts' class", self._proven_in_force,
                           PROOF_WAIT_S)

    async def _once_more(self, host: VmHost) -> None:
        """Another outcome of the policy the host runs: taken off, then deployed again with its
        canary (a cycle asked for the policy in force only says it is running, and adds none)."""
        for _ in range(3):  # a rollback puts the last known good back: until nothing is in force
            if not (await executor_call(host, "Status", executor_pb2.StatusRequest())).HasField("current"):
                break
            await executor_call(host, "Rollback", executor_pb2.RollbackRequest(
                reason="e2e: the policy once more, for the learner's proof"))
        await self._tune(host.name, policy=self.in_force[host.name])

    async def _proven_in_force(self) -> policy_pb2.PolicyArtifact | None:
        """A policy a host runs that is proven with its parameters (what a rollout may start with)."""
        async with rpc.channel(self.fleet.settings.learner_addr) as channel:
            learner = learner_pb2_grpc.LearnerServiceStub(channel)
            for artifact in self.in_force.values():
                record = await learner.GetPolicy(learner_pb2.GetPolicyRequest(name=artifact.name))
                if any(e.proven and params.within(artifact.parameters, e.parameters_key) for e in record.effects):
                    return artifact
        return None

    async def _a_canary(self) -> str | None:
        for name, host in self.hosts.items():
            status = await executor_call(host, "Status", executor_pb2.StatusRequest())
            if status.current.state == S.DEPLOYMENT_STATE_CANARY:
                return name
        return None

    async def _rollout_said(self, rollout_id: str) -> str:
        """The rollout's state, its hosts' results and its audit trail, for a failure's message."""
        try:
            rollout = await rollout_call(self.fleet, "GetRollout", R.GetRolloutRequest(rollout_id=rollout_id,
                                                                                      with_hosts=True))
            trail = [f"{deployment_pb2.AuditAction.Name(r.action)} {r.reason[:120]}" for r in await audit(self.fleet)
                     if r.rollout_id == rollout_id]
        except (grpc.aio.AioRpcError, FleetError) as exc:
            return f"could not be read ({exc})"
        hosts = "; ".join(f"{h.host_id} {R.RolloutHostResult.Name(h.result)} {h.message[:120]}" for h in rollout.hosts)
        return f"{R.RolloutState.Name(rollout.state)} ({rollout.reason}); hosts: {hosts or 'none'}; audit: {trail}"

    async def _rollout_audit(self, rollout_id: str, action: int) -> deployment_pb2.AuditRecord | None:
        return next((r for r in await audit(self.fleet) if r.rollout_id == rollout_id and r.action == action), None)

    async def _rollout_ended(self, rollout_id: str) -> R.Rollout | None:
        rollout = await rollout_call(self.fleet, "GetRollout", R.GetRolloutRequest(rollout_id=rollout_id,
                                                                                  with_hosts=True))
        return rollout if rollout.state in (R.ROLLOUT_STATE_COMPLETED, R.ROLLOUT_STATE_HALTED,
                                            R.ROLLOUT_STATE_ABORTED) else None

    async def _deployment_ids(self, host: VmHost) -> set[str]:
        history = await executor_call(host, "History", executor_pb2.HistoryRequest(limit=HISTORY_EVENTS))
        return {e.deployment.deployment_id for e in history.events}

    async def _deployed_once_and_closed(self, host: VmHost, part: R.RolloutHost, policy: policy_pb2.PolicyArtifact,
                                        before: set[str]) -> None:
        """The rollout deployed the policy to the host once (its executor saw no other deployment
        since it started), the cycle's record is closed, and the kernel runs the policy."""
        deployments = await self._deployment_ids(host) - before
        check(deployments == {part.deployment_id}, f"{host.name}: deployments {sorted(deployments)} since the "
                                                    f"rollout started, expected only {part.deployment_id}")
        closing = await self._last_cycle_event(host.name, part.cycle_id)
        check(closing.stage == C.CYCLE_STAGE_RESULT, f"{host.name}: the rollout's cycle record ends with "
                                                     f"{_stage(closing)}: {closing.message}")
        state, ops = host.sched_ext()
        check((state, ops) == ("enabled", policy.sched_ext.ops_name),
              f"{host.name}: the kernel shows {state} {ops!r} after the rollout kept {policy.name}")
        say(f"  {host.name}: deployed once ({part.deployment_id}, kept), its cycle's record closed "
            f"({closing.message[:70]}...), sched_ext {state} ({ops})")
        self.in_force[host.name] = policy

    async def _ended(self, host: VmHost, deployment_id: str) -> deployment_pb2.DeploymentEvent | None:
        history = await executor_call(host, "History", executor_pb2.HistoryRequest(limit=20))
        terminal = (S.DEPLOYMENT_STATE_KEPT, S.DEPLOYMENT_STATE_ROLLED_BACK, S.DEPLOYMENT_STATE_FAILED,
                    S.DEPLOYMENT_STATE_EJECTED)
        return next((e for e in reversed(history.events) if e.deployment.deployment_id == deployment_id
                     and e.deployment.state in terminal), None)

    async def _last_cycle_event(self, host: str, cycle_id: str) -> cycle_pb2.CycleEvent:
        """The newest event of a cycle as JetStream holds it (read as the operator)."""
        bus = await self._operator_bus()
        try:
            return await bus.last_message(topology.subject(topology.Kind.CYCLE, host, cycle_id), cycle_pb2.CycleEvent)
        finally:
            await bus.close()

    async def _operator_bus(self) -> busmod.Bus:
        settings = self.fleet.settings.model_copy(update={
            "nats_user": nats_auth.OPERATOR,
            "nats_password_file": str(nats_auth.password_file(self.fleet.stack.auth_dir, nats_auth.OPERATOR))})
        return await busmod.Bus.connect(settings.nats_url, "e2e", 10, **nats_auth.connect_options(settings))

    async def kill_a_nats_node_mid_canary(self, host: VmHost) -> None:
        entry = self.step(f"fault: kill -9 the nats-server leading the cycle stream, mid-canary on {host.name}")
        before = await self._durable()
        await self._roll_back(host, "e2e: a fresh cycle for the nats-server drill")
        canary = asyncio.Event()
        task = asyncio.create_task(self._tune(host.name, lambda e: in_canary(e) and canary.set()))
        await self._wait(canary, f"{host.name}: the cycle never reached its canary")
        node = await until("the cycle stream's leader", self._cycle_stream_leader, SETTLE_TIMEOUT_S, 0.5)
        killed = self.fleet.stack.kill(node)
        say(f"  {node} ({killed.pid}), the cycle stream's leader, killed (SIGKILL) mid-canary")
        run = await task
        check(not run.error and run.result is not None,
              f"{host.name}: the cycle did not complete without {node}: {run.error or 'no result'}")
        say(f"  {host.name}: the cycle completed through the other two nodes: {run.result.message[:90]}...")
        await until(f"the learner's outcome of {run.deployment.deployment_id}",
                    lambda: self._outcome(host.name, run.deployment.deployment_id), 60)
        after = await self._durable()
        lost = {kind: sorted(before[kind] - after[kind]) for kind in before if before[kind] - after[kind]}
        check(not lost, f"lost while {node} was down: {lost}")
        started = time.monotonic()
        await self.fleet.stack.restart(node)
        again = await until("every record readable with the node back", self._durable, SETTLE_TIMEOUT_S, 2)
        gone = {kind: sorted(after[kind] - again[kind]) for kind in after if after[kind] - again[kind]}
        check(not gone, f"lost when {node} came back: {gone}")
        counts = {kind: len(ids) for kind, ids in after.items()}
        say(f"  nothing lost: {counts}; {node} back in {time.monotonic() - started:.1f} s")
        entry.update(node=node, result=run.result.message, records=counts)
        kept = run.result.status == common_pb2.STAGE_STATUS_SUCCEEDED
        await self._retune_unless_kept(host, run, {"ended": "kept" if kept else "not kept"}, entry)

    async def _cycle_stream_leader(self) -> str | None:
        """The local stack's name of the nats-server leading the cycle stream (None during an
        election)."""
        bus = await self._operator_bus()
        try:
            stream = topology.stream_for(topology.subject(topology.Kind.CYCLE, HOSTS[0], "x"))
            leader = (await bus.js.stream_info(stream.name)).cluster.leader
        finally:
            await bus.close()
        return self.fleet.stack.nats_node_of_server(leader) if leader else None

    async def _durable(self) -> dict[str, set[str]]:
        """What JetStream holds that must never be lost: audit records, outcomes, the learner's
        policies, rollouts (by id and state)."""
        records = {"audit records": {r.record_id for r in await audit(self.fleet)}}
        records["outcomes"] = {o.outcome_id for name in self.hosts for o in await outcomes(self.fleet, name)}
        async with rpc.channel(self.fleet.settings.learner_addr) as channel:
            listed = await learner_pb2_grpc.LearnerServiceStub(channel).ListPolicies(learner_pb2.ListPoliciesRequest())
        records["policies"] = {p.metadata.name for p in listed.policies}
        rollouts = await rollout_call(self.fleet, "ListRollouts", R.ListRolloutsRequest())
        records["rollouts"] = {f"{r.rollout_id} {R.RolloutState.Name(r.state)}" for r in rollouts.rollouts}
        return records

    async def end_state(self) -> None:
        entry = self.step("end state")
        for name, host in self.hosts.items():
            status = await executor_call(host, "Status", executor_pb2.StatusRequest())
            state, ops = host.sched_ext()
            current = status.current
            check(current.state == S.DEPLOYMENT_STATE_KEPT and current.backend == "sched_ext",
                  f"{name}: the executor reports {current.policy_name or 'nothing'} in force")
            expected_ops = self.in_force[name].sched_ext.ops_name
            check(state == "enabled" and ops == expected_ops and status.journalled_changes == 0,
                  f"{name}: the kernel shows {state} {ops!r}, the executor {current.policy_name}")
            say(f"  {name}: {current.policy_name} kept (deployment {current.deployment_id}, verdict "
                f"{current.verdict_id}); /sys/kernel/sched_ext/state = {state}, root/ops = {ops}")
            entry[name] = {"policy": current.policy_name, "deployment_id": current.deployment_id, "state": state,
                           "ops": ops}


def last_words(work: Path, per_file: int = 4) -> str:
    """The last warnings and errors of every service log and the last lines of each console:
    what a failed run's output should carry when only its tail is kept (CI)."""
    out = ["== what the logs said last"]
    for log in sorted([*(work / "central" / "logs").glob("*.log"), *work.glob("*.observer.log"),
                       *work.glob("*.executor.log")]):
        lines = [line for line in log.read_text(errors="replace").splitlines()
                 if " WARNING " in line or " ERROR " in line or "Traceback" in line]
        out += [f"  {log.name}: {line[:300]}" for line in lines[-per_file:]]
    for console in sorted(work.glob("*.console.log")):
        tail = console.read_text(errors="replace").splitlines()[-per_file:]
        out += [f"  {console.name}: {line[:200]}" for line in tail]
    return "\n".join(out)


async def main_async(args: argparse.Namespace) -> int:
    work = Path(args.work or tempfile.mkdtemp(prefix="schedcp-e2e-"))
    started = time.monotonic()
    say(f"schedcp fleet end to end: {len(HOSTS)} VM hosts, central services on this machine (work dir {work})")
    try:
        async with Fleet(work, list(HOSTS), progress=lambda line: say(f"  {line}"), central=CENTRAL) as fleet:
            report = await Scenario(fleet).run()
    except (CheckFailed, FleetError, BuildError, StartupError) as exc:
        say("\n" + last_words(work))
        say(f"\nE2E FAILED after {time.monotonic() - started:.0f} s: {exc}\nlogs: {work}/central/logs, the VMs' "
            f"services: {work}/*.observer.log and *.executor.log, consoles: {work}/*.console.log")
        return 1
    report["wall_s"] = round(time.monotonic() - started, 1)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1) + "\n")
    say(f"\nE2E PASSED in {report['wall_s']:.0f} s (scenario {report['total_s']:.0f} s)")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m harness.e2e", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", help="directory for the run's state, logs and VM consoles (default: a new "
                                       "temporary one; emptied first)")
    parser.add_argument("--report", help="write the evidence as JSON here")
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
