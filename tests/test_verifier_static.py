"""Verification stage 1 (static analysis) rules in detail; the corpus test runs every bad
candidate through all the stages."""

from __future__ import annotations

from pathlib import Path

import pytest

from schedcp.domain import policies
from services.verifier import static_analysis

CORPUS = sorted((Path(__file__).parent / "verifier_corpus" / "static").glob("*.bpf.c"))
LIBRARY = [m for m in policies.library() if m.kind == "sched_ext"]


def test_findings_point_at_the_offending_line():
    path = next(p for p in CORPUS if p.name == "write_user.bpf.c")
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "bpf_probe_write_user(" in text)
    (found,) = [f for f in static_analysis.analyse(path.read_text()) if f.rule_id == "SCX003"]
    assert found.line == line and "writes user memory" in found.message


def test_comments_do_not_trigger_rules():
    source = (policies.LIBRARY / "sched_ext" / "fifo.bpf.c").read_text()
    commented = source + "\n/* bpf_probe_write_user(dst, src, 1); while (1) {} */\n// #include <linux/sched.h>\n"
    assert static_analysis.analyse(commented) == static_analysis.analyse(source)


@pytest.mark.parametrize("meta", LIBRARY, ids=[m.name for m in LIBRARY])
def test_library_policies_pass(meta):
    findings = static_analysis.analyse(policies.source_of(meta).read_text())
    assert static_analysis.passed(findings) and not findings, findings


def test_a_library_headers_callbacks_count_but_do_not_mask_the_candidates_own():
    batch = (policies.LIBRARY / "sched_ext" / "batch.bpf.c").read_text()
    assert "vtime_enqueue" in batch and "BPF_PROG(vtime_enqueue" not in batch  # it is vtime_sched.bpf.h's
    assert static_analysis.analyse(batch) == []
    own = batch.replace('SEC(".struct_ops.link")', 'SEC("struct_ops/vtime_enqueue")\n'
                        "void BPF_PROG(vtime_enqueue, struct task_struct *p, u64 enq_flags) {}\n\n"
                        'SEC(".struct_ops.link")')
    assert "SCX013" in [f.rule_id for f in static_analysis.analyse(own)]
