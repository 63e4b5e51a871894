"""The verifier's cost: time per stage and in total per candidate, cold (no_cache: every stage
runs, one micro-VM boot for stages 3-4) and cached (the verdict cache answers).

Runs the real local stack and calls Verify over gRPC like the planner and `schedcp verify` do.
Candidates: two library policies that pass every stage, one refused by each of the static,
compile, kernel-verifier and dynamic stages (from the test corpus), and a native policy. Cold
runs are interleaved across candidates, repeated; medians reported.
Writes bench/results/verifier_stages.{json,md,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

from bench.stack import running_stack
from schedcp.domain import native_policies, policies
from schedcp.runtime import rpc
from schedcp.toolchain.build import Toolchain
from schedcp.toolchain.runner import accelerator
from schedcp.v1 import common_pb2, policy_pb2, verdict_pb2, verifier_pb2, verifier_pb2_grpc
from services.verifier.sandbox_stages import DynamicBounds

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CORPUS = ROOT / "tests" / "verifier_corpus"
STAGES = {verdict_pb2.VERIFY_STAGE_STATIC: "static", verdict_pb2.VERIFY_STAGE_COMPILE: "compile",
          verdict_pb2.VERIFY_STAGE_KERNEL_VERIFIER: "kernel verifier + dynamic (one boot)",
          verdict_pb2.VERIFY_STAGE_NATIVE_CHECKS: "native checks", verdict_pb2.VERIFY_STAGE_SIGN: "sign"}


def candidates() -> dict[str, policy_pb2.PolicyArtifact]:
    def sched_ext(name: str, path: Path) -> policy_pb2.PolicyArtifact:
        return policy_pb2.PolicyArtifact(name=name, sched_ext=policy_pb2.SchedExtProgram(source=path.read_text()))

    def from_library(meta: policies.PolicyMetadata) -> policy_pb2.PolicyArtifact:
        # With its claims, as the planner sends it: vtime's latency claim is held to EEVDF.
        return policy_pb2.PolicyArtifact(name=meta.name, sched_ext=policies.sched_ext_program(meta))

    library = {m.name: m for m in policies.library()}
    native = library["batch_sched_idle"]
    return {
        "fifo (passes)": from_library(library["fifo"]),
        "vtime (passes)": from_library(library["vtime"]),
        "static reject": sched_ext("bad-static", CORPUS / "static" / "write_user.bpf.c"),
        "compile reject": sched_ext("bad-compile", CORPUS / "compile" / "syntax_error.bpf.c"),
        "kernel verifier reject": sched_ext("bad-verifier", CORPUS / "kernel_verifier" / "null_lookup.bpf.c"),
        "dynamic reject": sched_ext("bad-dynamic", CORPUS / "dynamic" / "unfair_slices.bpf.c"),
        "native (passes)": policy_pb2.PolicyArtifact(name=native.name, native=native_policies.build(
            native, {}, [common_pb2.GroupMatcher(comm="stress-ng-cpu")])),
    }


async def verify(addr: str, artifact: policy_pb2.PolicyArtifact, no_cache: bool) -> dict:
    started = time.monotonic()
    async with rpc.channel(addr) as channel:
        stub = verifier_pb2_grpc.VerifierServiceStub(channel)
        async for progress in stub.Verify(verifier_pb2.VerifyRequest(artifact=artifact, no_cache=no_cache)):
            if progress.HasField("verdict"):
                verdict = progress.verdict
    total = time.monotonic() - started
    stages: dict[str, float] = {}
    for stage in verdict.stages:
        name = STAGES.get(stage.stage)
        if name:  # the dynamic stage's duration is the same boot as the kernel verifier's
            stages[name] = stages.get(name, 0) + stage.duration.ToNanoseconds() / 1e9
    return {"total_s": total, "stages_s": stages, "approved": verdict.claims.approved, "cached": verdict.cached,
            "summary": verdict.summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args()
    cases = candidates()
    toolchain = Toolchain()
    toolchain.kernel(), toolchain.loader(), toolchain.probes()  # build once, outside the timings
    runs: dict[str, dict[str, list[dict]]] = {name: {"cold": [], "cached": []} for name in cases}
    with running_stack() as (_, _, settings):
        addr = settings.verifier_addr
        for rep in range(args.repetitions):
            order = list(cases) if rep % 2 == 0 else list(reversed(cases))
            for name in order:
                cold = asyncio.run(verify(addr, cases[name], no_cache=True))
                cached = asyncio.run(verify(addr, cases[name], no_cache=False))
                runs[name]["cold"].append(cold)
                runs[name]["cached"].append(cached)
                print(f"rep {rep + 1}: {name}: cold {cold['total_s']:.2f} s, cached {cached['total_s'] * 1000:.0f} ms "
                      f"- {cold['summary'][:90]}", flush=True)
    summary = {name: {
        "approved": r["cold"][0]["approved"],
        "cold_total_s": statistics.median(x["total_s"] for x in r["cold"]),
        "cached_total_ms": 1000 * statistics.median(x["total_s"] for x in r["cached"]),
        "stages_s": {stage: statistics.median(x["stages_s"].get(stage, 0) for x in r["cold"])
                     for stage in r["cold"][0]["stages_s"]},
    } for name, r in runs.items()}
    result = {"date": time.strftime("%Y-%m-%d"), "accelerator": "kvm" if accelerator(toolchain.kernel()) else "tcg",
              "repetitions": args.repetitions, "summary": summary, "runs": runs}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "verifier_stages.json").write_text(json.dumps(result, indent=2) + "\n")
    write_report(result)


def guest_seconds() -> float:
    """How long the dynamic tests run inside the VM, by their bounds (the baseline's probe too)."""
    b = DynamicBounds()
    return 2 * b.latency_s + b.fairness_s + b.flood_s + b.forkstorm_s


def write_report(result: dict) -> None:
    lines = ["# The verifier: time per stage and per candidate", "",
             f"{result['date']}, the real local stack on this machine, Verify over gRPC; micro-VM under "
             f"{result['accelerator'].upper()}; {result['repetitions']} cold runs per candidate, interleaved, "
             "medians. Cold: `no_cache`, every stage runs. Cached: the same request again.", "",
             "| candidate | verdict | cold total (s) | cached (ms) | stages (s) |", "|---|---|---|---|---|"]
    for name, s in result["summary"].items():
        stages = ", ".join(f"{stage} {seconds:.2f}" for stage, seconds in s["stages_s"].items())
        lines.append(f"| {name} | {'approved' if s['approved'] else 'rejected'} | {s['cold_total_s']:.2f} | "
                     f"{s['cached_total_ms']:.0f} | {stages} |")
    lines += ["", "![time per stage](verifier_stages.png)", "",
              "The micro-VM boot (stages 3 and 4 together: the EEVDF baseline, then latency, fairness, flood "
              f"and fork tests for about {guest_seconds():g} s of guest time) dominates every candidate that gets "
              "that far.", "",
              "Reproduce: `make bench`.", ""]
    (RESULTS / "verifier_stages.md").write_text("\n".join(lines))
    plot(result["summary"])
    print((RESULTS / "verifier_stages.md").read_text())


def plot(summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    stage_names = [s for s in STAGES.values() if any(s in summary[n]["stages_s"] for n in names)]
    fig, ax = plt.subplots(figsize=(9, 4))
    bottoms = [0.0] * len(names)
    for stage in stage_names:
        values = [summary[n]["stages_s"].get(stage, 0) for n in names]
        ax.barh(names, values, left=bottoms, label=stage)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    ax.set_xlabel("seconds (median of cold runs)")
    ax.set_title("Verify: time per stage")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "verifier_stages.png", dpi=120)


if __name__ == "__main__":
    main()
