"""A/A calibration of the canary judgement on this host: how often a policy that changes nothing
is kept (false keeps), and how often a policy that helps is rolled back (false rollbacks).

Method. The real stack (nats-server, observer, executor and verifier as processes, bench/stack.py).
Each repetition starts a fresh workload: cyclictest (SCHED_OTHER, waking every millisecond, in
the bench's own cgroup) beside stress-ng (four CPU workers per CPU) in a cgroup of its own, the
matcher the policies are aimed at (schedcp/cli/demo.py's workload with the probe outside). Then
both arms are deployed, one after the other (which goes first alternates by repetition), each
verified by the verifier and deployed through the executor's Deploy exactly as the planner does:

- no-op (the A/A arm): `batch_sched_idle` with use_sched_idle=false and nice=0, i.e. nice 0 on a
  batch already at nice 0. The executor journals, applies, takes off and puts back this policy
  like any other; what it writes (policy, nice and slice in one sched_setattr, the slice as
  sched_getattr reported it) are the values the threads already had. The native checks refuse a
  rule that sets nothing, so this is the closest the library comes to an empty policy.
- effective: `batch_sched_idle` with its defaults (the batch as SCHED_IDLE), which cuts the
  probe's p99 run-queue wait by 70-98 % on this host (bench/results/colocation.md).

Both arms are judged by the same canary: success metric cyclictest's p99 run-queue wait (lower
is better) improving by at least --min-improvement (default 5 %: the planner's threshold for
throughput and makespan goals, the lowest it uses, where a false keep is likeliest); a guard,
the CPU share of probe and batch together keeping 90 % of the baseline's (decision 28);
--rounds alternating rounds (default 3, as the planner asks for modest effects) of --window
seconds each (default 5, the planner's SCHEDCP_CANARY_WINDOW_S), extended while inconclusive up
to twice the rounds (the executor's default), then rolled back. A kept deployment is rolled back
right after, so every canary starts from the host's defaults (rounds alternate only then).

Reported per arm: kept, rolled back (and how many of those were still inconclusive at the
bound), failed (not measured: counted apart, they judge nothing); the false-keep rate (no-op
kept / no-op judged) and the false-rollback rate (effective rolled back / effective judged),
each with a 95 % Wilson upper bound: with 0 events in N deployments that bound is about 3.8/N,
so showing a rate under 5 % takes about 80 deployments per arm. Also the rounds each judgement
took, the improvement intervals (plotted), and beside the measured rates the rates to expect:
the executor's judgement (canary.judge_rounds, rounds added while inconclusive) on simulated
rounds whose log ratios are normal, for a few noise levels (`--simulate-only` prints just
that).

`--vm`: the same arms and canary in the sched_ext VM of the scenario suite (qemu TCG, its own
observer and executor, the central verifier here; bench/scenarios/backends.py), on the suite's
rtapp_batch programs: rt-app's four periodic tasks (its latency ground truth) beside stress-ng,
warmed afresh for each repetition. The canary reads rt-app's p99 run-queue wait as the VM's
observer does (procfs: no BPF sampler in the image), and the guard rt-app's and the batch's CPU
together. Both arms are native policies there too: a sched_ext scheduler always changes
something, so no sched_ext policy is an A/A arm. Writes canary_aa-vm.{json,md,png}.
What this does not measure: other workloads and metrics, a busier host.
Writes bench/results/canary_aa.{json,md,png} (or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.scenarios import arms as scenario_arms
from bench.scenarios.backends import vm_backend
from bench.scenarios.suite import SCENARIOS
from bench.scenarios.workload import Workload, warmed
from bench.stack import running_stack
from schedcp.cli.demo import DemoWorkload
from schedcp.domain import evidence, native_policies, policies, procfs
from schedcp.runtime import rpc
from schedcp.runtime.config import Role, Settings
from schedcp.v1 import (
    common_pb2,
    deployment_pb2,
    executor_pb2,
    executor_pb2_grpc,
    goal_pb2,
    policy_pb2,
    verdict_pb2,
)
from services.executor import canary

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
S = deployment_pb2
# Arm -> (library policy, parameters).
ARMS = {"no-op": ("batch_sched_idle", {"use_sched_idle": False, "nice": 0}),
        "effective": ("batch_sched_idle", {})}
GUARD_RATIO = 0.9
SETTLE_S = 2.0  # after the workload starts, and after a rollback, before the next baseline
Z_95 = 1.96
VM_SCENARIO = "rtapp_batch"


# --- the workload and the canary -------------------------------------------------------------
@dataclass
class Target:
    """What one repetition's arms aim at: the service the canary protects, the batch they demote."""

    service: list[common_pb2.GroupMatcher]
    batch: list[common_pb2.GroupMatcher]


@dataclass
class Place:
    """Where the arms run: the stack's settings, the words for the report, a fresh workload per
    repetition (a context manager yielding its Target), and the canary's service in words."""

    settings: Settings
    where: str
    repetition: Callable[[], contextlib.AbstractContextManager[Target]]
    service: str


@contextlib.contextmanager
def this_host() -> Iterator[Place]:
    with running_stack(roles=(Role.OBSERVER, Role.EXECUTOR, Role.VERIFIER)) as (_, _, settings):
        yield Place(settings, f"This host ({os.uname().release}, {os.cpu_count()} CPUs, native policies)",
                    demo_workload, "cyclictest's")


@contextlib.contextmanager
def demo_workload() -> Iterator[Target]:
    with DemoWorkload(probe_outside=True) as workload:
        time.sleep(SETTLE_S)
        yield Target([common_pb2.GroupMatcher(pid=workload.pids[0])],
                     [common_pb2.GroupMatcher(cgroup=batch_cgroup(workload))])


def batch_cgroup(workload: DemoWorkload) -> str:
    """The batch's cgroup as /proc/<pid>/cgroup names it (the unified path): the policies' matcher."""
    if workload.cgroup is None:
        raise SystemExit("canary_aa needs a writable cgroup v2 hierarchy to give the batch a cgroup of its own")
    return procfs.parse_cgroups(Path(f"/proc/{workload.pids[1]}/cgroup").read_bytes())[1]


@contextlib.contextmanager
def sched_ext_vm(window_s: float) -> Iterator[Place]:
    with vm_backend(lambda message: print(message, flush=True)) as backend:
        scenario = SCENARIOS[VM_SCENARIO]
        workload = backend.workload(VM_SCENARIO, window_s)
        workload.start()
        try:
            target = Target(scenario_arms.true_groups(scenario, "latency"),
                            scenario_arms.true_groups(scenario, "batch"))
            yield Place(backend.settings, f"In {backend.where}, on the suite's {VM_SCENARIO}",
                        lambda: scenario_workload(workload, target), "rt-app's")
        finally:
            workload.stop()


@contextlib.contextmanager
def scenario_workload(workload: Workload, target: Target) -> Iterator[Target]:
    with warmed(workload, with_batch=True):
        yield target


def canary_spec(target: Target, args: argparse.Namespace) -> S.CanarySpec:
    together = common_pb2.MetricSpec(name="cpu_share", groups=[*target.service, *target.batch],
                                     direction=common_pb2.DIRECTION_HIGHER_IS_BETTER)
    spec = S.CanarySpec(
        success_metric=common_pb2.MetricSpec(name="runq_latency_p99_us", groups=target.service,
                                             direction=common_pb2.DIRECTION_LOWER_IS_BETTER),
        min_improvement=args.min_improvement, rounds=args.rounds,
        guards=[goal_pb2.GuardConstraint(metric=together, comparison=goal_pb2.COMPARISON_AT_LEAST,
                                         ratio_to_baseline=GUARD_RATIO,
                                         description="service and batch keep 90 % of their CPU")])
    spec.baseline_window.FromMilliseconds(int(args.window * 1000))
    spec.canary_window.FromMilliseconds(int(args.window * 1000))
    return spec


def artifact(arm: str, batch: list[common_pb2.GroupMatcher]) -> policy_pb2.PolicyArtifact:
    name, params = ARMS[arm]
    meta = policies.load(policies.LIBRARY / "native" / f"{name}.toml")
    native = native_policies.build(meta, params, batch)
    return policy_pb2.PolicyArtifact(name=name, kind=policy_pb2.POLICY_KIND_NATIVE, native=native)


# --- through the real services ---------------------------------------------------------------
def verified(settings: Settings, candidate: policy_pb2.PolicyArtifact) -> verdict_pb2.Verdict:
    """The verifier's verdict for the host the observer describes (this one, or the VM)."""
    arm = scenario_arms.Arm(candidate.name, candidate)
    try:
        scenario_arms.verify(settings, arm)
    except scenario_arms.NotApproved as exc:
        raise SystemExit(f"the verifier rejected an arm: {exc}") from exc
    return arm.verdict


async def deploy(settings: Settings, verdict: verdict_pb2.Verdict, spec: S.CanarySpec,
                 cycle_id: str) -> list[S.DeploymentEvent]:
    request = executor_pb2.DeployRequest(artifact=verdict.artifact, verdict=verdict, canary=spec, cycle_id=cycle_id)
    async with rpc.channel(settings.executor_addr) as channel:
        return [e async for e in executor_pb2_grpc.ExecutorServiceStub(channel).Deploy(request)]


def run_arm(settings: Settings, arm: str, target: Target, args: argparse.Namespace, rep: int) -> dict:
    """One deployment of the arm's policy, judged by the executor; the host back on its defaults after."""
    verdict = verified(settings, artifact(arm, target.batch))
    started = time.monotonic()
    events = asyncio.run(deploy(settings, verdict, canary_spec(target, args), f"aa-{rep}-{arm}"))
    record = outcome_of(arm, events, time.monotonic() - started)
    if record["state"] == "kept":
        scenario_arms.rollback(settings)
    time.sleep(SETTLE_S)
    return record


def outcome_of(arm: str, events: list[S.DeploymentEvent], wall_s: float) -> dict:
    last = events[-1]
    state = S.DeploymentState.Name(last.deployment.state).removeprefix("DEPLOYMENT_STATE_").lower()
    # Every event's text too: the per-round numbers, re-measured windows and added rounds are there.
    record = {"arm": arm, "state": state, "reason": last.deployment.reason, "wall_s": round(wall_s, 1),
              "inconclusive": last.deployment.reason.startswith("inconclusive after"),
              "events": [e.message for e in events]}
    for comparison in last.metrics:
        name = "success" if comparison.metric.name == "runq_latency_p99_us" else "guard"
        record[name] = {"baseline": comparison.baseline, "observed": comparison.observed,
                        "improvement": comparison.improvement, "low": comparison.improvement_low,
                        "high": comparison.improvement_high, "rounds": comparison.rounds,
                        "confidence": comparison.confidence,
                        "sigma": round_sigma(comparison),
                        "satisfied": comparison.satisfied}
    return record


def round_sigma(c: S.MetricComparison) -> float | None:
    """The standard deviation of the rounds' log ratios, recovered from the t interval (half its
    width in logs is t * sigma / sqrt(rounds)): where this host sits in the simulated table. For
    a lower-is-better metric (the p99 here) the ratio is 1 minus the improvement."""
    if c.rounds < 2:
        return None
    half = (math.log(1 - c.improvement_low) - math.log(1 - c.improvement_high)) / 2
    return half * math.sqrt(c.rounds) / evidence.t_quantile(c.rounds - 1)


# --- the figures -----------------------------------------------------------------------------
def wilson_upper(events: int, n: int) -> float:
    """The 95 % Wilson score upper bound of a rate seen `events` times in `n` (1 when n is 0)."""
    if n == 0:
        return 1.0
    p, z2 = events / n, Z_95 * Z_95
    centre = p + z2 / (2 * n)
    spread = Z_95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z2 / n))


# The executor's event when foreign CPU use rose during a canary window (deployments.py): the
# host was shared then, which the report counts so that a rate is not read as the design's alone.
DISTURBED = "other processes used"


def disturbed(record: dict) -> bool:
    return any(DISTURBED in message for message in record["events"])


def summarise(records: list[dict], wrong_state: str) -> dict:
    """An arm's counts; `wrong_state` is the ending that is an error for it (kept for the no-op)."""
    judged = [r for r in records if r["state"] in ("kept", "rolled_back")]
    wrong = sum(1 for r in judged if r["state"] == wrong_state)
    quiet = [r for r in judged if not disturbed(r)]
    wrong_quiet = sum(1 for r in quiet if r["state"] == wrong_state)
    rounds = [r["success"]["rounds"] for r in judged if "success" in r]
    sigmas = [r["success"]["sigma"] for r in judged if r.get("success", {}).get("sigma") is not None]
    return {"deployments": len(records), "judged": len(judged),
            "kept": sum(1 for r in judged if r["state"] == "kept"),
            "rolled_back": sum(1 for r in judged if r["state"] == "rolled_back"),
            "inconclusive_at_bound": sum(1 for r in judged if r["inconclusive"]),
            "failed": len(records) - len(judged), "wrong": wrong,
            "rate": wrong / len(judged) if judged else None, "rate_upper_95": wilson_upper(wrong, len(judged)),
            "disturbed": len(judged) - len(quiet), "wrong_undisturbed": wrong_quiet,
            "judged_undisturbed": len(quiet),
            "rounds_median": statistics.median(rounds) if rounds else None,
            "sigma_median": statistics.median(sigmas) if sigmas else None,
            "rounds_max": max(rounds) if rounds else None,
            "wall_s_median": statistics.median(r["wall_s"] for r in records) if records else None}


# --- what to expect: the executor's judgement on simulated rounds -----------------------------
SIMULATED_NOISE = (0.2, 0.5, 1.0, 2.0)  # standard deviation of one round's log ratio
SIMULATED_TRIALS = 1000


def simulated_rates(args: argparse.Namespace) -> list[dict]:
    """For each noise level, how often the executor's judgement keeps the no-op (true ratio 1)
    and rolls back the effective policy (true ratio 0.1, as a demotion measures here): rounds
    with normal log ratios, judged by canary.judge_rounds with a round added while inconclusive
    up to canary.max_rounds, as the executor does. Seeded: the same figures every run."""
    spec = canary_spec(Target([common_pb2.GroupMatcher(pid=1)], [common_pb2.GroupMatcher(cgroup="/simulated")]),
                       args)
    rng = random.Random(0)
    rows = []
    for sigma in SIMULATED_NOISE:
        row = {"sigma": sigma}
        for arm, ratio, wrong in (("no-op", 1.0, True), ("effective", 0.1, False)):
            kept = [simulated_canary(spec, ratio, sigma, rng) for _ in range(SIMULATED_TRIALS)]
            row[arm] = sum(1 for k in kept if k == wrong) / SIMULATED_TRIALS
        rows.append(row)
    return rows


def simulated_canary(spec: S.CanarySpec, ratio: float, sigma: float, rng: random.Random) -> bool:
    """Whether one simulated canary is kept. The guard's windows are equal: only the success
    metric's noise is simulated."""
    success, guard = canary.key(spec.success_metric), canary.key(spec.guards[0].metric)
    rounds = []
    while True:
        observed = 1000 * ratio * math.exp(rng.gauss(0, sigma))
        rounds.append((canary.Window({success: 1000, guard: 1.0}, 0.0),
                       canary.Window({success: observed, guard: 1.0}, 0.0)))
        if len(rounds) < spec.rounds:
            continue
        verdict = canary.judge_rounds(spec, rounds)
        if not verdict.inconclusive or len(rounds) == canary.max_rounds(spec):
            return verdict.keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repetitions", type=int, default=20, help="deployments per arm (20)")
    parser.add_argument("--window", type=float, default=5.0, help="seconds per baseline or canary window (5)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds before the first judgement (3)")
    parser.add_argument("--min-improvement", type=float, default=0.05, help="success threshold (0.05)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the report goes (bench/results)")
    parser.add_argument("--vm", action="store_true",
                        help=f"in the scenario suite's sched_ext VM, on its {VM_SCENARIO} programs "
                        "(report canary_aa-vm)")
    parser.add_argument("--simulate-only", action="store_true", help="print the simulated rates and stop")
    parser.add_argument("--append", action="store_true",
                        help="add to the deployments of the report in --out (same settings): about 100 s per "
                             "repetition, so the 80 that show a rate under 5 %% can be run in parts")
    args = parser.parse_args()
    args.name = "canary_aa-vm" if args.vm else "canary_aa"
    if args.simulate_only:
        print(simulated_table(simulated_rates(args)))
        return
    # SIGTERM (a timeout, `kill`) ends the run like Ctrl-C: the stack and the workload are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    records = earlier_records(args) if args.append else []
    done = len(records) // len(ARMS)  # repetitions of earlier parts: the arms' order goes on alternating
    with (sched_ext_vm(args.window) if args.vm else this_host()) as place:
        for rep in range(done, done + args.repetitions):
            with place.repetition() as target:
                for arm in (list(ARMS) if rep % 2 == 0 else list(reversed(ARMS))):
                    record = run_arm(place.settings, arm, target, args, rep)
                    records.append(record)
                    print(f"repetition {rep + 1 - done}/{args.repetitions} {arm}: {record['state']} "
                          f"({record['wall_s']} s): {record['reason']}", flush=True)
            # After every repetition: a run cut short still leaves a report of what it measured.
            report(records, place, args, quiet=rep + 1 < done + args.repetitions)


SETTINGS = ("window_s", "rounds", "min_improvement")


def earlier_records(args: argparse.Namespace) -> list[dict]:
    """The deployments of the report in args.out, refused when it was measured with other settings."""
    path = args.out / f"{args.name}.json"
    if not path.exists():
        return []
    earlier = json.loads(path.read_text())
    now = {"window_s": args.window, "rounds": args.rounds, "min_improvement": args.min_improvement}
    if any(earlier.get(k) != now[k] for k in SETTINGS):
        raise SystemExit(f"--append: {path} was measured with {({k: earlier.get(k) for k in SETTINGS})}, "
                         f"this run asks for {now}")
    return earlier["deployments"]


def report(records: list[dict], place: Place, args: argparse.Namespace, quiet: bool = False) -> None:
    summary = {"no-op": summarise([r for r in records if r["arm"] == "no-op"], "kept"),
               "effective": summarise([r for r in records if r["arm"] == "effective"], "rolled_back")}
    result = {"date": time.strftime("%Y-%m-%d"), "where": place.where, "service": place.service, "name": args.name,
              "repetitions": len(records) // len(ARMS), "window_s": args.window, "rounds": args.rounds,
              "max_rounds": 2 * args.rounds, "min_improvement": args.min_improvement, "guard_ratio": GUARD_RATIO,
              "confidence": next((r["success"]["confidence"] for r in records if "success" in r), None),
              "summary": summary, "simulated": simulated_rates(args), "deployments": records}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text(markdown(result))
    plot(records, args)
    if not quiet:
        print((args.out / f"{args.name}.md").read_text())


def _rate(s: dict) -> str:
    if s["rate"] is None:
        return "- (nothing judged)"
    undisturbed = s["judged_undisturbed"]
    return (f"{s['wrong']}/{s['judged']} = {s['rate']:.0%} (95 % upper bound {s['rate_upper_95']:.0%}); "
            f"{s['wrong_undisturbed']}/{undisturbed} of those whose canary no other process disturbed "
            f"(upper bound {wilson_upper(s['wrong_undisturbed'], undisturbed):.0%})")


def markdown(result: dict) -> str:
    noop, effective = result["summary"]["no-op"], result["summary"]["effective"]
    lines = ["# Canary A/A calibration: false keeps and false rollbacks", "",
             f"{result['where']}, {result['date']}. "
             f"{result['repetitions']} deployments per arm through the real executor; canary: {result['service']} "
             f"p99 run-queue wait at least {result['min_improvement']:.0%} better, service and batch together keeping "
             f"{result['guard_ratio']:.0%} of their CPU, {result['rounds']} alternating rounds of "
             f"{result['window_s']:g} s windows, up to {result['max_rounds']} while inconclusive, judged on "
             f"{result['confidence'] or 0:.0%} intervals. Method: the docstring of bench/canary_aa.py.", "",
             f"- false keeps (the no-op kept): {_rate(noop)}",
             f"- false rollbacks (the effective policy rolled back): {_rate(effective)}",
             "- target (issue 21): both under 5 %", "",
             "| arm | deployments | kept | rolled back | of which inconclusive at the bound | failed | "
             "disturbed (measured again) | rounds (median, max) | sigma of a round's log ratio (median) | "
             "wall time (s, median) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for arm, s in result["summary"].items():
        lines.append(f"| {arm} | {s['deployments']} | {s['kept']} | {s['rolled_back']} | "
                     f"{s['inconclusive_at_bound']} | {s['failed']} | {s['disturbed']} | "
                     f"{s['rounds_median']}, {s['rounds_max']} | "
                     f"{_maybe(s['sigma_median'])} | {s['wall_s_median']} |")
    lines += ["", "Expected from simulation (the executor's judgement on rounds whose log ratios are normal "
              f"with standard deviation sigma; {SIMULATED_TRIALS} canaries each):", "",
              simulated_table(result["simulated"]), "", f"![intervals]({result['name']}.png)", "",
              f"Reproduce: `make bench` (or `python -m bench.canary_aa{' --vm' if 'vm' in result['name'] else ''}`; "
              "`--repetitions 80` to show a rate under 5 % with 95 % confidence, `--append` to add to this "
              "report).", ""]
    return "\n".join(lines)


def _maybe(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def simulated_table(rows: list[dict]) -> str:
    lines = ["| sigma of a round's log ratio | no-op kept | 10x improvement rolled back |", "|---|---|---|"]
    lines += [f"| {r['sigma']:g} | {r['no-op']:.1%} | {r['effective']:.1%} |" for r in rows]
    return "\n".join(lines)


def plot(records: list[dict], args: argparse.Namespace) -> None:
    """Each deployment's p99 ratio (canary over baseline; the improvement is 1 minus it) with its
    interval, by arm, on a log scale (the ratios run from 1/100 to 100), against the ratio the
    required improvement means."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(ARMS), figsize=(10, 3.5))
    for ax, arm in zip(axes, ARMS, strict=True):
        judged = [r for r in records if r["arm"] == arm and "success" in r]
        for i, r in enumerate(judged, 1):
            s = r["success"]
            ratio, low, high = 1 - s["improvement"], 1 - s["high"], 1 - s["low"]
            colour = {"kept": "tab:green", "rolled_back": "tab:red"}.get(r["state"], "tab:grey")
            ax.errorbar(i, ratio, yerr=[[ratio - low], [high - ratio]], fmt="o", color=colour, capsize=3)
        ax.axhline(1 - args.min_improvement, color="black", linestyle="--", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_title(f"{arm}: p99 canary / baseline, interval")
        ax.set_xlabel("deployment (green kept, red rolled back)")
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    fig.savefig(args.out / f"{args.name}.png", dpi=120)


if __name__ == "__main__":
    main()
