"""`make e2e`: the fleet end to end. Two micro-VM hosts on the pinned sched_ext kernel,
each with its own observer and executor, and the central planner, verifier and learner on this
machine (harness/fleet.py). Each VM runs a 1 kHz latency probe beside CPU batch.

1. The planner tunes each host: goal inference from the VM's profile, a library sched_ext policy
   with parameters for the goal, verification (static checks, the kernel's verifier and dynamic
   tests in the verifier's own sandbox VM, a signed verdict), deployment by the VM's executor
   with a canary, the outcome to the learner.
2. Evidence: /sys/kernel/sched_ext/state and root/ops read inside each VM, the outcomes in the
   learner, and each cycle's trace holding spans from both sides of the VM boundary.
3. Faults, each with what it must leave behind: the executor in one VM killed (the kernel goes
   back to the fair class by itself; the restarted executor closes the deployment's record);
   the planner restarted while a canary runs (the executor finishes the deployment alone, its
   outcome reaches the learner, the cycle's record is closed); nats-server restarted (nothing
   JetStream holds is lost, every service reconnects, a cycle runs through it).
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

from harness.fleet import Fleet, FleetError, VmHost
from schedcp.cli import tracestore
from schedcp.domain import params
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
)

HOSTS = ("vm-a", "vm-b")
S = deployment_pb2
C = cycle_pb2
FALLBACK_TIMEOUT_S = 30.0
SETTLE_TIMEOUT_S = 300.0
CYCLES_PER_HOST = 3
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


async def tune(fleet: Fleet, host: str, on_event: Callable[[cycle_pb2.CycleEvent], None] = lambda _: None,
               policy: str = "") -> CycleRun:
    run = CycleRun(host)
    try:
        async with rpc.channel(fleet.settings.planner_addr) as channel:
            stub = planner_pb2_grpc.PlannerServiceStub(channel)
            # One kept trial per host: this run checks the fleet (a verified sched_ext scheduler in
            # every VM's kernel, the drills), not the search, which tests/test_planner.py covers.
            async for event in stub.Tune(planner_pb2.TuneRequest(host_id=host, policy=policy, budget=1)):
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
    async with rpc.channel(fleet.settings.planner_addr) as channel:
        response = await planner_pb2_grpc.PlannerServiceStub(channel).ListAudit(
            planner_pb2.ListAuditRequest(host_id=host, limit=1000))
    return list(response.records)


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
        self.started = time.monotonic()

    def step(self, title: str) -> dict:
        say(f"\n== {title}")
        self.report["steps"][title] = entry = {"started_s": round(time.monotonic() - self.started, 1)}
        return entry

    async def run(self) -> dict:
        await self.tune_every_host()
        await self.outcomes_in_the_learner()
        await self.traces_cross_the_vm_boundary()
        await self.kill_an_executor(self.hosts[HOSTS[0]])
        await self.restart_the_planner_mid_cycle(self.hosts[HOSTS[0]])
        await self.restart_nats(self.hosts[HOSTS[1]])
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
            run = await tune(self.fleet, host.name)
            result = run.result
            kept = result is not None and result.status == common_pb2.STAGE_STATUS_SUCCEEDED
            if kept or run.error or attempt == CYCLES_PER_HOST:
                break
            why = result.message if result else "no result"
            say(f"  {host.name}: the cycle kept nothing ({why}); another cycle")
            self.report.setdefault("retried", []).append({"host": host.name, "reason": why})
        self.runs[host.name] = run
        return await self._kept_and_enabled(host, run)

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
        return {"cycle_id": run.cycle_id, "trace_id": run.trace_id, "policy": artifact.name, "parameters": values,
                "verdict_id": verdict.claims.verdict_id, "deployment_id": run.deployment.deployment_id,
                "state": state, "ops": ops, "result": result.message}

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

    async def restart_the_planner_mid_cycle(self, host: VmHost) -> None:
        entry = self.step(f"fault: restart the planner while {host.name}'s canary runs")
        in_canary = asyncio.Event()

        def watch(event: cycle_pb2.CycleEvent) -> None:
            if event.HasField("deployment") and event.deployment.deployment.state == S.DEPLOYMENT_STATE_CANARY:
                in_canary.set()

        task = asyncio.create_task(tune(self.fleet, host.name, watch))
        try:
            await asyncio.wait_for(in_canary.wait(), SETTLE_TIMEOUT_S)
        except TimeoutError:
            raise CheckFailed(f"{host.name}: the cycle never reached its canary") from None
        started = time.monotonic()
        await self.fleet.stack.restart(Role.PLANNER.value)
        say(f"  planner restarted (SIGTERM, then started again) in {time.monotonic() - started:.1f} s, "
            "mid-canary")
        run = await task
        deployment_id = run.deployment.deployment_id
        ended = await until(f"{host.name}'s executor finishing {deployment_id} without the planner",
                            lambda: self._ended(host, deployment_id), SETTLE_TIMEOUT_S, 2)
        state = S.DeploymentState.Name(ended.deployment.state).removeprefix("DEPLOYMENT_STATE_").lower()
        outcome = await until(f"the learner's outcome of {deployment_id}",
                              lambda: self._outcome(host.name, deployment_id), 60)
        closing = await self._last_cycle_event(host.name, run.cycle_id)
        check(closing.stage == C.CYCLE_STAGE_RESULT and "interrupted" in closing.message,
              f"the interrupted cycle's record ends with {_stage(closing)}: {closing.message}")
        kernel, ops = host.sched_ext()
        expected = ("enabled", run.verdict.artifact.sched_ext.ops_name) if ended.deployment.state == \
            S.DEPLOYMENT_STATE_KEPT else ("disabled", "")
        check((kernel, ops) == expected, f"{host.name}: the kernel shows {kernel} {ops!r} after the deployment "
                                         f"ended {state}, expected {expected}")
        hosts = {r.host_id for r in await self.fleet.registrations()}
        check(set(self.hosts) <= hosts, f"the restarted planner sees hosts {sorted(hosts)}")
        say(f"  {host.name}: the Tune call ended with {run.error or 'its result'}; the executor finished "
            f"{deployment_id} alone: {state} ({ended.message})")
        say(f"  learner: outcome {outcome.outcome_id}; the cycle's record ends: {closing.message[:90]}...")
        say(f"  {host.name}: sched_ext {kernel} ({ops or 'fair class'}); the planner serves again and sees "
            f"{', '.join(sorted(hosts))}")
        entry.update(deployment_id=deployment_id, ended=state, outcome=outcome.outcome_id, kernel=kernel,
                     cycle_record=closing.message)
        if ended.deployment.state == S.DEPLOYMENT_STATE_KEPT:
            self.runs[host.name] = run
        else:
            # The restart's own load on this machine stalls the VMs' CPUs: a canary measured
            # through it may well fail. The restarted planner tunes the host again.
            say(f"  {host.name}: the restarted planner tunes it again")
            entry["tuned_again"] = await self._tune_until_kept(host)

    async def _ended(self, host: VmHost, deployment_id: str) -> deployment_pb2.DeploymentEvent | None:
        history = await executor_call(host, "History", executor_pb2.HistoryRequest(limit=20))
        terminal = (S.DEPLOYMENT_STATE_KEPT, S.DEPLOYMENT_STATE_ROLLED_BACK, S.DEPLOYMENT_STATE_FAILED,
                    S.DEPLOYMENT_STATE_EJECTED)
        return next((e for e in reversed(history.events) if e.deployment.deployment_id == deployment_id
                     and e.deployment.state in terminal), None)

    async def _last_cycle_event(self, host: str, cycle_id: str) -> cycle_pb2.CycleEvent:
        """The newest event of a cycle as JetStream holds it (read as the operator)."""
        settings = self.fleet.settings.model_copy(update={
            "nats_user": nats_auth.OPERATOR,
            "nats_password_file": str(nats_auth.password_file(self.fleet.stack.auth_dir, nats_auth.OPERATOR))})
        bus = await busmod.Bus.connect(settings.nats_url, "e2e", 10, **nats_auth.connect_options(settings))
        try:
            return await bus.last_message(topology.subject(topology.Kind.CYCLE, host, cycle_id), cycle_pb2.CycleEvent)
        finally:
            await bus.close()

    async def restart_nats(self, host: VmHost) -> None:
        entry = self.step("fault: restart nats-server")
        before = await self._durable_counts()
        started = time.monotonic()
        await self.fleet.stack.restart("nats")
        say(f"  nats-server restarted in {time.monotonic() - started:.1f} s (same JetStream store)")
        # The registry is in JetStream too: what it holds now was written before the restart (the
        # guests' clocks are their own, so no comparison with this machine's).
        stale = await until("the planner reading the registry again", self._last_seen, SETTLE_TIMEOUT_S, 2)
        await until("every host's observer registering again", lambda: self._reregistered(stale),
                    SETTLE_TIMEOUT_S, 2)
        after = await self._durable_counts()
        check(after == before, f"JetStream lost records across the restart: before {before}, after {after}")
        say(f"  kept across the restart: {after}; every observer registered again")
        rolled = await executor_call(host, "Rollback", executor_pb2.RollbackRequest(reason="e2e: a fresh cycle "
                                                                                           "through the new server"))
        check(host.sched_ext()[0] == "disabled", f"{host.name}: still on sched_ext after a rollback")
        say(f"  {host.name}: {rolled.message}; tuning it again through the restarted server")
        entry[host.name] = await self._tune_until_kept(host)
        run = self.runs[host.name]
        await until(f"the learner's outcome of {run.deployment.deployment_id}",
                    lambda: self._outcome(host.name, run.deployment.deployment_id), 60)
        final = await self._durable_counts()
        say(f"  after the new cycle: {final}")
        entry.update(before=before, after=after, after_new_cycle=final)

    async def _durable_counts(self) -> dict[str, int]:
        counts = {"audit records": len(await audit(self.fleet))}
        for name in self.hosts:
            counts[f"outcomes {name}"] = len(await outcomes(self.fleet, name))
        return counts

    async def _last_seen(self) -> dict[str, int]:
        return {r.host_id: r.last_seen.ToNanoseconds() for r in await self.fleet.registrations()}

    async def _reregistered(self, stale: dict[str, int]) -> bool:
        seen = await self._last_seen()
        return all(seen.get(name, 0) > stale.get(name, 0) for name in self.hosts)

    async def end_state(self) -> None:
        entry = self.step("end state")
        for name, host in self.hosts.items():
            status = await executor_call(host, "Status", executor_pb2.StatusRequest())
            state, ops = host.sched_ext()
            current = status.current
            check(current.state == S.DEPLOYMENT_STATE_KEPT and current.backend == "sched_ext",
                  f"{name}: the executor reports {current.policy_name or 'nothing'} in force")
            expected_ops = self.runs[name].verdict.artifact.sched_ext.ops_name
            check(state == "enabled" and ops == expected_ops and status.journalled_changes == 0,
                  f"{name}: the kernel shows {state} {ops!r}, the executor {current.policy_name}")
            say(f"  {name}: {current.policy_name} kept (deployment {current.deployment_id}, verdict "
                f"{current.verdict_id}); /sys/kernel/sched_ext/state = {state}, root/ops = {ops}")
            entry[name] = {"policy": current.policy_name, "deployment_id": current.deployment_id, "state": state,
                           "ops": ops}


async def main_async(args: argparse.Namespace) -> int:
    work = Path(args.work or tempfile.mkdtemp(prefix="schedcp-e2e-"))
    started = time.monotonic()
    say(f"schedcp fleet end to end: {len(HOSTS)} VM hosts, central services on this machine (work dir {work})")
    try:
        async with Fleet(work, list(HOSTS), progress=lambda line: say(f"  {line}")) as fleet:
            report = await Scenario(fleet).run()
    except (CheckFailed, FleetError, BuildError, StartupError) as exc:
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
