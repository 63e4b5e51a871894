"""Verification stage 1 (static analysis): every candidate in the corpus is caught by the rule
its header names, at the right line; every library policy passes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from schedcp import policies
from schedcp.v1 import verdict_pb2
from services.verifier import static_analysis

CORPUS = sorted((Path(__file__).parent / "verifier_corpus" / "static").glob("*.bpf.c"))
LIBRARY = [m for m in policies.library() if m.kind == "sched_ext"]


def expected_rule(path: Path) -> str:
    return re.search(r"expect: (SCX\d+)", path.read_text()).group(1)


@pytest.mark.parametrize("path", CORPUS, ids=[p.name.removesuffix(".bpf.c") for p in CORPUS])
def test_each_bad_candidate_is_caught_by_its_rule(path):
    findings = static_analysis.analyse(path.read_text())
    errors = [f for f in findings if f.severity == verdict_pb2.SEVERITY_ERROR]
    assert expected_rule(path) in {f.rule_id for f in errors}, findings
    assert not static_analysis.passed(findings)
    assert all(f.line >= 1 and f.message for f in findings)


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


def test_the_corpus_covers_every_error_rule():
    rules = {expected_rule(p) for p in CORPUS}
    assert {"SCX002", "SCX003", "SCX004", "SCX005", "SCX006", "SCX007", "SCX008", "SCX009", "SCX010",
            "SCX011", "SCX013"} <= rules
