"""Code generation, the last and most expensive synthesis path: the LLM writes a sched_ext
scheduler inside the library's skeleton, the verifier judges it, and the verifier's findings
go back to the model for a bounded number of repair rounds. Nothing it writes reaches a
kernel without the verifier's signed approval; the planner only ever deploys what `generate`
returns, which is the verifier's verified artifact.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schedcp.domain import policies
from schedcp.domain.policies import GOAL_WORDS
from schedcp.v1 import cycle_pb2, goal_pb2, policy_pb2, profile_pb2, verdict_pb2
from services.planner.llm import LlmClient, LlmUnavailable, Usage, prompt, short_error

log = logging.getLogger(__name__)
MAX_ROUNDS = 3
SKELETON = policies.LIBRARY / "sched_ext" / "fifo.bpf.c"
SYSTEM = """You write Linux sched_ext schedulers in BPF C for schedcp. Every program is checked by a \
verifier before it can run, so follow the rules exactly:
- include only "common.bpf.h" (it brings vmlinux.h, the libbpf helpers, GPL and SCHEDCP_RECORD_EXIT);
- kfuncs allowed: scx_bpf_create_dsq, scx_bpf_dsq_insert, scx_bpf_dsq_insert_vtime, \
scx_bpf_dsq_move_to_local, scx_bpf_select_cpu_dfl, scx_bpf_kick_cpu, scx_bpf_dsq_nr_queued, scx_bpf_task_cpu, \
scx_bpf_now; no probe_read/probe_write helpers, no inline assembly;
- exactly one SEC(".struct_ops.link") struct sched_ext_ops with .name = "schedcp_<name>", .timeout_ms between 1 \
and 30000, an .exit that calls SCHEDCP_RECORD_EXIT(ei);
- every custom DSQ is created in .init and consumed in .dispatch whenever it has tasks (never only at random, in a \
time window, or for certain task names or pids); every path of .enqueue inserts the task;
- loops have constant bounds; tunables are `const volatile` globals.
Start from this skeleton (a correct FIFO scheduler):
"""


class CodeProposal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")
    source: str = Field(min_length=1, max_length=65536)
    rationale: str = Field(min_length=1, max_length=2000)


@dataclass
class Generation:
    """The verified artifact when a round succeeded (and the program as a candidate of the
    `generate` path), and what each round's verdict said."""

    verdict: verdict_pb2.Verdict | None = None
    rounds: list[str] = field(default_factory=list)
    rationale: str = ""
    candidate: cycle_pb2.Candidate | None = None


Verify = Callable[[policy_pb2.PolicyArtifact], Awaitable[verdict_pb2.Verdict]]


class Generator:
    def __init__(self, llm: LlmClient, verify: Verify, max_rounds: int = MAX_ROUNDS) -> None:
        self._llm = llm
        self._verify = verify
        self._max_rounds = max_rounds

    async def generate(self, goal: goal_pb2.OptimizationGoal, profile: profile_pb2.WorkloadProfile,
                       usage: Usage) -> Generation:
        result = Generation()
        messages = [{"role": "system", "content": SYSTEM + SKELETON.read_text()},
                    {"role": "user", "content": _task(goal, profile)}]
        for _ in range(self._max_rounds):
            try:
                reply = await self._llm.complete(messages, CodeProposal, usage)
            except LlmUnavailable as exc:
                result.rounds.append(f"no answer: {exc}")
                return result
            messages.append({"role": "assistant", "content": reply})
            try:
                proposal = CodeProposal.model_validate_json(reply)
            except ValidationError as exc:
                result.rounds.append(f"invalid reply: {short_error(exc)}")
                messages.append({"role": "user", "content": f"That reply is invalid: {short_error(exc)}. Answer "
                                                            "again with JSON that matches the schema."})
                continue
            artifact = policy_pb2.PolicyArtifact(
                name=proposal.name.replace("_", "-"), kind=policy_pb2.POLICY_KIND_SCHED_EXT,
                origin=policy_pb2.POLICY_ORIGIN_LLM_WRITTEN,
                sched_ext=policy_pb2.SchedExtProgram(source=proposal.source, goals=_claims(goal)))
            verdict = await self._verify(artifact)
            result.rounds.append(verdict.summary)
            if verdict.claims.approved:
                result.verdict, result.rationale = verdict, proposal.rationale
                result.candidate = cycle_pb2.Candidate(artifact=artifact, path=cycle_pb2.SYNTHESIS_PATH_GENERATE,
                                                       rationale=proposal.rationale)
                return result
            messages.append({"role": "user", "content": "The verifier rejected it:\n" + findings_text(verdict)
                             + "\nFix these problems and answer again with the whole program."})
        return result


def _claims(goal: goal_pb2.OptimizationGoal) -> list[str]:
    """A program written for a goal claims to serve its objective, and the verifier holds it to
    that (a latency claim to EEVDF's wakeup latency), whatever the model says of it."""
    return [GOAL_WORDS[goal.objective]] if goal.objective in GOAL_WORDS else []


def findings_text(verdict: verdict_pb2.Verdict) -> str:
    """The errors of the failed stage, one per line, with line numbers and hints."""
    lines = []
    for stage in verdict.stages:
        for f in stage.findings:
            if f.severity == verdict_pb2.SEVERITY_ERROR:
                where = f" (line {f.line})" if f.line else ""
                hint = f" Hint: {f.hint}" if f.hint else ""
                lines.append(f"- {f.rule_id}{where}: {f.message}.{hint}")
    return "\n".join(lines[:20]) or verdict.summary


def _task(goal: goal_pb2.OptimizationGoal, profile: profile_pb2.WorkloadProfile) -> str:
    objective = goal_pb2.Objective.Name(goal.objective).removeprefix("OBJECTIVE_").lower()
    targets = ", ".join(m.comm or m.group_id for m in goal.target_groups) or "the whole host"
    return (f"Write a scheduler for this goal: {objective} of {targets}. {goal.rationale}\n"
            f"The workload: {prompt(profile, goal.intent)}\n"
            "Answer with JSON: name (lower case), source (the whole C file), rationale.")
