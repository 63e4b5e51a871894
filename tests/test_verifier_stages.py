"""Verification stages 1 and 2 as functions: static findings, and clang against the sandbox
kernel's BTF (stages 3 and 4 run in the corpus test's VM boot)."""

from __future__ import annotations

import pytest

from schedcp.domain import policies
from schedcp.toolchain.build import Toolchain
from schedcp.v1 import common_pb2, verdict_pb2
from services.verifier import stages

FIFO = (policies.LIBRARY / "sched_ext" / "fifo.bpf.c").read_text()


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
