"""Kernel releases: reading them, the release each kfunc arrived in against every library
policy's min_kernel, and the planner offering a sched_ext policy only to a host new enough."""

from __future__ import annotations

import asyncio
import re
import shutil

import pytest

from schedcp.domain import kernels, policies
from schedcp.runtime.errors import FailedPrecondition
from schedcp.v1 import common_pb2, cycle_pb2, goal_pb2, host_pb2, learner_pb2
from services.planner import goals, synthesis
from services.planner.planning import Planner
from tests.test_planner import BATCH, LATENCY, group, profile

SCHED_EXT = [m for m in policies.library() if m.kind == "sched_ext"]


@pytest.mark.parametrize(("release", "parsed"), [
    ("6.18.12+deb13-cloud-amd64", (6, 18, 12)),
    ("6.12.0-rc1", (6, 12, 0)),
    ("6.13", (6, 13, 0)),
    ("6.18.44-fc-v1272", (6, 18, 44)),
    ("5.15.0-91-generic", (5, 15, 0)),
    ("", None),
    ("linux", None),
    ("6", None),
])
def test_releases_are_read_as_numbers_whatever_follows(release, parsed):
    assert kernels.parse(release) == parsed


@pytest.mark.parametrize(("release", "minimum", "expected"), [
    ("6.12.0-rc1", "6.13", False),
    ("6.12.58+deb13-amd64", "6.13", False),
    ("6.13.0-rc1", "6.13", True),  # a release candidate has its release's kfuncs
    ("6.13", "6.13", True),
    ("6.9.1", "6.13", False),      # numbers, not text: 6.9 < 6.13
    ("6.18.12+deb13-cloud-amd64", "6.14", True),
    ("7.0.0", "6.14", True),
    ("6.13.4", "6.13.5", False),
    ("", "6.13", None),            # not reported: unknown, the caller decides
    ("6.13", "", None),
])
def test_a_release_is_compared_with_a_minimum(release, minimum, expected):
    assert kernels.at_least(release, minimum) is expected


@pytest.mark.parametrize("meta", SCHED_EXT, ids=[m.name for m in SCHED_EXT])
def test_min_kernel_is_the_release_of_the_newest_kfunc_called(meta):
    calls = policies.kfunc_calls(policies.source_of(meta))
    assert calls == set(meta.requires.kfuncs)
    assert kernels.parse(meta.requires.min_kernel) == kernels.required_by(calls)


def test_every_declared_kfunc_has_a_release():
    header = (policies.LIBRARY / "sched_ext" / "common.bpf.h").read_text()
    declared = set(re.findall(r"\b(scx_bpf_\w+)\s*\([^;]*\)\s*__ksym", header))
    assert declared and declared <= kernels.KFUNC_SINCE.keys(), declared - kernels.KFUNC_SINCE.keys()


def edited_library(tmp_path, name: str, old: str, new: str):
    root = tmp_path / "policies"
    shutil.copytree(policies.LIBRARY, root)
    toml = root / "sched_ext" / f"{name}.toml"
    assert old in toml.read_text()
    toml.write_text(toml.read_text().replace(old, new))
    return root


def test_a_min_kernel_older_than_a_kfunc_fails_to_load(tmp_path):
    root = edited_library(tmp_path, "ljf", 'min_kernel = "6.14"', 'min_kernel = "6.13"')
    with pytest.raises(policies.LibraryError, match=r"min_kernel 6.13 is older than 6.14, where scx_bpf_now arrived"):
        policies.library(root)
    root = edited_library(tmp_path / "2", "fifo", 'min_kernel = "6.13"', 'min_kernel = "6.12"')
    with pytest.raises(policies.LibraryError, match="scx_bpf_dsq_insert, scx_bpf_dsq_move_to_local arrived"):
        policies.library(root)


def test_the_listed_kfuncs_must_be_the_ones_called(tmp_path):
    root = edited_library(tmp_path, "fifo", '"scx_bpf_select_cpu_dfl"]', '"scx_bpf_select_cpu_dfl", "scx_bpf_now"]')
    with pytest.raises(policies.LibraryError, match="calls the kfuncs"):
        policies.library(root)


def latency_host(release: str):
    p = profile(group("nginx", LATENCY, 0.2), group("ffmpeg", BATCH, 4.0), backends=("sched_ext", "native"))
    p.host.kernel_release = release
    return p


def test_a_host_older_than_min_kernel_gets_no_sched_ext_candidate():
    old = latency_host("6.12.0-rc1")
    found = synthesis.candidates(goals.infer(old), old).candidates
    assert [c.artifact.name for c in found] == ["batch_sched_idle", "batch_idle_cgroup"]
    assert all("latency_boost needs Linux 6.13 or newer, the host runs 6.12.0-rc1" in c.rationale for c in found)
    assert "vtime needs Linux 6.13" in found[0].rationale

    for release in ("6.13.0-rc1", "6.18.12+deb13-cloud-amd64", ""):  # "": not reported, not excluded
        new = latency_host(release)
        found = synthesis.candidates(goals.infer(new), new).candidates
        assert [c.artifact.name for c in found][:2] == ["latency_boost", "vtime"], release
        assert not any("Not offered" in c.rationale for c in found)


def test_ljf_needs_a_kernel_with_scx_bpf_now():
    goal = goal_pb2.OptimizationGoal(objective=goal_pb2.OBJECTIVE_MAKESPAN,
                                     target_groups=[common_pb2.GroupMatcher(comm="job-long")])
    host = profile(group("job-long", BATCH, 3.0), backends=("sched_ext", "native"))
    host.host.kernel_release = "6.13.12-arch1-1"
    assert [c.artifact.name for c in synthesis.candidates(goal, host).candidates] == ["favour_group"]  # native only
    host.host.kernel_release = "6.14.0"
    assert [c.artifact.name for c in synthesis.candidates(goal, host).candidates] == ["ljf", "favour_group"]


def test_a_named_policy_is_refused_on_a_host_too_old_for_it():
    planner = Planner.__new__(Planner)  # only the library is needed
    planner._library = policies.library()
    host = host_pb2.HostRegistration(host_id="h1", facts=host_pb2.HostFacts(
        kernel_release="6.13.0-1-amd64", backends=["sched_ext", "native"]))
    planner.check_policy("vtime", host)
    with pytest.raises(FailedPrecondition, match=r"ljf needs Linux 6.14 or newer, the host runs 6.13.0-1-amd64 \(h1\)"):
        planner.check_policy("ljf", host)


def test_a_repository_policy_too_new_for_the_host_is_not_fetched():
    planner = Planner.__new__(Planner)  # no bus: fetching the artifact would fail
    match = learner_pb2.PolicyMatch(confidence=0.5)
    match.policy.metadata.name, match.policy.artifact_digest = "ljf", "0" * 64
    match.policy.metadata.requirements.min_kernel = "6.14"
    search = learner_pb2.SearchPoliciesResponse(matches=[match])
    assert asyncio.run(planner._stored(search, cycle_pb2.CandidateList(), "6.13.1")) == {}
