"""The central services at fleet scale, side by side with an older commit on this machine.

For each tree (this checkout, and a worktree of `--baseline` made under the cache dir), in
alternation and repeated: the tree's own central services (nats-server, verifier, learner,
planner in automatic mode, rules provider, its trace store) started by its own `bench.stack`,
driven by the same simulated hosts from this checkout (bench/planner_fleet.py's: every
deployment is kept at once, so no canary time is in any number), measured the same way:

- **burst**: `--burst` hosts publish their first profile at once (as a fleet's observers do when
  they start): decisions/s, and the CPU the central processes used per decision (their
  utime + stime from /proc over the burst, the load generator excluded);
- **steady state**: `--hosts` hosts registered, each publishing a profile every
  `--period-s` from the start (the first all at once: a fleet's observers starting together,
  decided at the rate the start-burst column gives), then measured for `--steady-s`; meanwhile
  `--drifts-per-s` hosts a second change workload (another group dominates): the planner's
  backlog of unread profiles (its durable consumer's pending count, read every second; growing
  means ingest does not keep up), the drift-triggered decisions' latency (profile published ->
  the cycle's result), and the central processes' CPU per second.

Writes bench/results/fleet_scale.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.planner_fleet import facts, percentile, profile, run_fleet, with_executors
from schedcp.runtime import nats_auth, topology
from schedcp.runtime.bus import TYPE_HEADER, Bus
from schedcp.runtime.config import load_settings
from schedcp.v1 import common_pb2, cycle_pb2, host_pb2, profile_pb2

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BASELINE = "4e45f23"
PLANNER_CONSUMER = "planner-auto"
PROFILE_TYPE = profile_pb2.WorkloadProfile.DESCRIPTOR.full_name
# A host registration lives 60 s in its bucket: the simulation refreshes them well within it.
REGISTRATION_REFRESH_S = 20.0
# After the fleet-start burst, the longest wait for the planner to read the profiles published meanwhile.
SETTLE_S = 60.0
ENV = {"SCHEDCP_PLANNER_AUTO": "true", "SCHEDCP_PLANNER_MIN_INTERVAL_S": "0", "SCHEDCP_GOAL_PROVIDER": "rules",
       "SCHEDCP_TUNE_BUDGET": "1", "SCHEDCP_RATE_LIMIT_VERIFY_PER_MIN": "0"}
# Run in the tree under test with its own code: its stack, its settings, until stdin closes.
STACK_SCRIPT = """
import json, os, signal, sys
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leave by the with block: the stack stops
# This venv's editable install would answer `schedcp.runtime` from the current checkout: the
# tree's own layout decides (an older tree's settings lived in schedcp/config.py).
if os.path.isdir("schedcp/runtime"):
    from schedcp.runtime.config import Role, Settings
else:
    from schedcp.config import Role, Settings
from bench.stack import running_stack
known = {f"SCHEDCP_{name.upper()}" for name in Settings.model_fields}  # an older tree lacks some
env = {k: v for k, v in json.loads(sys.argv[1]).items() if k in known}
with running_stack(roles=(Role.VERIFIER, Role.LEARNER, Role.PLANNER), **env):
    print(json.dumps({k: v for k, v in os.environ.items() if k.startswith("SCHEDCP_")}), flush=True)
    sys.stdin.read()
"""


# --- the stack under test and its CPU -----------------------------------------------------------

@dataclass
class Stack:
    proc: subprocess.Popen
    env: dict[str, str]

    def settings(self):
        saved = dict(os.environ)
        try:
            os.environ.update(self.env)
            return load_settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each central process (the stack's descendants), by role."""
        return {name: ticks / os.sysconf("SC_CLK_TCK") for name, ticks in _descendant_ticks(self.proc.pid).items()}


@contextlib.contextmanager
def stack_of(tree: Path) -> Iterator[Stack]:
    proc = subprocess.Popen([sys.executable, "-c", STACK_SCRIPT, json.dumps(ENV)], cwd=tree, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={k: v for k, v in os.environ.items()
                                                                   if not k.startswith("SCHEDCP_")})
    try:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the stack of {tree} did not start (exit {proc.wait()})")
        yield Stack(proc, json.loads(line))
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


def _descendant_ticks(root: int) -> dict[str, int]:
    parents, stats = {}, {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read().split(b"\0")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        stats[pid] = (int(fields[11]) + int(fields[12]), _role(cmdline))
    ticks: dict[str, int] = {}
    for pid, (used, role) in stats.items():
        ancestor = parents.get(pid)
        while ancestor and ancestor != root:
            ancestor = parents.get(ancestor)
        if ancestor == root:
            ticks[role] = ticks.get(role, 0) + used
    return ticks


def _role(cmdline: list[bytes]) -> str:
    text = b" ".join(cmdline).decode(errors="replace")
    for role in ("planner", "learner", "verifier", "tracestore", "nats-server"):
        if role in text:
            return "traces" if role == "tracestore" else role
    return "other"


def used_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {role: after[role] - before.get(role, 0.0) for role in after}


# --- simulated hosts that publish profiles fast -------------------------------------------------

def host_profile(host_id: str, index: int, variant: int) -> bytes:
    """The fleet bench's profile of a host without its id and window (`stamped` adds them);
    `variant` 1 is the drifted workload (another batch program dominates)."""
    p = profile(host_id, index, batch="ffmpeg" if variant == 0 else "x264")
    p.ClearField("profile_id")
    p.ClearField("window_start")
    return p.SerializeToString()


def stamped(template: bytes, profile_id: str) -> bytes:
    # Serialized protobufs concatenate as a merge: the id and a fresh window start are set on the template.
    suffix = profile_pb2.WorkloadProfile(profile_id=profile_id)
    suffix.window_start.GetCurrentTime()
    return template + suffix.SerializeToString()


@dataclass
class Fleet:
    bus: Bus
    executor_addr: str
    hosts: list[str]
    variants: list[int] = field(default_factory=list)
    templates: dict[tuple[int, int], bytes] = field(default_factory=dict)
    published: int = 0

    def __post_init__(self) -> None:
        self.variants = [0] * len(self.hosts)

    async def register(self) -> None:
        kv = await self.bus.kv(topology.HOSTS_BUCKET)
        for start in range(0, len(self.hosts), 500):
            await asyncio.gather(*(kv.put(h, host_pb2.HostRegistration(
                host_id=h, observer_addr="127.0.0.1:9", executor_addr=self.executor_addr,
                facts=facts(h)).SerializeToString()) for h in self.hosts[start:start + 500]))

    async def publish(self, index: int) -> float:
        host, variant = self.hosts[index], self.variants[index]
        template = self.templates.get((index, variant))
        if template is None:
            template = self.templates[(index, variant)] = host_profile(host, index, variant)
        self.published += 1
        profile_id = f"{host}-{self.published}"
        # A core publish on the stream's subject: JetStream stores it; no wait for its ack, as
        # thousands of observers publishing at once do not wait for each other.
        await self.bus.nc.publish(topology.subject(topology.Kind.PROFILE, host), stamped(template, profile_id),
                                  headers={TYPE_HEADER: PROFILE_TYPE, "Nats-Msg-Id": profile_id})
        return time.time()


class Results:
    """Every cycle's result event, by host."""

    def __init__(self) -> None:
        self.at: dict[str, list[float]] = {}
        self.failed: list[str] = []
        self.changed = asyncio.Event()

    async def on_cycle(self, msg) -> None:
        event = cycle_pb2.CycleEvent()
        event.ParseFromString(msg.data)
        if event.stage == cycle_pb2.CYCLE_STAGE_RESULT:
            self.at.setdefault(event.host_id, []).append(event.at.ToNanoseconds() / 1e9)
            if event.status != common_pb2.STAGE_STATUS_SUCCEEDED:
                self.failed.append(event.message)
            self.changed.set()

    def count(self) -> int:
        return sum(len(v) for v in self.at.values())

    async def wait_for(self, total: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.count() < total:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 1.0))
        return True


async def backlog(bus: Bus) -> int:
    """Profiles the planner has not read yet (or read and not acknowledged)."""
    stream = topology.stream_for(topology.subject(topology.Kind.PROFILE, "x")).name
    info = await bus.js.consumer_info(stream, PLANNER_CONSUMER)
    return info.num_pending + info.num_ack_pending


class Publisher:
    """Every host publishes a profile every `period_s` (spread evenly), from the first at once;
    while `drifting`, `drifts_per_s` hosts a second publish a drifted workload instead."""

    def __init__(self, fleet: Fleet, period_s: float, drifts_per_s: float, seed: str) -> None:
        self._fleet, self._period_s, self._drifts_per_s = fleet, period_s, drifts_per_s
        self._rng = random.Random(seed)
        self.drifting = False
        self.drifted: dict[str, float] = {}  # host -> when its drifted profile was published

    async def run(self) -> None:
        fleet, n = self._fleet, len(self._fleet.hosts)
        for i in range(n):  # the fleet starts: every host's first profile, as fast as they come
            await fleet.publish(i)
        tick, owed, cursor = 0.05, 0.0, 0
        registered = next_drift = time.monotonic()
        while True:
            now = time.monotonic()
            if now - registered > REGISTRATION_REFRESH_S:
                await fleet.register()
                registered = time.monotonic()
            owed += n * tick / self._period_s
            while owed >= 1:
                index, cursor, owed = cursor % n, cursor + 1, owed - 1
                host = fleet.hosts[index]
                if self.drifting and now >= next_drift and host not in self.drifted:
                    fleet.variants[index] ^= 1
                    self.drifted[host] = await fleet.publish(index)
                    next_drift = max(next_drift, now) + self._rng.expovariate(self._drifts_per_s)
                else:
                    await fleet.publish(index)
            await asyncio.sleep(max(0.0, tick - (time.monotonic() - now)))


async def steady(stack: Stack, executor_addr: str, n: int, period_s: float, steady_s: float,
                 drifts_per_s: float, tag: str) -> dict:
    settings = stack.settings()
    bus = await Bus.connect(settings.nats_url, f"bench-scale-{tag}", **nats_auth.connect_options(settings))
    fleet = Fleet(bus, executor_addr, [f"sim-{tag}-{i:05d}" for i in range(n)])
    results = Results()
    publisher = Publisher(fleet, period_s, drifts_per_s, tag)
    publishing = None
    try:
        await bus.nc.subscribe(topology.all_hosts(topology.Kind.CYCLE), cb=results.on_cycle)
        await fleet.register()
        cpu0, start = stack.cpu(), time.time()
        publishing = asyncio.create_task(publisher.run())
        all_decided = await results.wait_for(n, 60 + n * 0.03)
        first = max((t[0] for t in results.at.values()), default=float("nan"))
        burst = {"decided": results.count(), "failed": len(results.failed), "seconds": first - start,
                 "decisions_per_s": results.count() / (first - start), "cpu_s": used_between(cpu0, stack.cpu()),
                 "all_decided": all_decided}
        # The profiles published meanwhile are read before the steady state is measured (at
        # most SETTLE_S: a planner that cannot keep up never gets there).
        settled = time.monotonic()
        while await backlog(bus) > n / period_s and time.monotonic() - settled < SETTLE_S:
            await asyncio.sleep(1.0)
        settled = time.monotonic() - settled
        # Steady state: the same publishing, and a few hosts drift each second.
        pending: list[tuple[float, int]] = []
        cpu0, t0 = stack.cpu(), time.monotonic()
        publisher.drifting = True
        while time.monotonic() - t0 < steady_s:
            await asyncio.sleep(1.0)
            pending.append((time.monotonic() - t0, await backlog(bus)))
        publisher.drifting = False
        elapsed = time.monotonic() - t0
        cpu = used_between(cpu0, stack.cpu())
        drifted = dict(publisher.drifted)
        await results.wait_for(n + len(drifted), 30)
        latencies = [next((t for t in results.at.get(h, [])[1:] if t >= at), float("nan")) - at
                     for h, at in drifted.items()]
        decided = [x for x in latencies if x == x]
        return {"hosts": n, "burst": burst, "settled_in_s": settled,
                "steady": {"seconds": elapsed, "profiles_per_s": n / period_s, "drifts": len(drifted),
                           "drifts_decided": len(decided),
                           "drift_latency_p50_ms": 1000 * percentile(decided, 50),
                           "drift_latency_p99_ms": 1000 * percentile(decided, 99),
                           "backlog": pending, "backlog_max": max((b for _, b in pending), default=0),
                           "backlog_end": pending[-1][1] if pending else 0,
                           "cpu_per_s": {k: v / elapsed for k, v in cpu.items()}},
                "failures": sorted(set(results.failed))[:5]}
    finally:
        if publishing is not None:
            publishing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publishing
        await bus.close()


# --- the comparison ----------------------------------------------------------------------------

def baseline_tree(commit: str) -> Path:
    """A worktree of `commit` (made once, kept in the cache dir)."""
    cache = Path(os.environ.get("SCHEDCP_CACHE_DIR", Path.home() / ".cache" / "schedcp"))
    tree = cache / f"worktree-{commit}"
    if not (tree / "services").is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--force", str(tree), commit],
                       check=True, capture_output=True)
    return tree


def burst(stack: Stack, n: int, tag: str) -> dict:
    settings = stack.settings()
    cpu0 = stack.cpu()
    run = asyncio.run(with_executors(lambda addr: run_fleet(settings.nats_url, addr, n, tag,
                                                            **nats_auth.connect_options(settings))))
    cpu = used_between(cpu0, stack.cpu())
    return {**run, "cpu_s": cpu, "cpu_ms_per_decision": 1000 * sum(cpu.values()) / max(run["decided"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=BASELINE, help="the commit to compare with (default %(default)s)")
    parser.add_argument("--burst", type=int, default=1000, help="hosts in the burst (default %(default)s)")
    parser.add_argument("--hosts", type=int, default=10000, help="hosts in the steady state (default %(default)s)")
    parser.add_argument("--period-s", type=float, default=5.0, help="each host's profile period")
    parser.add_argument("--steady-s", type=float, default=60.0, help="the steady state measured")
    parser.add_argument("--drifts-per-s", type=float, default=2.0)
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--skip-steady-baseline", action="store_true",
                        help="run the steady state on this tree only (the baseline's can take long)")
    parser.add_argument("--no-baseline", action="store_true", help="measure this checkout only")
    args = parser.parse_args()
    # Stopped with SIGTERM: the stacks are stopped on the way out (their finally blocks run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    trees = {"this": ROOT} if args.no_baseline else {"this": ROOT, args.baseline: baseline_tree(args.baseline)}
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for rep in range(args.repetitions):
        for name in (list(trees) if rep % 2 == 0 else list(reversed(trees))):
            with stack_of(trees[name]) as stack:
                run = {"burst": burst(stack, args.burst, f"b{rep}")}
                print(f"rep {rep + 1} {name}: burst {args.burst}: {run['burst']['decisions_per_s']:.1f}/s, "
                      f"{run['burst']['cpu_ms_per_decision']:.1f} ms CPU/decision {run['burst']['cpu_s']}", flush=True)
                if name == "this" or not args.skip_steady_baseline:
                    run["fleet"] = asyncio.run(with_executors(lambda addr, rep=rep: steady(
                        stack, addr, args.hosts, args.period_s, args.steady_s, args.drifts_per_s, f"s{rep}")))
                    f = run["fleet"]
                    print(f"  {args.hosts} hosts: start burst {f['burst']['decisions_per_s']:.1f}/s; steady "
                          f"backlog max {f['steady']['backlog_max']} end {f['steady']['backlog_end']}, drift "
                          f"p50 {f['steady']['drift_latency_p50_ms']:.0f} p99 {f['steady']['drift_latency_p99_ms']:.0f}"
                          f" ms ({f['steady']['drifts_decided']}/{f['steady']['drifts']}), cpu/s "
                          f"{ {k: round(v, 2) for k, v in f['steady']['cpu_per_s'].items()} } {f['failures']}",
                          flush=True)
                runs[name].append(run)
    result = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "args": vars(args),
              "summary": {name: summarise(rs) for name, rs in runs.items()}, "runs": runs}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fleet_scale.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "fleet_scale.md").write_text(report(result))
    print((RESULTS / "fleet_scale.md").read_text())


def summarise(runs: list[dict]) -> dict:
    """Medians over the repetitions of one tree."""
    def median(values) -> float:
        values = [v for v in values if v == v]
        return statistics.median(values) if values else float("nan")

    bursts = [r["burst"] for r in runs]
    roles = sorted({role for b in bursts for role in b["cpu_s"]})
    summary = {"burst_decisions_per_s": median(b["decisions_per_s"] for b in bursts),
               "burst_cpu_ms_per_decision": median(b["cpu_ms_per_decision"] for b in bursts),
               "burst_cpu_ms_by_role": {role: median(1000 * b["cpu_s"].get(role, 0.0) / max(b["decided"], 1)
                                                     for b in bursts) for role in roles}}
    fleets = [r["fleet"] for r in runs if "fleet" in r]
    if fleets:
        steady = [f["steady"] for f in fleets]
        summary.update(
            start_burst_decisions_per_s=median(f["burst"]["decisions_per_s"] for f in fleets),
            start_burst_all_decided=all(f["burst"]["all_decided"] for f in fleets),
            start_burst_failed=max(f["burst"].get("failed", 0) for f in fleets),
            settled_in_s=max(f.get("settled_in_s", 0.0) for f in fleets),
            backlog_max=max(s["backlog_max"] for s in steady), backlog_end=max(s["backlog_end"] for s in steady),
            drift_latency_p50_ms=median(s["drift_latency_p50_ms"] for s in steady),
            drift_latency_p99_ms=median(s["drift_latency_p99_ms"] for s in steady),
            drifts_decided=sum(s["drifts_decided"] for s in steady), drifts=sum(s["drifts"] for s in steady),
            steady_cpu_per_s=median(sum(s["cpu_per_s"].values()) for s in steady))
    return summary


def report(result: dict) -> str:
    args, summary = result["args"], result["summary"]
    this, base = summary["this"], summary.get(args["baseline"])
    lines = ["# The central services at fleet scale, against an older commit", "",
             f"{result['date']}, this {result['cpus']}-CPU machine. Each tree runs its own central services "
             f"(nats-server, verifier, learner, planner in automatic mode, rules provider, trace store) as its "
             f"`bench.stack` starts them; the same simulated hosts drive both (every deployment kept at once: no "
             f"canary time in any number). {args['repetitions']} repetitions, trees alternated, medians. CPU: the "
             "central processes' utime + stime from /proc (the load generator excluded).", "",
             f"## Burst: {args['burst']} hosts publish their first profile at once", "",
             "| tree | decisions/s | CPU per decision (ms) | of which planner / learner / verifier / nats-server / "
             "traces |", "|---|---|---|---|"]
    for name, s in summary.items():
        by = s["burst_cpu_ms_by_role"]
        parts = " / ".join(f"{by.get(role, 0.0):.1f}" for role in ("planner", "learner", "verifier", "nats-server",
                                                                    "traces"))
        lines.append(f"| {name} | {s['burst_decisions_per_s']:.0f} | {s['burst_cpu_ms_per_decision']:.1f} | {parts} |")
    if base:
        lines += ["", f"This checkout against {args['baseline']}: "
                  f"{this['burst_decisions_per_s'] / base['burst_decisions_per_s']:.2f}x the decisions/s, "
                  f"{base['burst_cpu_ms_per_decision'] / this['burst_cpu_ms_per_decision']:.2f}x less CPU per "
                  "decision (target: 3x both)."]
    lines += ["", f"## Steady state: {args['hosts']} hosts, a profile each every {args['period_s']:g} s "
              f"({args['hosts'] / args['period_s']:.0f}/s), {args['drifts_per_s']:g} drifting a second, "
              f"{args['steady_s']:g} s", "",
              "| tree | fleet-start burst (decisions/s) | profiles read up after (s) | backlog max / at the end | "
              "drift decision p50 / p99 (ms) | drifts decided | central CPU (CPUs busy) |",
              "|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        if "backlog_max" not in s:
            lines.append(f"| {name} | not run | | | | | |")
            continue
        failed = f" ({s['start_burst_failed']} failed)" if s.get("start_burst_failed") else ""
        lines.append(f"| {name} | {s['start_burst_decisions_per_s']:.0f}"
                     f"{'' if s['start_burst_all_decided'] else ' (not all decided)'}{failed} | "
                     f"{s['settled_in_s']:.0f}{'' if s['settled_in_s'] < SETTLE_S else ' (never)'} | "
                     f"{s['backlog_max']} / "
                     f"{s['backlog_end']} | {s['drift_latency_p50_ms']:.0f} / {s['drift_latency_p99_ms']:.0f} | "
                     f"{s['drifts_decided']} of {s['drifts']} | {s['steady_cpu_per_s']:.2f} |")
    lines += ["", "Every host publishes every period from the start, so the planner's backlog grows while the "
              "fleet-start burst is decided; the steady state is measured once it has read them up (waited for at "
              f"most {SETTLE_S:.0f} s). The backlog is the planner's durable consumer's pending and unacknowledged "
              "profiles, read every second: ingest keeps up while it stays flat. A drift decision's latency runs "
              "from the drifted profile's publication to its cycle's result (queueing behind other profiles "
              "included).", "",
              "Reproduce: `python -m bench.fleet_scale` (the baseline's worktree is made under the cache dir; "
              "`--no-baseline` for this checkout only).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
