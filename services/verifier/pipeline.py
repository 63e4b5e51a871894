"""One Verify request: validate it, pick the kernel, run the stages in order (stopping at the
first failure), sign the verdict, cache it. Yields VerifyProgress messages as it goes; the last
one carries the Verdict.

sched_ext: static analysis -> compile (the verifier compiles the source itself; an object in
the request is discarded) -> kernel verifier and dynamic tests in one micro-VM boot -> sign.
native: the native checks -> sign. A rejection is signed too (approved = false), so it can be
shown and audited, and it expires after an hour.
"""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from google.protobuf import duration_pb2

from schedcp.domain import artifacts
from schedcp.domain.policies import GoalWord
from schedcp.runtime import metrics
from schedcp.runtime.bus import Bus
from schedcp.runtime.errors import DependencyUnavailable, FailedPrecondition, InvalidArgument
from schedcp.toolchain.build import BuildError, Kernel, Toolchain, catalogue, find_kernel
from schedcp.v1 import common_pb2, policy_pb2, verdict_pb2, verifier_pb2
from services.verifier import footprint, native_checks, sandbox_stages, stages, verdict_cache
from services.verifier.signing import SigningKey
from services.verifier.verdict_cache import VerdictCache

log = logging.getLogger(__name__)
REJECTION_TTL_S = 3600.0
# Rules that say the sandbox could not judge the candidate (the VM crashed or timed out, the host
# starved it): the rejection is signed but not cached, so asking again runs the stages again.
INCONCLUSIVE_RULES = ("KV004", "DYN008", "DYN009")
MAX_PARAMETERS = 64
_PARAM_NAME = re.compile(r"[A-Za-z_]\w{0,63}", re.ASCII)
SCHED_EXT_STAGES = (verdict_pb2.VERIFY_STAGE_STATIC, verdict_pb2.VERIFY_STAGE_COMPILE,
                    verdict_pb2.VERIFY_STAGE_KERNEL_VERIFIER, verdict_pb2.VERIFY_STAGE_DYNAMIC)
STAGE_NAMES = {s: verdict_pb2.VerifyStage.Name(s).removeprefix("VERIFY_STAGE_").lower().replace("_", " ")
               for s in verdict_pb2.VerifyStage.values()}


@dataclass
class PipelineOptions:
    verdict_ttl_s: float = 7 * 24 * 3600.0
    vm_slots: int = 1
    bounds: sandbox_stages.DynamicBounds | None = None
    memory_budget: footprint.Budget = footprint.DEFAULT_BUDGET


class Pipeline:
    """Runs Verify requests; at most `vm_slots` sandbox VMs at once, identical requests in flight
    share one run."""

    def __init__(self, key: SigningKey, bus: Bus, toolchain: Toolchain, options: PipelineOptions) -> None:
        self._key = key
        self._bus = bus
        self._toolchain = toolchain
        self._options = options
        self._cache = VerdictCache(bus, key.trust_key())
        self._vm_slots = asyncio.Semaphore(options.vm_slots)
        self._waiting = 0
        self._in_flight: dict[tuple[str, str], asyncio.Future] = {}

    @property
    def cache(self) -> VerdictCache:
        return self._cache

    async def verify(self, request: verifier_pb2.VerifyRequest) -> AsyncIterator[verifier_pb2.VerifyProgress]:
        artifact = normalised(request.artifact)
        kernel = target_kernel(request.target, artifact.kind)
        request_digest = artifacts.digest_of(artifact)
        if not request.no_cache and (cached := await self._cache.lookup(request_digest, kernel)):
            cached.cached = True
            yield _final(cached)
            return
        question = (request_digest, kernel.btf_sha256 or kernel.release)
        if question in self._in_flight:
            yield _progress(verdict_pb2.VERIFY_STAGE_UNSPECIFIED, common_pb2.STAGE_STATUS_RUNNING,
                            "an identical verification is running; waiting for its verdict")
            verdict = verdict_pb2.Verdict()
            verdict.CopyFrom(await asyncio.shield(self._in_flight[question]))
            verdict.cached = True
            yield _final(verdict)
            return
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        self._in_flight[question] = done
        try:
            async for progress in self._run(artifact, kernel, request_digest):
                if progress.HasField("verdict"):
                    done.set_result(progress.verdict)
                yield progress
        finally:
            if not done.done():
                done.set_exception(FailedPrecondition("the identical verification this one waited for did not "
                                                      "finish; retry"))
                done.exception()  # retrieved here, so an unwaited failure is not logged as lost
            del self._in_flight[question]

    async def _run(self, artifact: policy_pb2.PolicyArtifact, kernel: verdict_pb2.TargetKernel,
                   request_digest: str) -> AsyncIterator[verifier_pb2.VerifyProgress]:
        results: list[verdict_pb2.StageResult] = []
        verified = policy_pb2.PolicyArtifact()
        verified.CopyFrom(artifact)
        if artifact.kind == policy_pb2.POLICY_KIND_NATIVE:
            started = time.monotonic()
            yield _progress(verdict_pb2.VERIFY_STAGE_NATIVE_CHECKS, common_pb2.STAGE_STATUS_STARTED,
                            f"checking {len(artifact.native.rules)} rule(s)")
            findings = native_checks.check(artifact.native)
            ok = not any(f.severity == verdict_pb2.SEVERITY_ERROR for f in findings)
            results.append(stages.stage_result(verdict_pb2.VERIFY_STAGE_NATIVE_CHECKS, stages.status_of(ok), started,
                                               findings=findings))
            yield _stage_done(results[-1])
        else:
            async for progress in self._sched_ext_stages(verified, kernel, results):
                yield progress
        verified.digest = artifacts.digest_of(verified)
        verdict = self._sign(verified, kernel, results, request_digest)
        _count(verdict, results)
        await artifacts.store(self._bus, verified)
        if not _inconclusive(results):
            await self._cache.put(verdict)
        log.info("verdict %s for %s (%s): %s", verdict.claims.verdict_id, artifact.name or "unnamed",
                 verified.digest[:12], verdict.summary)
        yield _final(verdict)

    async def _sched_ext_stages(self, artifact: policy_pb2.PolicyArtifact, target: verdict_pb2.TargetKernel,
                                results: list[verdict_pb2.StageResult]) -> AsyncIterator[verifier_pb2.VerifyProgress]:
        """Stages 1-4; fills `results` and sets the artifact's object and ops name on success."""
        source = artifact.sched_ext.source
        yield _progress(verdict_pb2.VERIFY_STAGE_STATIC, common_pb2.STAGE_STATUS_STARTED, "static analysis")
        results.append(stages.static_stage(source))
        yield _stage_done(results[-1])
        if _failed(results):
            return
        yield _progress(verdict_pb2.VERIFY_STAGE_COMPILE, common_pb2.STAGE_STATUS_STARTED,
                        f"compiling against {target.release} (first use prepares the sandbox kernel)")
        kernel = await asyncio.to_thread(self._kernel, target)
        with tempfile.TemporaryDirectory(prefix="schedcp-verify-") as workdir:
            result, obj = await asyncio.to_thread(stages.compile_stage, source, kernel, self._toolchain, Path(workdir),
                                                  self._options.memory_budget)
            object_bytes = obj.read_bytes() if obj else b""
        if result.status == common_pb2.STAGE_STATUS_FAILED and not result.findings:
            # No finding means clang never judged the candidate: the toolchain itself failed.
            raise DependencyUnavailable(f"the compiler could not run: {result.log[-500:]}")
        results.append(result)
        yield _stage_done(result)
        if _failed(results):
            return
        candidate = sandbox_stages.Candidate(artifact.name or "candidate", object_bytes, loader_params(artifact),
                                             artifact.sched_ext.ops_name, tuple(artifact.sched_ext.goals))
        if self._vm_slots.locked():
            yield _progress(verdict_pb2.VERIFY_STAGE_KERNEL_VERIFIER, common_pb2.STAGE_STATUS_RUNNING,
                            f"waiting for a sandbox VM ({self._waiting + 1} in the queue)")
        # The VM runs in a task of its own, shielded: a caller that goes away does not free the
        # slot while qemu still runs, so VM_SLOTS really bounds the VMs on this host.
        job = asyncio.create_task(self._vm_job(candidate, kernel))
        job.add_done_callback(_log_failure)
        yield _progress(verdict_pb2.VERIFY_STAGE_KERNEL_VERIFIER, common_pb2.STAGE_STATUS_STARTED,
                        f"sandbox VM ({target.release}): load under the kernel's verifier, then latency, fairness, "
                        "flood and fork tests (about 15 s with KVM, a minute without)")
        outcome = await asyncio.shield(job)
        for result in (outcome.kernel_verifier, outcome.dynamic):
            results.append(result)
            yield _stage_done(result)
        if not _failed(results):
            artifact.sched_ext.object = object_bytes
            artifact.sched_ext.ops_name = outcome.ops_name

    async def _vm_job(self, candidate: sandbox_stages.Candidate, kernel: Kernel) -> sandbox_stages.SandboxResult:
        self._waiting += 1
        try:
            await self._vm_slots.acquire()
        finally:
            self._waiting -= 1
        try:
            outcome = await self._sandbox_run(candidate, kernel)
            if starved := [f.message for f in outcome.dynamic.findings if f.rule_id == "DYN009"]:
                # Once: a host that starved one run tends to starve the next; then inconclusive.
                log.warning("sandbox run for %s not judged (%s); booting it again", candidate.name, starved[0])
                outcome = await self._sandbox_run(candidate, kernel)
        finally:
            self._vm_slots.release()
        return outcome

    async def _sandbox_run(self, candidate: sandbox_stages.Candidate, kernel: Kernel) -> sandbox_stages.SandboxResult:
        try:
            results = await asyncio.to_thread(sandbox_stages.run, [candidate], kernel, self._toolchain,
                                              self._options.bounds)
        except BuildError as exc:
            raise FailedPrecondition(f"the sandbox cannot run: {exc}") from exc
        return results[candidate.name]

    def _kernel(self, target: verdict_pb2.TargetKernel) -> Kernel:
        try:
            return self._toolchain.kernel(find_kernel(btf_sha256=target.btf_sha256 or None,
                                                      release=None if target.btf_sha256 else target.release))
        except BuildError as exc:
            raise FailedPrecondition(f"the sandbox cannot be prepared: {exc}") from exc

    def _sign(self, artifact: policy_pb2.PolicyArtifact, kernel: verdict_pb2.TargetKernel,
              results: list[verdict_pb2.StageResult], request_digest: str) -> verdict_pb2.Verdict:
        approved = bool(results) and not _failed(results)
        now = time.time()
        claims = verdict_pb2.VerdictClaims(
            verdict_id=uuid.uuid4().hex, artifact_digest=artifact.digest, kernel=kernel, approved=approved,
            stages_passed=[r.stage for r in results if r.status == common_pb2.STAGE_STATUS_SUCCEEDED],
            rules=verdict_cache.RULES, request_digest=request_digest)
        claims.issued_at.FromNanoseconds(int(now * 1e9))
        ttl = self._options.verdict_ttl_s if approved else REJECTION_TTL_S
        claims.expires_at.FromNanoseconds(int((now + ttl) * 1e9))
        signed = self._key.sign(claims)
        sign_result = verdict_pb2.StageResult(stage=verdict_pb2.VERIFY_STAGE_SIGN,
                                              status=common_pb2.STAGE_STATUS_SUCCEEDED,
                                              duration=duration_pb2.Duration(nanos=int((time.time() - now) * 1e9)))
        return verdict_pb2.Verdict(signed=signed, claims=claims, stages=[*results, sign_result],
                                   summary=summarise(approved, results), artifact=artifact,
                                   request_digest=request_digest)


def _count(verdict: verdict_pb2.Verdict, results: list[verdict_pb2.StageResult]) -> None:
    """The verdict and its stages in the Prometheus series."""
    metrics.VERDICTS.labels("approved" if verdict.claims.approved else "rejected").inc()
    for result in results:
        stage = verdict_pb2.VerifyStage.Name(result.stage).removeprefix("VERIFY_STAGE_").lower()
        metrics.VERIFY_STAGE_DURATION.labels(stage).observe(result.duration.ToNanoseconds() / 1e9)
        if result.status == common_pb2.STAGE_STATUS_FAILED:
            metrics.REJECTIONS.labels(stage).inc()


def normalised(artifact: policy_pb2.PolicyArtifact) -> policy_pb2.PolicyArtifact:
    """The request's artifact, checked, without what the verifier makes itself (object, digest)."""
    body = artifact.WhichOneof("body")
    if body is None:
        raise InvalidArgument("the artifact has no body: set sched_ext.source or native.rules")
    kind = {"sched_ext": policy_pb2.POLICY_KIND_SCHED_EXT, "native": policy_pb2.POLICY_KIND_NATIVE}[body]
    if artifact.kind not in (policy_pb2.POLICY_KIND_UNSPECIFIED, kind):
        raise InvalidArgument(f"the artifact's kind is {policy_pb2.PolicyKind.Name(artifact.kind)} but its body is "
                              f"{body}")
    if artifact.name:
        artifacts.check_name(artifact.name)
    if body == "sched_ext" and not artifact.sched_ext.source.strip():
        raise InvalidArgument("sched_ext.source is empty: the verifier compiles the source itself")
    if body == "sched_ext":
        loader_params(artifact)
        if unknown := [g for g in artifact.sched_ext.goals if g not in get_args(GoalWord)]:
            raise InvalidArgument(f"sched_ext.goals has {', '.join(map(repr, unknown))}: a program claims any of "
                                  f"{', '.join(get_args(GoalWord))}")
    clean = policy_pb2.PolicyArtifact()
    clean.CopyFrom(artifact)
    clean.kind = kind
    clean.digest = ""
    if body == "sched_ext":
        clean.sched_ext.ClearField("object")
    return clean


def loader_params(artifact: policy_pb2.PolicyArtifact) -> dict[str, object]:
    """The artifact's parameters as the loader takes them; InvalidArgument for a bad one."""
    if len(artifact.parameters) > MAX_PARAMETERS:
        raise InvalidArgument(f"{len(artifact.parameters)} parameters; at most {MAX_PARAMETERS}")
    params: dict[str, object] = {}
    for name, value in artifact.parameters.items():
        if not _PARAM_NAME.fullmatch(name):
            raise InvalidArgument(f"parameter name {name!r} is not a C identifier")
        kind = value.WhichOneof("value")
        if kind is None:
            raise InvalidArgument(f"parameter {name} has no value")
        if kind == "float_value":
            raise InvalidArgument(f"parameter {name}: sched_ext parameters are integers, booleans or strings")
        params[name] = getattr(value, kind)
        if kind == "string_value" and (len(value.string_value) > 256 or "\n" in value.string_value):
            raise InvalidArgument(f"parameter {name}: strings are one line of at most 256 characters")
    return params


def target_kernel(target: verdict_pb2.TargetKernel, kind: int) -> verdict_pb2.TargetKernel:
    """The kernel the verdict will be for. sched_ext needs a sandbox kernel with the same BTF (or
    release); native policies take the target as given. No target: the default sandbox kernel."""
    if not target.release and not target.btf_sha256:
        entry = next(e for e in catalogue() if e.default)
        return verdict_pb2.TargetKernel(release=entry.release, btf_sha256=entry.btf_sha256, arch="x86_64")
    if kind == policy_pb2.POLICY_KIND_NATIVE:
        return target
    try:
        entry = find_kernel(btf_sha256=target.btf_sha256 or None, release=None if target.btf_sha256 else target.release)
    except BuildError:
        known = ", ".join(f"{e.release} (BTF {e.btf_sha256[:12]})" for e in catalogue())
        raise FailedPrecondition(
            f"no sandbox kernel matches the target kernel {target.release or '?'} (BTF "
            f"{target.btf_sha256[:12] or '?'}), so its BPF verifier cannot be run: add it to "
            "schedcp/toolchain/kernels.toml "
            f"(known: {known})") from None
    return verdict_pb2.TargetKernel(release=entry.release, btf_sha256=entry.btf_sha256, arch=target.arch or "x86_64")


def summarise(approved: bool, results: list[verdict_pb2.StageResult]) -> str:
    if approved:
        passed = ", ".join(STAGE_NAMES[r.stage] for r in results)
        dynamic = next((r for r in results if r.stage == verdict_pb2.VERIFY_STAGE_DYNAMIC), None)
        numbers = ""
        if dynamic is not None and dynamic.measurements:
            m = dynamic.measurements
            numbers = (f" (wakeup p99 {m.get('wakeup_p99_us', 0) / 1000:.1f} ms vs EEVDF "
                       f"{m.get('eevdf_p99_us', 0) / 1000:.1f} ms, fairness {m.get('fairness_min_max_ratio', 0):.2f})")
        return f"approved: passed {passed}{numbers}"
    failed = next((r for r in results if r.status == common_pb2.STAGE_STATUS_FAILED), None)
    if failed is None:
        return "rejected"
    errors = [f for f in failed.findings if f.severity == verdict_pb2.SEVERITY_ERROR] or list(failed.findings)
    first = f"{errors[0].rule_id}: {errors[0].message}" if errors else "see the stage log"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"rejected at {STAGE_NAMES[failed.stage]}: {first}{more}"


def _inconclusive(results: list[verdict_pb2.StageResult]) -> bool:
    """A rejection because the VM crashed or timed out or the host starved it: signed, but not
    cached, so asking again runs the stages again."""
    return any(f.rule_id in INCONCLUSIVE_RULES for r in results for f in r.findings)


def _log_failure(job: asyncio.Task) -> None:
    if not job.cancelled() and job.exception() is not None:
        log.warning("a sandbox run failed: %s", job.exception())


def _failed(results: list[verdict_pb2.StageResult]) -> bool:
    return any(r.status == common_pb2.STAGE_STATUS_FAILED for r in results)


def _progress(stage: int, status: int, message: str) -> verifier_pb2.VerifyProgress:
    return verifier_pb2.VerifyProgress(stage=stage, status=status, message=message)


def _stage_done(result: verdict_pb2.StageResult) -> verifier_pb2.VerifyProgress:
    ok = result.status == common_pb2.STAGE_STATUS_SUCCEEDED
    message = f"{STAGE_NAMES[result.stage]}: {'passed' if ok else 'failed'}"
    errors = [f for f in result.findings if f.severity == verdict_pb2.SEVERITY_ERROR]
    if errors:
        message += f" ({errors[0].rule_id}: {errors[0].message})"
    return verifier_pb2.VerifyProgress(stage=result.stage, status=result.status, message=message, result=result)


def _final(verdict: verdict_pb2.Verdict) -> verifier_pb2.VerifyProgress:
    return verifier_pb2.VerifyProgress(stage=verdict_pb2.VERIFY_STAGE_SIGN, status=common_pb2.STAGE_STATUS_SUCCEEDED,
                                       message=verdict.summary, verdict=verdict)
