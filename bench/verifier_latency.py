"""How far the library's wakeup latency sits from EEVDF's in the same boot: the spread a latency
bound in the verifier's dynamic stage (DYN003) would have to allow.

For each boot of the sandbox micro-VM: every sched_ext library policy with its default
parameters (latency_boost boosting the sleeper, as the verifier holds a latency claim on the task
a policy favours), in a new random order, each bracketed by EEVDF runs of the same probe; the
ratio is the policy's figure over the worse of the two EEVDF runs around it. The policies that
claim latency are held to DynamicBounds' claimed_p50_factor and claimed_p99_factor (DYN003).
Two loads: DYN003's own (a 1 kHz sleeper among 4 CPU hogs on 2 vCPUs, so every wakeup waits for
a running hog's slice) and one with an idle CPU (1 hog), where a scheduler that uses idle CPUs
wakes the sleeper at once.
Writes bench/results/verifier_latency.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from schedcp.domain import policies
from schedcp.toolchain import runner
from schedcp.toolchain.build import Toolchain
from services.verifier.sandbox_stages import DynamicBounds

RESULTS = Path(__file__).resolve().parent / "results"
LOADS = {"contended (4 hogs, DYN003's probe)": 4, "an idle CPU (1 hog)": 1}
SECONDS = 2
# The sleeper's own name ("probe-wakeup"), as the verifier names it for a claimant that favours it.
PARAMS = {"latency_boost": {"boost_comm": "probe-wakeup"}}


def plan(objects: dict[str, bytes], hogs: int) -> tuple[runner.Plan, list[str]]:
    """One boot: EEVDF, then each policy followed by EEVDF again, in a random order."""
    order = list(objects)
    random.shuffle(order)
    probe = f"/bin/probe-wakeup {hogs} {SECONDS}"
    p = runner.Plan()
    p.add("e0", probe)
    for i, name in enumerate(order):
        path = p.add_file(f"/art/{i}.bpf.o", objects[name])
        p.add(f"c{i}", runner.load_and_hold(path, PARAMS.get(name, {}), hold=probe))
        p.add(f"e{i + 1}", probe)
    return p, order


def ratios(vm: runner.VmRun, order: list[str]) -> dict[str, dict[str, float]]:
    """Policy -> {p50, p99}: its figure over the worse of the EEVDF runs before and after it."""
    def probe(step_id: str) -> dict | None:
        step = vm.steps.get(step_id)
        return next((r for r in step.events("probe") if r.get("probe") == "wakeup"), None) if step else None

    found = {}
    for i, name in enumerate(order):
        ran, around = probe(f"c{i}"), [probe(f"e{i}"), probe(f"e{i + 1}")]
        if ran and all(around):
            found[name] = {q: ran[f"{q}_us"] / max(e[f"{q}_us"] for e in around) for q in ("p50", "p99")}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boots", type=int, default=4, help="boots per load (default 4)")
    args = parser.parse_args()
    toolchain = Toolchain()
    kernel = toolchain.kernel()
    library = [m for m in policies.library() if m.kind == "sched_ext"]
    work = Path(tempfile.mkdtemp())
    objects = {m.name: toolchain.compile_policy(policies.source_of(m), kernel, out_dir=work / m.name).read_bytes()
               for m in library}
    runs: dict[str, dict[str, list[dict[str, float]]]] = {load: {m.name: [] for m in library} for load in LOADS}
    for boot in range(args.boots):
        for load, hogs in LOADS.items():
            print(f"boot {boot + 1}/{args.boots}, {load} ...", flush=True)
            the_plan, order = plan(objects, hogs)
            vm = runner.run(the_plan, kernel, toolchain, timeout_s=900)
            for name, found in ratios(vm, order).items():
                runs[load][name].append(found)
    summary = {load: {name: {q: [min(r[q] for r in rs), statistics.median(r[q] for r in rs), max(r[q] for r in rs)]
                             for q in ("p50", "p99")} for name, rs in by_policy.items() if rs}
               for load, by_policy in runs.items()}
    bounds = DynamicBounds()
    result = {"date": time.strftime("%Y-%m-%d"), "kernel": kernel.release, "boots": args.boots, "runs": runs,
              "summary": summary, "claimants": sorted(m.name for m in library if "latency" in m.goals),
              "claimed_factors": {"p50": bounds.claimed_p50_factor, "p99": bounds.claimed_p99_factor}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "verifier_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "verifier_latency.md").write_text(report(result))
    print(report(result))


def report(result: dict) -> str:
    factors = result["claimed_factors"]
    lines = ["# The library's wakeup latency against EEVDF in the same boot (verifier calibration)", "",
             f"Kernel {result['kernel']} under qemu TCG (2 vCPUs), {result['date']}, {result['boots']} boots per "
             f"load. Each library policy with its default parameters (latency_boost boosting the sleeper), in a "
             f"random order per boot, bracketed by EEVDF runs of the same probe (a 1 kHz sleeper, {SECONDS} s); the "
             "ratio is the policy's figure over the worse EEVDF run around it. min / median / max over boots.", "",
             f"The policies that claim latency ({', '.join(result['claimants'])}) are held, under DYN003's load, to "
             f"p50 <= {factors['p50']:g}x and p99 <= {factors['p99']:g}x EEVDF's in the same boot; the others "
             "only to the pathology bound (p99 within max(4x, +500 ms)).", ""]
    for load, by_policy in result["summary"].items():
        lines += [f"## {load}", "", "| policy | claims latency | p50 / EEVDF | p99 / EEVDF |", "|---|---|---|---|"]
        for name, s in sorted(by_policy.items()):
            claim = "yes" if name in result["claimants"] else ""
            lines.append(f"| {name} | {claim} | "
                         + " | ".join(" / ".join(f"{v:.2f}" for v in s[q]) for q in ("p50", "p99")) + " |")
        lines.append("")
    lines += ["What it means for DYN003 is in docs/verifier.md (\"A latency claim is held to EEVDF\").", "",
              "Reproduce: `make bench` (or `python -m bench.verifier_latency --boots N`).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
