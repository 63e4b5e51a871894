"""Observer overhead: how much CPU the real observer process uses while it profiles the host
every second with ~500 threads alive, in procfs and in BPF mode.

Each run starts the real local stack (nats-server and the five services, as `schedcp up`
does) with SCHEDCP_PROFILE_INTERVAL_S=1, waits out start-up, then reads the observer's own
CPU time (utime + stime, /proc/<pid>/stat) over the measurement period. In BPF mode the
probes run inside the kernel on behalf of the tasks being switched, so their cost is not in
the observer's CPU time: it is read separately from the kernel's per-program statistics
(kernel.bpf_stats_enabled, turned on for the run and restored after).

Modes are interleaved (the order alternates) over several repetitions; medians are reported.
Writes bench/results/observer_overhead.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.stack import running_stack

RESULTS = Path(__file__).resolve().parent / "results"
BPF_STATS = Path("/proc/sys/kernel/bpf_stats_enabled")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TARGET_PCT = 2.0

# Threads that sleep a random time in [low, high] s and wake for a moment. Two populations:
# every thread waking about once a second (the worst case for procfs mode, which reads a
# thread's larger status file whenever it ran), and a server's mostly idle pools.
SCENARIOS = {"busy pool (each thread wakes every 0.5-2 s)": (0.5, 2.0),
             "idle pool (each thread wakes every 10-60 s)": (10.0, 60.0)}
POPULATION = """
import random, sys, threading, time
def worker(seed, low, high):
    rng = random.Random(seed)
    while True:
        time.sleep(rng.uniform(low, high))
n, low, high = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
for i in range(n):
    threading.Thread(target=worker, args=(i, low, high), daemon=True).start()
print("ready", flush=True)
time.sleep(3600)
"""


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def bpf_prog_runtime_ns(pid: int) -> int:
    """Total run_time_ns of the BPF programs whose file descriptors `pid` holds."""
    total = 0
    for fdinfo in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            text = fdinfo.read_text()
        except OSError:
            continue
        if "prog_type:" in text:
            total += next((int(line.split()[1]) for line in text.splitlines() if line.startswith("run_time_ns:")), 0)
    return total


def threads_alive() -> int:
    return sum(len(os.listdir(f"/proc/{p}/task")) for p in os.listdir("/proc") if p.isdigit()
               and os.path.isdir(f"/proc/{p}/task"))


def run_once(mode: str, warmup_s: float, measure_s: float) -> dict:
    with running_stack(SCHEDCP_OBSERVER_MODE=mode, SCHEDCP_PROFILE_INTERVAL_S="1") as (stack, statuses, _):
        observer = next(c for c in stack.running() if c.name == "observer")
        sampler = next(s.info.details["sampler"] for s in statuses if s.role == "observer")
        if not sampler.startswith(mode):
            raise SystemExit(f"the observer runs {sampler!r}, not {mode}")
        time.sleep(warmup_s)
        cpu0, bpf0, t0 = process_cpu_s(observer.pid), bpf_prog_runtime_ns(observer.pid), time.monotonic()
        time.sleep(measure_s)
        cpu1, bpf1, t1 = process_cpu_s(observer.pid), bpf_prog_runtime_ns(observer.pid), time.monotonic()
        alive = threads_alive()
    wall = t1 - t0
    return {
        "mode": mode,
        "observer_cpu_pct": 100 * (cpu1 - cpu0) / wall,
        "kernel_probe_pct": 100 * (bpf1 - bpf0) / 1e9 / wall,
        "threads_alive": alive,
        "seconds": wall,
    }


def summarise(runs: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for run in runs:
        out.setdefault(run["scenario"], {}).setdefault(run["mode"], []).append(run)
    return {scenario: {mode: {
        "observer_cpu_pct_median": statistics.median(r["observer_cpu_pct"] for r in mine),
        "kernel_probe_pct_median": statistics.median(r["kernel_probe_pct"] for r in mine),
        "observer_cpu_pct_runs": [round(r["observer_cpu_pct"], 3) for r in mine],
        "threads_alive_median": statistics.median(r["threads_alive"] for r in mine),
    } for mode, mine in modes.items()} for scenario, modes in out.items()}


def write_report(result: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "observer_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Observer overhead",
        "",
        f"{result['host']['cpus']} CPUs, Linux {result['host']['kernel']}, {result['date']}. The real observer "
        f"process (local stack, profile interval 1 s) with {result['threads']} extra threads alive; "
        f"{result['repetitions']} repetitions of {result['measure_s']:.0f} s per mode, modes interleaved; "
        f"medians. Target: under {TARGET_PCT:g} % of one core.",
        "",
        "| threads | mode | observer process, % of one core | in-kernel probes, % of one core | runs | "
        "threads alive |",
        "|---|---|---|---|---|---|",
    ]
    for scenario, modes in result["summary"].items():
        for mode, s in modes.items():
            probes = f"{s['kernel_probe_pct_median']:.3f}" if mode == "bpf" else "-"
            runs = ", ".join(f"{x:.2f}" for x in s["observer_cpu_pct_runs"])
            lines.append(f"| {scenario} | {mode} | {s['observer_cpu_pct_median']:.2f} | {probes} | {runs} | "
                         f"{s['threads_alive_median']:.0f} |")
    lines += ["", "![observer overhead](observer_overhead.png)", "",
              "Reproduce: `make bench` (or `.venv/bin/python -m bench.observer_overhead --help`).", ""]
    (RESULTS / "observer_overhead.md").write_text("\n".join(lines))
    plot(result["summary"])


def plot(summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [(scenario.split(" (")[0], mode, s) for scenario, modes in summary.items() for mode, s in modes.items()]
    labels = [f"{scenario}\n{mode}" for scenario, mode, _ in bars]
    own = [s["observer_cpu_pct_median"] for _, _, s in bars]
    probes = [s["kernel_probe_pct_median"] for _, _, s in bars]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.bar(labels, own, label="observer process")
    ax.bar(labels, probes, bottom=own, label="in-kernel BPF probes")
    for i, (_, _, s) in enumerate(bars):
        ax.scatter([i] * len(s["observer_cpu_pct_runs"]), s["observer_cpu_pct_runs"], color="black", s=10, zorder=3)
    ax.axhline(TARGET_PCT, color="red", linestyle="--", label=f"target {TARGET_PCT:g} %")
    ax.set_ylabel("% of one core")
    ax.set_title("Observer overhead, 1 s profile interval, ~500 extra threads")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "observer_overhead.png", dpi=120)


def run_scenario(scenario: str, low: float, high: float, modes: list[str], args) -> list[dict]:
    population = subprocess.Popen([sys.executable, "-c", POPULATION, str(args.threads), str(low), str(high)],
                                  stdout=subprocess.PIPE, text=True)
    runs = []
    try:
        population.stdout.readline()
        for rep in range(args.repetitions):
            for mode in modes if rep % 2 == 0 else list(reversed(modes)):
                print(f"{scenario}, repetition {rep + 1}/{args.repetitions}: {mode} ...", flush=True)
                run = run_once(mode, args.warmup, args.measure)
                runs.append({"scenario": scenario, **run})
                print(f"  observer {run['observer_cpu_pct']:.2f} % of a core, probes {run['kernel_probe_pct']:.3f} %",
                      flush=True)
    finally:
        population.kill()
        population.wait()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=500, help="extra threads to keep alive (default 500)")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds after start before measuring")
    parser.add_argument("--measure", type=float, default=20.0, help="seconds measured per run")
    parser.add_argument("--modes", default="procfs,bpf")
    args = parser.parse_args()
    modes = args.modes.split(",")
    # SIGTERM (timeout, kill) must still run the finally blocks: stop the stack, restore the sysctl.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    old_stats = BPF_STATS.read_text().strip() if BPF_STATS.exists() else None
    runs = []
    try:
        if old_stats is not None:
            BPF_STATS.write_text("1")
        for scenario, (low, high) in SCENARIOS.items():
            runs += run_scenario(scenario, low, high, modes, args)
    finally:
        if old_stats is not None:
            BPF_STATS.write_text(old_stats)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "host": {"cpus": os.cpu_count(), "kernel": platform.release()},
        "threads": args.threads, "repetitions": args.repetitions, "measure_s": args.measure,
        "runs": runs, "summary": summarise(runs),
    }
    write_report(result)
    print((RESULTS / "observer_overhead.md").read_text())


if __name__ == "__main__":
    main()
