"""The classifier and the rules provider on real feature vectors: profiles the observer took of
the scenario suite's programs (nginx, redis, make, xz, hackbench, rt-app beside or without CPU
batch; bench/scenarios), recorded with `python -m bench.scenarios --features
tests/data/scenario_features.json` and labelled there with each group's true class and each
scenario's right objective. The numbers are the observer's, not written for these tests."""

import json
from pathlib import Path

import pytest
from google.protobuf import json_format

from schedcp.v1 import goal_pb2, profile_pb2
from services.observer.classify import classify
from services.planner import goals

DATA = json.loads((Path(__file__).parent / "data" / "scenario_features.json").read_text())
CLASSES = {"latency_sensitive": profile_pb2.WORKLOAD_CLASS_LATENCY_SENSITIVE, "batch": profile_pb2.WORKLOAD_CLASS_BATCH,
           "background": profile_pb2.WORKLOAD_CLASS_BACKGROUND}
OBJECTIVES = {"tail_latency": goal_pb2.OBJECTIVE_TAIL_LATENCY, "throughput": goal_pb2.OBJECTIVE_THROUGHPUT,
              "makespan": goal_pb2.OBJECTIVE_MAKESPAN, "none": goal_pb2.OBJECTIVE_UNSPECIFIED}
# What the rules provider cannot infer yet, and why (none today: the long_tail batch's long job is
# known by its input, see services/observer/jobs.py).
KNOWN_GAPS: dict[str, str] = {}


def _id(row: dict) -> str:
    return f"{row['scenario']}-{row['condition']}-{row['group']}"


@pytest.mark.parametrize("row", DATA["groups"], ids=_id)
def test_each_labelled_group_is_read_as_what_it_is(row):
    features = json_format.ParseDict(row["features"], profile_pb2.GroupFeatures())
    result = classify(features)
    assert result.workload_class == CLASSES[row["truth"]], (row["group"], result.reason)


def _profiles() -> list:
    """Each recorded profile with the objective that is right for it: the scenario's own when its
    programs contend, none for a service profiled without the batch beside it (it fits alone)."""
    cases = []
    for entry in DATA["profiles"]:
        expected = entry["objective"] if entry["condition"] == "contended" else "none"
        gap = KNOWN_GAPS.get(entry["scenario"]) if entry["condition"] == "contended" else None
        marks = [pytest.mark.xfail(reason=gap, strict=True)] if gap else []
        cases.append(pytest.param(entry, expected, id=f"{entry['scenario']}-{entry['condition']}", marks=marks))
    return cases


@pytest.mark.parametrize(("entry", "expected"), _profiles())
def test_the_rules_provider_infers_the_right_objective_without_an_intent(entry, expected):
    profile = json_format.ParseDict(entry["profile"], profile_pb2.WorkloadProfile())
    # Classified again by today's rules: the recorded classes were the observer's at recording time.
    for group in profile.groups:
        group.classification.CopyFrom(classify(group.features))
    goal = goals.infer(profile)
    # "a or b": either is right (a build is a fixed amount of work with, at times, one long compile).
    assert goal.objective in [OBJECTIVES[o] for o in expected.split(" or ")], goal.rationale


def _latency_profiles() -> list:
    return [pytest.param(entry, id=entry["scenario"]) for entry in DATA["profiles"]
            if entry["condition"] == "contended" and entry["objective"] == "tail_latency"]


@pytest.mark.parametrize("entry", _latency_profiles())
def test_a_protected_service_brings_every_labelled_latency_group(entry):
    """Protecting a service protects all of its request path that runs here: an on-host client's
    waits are part of the latency it measures (kv_build's redis-benchmark, left out at confidence
    0.14, kept redis-benchmark's p99 at half the default's while the oracle took it to 1/29th)."""
    profile = json_format.ParseDict(entry["profile"], profile_pb2.WorkloadProfile())
    for group in profile.groups:
        group.classification.CopyFrom(classify(group.features))
    goal = goals.infer(profile)
    protected = {target.comm for target in goal.target_groups}
    labelled = {row["group"] for row in DATA["groups"] if row["scenario"] == entry["scenario"]
                and row["condition"] == "contended" and row["truth"] == "latency_sensitive"}
    assert protected == labelled, goal.rationale
