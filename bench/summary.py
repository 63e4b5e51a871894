"""The headline figures of every benchmark in one page: reads bench/results/*.json (whatever
`make bench` has produced so far) and writes bench/results/README.md, each line linking to its
full report."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _colocation(d: dict) -> list[str]:
    s = d["summary"]
    kept = sorted({c["policy"] for c in d["cycles"] if c["kept"]}) or ["none"]
    lines = [f"cyclictest p99 {s['default']['cyclictest_p99_us']:.0f} us (default) -> "
             f"{s['schedcp']['cyclictest_p99_us']:.0f} us (schedcp: {', '.join(kept)}); alone "
             f"{s['alone']['cyclictest_p99_us']:.0f} us",
             f"reqwork p99 {s['default']['reqwork_p99_us']:.0f} -> {s['schedcp']['reqwork_p99_us']:.0f} us; alone "
             f"{s['alone']['reqwork_p99_us']:.0f} us",
             f"batch throughput under schedcp: {s['schedcp']['batch_ops_per_s'] / s['default']['batch_ops_per_s']:.0%} "
             "of default"]
    lines += [f"target {name}: {'met' if ok else 'not met'}" for name, ok in d["targets"].items()]
    for path in sorted({c["path"] for c in d["cycles"]}):
        cycles = [c for c in d["cycles"] if c["path"] == path]
        lines.append(f"cycle cost, {path} path: {min(c['wall_s'] for c in cycles):.1f}-"
                     f"{max(c['wall_s'] for c in cycles):.1f} s, {sum(c['llm_tokens'] for c in cycles)} LLM tokens")
    return lines


def _makespan(d: dict) -> list[str]:
    s = d["summary"]
    return [f"{name}: makespan {v['makespan_ms'] / 1000:.2f} s ({-v['reduction']:+.0%} vs EEVDF)"
            for name, v in s.items()] + [f"target: at least {d['target_reduction']:.0%} lower"]


def _planner_fleet(d: dict) -> list[str]:
    return [f"{n} hosts: {v['decisions_per_s']:.0f} decisions/s, decision p99 {v['latency_p99_ms']:.0f} ms "
            f"(queueing included), one cycle p50 {v['service_p50_ms']:.0f} ms" for n, v in d["summary"].items()]


def _fleet_scale(d: dict) -> list[str]:
    this, base = d["summary"]["this"], d["summary"].get(d["args"]["baseline"])
    lines = [f"burst of {d['args']['burst']} hosts: {this['burst_decisions_per_s']:.0f} decisions/s, "
             f"{this['burst_cpu_ms_per_decision']:.1f} ms of central CPU per decision"
             + (f" ({d['args']['baseline']}: {base['burst_decisions_per_s']:.0f}/s, "
                f"{base['burst_cpu_ms_per_decision']:.1f} ms)" if base else "")]
    if "backlog_max" in this:
        lines.append(f"{d['args']['hosts']} hosts, a profile each every {d['args']['period_s']:g} s: backlog at most "
                     f"{this['backlog_max']}, drift decision p99 {this['drift_latency_p99_ms']:.0f} ms")
    return lines


def _rollout(d: dict) -> list[str]:
    lines = [f"{d['hosts']} simulated hosts, two classes: rollout {d['state']} in {d['seconds']:.0f} s"
             + (" (the planner restarted mid-rollout)" if d["planner_restarted_after_deployments"] else "")]
    lines += [f"class {name} ({c['improvement']:+.0%} under the policy): {c['state']} after {len(c['waves'])} wave(s), "
              f"{c['running_it_at_the_end']} of {c['hosts']} hosts running it, "
              f"{c['hosts_deployed_twice']} deployed twice"
              for name, c in d["classes"].items()]
    return lines


def _verifier(d: dict) -> list[str]:
    return [f"{name}: {'approved' if v['approved'] else 'rejected'} in {v['cold_total_s']:.2f} s cold, "
            f"{v['cached_total_ms']:.0f} ms cached" for name, v in d["summary"].items()]


def _observer(d: dict) -> list[str]:
    return [f"{pool}, {mode}: {v['observer_cpu_pct_median']:.2f} % CPU + "
            f"{v['kernel_probe_pct_median']:.2f} % in-kernel" for pool, modes in d["summary"].items()
            for mode, v in modes.items()]


def _sched_ext_latency(d: dict) -> list[str]:
    return [f"{name}: wakeup p50 {v['p50_us']:.0f} us, p99 {v['p99_us']:.0f} us (TCG)"
            for name, v in d["summary"].items()]


def _verifier_latency(d: dict) -> list[str]:
    claimants = d.get("claimants", [])
    return [f"{load}: {name}{' (claims latency)' if name in claimants else ''} p50 x{v['p50'][1]:.2f}, "
            f"p99 x{v['p99'][1]:.2f} of EEVDF (median of {d['boots']} boots; p99 {v['p99'][0]:.2f}..{v['p99'][2]:.2f})"
            for load, by_policy in d["summary"].items() for name, v in sorted(by_policy.items())]


def _scenarios(d: dict) -> list[str]:
    lines = []
    for s in d["scenarios"]:
        captured = "-" if s["captured"] is None else f"{s['captured']:.0%}"
        decided = sorted({c.get("point") or c["policy"] or "nothing kept" for c in s["cycles"]}) or ["no cycle"]
        lines.append(f"{s['name']} ({s['primary']}): default {s['default']:.4g}, schedcp {s['schedcp']:.4g} "
                     f"({', '.join(decided)}), oracle {s['oracle']:.4g} ({s['oracle_arm']}); captured {captured}")
    c = d["classification"]
    lines.append(f"classification: {c['right']} of {c['groups']} labelled groups right")
    lines += [f"target {name}: {'met' if ok else 'not met'}" for name, ok in d.get("targets", {}).items()]
    return lines


def _search(d: dict) -> list[str]:
    """Per scenario: the points each search kept, and the oracle's medians of the kept policy's
    points, its library defaults first (what tuning its parameters gained, measured apart)."""
    lines = []
    for s in d["scenarios"]:
        kept = [c.get("point") or c["policy"] or "nothing kept" for c in s["cycles"]]
        for policy in sorted({c["policy"] for c in s["cycles"] if c["policy"]}):
            points = {arm: m["median"] for arm, m in s["arms"].items() if arm.split("(")[0] == policy}
            shown = ", ".join(f"{arm} {median:.4g}" for arm, median in points.items())
            lines.append(f"{s['name']} ({s['primary']}, default {s['default']:.4g}): the searches kept "
                         f"{', '.join(kept)}; the oracle measured {shown}")
        lines += [f"{s['name']}: {t['point']} {t['tuned']:.4g} against {t['at_defaults']:.4g} at its defaults, "
                  f"{100 * t['gain']:+.0f} % in {len(t['runs'][t['point']])} fresh alternating runs each"
                  for t in s.get("tuning", [])]
    return lines


def _canary_aa(d: dict) -> list[str]:
    lines = []
    for arm, wrong in (("no-op", "false keeps"), ("effective", "false rollbacks")):
        s = d["summary"][arm]
        rate = "-" if s["rate"] is None else f"{s['rate']:.0%} (95 % upper bound {s['rate_upper_95']:.0%})"
        lines.append(f"{wrong} ({arm} policy): {s['wrong']} of {s['judged']} judged, {rate}; rounds median "
                     f"{s['rounds_median']}, {s['inconclusive_at_bound']} inconclusive at the bound")
    canary = (f"canary: {d['rounds']} rounds (up to {d['max_rounds']}) of {d['window_s']:g} s, p99 at least "
              f"{d['min_improvement']:.0%} better; target: both rates under 5 %")
    return [*lines, canary]


SECTIONS: dict[str, tuple[str, Callable[[dict], list[str]]]] = {
    "scenarios": ("Scenario suite: real programs, schedcp against the oracle (this host)", _scenarios),
    "scenarios-vm": ("Scenario suite in a sched_ext VM (qemu TCG, loads scaled to its speed)", _scenarios),
    "colocation": ("Co-location: latency service beside CPU batch (this host)", _colocation),
    "scenarios-budget4": ("Parameter search: schedcp tune --budget 4 on two scenarios (this host)", _search),
    "canary_aa": ("Canary A/A calibration: false keeps and false rollbacks (this host)", _canary_aa),
    "canary_aa-vm": ("Canary A/A calibration in a sched_ext VM (rt-app beside batch, qemu TCG)", _canary_aa),
    "makespan": ("Batch long tail: makespan (sandbox VM)", _makespan),
    "planner_fleet": ("Planner at fleet scale (rules provider)", _planner_fleet),
    "fleet_scale": ("Central services at fleet scale, against an older commit", _fleet_scale),
    "rollout": ("Rollout across two classes of simulated hosts", _rollout),
    "verifier_stages": ("Verifier: time to a verdict", _verifier),
    "observer_overhead": ("Observer overhead (1 s profiles, ~600 threads)", _observer),
    "sched_ext_latency": ("EEVDF vs latency_boost wakeup latency (sandbox VM)", _sched_ext_latency),
    "verifier_latency": ("The library's wakeup latency against EEVDF, and DYN003's latency claim (sandbox VM)",
                         _verifier_latency),
}


def main() -> None:
    lines = ["# Benchmark results", "", "Headline figures from the reports in this folder (`make bench` rewrites "
             "them; each section's date is its last run). Full tables, methods and plots in each report.", ""]
    for name, (title, summarise) in SECTIONS.items():
        path = RESULTS / f"{name}.json"
        if not path.exists():
            lines += [f"## {title}", "", "not run yet", ""]
            continue
        data = json.loads(path.read_text())
        lines += [f"## {title}", "", f"[{name}.md]({name}.md), {data.get('date', '?')}", ""]
        lines += [f"- {line}" for line in summarise(data)] + [""]
    (RESULTS / "README.md").write_text("\n".join(lines))
    print((RESULTS / "README.md").read_text())


if __name__ == "__main__":
    main()
