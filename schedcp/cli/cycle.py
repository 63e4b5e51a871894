"""CLI commands around decision cycles: `tune` (live progress, before/after numbers), `deploy`
and `rollback` on a host, the policy repository (`policies`, `policy show`), and `trace` (a
cycle's span tree from the local trace store or Jaeger)."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from rich.table import Table

from schedcp.cli import tracestore
from schedcp.cli.console import err, out, print_message, say
from schedcp.cli.console import table as table_of
from schedcp.cli.demo import DemoWorkload
from schedcp.cli.stack import LocalStack
from schedcp.domain import matchers, params
from schedcp.runtime import rpc
from schedcp.runtime.config import MAX_TUNE_BUDGET, Settings
from schedcp.runtime.errors import EXIT_FAILED, DependencyUnavailable, NotFound
from schedcp.v1 import (
    common_pb2,
    cycle_pb2,
    deployment_pb2,
    executor_pb2,
    executor_pb2_grpc,
    goal_pb2,
    host_pb2,
    learner_pb2,
    learner_pb2_grpc,
    observer_pb2,
    observer_pb2_grpc,
    planner_pb2,
    planner_pb2_grpc,
    policy_pb2,
    profile_pb2,
)

Add = Callable[[str, Callable[[Settings, argparse.Namespace], int], str], argparse.ArgumentParser]
T = TypeVar("T")


def ask(addr: str, timeout_s: float, invoke: Callable[[grpc.aio.Channel], Awaitable[T]]) -> T:
    """One call from the CLI to the service at `addr`, on an event loop of its own."""
    async def run() -> T:
        async with rpc.channel(addr, timeout_s) as channel:
            return await invoke(channel)

    return asyncio.run(run())


async def registered_host(settings: Settings, host_id: str) -> host_pb2.HostRegistration:
    """The host's registration, asked of the planner; NotFound names the registered ones."""
    async with rpc.channel(settings.planner_addr, settings.rpc_timeout_s) as channel:
        try:
            response = await planner_pb2_grpc.PlannerServiceStub(channel).ListHosts(
                planner_pb2.ListHostsRequest(host_ids=[host_id]))
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise NotFound(f"{exc.details()} (`schedcp hosts` lists them)") from None
            raise
    return response.hosts[0]


def _word(enum, value: int) -> str:
    """`CYCLE_STAGE_VERIFY` -> `verify`, `OBJECTIVE_TAIL_LATENCY` -> `tail latency` (the enum's
    prefix is what precedes its zero value's UNSPECIFIED)."""
    prefix = enum.Name(0).removesuffix("UNSPECIFIED")
    return enum.Name(value).removeprefix(prefix).lower().replace("_", " ")


# --- tune and deploy ----------------------------------------------------------------------------

def _metric_name(metric: common_pb2.MetricSpec) -> str:
    groups = ", ".join(matchers.describe(m) for m in metric.groups)
    return f"{metric.name} of {groups}" if groups else metric.name


def _comparisons_table(comparisons, title: str) -> Table:
    table = table_of(title, ("metric", "before", "after", "change", "interval", "met"))
    for c in comparisons:
        change = (c.observed - c.baseline) / c.baseline if c.baseline else 0.0
        table.add_row(_metric_name(c.metric), f"{c.baseline:.4g}", f"{c.observed:.4g}", f"{change:+.0%}",
                      _change_interval(c), "yes" if c.satisfied else "no")
    return table


def _change_interval(c: deployment_pb2.MetricComparison) -> str:
    """The interval of a canary judged over rounds, as a change like the column beside it (the
    comparison holds it as an improvement: negated for a lower-is-better metric); "-" for one round."""
    if c.rounds < 2:
        return "-"
    low, high = c.improvement_low, c.improvement_high
    if c.metric.direction == common_pb2.DIRECTION_LOWER_IS_BETTER:
        low, high = -high, -low
    earlier = f"; decided with {c.prior_rounds} earlier rounds, see the reason" if c.prior_rounds else ""
    return f"{low:+.0%}..{high:+.0%} ({c.confidence:.0%}, {c.rounds} rounds{earlier})"


def _print_event(event: cycle_pb2.CycleEvent, started: float) -> None:
    stage = _word(cycle_pb2.CycleStage, event.stage)
    status = _word(common_pb2.StageStatus, event.status)
    say(f"[{time.monotonic() - started:6.1f}s] {stage:<10} {status:<9} {event.message}", err)


def run_cycle(settings: Settings, request: planner_pb2.TuneRequest, as_json: bool) -> cycle_pb2.CycleEvent:
    """Run one cycle through the planner, showing each event as it comes, then the result
    (returned)."""
    started = time.monotonic()

    async def stream() -> cycle_pb2.CycleEvent | None:
        last = None
        async with rpc.channel(settings.planner_addr, settings.rpc_timeout_s) as channel:
            async for event in planner_pb2_grpc.PlannerServiceStub(channel).Tune(request):
                last = event
                if as_json:
                    print_message(event, indent=None)
                else:
                    _print_event(event, started)
        return last

    result = asyncio.run(stream())
    if result is None:
        raise DependencyUnavailable("the planner ended the cycle without a result")
    if not as_json:
        _print_result(result)
    return result


def _exit_code(result: cycle_pb2.CycleEvent) -> int:
    """0 when the cycle kept a policy."""
    return 0 if result.status == common_pb2.STAGE_STATUS_SUCCEEDED else EXIT_FAILED


def _print_result(result: cycle_pb2.CycleEvent) -> None:
    if result.HasField("deployment") and result.deployment.metrics:
        out.print(_comparisons_table(result.deployment.metrics, f"{result.host_id}: before and after "
                                     f"{result.deployment.deployment.policy_name}"))
    say(f"result: {result.message}")
    usage = result.llm_usage
    say(f"cycle {result.cycle_id}, trace {result.trace_id or '(not traced)'}; LLM calls {usage.calls}, "
        f"tokens {usage.input_tokens + usage.output_tokens}")
    if result.trace_id:
        say(f"the cycle's span tree: schedcp trace {result.cycle_id}")


def cmd_tune(settings: Settings, args: argparse.Namespace) -> int:
    host = args.host or settings.host_id
    if args.auto:
        return _set_auto(settings, host, args.auto == "on", args.json)
    if args.dry_run:
        return _plan(settings, planner_pb2.PlanRequest(host_id=host, intent=args.intent, provider=args.provider),
                     args.json)
    if not args.json:
        say(f"tuning {host}" + (f" for {args.intent!r}" if args.intent else "") + " ...", err)
    request = planner_pb2.TuneRequest(host_id=host, intent=args.intent, provider=args.provider, budget=args.budget)
    return _exit_code(run_cycle(settings, request, args.json))


def _set_auto(settings: Settings, host: str, enabled: bool, as_json: bool) -> int:
    request = planner_pb2.SetAutoRequest(host_id=host, enabled=enabled)
    response = ask(settings.planner_addr, settings.rpc_timeout_s,
                   lambda channel: planner_pb2_grpc.PlannerServiceStub(channel).SetAuto(request))
    if as_json:
        print_message(response, with_defaults=True)
    else:
        say(response.message)
    return 0


def _plan(settings: Settings, request: planner_pb2.PlanRequest, as_json: bool) -> int:
    # The planner profiles the host first (a couple of seconds).
    plan = ask(settings.planner_addr, settings.rpc_timeout_s + 10,
               lambda channel: planner_pb2_grpc.PlannerServiceStub(channel).Plan(request))
    if as_json:
        print_message(plan)
        return 0
    goal = plan.goal
    say(f"goal: {_word(goal_pb2.Objective, goal.objective)} ({goal.provider or 'no provider'}): {goal.rationale}")
    for number, candidate in enumerate(plan.candidates.candidates, 1):
        path = _word(cycle_pb2.SynthesisPath, candidate.path)
        say(f"  {number}. {candidate.artifact.name} ({path}): {candidate.rationale}")
    if not plan.candidates.candidates:
        say("  no candidate policy")
    say("dry run: nothing was verified or deployed (drop --dry-run to tune)", err)
    return 0


def cmd_deploy(settings: Settings, args: argparse.Namespace) -> int:
    request = planner_pb2.TuneRequest(host_id=args.host, intent=args.intent, policy=args.policy)
    for item in args.param:
        name, value = params.parse(item)
        request.parameters[name].CopyFrom(value)
    if not args.json:
        say(f"deploying {args.policy} on {args.host} (verified first, then a canary) ...", err)
    return _exit_code(run_cycle(settings, request, args.json))


def rollback(settings: Settings, host_id: str, reason: str) -> executor_pb2.RollbackResponse:
    async def call() -> executor_pb2.RollbackResponse:
        host = await registered_host(settings, host_id)
        async with rpc.channel(host.executor_addr, settings.rpc_timeout_s) as channel:
            return await executor_pb2_grpc.ExecutorServiceStub(channel).Rollback(
                executor_pb2.RollbackRequest(reason=reason, host_id=host.host_id))

    return asyncio.run(call())


def cmd_rollback(settings: Settings, args: argparse.Namespace) -> int:
    response = rollback(settings, args.host, args.reason)
    if args.json:
        print_message(response)
    else:
        say(response.message)
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    with DemoWorkload() as workload:
        where = f"the cgroup {workload.cgroup}" if workload.cgroup else "this process's cgroup"
        say(f"demo workload: cyclictest (a latency probe waking every ms) and {workload.hogs} stress-ng CPU "
            f"workers in {where}; letting it settle for {args.settle:g} s ...", err)
        time.sleep(args.settle)
        result = run_cycle(settings, planner_pb2.TuneRequest(host_id=settings.host_id, provider="rules"), args.json)
        if result.status == common_pb2.STAGE_STATUS_SUCCEEDED and not args.keep:
            undone = rollback(settings, settings.host_id, "the demo is over")
            if not args.json:
                say(f"rolled back to leave the host as it was: {undone.message}", err)
    if not args.json:
        say("demo workload stopped" + (f", {workload.cgroup} removed" if workload.cgroup else ""), err)
    # A canary that rolled back is an answer too (measured, and undone): the demo failed only
    # when the cycle measured nothing.
    measured = result.HasField("deployment") and bool(result.deployment.metrics)
    return 0 if measured else EXIT_FAILED


# --- the policy repository ----------------------------------------------------------------------

def _effects(record: policy_pb2.PolicyRecord) -> tuple[int, bool]:
    return sum(e.count for e in record.effects), any(e.proven for e in record.effects)


def cmd_policies(settings: Settings, args: argparse.Namespace) -> int:
    if args.search:
        return _search(settings, args.search, args.json)

    request = learner_pb2.ListPoliciesRequest()
    response = ask(settings.learner_addr, settings.rpc_timeout_s,
                   lambda channel: learner_pb2_grpc.LearnerServiceStub(channel).ListPolicies(request))
    if args.json:
        print_message(response)
        return 0
    table = table_of("policy repository",
                     ("policy", "kind", "origin", "goals", "outcomes", "proven", "description"))
    for record in response.policies:
        meta = record.metadata
        outcomes, proven = _effects(record)
        table.add_row(meta.name, _word(policy_pb2.PolicyKind, meta.kind), _word(policy_pb2.PolicyOrigin, record.origin),
                      ", ".join(meta.goals), str(outcomes), "yes" if proven else "", meta.description)
    out.print(table)
    measured = [(record.metadata.name, e) for record in response.policies for e in record.effects]
    if measured:
        out.print(_classes_table(measured))
    return 0


def _classes_table(measured: list[tuple[str, policy_pb2.EffectStats]]) -> Table:
    """The learner's statistics per host class and workload cluster (what a rollout is judged by)."""
    table = table_of("measured per host class and workload (the learner's statistics)",
                     ("policy", "parameters", "host class", "workload", "outcomes", "mean", "sd", "rollbacks",
                      "ejections", "proven"))
    for name, e in measured:
        table.add_row(name, e.parameters_key or "-", e.host_class or "-", e.signature_cluster, str(e.count),
                      f"{e.mean_improvement:+.0%}", f"{e.stddev_improvement:.0%}", str(e.rollbacks), str(e.ejections),
                      "yes" if e.proven else "")
    return table


def _search(settings: Settings, host_id: str, as_json: bool) -> int:
    async def fetch() -> learner_pb2.SearchPoliciesResponse:
        host = await registered_host(settings, host_id)
        request = observer_pb2.GetProfileRequest()
        request.window.FromSeconds(2)
        async with rpc.channel(host.observer_addr, settings.rpc_timeout_s + 2) as channel:
            profile: profile_pb2.WorkloadProfile = await observer_pb2_grpc.ObserverServiceStub(channel).GetProfile(
                request)
        async with rpc.channel(settings.learner_addr, settings.rpc_timeout_s) as channel:
            return await learner_pb2_grpc.LearnerServiceStub(channel).SearchPolicies(
                learner_pb2.SearchPoliciesRequest(signature=profile.signature, host=profile.host))

    if not as_json:
        say(f"profiling {host_id} for 2 s, then asking the learner for policies that fit ...", err)
    response = asyncio.run(fetch())
    if as_json:
        print_message(response)
        return 0
    table = table_of(f"policies for {host_id}'s workload, best first",
                     ("policy", "similarity", "expected", "confidence", "why"))
    for match in response.matches:
        table.add_row(match.policy.metadata.name, f"{match.similarity:.2f}", f"{match.expected_improvement:+.0%}",
                      f"{match.confidence:.2f}", match.reason)
    out.print(table)
    for avoid in response.avoid:
        say(f"avoid {avoid.policy_name}: {avoid.reason}")
    return 0


def cmd_policy(settings: Settings, args: argparse.Namespace) -> int:
    request = learner_pb2.GetPolicyRequest(name=args.name, version=args.version)
    record = ask(settings.learner_addr, settings.rpc_timeout_s,
                 lambda channel: learner_pb2_grpc.LearnerServiceStub(channel).GetPolicy(request))
    if args.json:
        print_message(record)
        return 0
    meta = record.metadata
    say(f"{meta.name} ({_word(policy_pb2.PolicyKind, meta.kind)}, {_word(policy_pb2.PolicyOrigin, record.origin)}, "
        f"version {record.version[:12]})\n{meta.description}\n\nhow: {meta.algorithm}")
    if meta.use_cases:
        say("for: " + "; ".join(meta.use_cases))
    if meta.limitations:
        say("limits: " + "; ".join(meta.limitations))
    if meta.parameters:
        table = table_of("parameters", ("name", "type", "default", "range", "unit", "meaning"))
        for p in meta.parameters:
            bounds = f"{p.min:g}..{p.max:g}" if p.HasField("min") and p.HasField("max") else ""
            table.add_row(p.name, _word(policy_pb2.ParamType, p.type), params.text(p.default_value), bounds,
                          p.unit, p.description or ", ".join(p.options))
        out.print(table)
    for effect in record.effects:
        say(f"measured: {effect.count} outcomes on {effect.host_class or 'any host'} "
            f"({effect.signature_cluster}), mean {effect.mean_improvement:+.0%} +- {effect.stddev_improvement:.0%}, "
            f"{effect.rollbacks} rollbacks, {effect.ejections} ejections" + (", proven" if effect.proven else ""))
    return 0


# --- traces -------------------------------------------------------------------------------------

def cmd_trace(settings: Settings, args: argparse.Namespace) -> int:
    if settings.jaeger_url:
        spans = tracestore.from_jaeger(settings.jaeger_url, args.id)
        where = settings.jaeger_url
    else:
        store = LocalStack(settings).trace_dir
        spans = tracestore.find_trace(tracestore.stored_spans(store), args.id)
        where = str(store)
    if not spans:
        raise NotFound(f"no trace {args.id!r} in {where} (a cycle id or a trace id from `schedcp tune`; spans "
                       "arrive within a second of the cycle's end)")
    if args.json:
        print(json.dumps(spans, indent=2))
        return 0
    _print_tree(spans)
    return 0


def _print_tree(spans: list[dict]) -> None:
    by_parent: dict[str, list[dict]] = {}
    ids = {s["span_id"] for s in spans}
    for span in spans:
        by_parent.setdefault(span["parent_span_id"] if span["parent_span_id"] in ids else "", []).append(span)
    start = min(s["start_ns"] for s in spans)
    services = sorted({s["service"] for s in spans})
    say(f"trace {spans[0]['trace_id']}: {len(spans)} spans from {len(services)} services ({', '.join(services)})")

    def walk(parent: str, depth: int) -> None:
        for span in sorted(by_parent.get(parent, []), key=lambda s: s["start_ns"]):
            offset_ms = (span["start_ns"] - start) / 1e6
            duration_ms = (span["end_ns"] - span["start_ns"]) / 1e6
            mark = " ERROR" if span["error"] else ""
            say(f"{offset_ms:9.1f} ms {duration_ms:9.1f} ms  {'  ' * depth}{span['name']} "
                f"[{span['service'].removeprefix('schedcp-')}]{mark}")
            walk(span["span_id"], depth + 1)

    walk("", 0)


def _budget(text: str) -> int:
    try:
        trials = int(text)
    except ValueError:
        trials = 0
    if not 1 <= trials <= MAX_TUNE_BUDGET:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a budget: a whole number of kept candidates, 1 to {MAX_TUNE_BUDGET}")
    return trials


def register(add: Add) -> None:
    """Add the cycle commands to the CLI's parser."""
    tune = add("tune", cmd_tune, "Run one decision cycle on a host with live progress: observe, infer the goal, "
               "choose a policy, verify it, deploy it as a canary, measure, keep or roll back. Prints the "
               "before/after numbers and the trace id. Exits 0 when a policy was kept.")
    tune.add_argument("host", nargs="?", help="the host (default: this one, SCHEDCP_HOST_ID)")
    tune.add_argument("--intent", default="", help='what you want, in words, e.g. "lower p99 of cyclictest"')
    tune.add_argument("--provider", choices=["rules", "openai"], default="",
                      help="how the goal is inferred (default: SCHEDCP_GOAL_PROVIDER)")
    tune.add_argument("--budget", type=_budget, default=0, metavar="N",
                      help="compare up to N kept candidates, each measured from the same baseline, and keep the one "
                      "that improved most (a search; 1: the first kept wins). Default: SCHEDCP_TUNE_BUDGET (2) "
                      "for a workload the learner has no proven policy for, 1 for one it has")
    tune.add_argument("--dry-run", action="store_true", help="only the goal and the candidates; nothing deployed")
    tune.add_argument("--auto", nargs="?", const="on", choices=["on", "off"],
                      help="instead of one cycle now: let the planner tune this host on its next profile and "
                      "whenever its workload changes (SCHEDCP_PLANNER_MIN_INTERVAL_S apart); --auto off stops it")
    deploy = add("deploy", cmd_deploy, "Deploy one library policy on a host: the planner infers the goal (the "
                 "groups it applies to, the canary's metric), the verifier checks the policy for that host's "
                 "kernel, the host's executor runs it as a canary and keeps it or rolls back.")
    deploy.add_argument("host", help="the host (see `schedcp hosts`)")
    deploy.add_argument("policy", help="a library policy (see `schedcp policies`)")
    deploy.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a parameter of the policy (see `schedcp policy show NAME`); repeatable")
    deploy.add_argument("--intent", default="", help="what the policy is for, in words (names the groups)")
    rollback = add("rollback", cmd_rollback, "Undo the policy in force on a host: the executor restores what it "
                   "changed and re-applies the last policy it kept before.")
    rollback.add_argument("host", help="the host (see `schedcp hosts`)")
    rollback.add_argument("--reason", default="rolled back by the operator", help="recorded in the audit trail")
    policies = add("policies", cmd_policies, "List the policy repository: library and LLM-written policies with "
                   "their goals and measured outcomes. --search HOST ranks them for that host's workload now.")
    policies.add_argument("--search", metavar="HOST", default="", help="rank the policies for this host's workload")
    policy = add("policy", cmd_policy, "Show one policy: what it is for, how it works, its parameters with their "
                 "ranges, and what it achieved where.")
    policy.add_argument("action", choices=["show"], help="show: print the policy")
    policy.add_argument("name", help="the policy's name")
    policy.add_argument("--version", default="", help="a version (default: the newest)")
    demo = add("demo", cmd_demo, "Tune this host once with a demo workload (what `make run` shows): a latency "
               "probe (cyclictest) beside CPU batch work (stress-ng) in a cgroup of their own, one decision cycle "
               "with the rules provider, the before/after numbers and the trace id; then the policy is rolled "
               "back and the workload and its cgroup removed. Needs a running stack (`schedcp up --detach`).")
    demo.add_argument("--settle", type=float, default=3.0, help="seconds the workload runs before the cycle (3)")
    demo.add_argument("--keep", action="store_true", help="leave the kept policy in force (the workload still goes)")
    trace = add("trace", cmd_trace, "Show a decision cycle's span tree across the services: from the local "
                "stack's trace store, or from Jaeger when SCHEDCP_JAEGER_URL is set.")
    trace.add_argument("id", help="a cycle id or trace id (printed by `schedcp tune`)")

