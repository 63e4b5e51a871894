"""EEVDF vs the latency_boost sched_ext policy on the wakeup probe under CPU hogs, in one boot
of the sandbox micro-VM (TCG: compare within a boot, never across boots; PLATFORM.md).

Each repetition runs the probe (a 1 kHz sleeper and HOGS CPU hogs) twice: once under the
kernel's default scheduler, once with latency_boost boosting the sleeper; the order alternates
between repetitions. Medians over repetitions. Writes bench/results/sched_ext_latency.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from schedcp.domain import policies
from schedcp.toolchain import build, runner

RESULTS = Path(__file__).resolve().parent / "results"
METRICS = ("p50_us", "p90_us", "p99_us", "max_us")


def plan(obj: bytes, repetitions: int, hogs: int, seconds: float) -> runner.Plan:
    p = runner.Plan()
    path = p.add_file("/art/latency_boost.bpf.o", obj)
    probe = f"/bin/probe-wakeup {hogs} {seconds}"
    for rep in range(repetitions):
        steps = [("eevdf", probe),
                 ("latency_boost", runner.load_and_hold(path, {"boost_comm": "probe-wakeup"}, hold=probe))]
        for name, script in steps if rep % 2 == 0 else reversed(steps):
            p.add(f"{name}-{rep}", script)
    return p


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--hogs", type=int, default=8, help="CPU hogs (the VM has 2 vCPUs; default 8)")
    parser.add_argument("--seconds", type=float, default=3.0, help="probe duration per run")
    args = parser.parse_args()

    toolchain = build.Toolchain()
    kernel = toolchain.kernel()
    meta = policies.load(policies.LIBRARY / "sched_ext" / "latency_boost.toml")
    obj = toolchain.compile_policy(policies.source_of(meta), kernel).read_bytes()
    print(f"booting {kernel.release}: {args.repetitions} x (EEVDF, latency_boost), {args.hogs} hogs, "
          f"{args.seconds:g} s each ...", flush=True)
    # One host thread per vCPU: realistic timing (see runner.run about the rare guest oops).
    vm = runner.run(plan(obj, args.repetitions, args.hogs, args.seconds), kernel, toolchain, timeout_s=1200,
                    multithreaded=True)
    if vm.crashed:
        print("the guest kernel crashed under multi-threaded TCG; booting once more", flush=True)
        vm = runner.run(plan(obj, args.repetitions, args.hogs, args.seconds), kernel, toolchain, timeout_s=1200,
                        multithreaded=True)
    if not vm.finished:
        raise SystemExit(f"the VM did not finish; console tail:\n{vm.console[-2000:]}")
    runs = {"eevdf": [], "latency_boost": []}
    for step_id, step in vm.steps.items():
        name, probe = step_id.rsplit("-", 1)[0], step.first("probe")
        # latency_boost numbers count only if it was enabled throughout (unloaded by us, not ejected).
        boosted_ok = name == "eevdf" or (step.first("enabled") and (step.first("exit") or {}).get("by") == "signal")
        if probe and boosted_ok:
            runs[name].append(probe)
    missing = [name for name, probes in runs.items() if not probes]
    if missing:
        raise SystemExit(f"no valid runs for {', '.join(missing)}; console tail:\n{vm.console[-2000:]}")
    summary = {name: {m: statistics.median(r[m] for r in probes) for m in METRICS} for name, probes in runs.items()}
    result = {"date": time.strftime("%Y-%m-%d"), "kernel": kernel.release, "hogs": args.hogs,
              "seconds": args.seconds, "repetitions": args.repetitions, "vm_seconds": round(vm.seconds, 1),
              "runs": runs, "summary": summary}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sched_ext_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Wakeup latency in the sandbox VM: EEVDF vs latency_boost", "",
             f"Kernel {kernel.release} under qemu TCG (2 vCPUs, one host thread each), {result['date']}. "
             f"A 1 kHz sleeper (`probe-wakeup`) with {args.hogs} CPU hogs, {args.seconds:g} s per run, "
             f"{args.repetitions} repetitions alternating the order, one boot; medians over repetitions. "
             "Absolute numbers are TCG's: only the comparison within the boot means something.", "",
             "| scheduler | " + " | ".join(m.replace("_us", " (us)") for m in METRICS) + " |",
             "|---|" + "---|" * len(METRICS)]
    for name, s in summary.items():
        lines.append(f"| {name} | " + " | ".join(f"{s[m]:.0f}" for m in METRICS) + " |")
    lines += ["", "![wakeup latency](sched_ext_latency.png)", "", "Reproduce: `make bench`.", ""]
    (RESULTS / "sched_ext_latency.md").write_text("\n".join(lines))
    plot(runs)
    print((RESULTS / "sched_ext_latency.md").read_text())


def plot(runs: dict[str, list[dict]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
    for ax, metric in zip(axes, ("p50_us", "p99_us"), strict=True):
        ax.boxplot([[r[metric] for r in runs[name]] for name in runs], tick_labels=list(runs))
        ax.set_yscale("log")
        ax.set_title(f"wakeup latency {metric.removesuffix('_us')}")
        ax.set_ylabel("us (log)")
    fig.tight_layout()
    fig.savefig(RESULTS / "sched_ext_latency.png", dpi=120)


if __name__ == "__main__":
    main()
