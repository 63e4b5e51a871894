"""Verification stages 1 and 2 as functions returning StageResults: static analysis and
compilation against the target kernel's BTF (stages 3 and 4 share a VM boot: sandbox_stages)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from schedcp.toolchain.build import BuildError, Kernel, Toolchain
from schedcp.v1 import common_pb2, verdict_pb2
from services.verifier import build_checks, footprint, static_analysis

LOG_LIMIT = 16000
_CLANG_ERROR = re.compile(r"candidate\.bpf\.c:(\d+):(\d+): (error|warning): (.*)$", re.M)


def status_of(ok: bool) -> int:
    return common_pb2.STAGE_STATUS_SUCCEEDED if ok else common_pb2.STAGE_STATUS_FAILED


def stage_result(stage: int, status: int, started: float, **fields) -> verdict_pb2.StageResult:
    """A StageResult whose duration runs from `started` (time.monotonic()) to now."""
    result = verdict_pb2.StageResult(stage=stage, status=status, **fields)
    result.duration.FromNanoseconds(int((time.monotonic() - started) * 1e9))
    return result


def static_stage(source: str) -> verdict_pb2.StageResult:
    started = time.monotonic()
    findings = static_analysis.analyse(source)
    return stage_result(verdict_pb2.VERIFY_STAGE_STATIC, status_of(static_analysis.passed(findings)), started,
                        findings=findings)


def compile_stage(source: str, kernel: Kernel, toolchain: Toolchain, workdir: Path,
                  budget: footprint.Budget = footprint.DEFAULT_BUDGET) -> tuple[verdict_pb2.StageResult, Path | None]:
    """clang against `kernel`'s vmlinux.h; compiler errors become findings at their lines. The
    preprocessed candidate and the object are checked too (build_checks): what a regex over
    the source can miss, they cannot; so are the object's kernel memory (against `budget`) and
    the kernel fields it touches."""
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    candidate = workdir / "candidate.bpf.c"
    candidate.write_text(source)
    stage = verdict_pb2.VERIFY_STAGE_COMPILE
    findings = build_checks.source_findings(candidate, kernel, toolchain)
    if findings:
        return stage_result(stage, status_of(False), started, findings=findings), None
    try:
        obj = toolchain.compile_policy(candidate, kernel, out_dir=workdir)
    except BuildError as exc:
        log = str(exc)
        findings = [verdict_pb2.Finding(
            rule_id="CC", severity=verdict_pb2.SEVERITY_ERROR if kind == "error" else verdict_pb2.SEVERITY_WARNING,
            line=int(line), column=int(col), message=message) for line, col, kind, message in _CLANG_ERROR.findall(log)]
        if not findings and "frontend command failed" in log:
            findings.append(verdict_pb2.Finding(rule_id="CC", severity=verdict_pb2.SEVERITY_ERROR,
                                                message="the compiler crashed on this source"))
        return stage_result(stage, status_of(False), started, findings=findings, log=log[-LOG_LIMIT:]), None
    findings = build_checks.object_findings(obj, toolchain, budget)
    if findings:
        return stage_result(stage, status_of(False), started, findings=findings), None
    return stage_result(stage, status_of(True), started), obj
