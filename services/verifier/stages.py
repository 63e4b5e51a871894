"""Verification stages 1-3 as functions returning StageResults: static analysis, compilation
against the target kernel's BTF, and loading under the kernel's own BPF verifier in the
sandbox micro-VM. (The Verify RPC, dynamic tests and signing build on these.)"""

from __future__ import annotations

import re
import time
from pathlib import Path

from sandbox import runner
from sandbox.build import BuildError, Kernel, Toolchain
from schedcp.v1 import common_pb2, verdict_pb2
from services.verifier import static_analysis

LOG_LIMIT = 16000
_CLANG_ERROR = re.compile(r"candidate\.bpf\.c:(\d+):(\d+): (error|warning): (.*)$", re.M)


def _result(stage: int, ok: bool, started: float, **fields) -> verdict_pb2.StageResult:
    result = verdict_pb2.StageResult(
        stage=stage, status=common_pb2.STAGE_STATUS_SUCCEEDED if ok else common_pb2.STAGE_STATUS_FAILED, **fields)
    result.duration.FromNanoseconds(int((time.monotonic() - started) * 1e9))
    return result


def static_stage(source: str) -> verdict_pb2.StageResult:
    started = time.monotonic()
    findings = static_analysis.analyse(source)
    return _result(verdict_pb2.VERIFY_STAGE_STATIC, static_analysis.passed(findings), started, findings=findings)


def compile_stage(source: str, kernel: Kernel, toolchain: Toolchain,
                  workdir: Path) -> tuple[verdict_pb2.StageResult, Path | None]:
    """clang against `kernel`'s vmlinux.h; compiler errors become findings at their lines."""
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    candidate = workdir / "candidate.bpf.c"
    candidate.write_text(source)
    try:
        obj = toolchain.compile_policy(candidate, kernel, out_dir=workdir)
    except BuildError as exc:
        log = str(exc)
        findings = [verdict_pb2.Finding(
            rule_id="CC", severity=verdict_pb2.SEVERITY_ERROR if kind == "error" else verdict_pb2.SEVERITY_WARNING,
            line=int(line), column=int(col), message=message) for line, col, kind, message in _CLANG_ERROR.findall(log)]
        return _result(verdict_pb2.VERIFY_STAGE_COMPILE, False, started, findings=findings,
                       log=log[-LOG_LIMIT:]), None
    return _result(verdict_pb2.VERIFY_STAGE_COMPILE, True, started), obj


def kernel_verifier_stage(objects: dict[str, bytes], kernel: Kernel,
                          toolchain: Toolchain) -> dict[str, verdict_pb2.StageResult]:
    """Load each object in one boot of the micro-VM; the kernel's verifier has the last word.
    A refusal carries the verifier's log."""
    started = time.monotonic()
    plan = runner.Plan()
    for name, data in objects.items():
        path = plan.add_file(f"/art/{name}.bpf.o", data)
        plan.add(name, runner.load_and_hold(path, hold="true"))
    vm = runner.run(plan, kernel, toolchain)
    results = {}
    for name in objects:
        step = vm.steps.get(name)
        enabled = step is not None and step.first("enabled") is not None
        error = step.first("error") if step else None
        log = (error or {}).get("log") or (error or {}).get("error") or ("" if step else vm.console[-LOG_LIMIT:])
        results[name] = _result(verdict_pb2.VERIFY_STAGE_KERNEL_VERIFIER, enabled, started, log=log[-LOG_LIMIT:])
    return results
