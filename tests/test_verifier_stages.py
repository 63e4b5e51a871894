"""Verification stages 1 and 2 as functions: static findings, and clang against the sandbox
kernel's BTF (stages 3 and 4 run in the corpus test's VM boot)."""

from __future__ import annotations

from pathlib import Path

import pytest

from schedcp.domain import policies
from schedcp.toolchain.bpf_object import BpfObject
from schedcp.toolchain.build import Toolchain
from schedcp.v1 import common_pb2, verdict_pb2
from services.verifier import footprint, stages

FIFO = (policies.LIBRARY / "sched_ext" / "fifo.bpf.c").read_text()
LIBRARY = [m for m in policies.library() if m.kind == "sched_ext"]
CORPUS_COMPILE = Path(__file__).parent / "verifier_corpus" / "compile"
# The kernel fields each library policy touches, as docs/verifier.md lists them (SCX016).
EXIT = {"scx_exit_info.kind", "scx_exit_info.exit_code"}
VTIME = {"task_struct.scx.dsq_vtime", "task_struct.scx.slice", "task_struct.scx.weight"}
LIBRARY_FIELDS = {"fifo": EXIT, "vtime": EXIT | VTIME, "batch": EXIT | VTIME,
                  "latency_boost": EXIT | VTIME | {"task_struct.comm", "task_struct.tgid"},
                  "ljf": EXIT | {"task_struct.comm", "task_struct.se.sum_exec_runtime"}}


@pytest.fixture(scope="module")
def toolchain() -> Toolchain:
    return Toolchain()


def test_compile_stage_builds_a_good_candidate(toolchain, tmp_path):
    result, obj = stages.compile_stage(FIFO, toolchain.kernel(), toolchain, tmp_path)
    assert result.status == common_pb2.STAGE_STATUS_SUCCEEDED and obj is not None and obj.stat().st_size > 0


def test_compile_errors_become_findings_at_their_lines(toolchain, tmp_path):
    broken = FIFO.replace("scx_bpf_dsq_move_to_local(SHARED_DSQ);", "scx_bpf_dsq_move_to_local(SHARED_DSQ)")
    line = next(i for i, text in enumerate(broken.splitlines(), 1) if "move_to_local(SHARED_DSQ)" in text)
    result, obj = stages.compile_stage(broken, toolchain.kernel(), toolchain, tmp_path)
    assert result.status == common_pb2.STAGE_STATUS_FAILED and obj is None
    errors = [f for f in result.findings if f.severity == verdict_pb2.SEVERITY_ERROR]
    assert errors and errors[0].line in (line, line + 1) and "expected ';'" in errors[0].message
    assert "error:" in result.log


def test_static_stage_reports_findings(tmp_path):
    result = stages.static_stage(FIFO.replace(".timeout_ms = 5000,", ""))
    assert result.status == common_pb2.STAGE_STATUS_FAILED
    assert [f.rule_id for f in result.findings] == ["SCX007"]


@pytest.mark.parametrize("meta", LIBRARY, ids=[m.name for m in LIBRARY])
def test_every_library_policy_passes_static_and_compile_with_room_to_spare(meta, toolchain, tmp_path):
    """Stages 1 and 2 (with the object's memory and kernel-field rules) without the VM; the
    library's largest footprint (latency_boost's task storage, 288.5 KiB) leaves the 16 MiB
    budget a margin of more than 16 times, and the fields it reads are the documented ones."""
    source = policies.source_of(meta).read_text()
    assert stages.static_stage(source).status == common_pb2.STAGE_STATUS_SUCCEEDED
    result, obj = stages.compile_stage(source, toolchain.kernel(), toolchain, tmp_path)
    assert result.status == common_pb2.STAGE_STATUS_SUCCEEDED, result.findings
    parsed = BpfObject.read(obj)
    used = sum(u.bytes for u in footprint.uses(parsed, footprint.DEFAULT_BUDGET))
    assert used <= footprint.DEFAULT_BUDGET.bytes // 16, used
    assert {a.dotted for a in parsed.field_accesses()} == LIBRARY_FIELDS[meta.name]


def test_a_smaller_budget_rejects_a_library_policy_naming_its_map(toolchain, tmp_path):
    source = policies.source_of(next(m for m in LIBRARY if m.name == "latency_boost")).read_text()
    result, obj = stages.compile_stage(source, toolchain.kernel(), toolchain, tmp_path, footprint.Budget.of_mib(0.25))
    assert result.status == common_pb2.STAGE_STATUS_FAILED and obj is None
    (found,) = result.findings
    assert found.rule_id == "SCX015" and "over the budget of 256 KiB" in found.message
    assert "map task_ctxs (task storage): one 8 B value (+ ~64 B) for each of 4,096 tasks = 288 KiB" in found.message


def test_an_object_whose_btf_cannot_be_read_is_refused(toolchain, tmp_path):
    """A candidate's own data in a BTF section would blind SCX015 and SCX016: fail closed."""
    junk = FIFO.replace("const volatile u64 slice_us", 'char junk[32] SEC(".BTF.ext") = "not BTF";\n'
                        "const volatile u64 slice_us")
    result, obj = stages.compile_stage(junk, toolchain.kernel(), toolchain, tmp_path)
    assert result.status == common_pb2.STAGE_STATUS_FAILED and obj is None
    assert [f.rule_id for f in result.findings] == ["SCX015"] and "cannot be judged" in result.findings[0].message


# Ways to read the task's credentials that name no field (no CO-RE record), each refused by the
# bytecode pass of SCX016 (raw_reads.py); the kernel's verifier accepts them all.
CRED_READ = "if (p->cred->uid.val == 0)"
CRED = "__builtin_offsetof(struct task_struct, cred)"
RAW_CRED_READS = {
    "offsetof": ("", f"const struct cred *c = *(const struct cred **)((void *)p + {CRED});\n    if (c)"),
    "own struct laid over the task": (f"struct shadow {{ char pad[{CRED}]; const void *c; }};\n",
                                      "if (((const struct shadow *)p)->c)"),
    "back from an allowed field": (
        "", f"void *e = &p->scx;\n    if (*(void **)(e - __builtin_offsetof(struct task_struct, scx) + {CRED}))"),
    "through a function of its own": (
        "static __noinline u64 peek(void *base, u64 off) { return *(u64 *)(base + off); }\n", f"if (peek(p, {CRED}))"),
    "spilled and reloaded": (
        "", f"struct task_struct *volatile kept = p;\n    if (*(u64 *)((void *)kept + {CRED}))"),
    "a CO-RE read through a shifted pointer": (
        "", f"if (((struct sched_ext_entity *)((void *)p + {CRED} - "
            "__builtin_offsetof(struct sched_ext_entity, dsq_vtime)))->dsq_vtime)"),
    "through an out-parameter": (
        "static __noinline void keep(struct task_struct *p, struct task_struct **out) { *out = p; }\n",
        f"struct task_struct *t;\n    keep(p, &t);\n    if (*(u64 *)((void *)t + {CRED}))"),
    # An offset from a parameter (read-only data the kernel sees as a constant): refused, unnamed.
    "at an offset from a parameter": (
        f"const volatile u64 cred_at = {CRED};\n", "if (*(u64 *)((void *)p + cred_at))"),
    # The callee sees the caller's stack as one joined value: the read is refused, the field unnamed.
    "through a pointer to a local": (
        f"static __noinline u64 peek(void **at) {{ return *(u64 *)(*at + {CRED}); }}\n",
        "void *kept = p;\n    if (peek(&kept))"),
}
UNNAMED = {"through a pointer to a local", "through an out-parameter", "at an offset from a parameter"}


@pytest.mark.parametrize("how", RAW_CRED_READS, ids=list(RAW_CRED_READS))
def test_a_credential_read_by_raw_offset_is_refused_with_the_field_named(how, toolchain, tmp_path):
    before, read = RAW_CRED_READS[how]
    first = 'SEC("struct_ops/reads_cred_select_cpu")'
    source = (CORPUS_COMPILE / "reads_cred.bpf.c").read_text().replace(CRED_READ, read).replace(first, before + first)
    result, obj = stages.compile_stage(source, toolchain.kernel(), toolchain, tmp_path)
    assert result.status == common_pb2.STAGE_STATUS_FAILED and obj is None, result
    raw = [f for f in result.findings if f.rule_id == "SCX016" and "by raw offset" in f.message]
    assert raw and all(f.line > 0 for f in raw), result.findings
    if how not in UNNAMED:
        assert any("reads task_struct.cred by raw offset" in f.message and "credentials are not scheduling state"
                   in f.message for f in raw), raw


def test_a_callback_in_an_optional_section_is_followed_too(toolchain, tmp_path):
    """libbpf loads a `SEC("?struct_ops/...")` program its struct_ops map refers to."""
    _, read = RAW_CRED_READS["offsetof"]
    source = (CORPUS_COMPILE / "reads_cred.bpf.c").read_text().replace(CRED_READ, read)
    source = source.replace('SEC("struct_ops/reads_cred_enqueue")', 'SEC("?struct_ops/reads_cred_enqueue")')
    result, _ = stages.compile_stage(source, toolchain.kernel(), toolchain, tmp_path)
    assert any("reads task_struct.cred by raw offset" in f.message for f in result.findings), result.findings


def test_a_raw_read_of_an_allowed_field_is_accepted(toolchain, tmp_path):
    """The pass refuses what it cannot name or what the allow-list refuses, not raw reads as such."""
    source = (CORPUS_COMPILE / "reads_cred.bpf.c").read_text().replace(
        CRED_READ, "if (*(s32 *)((void *)p + __builtin_offsetof(struct task_struct, tgid)) == 1)")
    result, _ = stages.compile_stage(source, toolchain.kernel(), toolchain, tmp_path)
    assert result.status == common_pb2.STAGE_STATUS_SUCCEEDED, result.findings


def test_the_fairness_hogs_take_daemons_random_and_the_probes_names_but_not_a_declared_favourite():
    from services.verifier import sandbox_stages

    plan = sandbox_stages.build_plan([sandbox_stages.Candidate("plain", b"o"),
                                      sandbox_stages.Candidate("boost", b"o", {"boost_comm": "sshd"})],
                                     sandbox_stages.DynamicBounds())
    fairness = {step.step_id: next(line.split()[3:] for line in step.script.splitlines()
                                   if line.startswith("/bin/probe-fairness"))
                for step in plan.steps if step.step_id.startswith("c")}
    plain = fairness["c0"]
    assert {"sshd", "systemd", "cron", "probe-fairness"} <= set(plain)
    drawn = [n for n in plain if n not in sandbox_stages.HOG_NAMES and n != "probe-fairness"]
    assert len(drawn) == sandbox_stages.RANDOM_NAMES and all(len(n) == 2 * sandbox_stages.RANDOM_NAME_BYTES
                                                             for n in drawn)
    assert fairness["c1"] == [n for n in plain if n != "sshd"]  # the one it was told to boost
    # New random names for the next plan: no scheduler can know them in advance.
    again = sandbox_stages.build_plan([sandbox_stages.Candidate("plain", b"o")], sandbox_stages.DynamicBounds())
    assert drawn[0] not in again.script()


def test_a_callback_costing_over_its_budget_per_call_is_named_and_one_shot_callbacks_are_not():
    from services.verifier import sandbox_stages

    bounds = sandbox_stages.DynamicBounds(callback_cost_us=1000, callback_min_calls=100)
    stats = {"progs": [{"name": "x_enqueue", "run_cnt": 5000, "run_time_ns": 5000 * 1_450_000},
                       {"name": "x_dispatch", "run_cnt": 9000, "run_time_ns": 9000 * 12_000},
                       {"name": "x_init", "run_cnt": 1, "run_time_ns": 3_000_000},
                       {"name": "x_tick", "run_cnt": 0, "run_time_ns": 0}]}
    measured: dict[str, float] = {}
    [finding] = sandbox_stages._callback_costs(stats, bounds, measured)
    assert finding.rule_id == "DYN010" and "x_enqueue 1450.0 us" in finding.message, finding.message
    assert "x_init" not in finding.message and "x_dispatch" not in finding.message
    assert measured == {"cost_us_x_enqueue": 1450.0, "cost_us_x_dispatch": 12.0, "cost_us_x_init": 3000.0}
    assert sandbox_stages._callback_costs({"progs": stats["progs"][1:]}, bounds, {}) == []


def test_a_hog_that_waited_past_the_bound_is_named_and_judged_like_the_other_timing_findings():
    from services.verifier import sandbox_stages

    bounds = sandbox_stages.DynamicBounds(max_wait_s=1.0)
    flood = {"hogs": 32, "min_max_ratio": 0.8, "longest_wait_s": 1.43, "longest_waiter": "cron", "niced": 4,
             "niced_longest_wait_s": 1.9}
    measured: dict[str, float] = {}
    [finding] = sandbox_stages._waits(flood, "flood", bounds, measured)
    assert finding.rule_id == "DYN011" and "('cron') waited 1.43 s" in finding.message, finding.message
    assert measured == {"flood_longest_wait_s": 1.43, "flood_niced_longest_wait_s": 1.9}
    # A timing finding: excused as DYN009 when the host starved qemu during that very test.
    assert sandbox_stages._timing_test(finding) == "flood"
    assert sandbox_stages._waits({**flood, "longest_wait_s": 0.4}, "flood", bounds, {}) == []
    assert sandbox_stages._waits({"hogs": 9, "min_max_ratio": 0.9}, "fairness", bounds, {}) == []  # an older probe


def test_a_latency_claim_is_measured_on_the_task_it_favours_and_only_a_claimant_is_held_to_eevdf():
    from services.verifier import sandbox_stages

    bounds = sandbox_stages.DynamicBounds()
    claimant = sandbox_stages.Candidate("boost", b"o", {"boost_comm": "nginx", "boost_tgid": "12,40"},
                                        goals=("latency",))
    plain = sandbox_stages.Candidate("batch", b"o", {"boost_comm": "nginx"}, goals=("throughput",))
    plan = sandbox_stages.build_plan([claimant, plain], bounds)
    sleepers = {step.step_id: next(line.split()[1:] for line in step.script.splitlines()
                                   if line.startswith("/bin/probe-wakeup"))
                for step in plan.steps if step.step_id.startswith("c")}
    assert sleepers == {"c0": ["4", "2", "1000", "nginx"], "c1": ["4", "2"]}  # process ids are no name

    baseline = {"samples": 2000, "p50_us": 1000.0, "p99_us": 4000.0, "max_us": 9000.0}
    probe = {**baseline, "p50_us": 2300.0, "p99_us": 5000.0}  # 2.3x at p50: what boosting nothing reads
    [finding] = sandbox_stages._latency(probe, baseline, claimant, bounds, {})
    assert finding.rule_id == "DYN003" and "('nginx', the task it favours)" in finding.message, finding.message
    assert "p50 2.30 ms, 2.3x EEVDF's 1.00 ms (at most 1.5x)" in finding.message and "p99" not in finding.message
    assert sandbox_stages._timing_test(finding) == "latency"  # excused when the host starved qemu
    assert sandbox_stages._latency({**probe, "p50_us": 1100.0}, baseline, claimant, bounds, {}) == []
    # Without the claim only the pathology bound holds, and it records the same ratios.
    measured: dict[str, float] = {}
    assert sandbox_stages._latency(probe, baseline, plain, bounds, measured) == []
    assert (measured["wakeup_p50_ratio"], measured["wakeup_p99_ratio"], measured["eevdf_p50_us"]) == (2.3, 1.25, 1000)
