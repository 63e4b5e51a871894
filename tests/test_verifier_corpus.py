"""The verifier's corpus of bad candidates (tests/verifier_corpus/<stage>/): every one is
rejected, at the stage its directory names, for the reason its header names; every library
policy passes every stage. The candidates that reach the micro-VM share one boot with the
library policies (the service boots one per candidate)."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest
from google.protobuf import json_format

from schedcp.domain import native_policies, policies
from schedcp.runtime.errors import InvalidArgument
from schedcp.toolchain.build import Toolchain
from schedcp.v1 import common_pb2, policy_pb2, verdict_pb2
from services.verifier import native_checks, pipeline, sandbox_stages, stages

CORPUS = Path(__file__).parent / "verifier_corpus"
STAGE_OF_DIR = {"static": verdict_pb2.VERIFY_STAGE_STATIC, "compile": verdict_pb2.VERIFY_STAGE_COMPILE,
                "kernel_verifier": verdict_pb2.VERIFY_STAGE_KERNEL_VERIFIER,
                "dynamic": verdict_pb2.VERIFY_STAGE_DYNAMIC}
EARLY = sorted([*CORPUS.glob("static/*.bpf.c"), *CORPUS.glob("compile/*.bpf.c")])
IN_VM = sorted([*CORPUS.glob("kernel_verifier/*.bpf.c"), *CORPUS.glob("dynamic/*.bpf.c")])
NATIVE = sorted(CORPUS.glob("native/*.json"))
LIBRARY = [m for m in policies.library() if m.kind == "sched_ext"]
NATIVE_LIBRARY = [m for m in policies.library() if m.kind == "native"]
# latency_boost boosts a service by name, as the planner deploys it (its default boosts nothing):
# its latency claim is held on the sleeper named so.
LIBRARY_PARAMS = {"latency_boost": {"boost_comm": "nginx"}}
# The shared boot runs ~16 candidates for ~10 s each under TCG: longer than the default limit.
IN_VM_TIMEOUT = pytest.mark.timeout(900)
# The whole batch normally takes about two minutes under TCG.
VM_TIMEOUT_S = 360


def case_id(path: Path) -> str:
    return f"{path.parent.name}/{path.name.split('.')[0]}"


def expectations(text: str) -> list[str]:
    """What a case's rejection must say: `expect: X`, or `expect: X | Y` when either is right."""
    return [e.strip() for e in re.search(r"expect: (.+)", text).group(1).split(" | ")]


def claims(text: str) -> tuple[str, ...]:
    """What a case says it is for (`claims: latency`), as SchedExtProgram.goals would."""
    found = re.search(r"claims: (.+)", text)
    return tuple(g.strip() for g in found.group(1).split(",")) if found else ()


@pytest.fixture(scope="module")
def toolchain() -> Toolchain:
    return Toolchain()


def early_stages(source: str, toolchain: Toolchain, workdir: Path) -> tuple[list[verdict_pb2.StageResult], bytes]:
    """Stages 1 and 2 as the pipeline runs them: stop at the first failure."""
    static = stages.static_stage(source)
    if static.status != common_pb2.STAGE_STATUS_SUCCEEDED:
        return [static], b""
    compiled, obj = stages.compile_stage(source, toolchain.kernel(), toolchain, workdir)
    return [static, compiled], obj.read_bytes() if obj else b""


@pytest.fixture(scope="module")
def vm_results(toolchain, tmp_path_factory) -> dict[str, list[verdict_pb2.StageResult]]:
    """Stages 1-4 for the kernel-verifier and dynamic corpus and the library, one boot."""
    results, candidates = {}, []
    sources = {case_id(p): (p.read_text(), {}, "", claims(p.read_text())) for p in IN_VM}
    sources.update({m.name: (policies.source_of(m).read_text(), LIBRARY_PARAMS.get(m.name, {}), m.ops_name,
                             tuple(m.goals)) for m in LIBRARY})
    for name, (source, params, ops_name, goals) in sources.items():
        results[name], obj = early_stages(source, toolchain, tmp_path_factory.mktemp("c"))
        if obj:
            candidates.append(sandbox_stages.Candidate(name, obj, params, ops_name, goals))
    outcomes = sandbox_stages.run(candidates, toolchain.kernel(), toolchain, timeout_s=VM_TIMEOUT_S)
    if any("(timeout)" in f.message for o in outcomes.values() for f in o.kernel_verifier.findings):
        # Once in a full `make test` run (not reproduced in 10 boots alone) the batch's guest
        # stopped making progress inside one candidate; the batch runs again once, and a second
        # hang fails the tests. The service boots once per candidate and rejects a hang.
        warnings.warn("the sandbox VM timed out on the corpus batch; booting it again", stacklevel=1)
        outcomes = sandbox_stages.run(candidates, toolchain.kernel(), toolchain, timeout_s=VM_TIMEOUT_S)
    for name, outcome in outcomes.items():
        results[name] += [outcome.kernel_verifier, outcome.dynamic]
    return results


def assert_rejected_as_expected(results: list[verdict_pb2.StageResult], path: Path) -> None:
    failed = next((r for r in results if r.status == common_pb2.STAGE_STATUS_FAILED), None)
    assert failed is not None, f"{path.name} passed every stage: {results}"
    assert failed.stage == STAGE_OF_DIR[path.parent.name], failed
    reasons = " | ".join(f"{f.rule_id} {f.message}" for f in failed.findings)
    assert any(e in reasons for e in expectations(path.read_text())), reasons
    assert all(f.message for f in failed.findings)


@pytest.mark.parametrize("path", EARLY, ids=[case_id(p) for p in EARLY])
def test_early_candidates_are_rejected_at_their_stage(path, toolchain, tmp_path):
    results, _ = early_stages(path.read_text(), toolchain, tmp_path)
    assert_rejected_as_expected(results, path)


STARVING = sorted(CORPUS.glob("static/starve_*.bpf.c"))


@pytest.mark.parametrize("path", STARVING, ids=[case_id(p) for p in STARVING])
def test_the_starving_candidates_compile_so_only_scx017_stops_them_before_the_vm(path, toolchain, tmp_path):
    compiled, obj = stages.compile_stage(path.read_text(), toolchain.kernel(), toolchain, tmp_path)
    assert compiled.status == common_pb2.STAGE_STATUS_SUCCEEDED and obj is not None, compiled.findings


@IN_VM_TIMEOUT
@pytest.mark.parametrize("path", IN_VM, ids=[case_id(p) for p in IN_VM])
def test_candidates_in_the_vm_are_rejected_at_their_stage(path, vm_results):
    assert_rejected_as_expected(vm_results[case_id(path)], path)


@IN_VM_TIMEOUT
@pytest.mark.parametrize("meta", LIBRARY, ids=[m.name for m in LIBRARY])
def test_every_library_policy_passes_every_stage(meta, vm_results):
    results = vm_results[meta.name]
    assert [r.stage for r in results] == list(pipeline.SCHED_EXT_STAGES)
    failed = [(r.stage, [f"{f.rule_id} {f.message}" for f in r.findings])
              for r in results if r.status != common_pb2.STAGE_STATUS_SUCCEEDED]
    assert not failed, failed
    dynamic = results[-1].measurements
    assert dynamic["wakeup_p99_us"] <= dynamic["wakeup_p99_limit_us"] and dynamic["forks"] > 0
    # qemu's own CPU time was sampled through the tests (runner.HostUsage, for DYN009).
    assert 0 < dynamic["host_cpu_min"] <= 1.5 and dynamic["host_stall_max_s"] >= 0, dynamic


@IN_VM_TIMEOUT
def test_the_kernel_verifier_points_at_the_refused_source_line(vm_results):
    path = CORPUS / "kernel_verifier" / "null_lookup.bpf.c"
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "*count += 1;" in text)
    (finding,) = vm_results[case_id(path)][-2].findings
    assert finding.rule_id == "KV001" and finding.line == line, finding


def test_an_oversized_source_is_rejected_statically():
    fifo = (policies.LIBRARY / "sched_ext" / "fifo.bpf.c").read_text()
    padded = fifo + "\n".join(f"/* padding line {i} */" for i in range(5000))
    result = stages.static_stage(padded)
    assert result.status == common_pb2.STAGE_STATUS_FAILED
    assert [f.rule_id for f in result.findings] == ["SCX001"], result.findings


@pytest.mark.parametrize("name", ["../../etc/cron.d/x", "fifo/../../x", "FIFO", "a b", ""])
def test_names_with_paths_or_odd_characters_are_refused_before_any_stage(name):
    artifact = policy_pb2.PolicyArtifact(name=name, sched_ext=policy_pb2.SchedExtProgram(source="x"))
    if name:
        with pytest.raises(InvalidArgument, match="policy name"):
            pipeline.normalised(artifact)
    else:  # unnamed is allowed (the CLI verifies files), so it gets as far as the stages
        assert pipeline.normalised(artifact).name == ""


def test_a_claim_the_verifier_cannot_hold_a_program_to_is_refused_before_any_stage():
    artifact = policy_pb2.PolicyArtifact(sched_ext=policy_pb2.SchedExtProgram(source="x", goals=["latency", "speed"]))
    with pytest.raises(InvalidArgument, match=r"sched_ext\.goals has 'speed'"):
        pipeline.normalised(artifact)


@pytest.mark.parametrize("path", NATIVE, ids=[p.stem for p in NATIVE])
def test_bad_native_policies_are_rejected_with_their_rule(path):
    case = json.loads(path.read_text())
    policy = json_format.ParseDict(case["policy"], policy_pb2.NativePolicy())
    errors = [f for f in native_checks.check(policy) if f.severity == verdict_pb2.SEVERITY_ERROR]
    assert case["expect"] in {f.rule_id for f in errors}, errors
    assert all(f.message.startswith("rule ") or f.line == 0 for f in errors)


@pytest.mark.parametrize("meta", NATIVE_LIBRARY, ids=[m.name for m in NATIVE_LIBRARY])
def test_library_native_policies_pass_with_any_parameters_in_range(meta):
    group = [common_pb2.GroupMatcher(comm="batchjob")]
    for values in ({}, {p.name: p.max for p in meta.parameters if p.max is not None},
                   {p.name: p.min for p in meta.parameters if p.min is not None},
                   {p.name: not p.default for p in meta.parameters if p.type == "bool"}):
        policy = native_policies.build(meta, values, group)
        assert native_checks.check(policy) == [], (values, policy)


def test_the_corpus_covers_every_error_rule():
    static = {e for p in CORPUS.glob("static/*.bpf.c") for e in expectations(p.read_text())}
    assert {f"SCX{n:03d}" for n in (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13)} <= static
    assert {"SCX017"} <= {e.split()[0] for e in static}
    compiled = {e.split()[0] for p in CORPUS.glob("compile/*.bpf.c") for e in expectations(p.read_text())}
    assert {"SCX014", "SCX015", "SCX016"} <= compiled
    native = {json.loads(p.read_text())["expect"] for p in NATIVE}
    assert {f"NAT{n:03d}" for n in (1, 2, 3, 4, 5, 7, 9, 10)} <= native
    assert len(EARLY) + len(IN_VM) + len(NATIVE) >= 20
