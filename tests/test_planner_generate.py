"""Code generation with the real verifier and a scripted LLM (a local OpenAI-compatible server):
a first program the verifier rejects is repaired from its findings (a program written for a
latency goal is held to EEVDF's wakeup latency, whatever the model says of it); a model that
never gets it right stops after the bounded number of rounds, and nothing unverified is returned."""

from __future__ import annotations

import asyncio

import pytest

from schedcp.domain import policies
from schedcp.runtime import rpc
from schedcp.runtime.config import load_settings
from schedcp.v1 import cycle_pb2, goal_pb2, policy_pb2, verdict_pb2, verifier_pb2, verifier_pb2_grpc
from services.planner import generate, goals
from services.planner.llm import LlmClient, Usage
from tests.llm_server import reply, scripted_llm
from tests.test_planner import BATCH, LATENCY, group, profile

FIFO = (policies.LIBRARY / "sched_ext" / "fifo.bpf.c").read_text().replace("schedcp_fifo", "schedcp_gen_boost")
NO_WATCHDOG = FIFO.replace("    .timeout_ms = 5000,\n", "")
VTIME = (policies.LIBRARY / "sched_ext" / "vtime.bpf.c").read_text().replace("schedcp_vtime", "schedcp_gen_boost")
PROFILE = profile(group("nginx", LATENCY, 0.2), group("ffmpeg", BATCH, 4.0), backends=("sched_ext", "native"))


def verifier_of(addr: str):
    async def verify(artifact: policy_pb2.PolicyArtifact) -> verdict_pb2.Verdict:
        async with rpc.channel(addr) as channel:
            stub = verifier_pb2_grpc.VerifierServiceStub(channel)
            return [p async for p in stub.Verify(verifier_pb2.VerifyRequest(artifact=artifact))][-1].verdict
    return verify


def run(replies: list[dict], verifier_addr: str) -> tuple[generate.Generation, list[dict], Usage]:
    usage = Usage()
    with scripted_llm(replies) as (url, script):
        generator = generate.Generator(LlmClient(load_settings(llm_max_retries=0), url, "test"),
                                       verifier_of(verifier_addr))
        result = asyncio.run(generator.generate(goals.infer(PROFILE), PROFILE, usage))
    return result, script.requests, usage


@pytest.mark.timeout(600)
def test_a_rejected_program_is_repaired_from_the_verifier_findings(services):
    services.start("verifier")
    result, requests, usage = run([reply({"name": "gen_boost", "source": NO_WATCHDOG, "rationale": "fifo"}),
                                   reply({"name": "gen_boost", "source": FIFO, "rationale": "fifo, fixed"}),
                                   reply({"name": "gen_boost", "source": VTIME, "rationale": "vtime"})],
                                  services.addr("verifier"))
    assert usage.calls == 3 and len(result.rounds) == 3
    assert result.rounds[0].startswith("rejected at static: SCX007")
    feedback = requests[1]["messages"][-1]["content"]
    assert "The verifier rejected it" in feedback and "SCX007" in feedback and "timeout_ms" in feedback
    # The goal is the nginx's tail latency, so the program claims latency: a FIFO does not keep it.
    assert goals.infer(PROFILE).objective == goal_pb2.OBJECTIVE_TAIL_LATENCY
    assert result.rounds[1].startswith("rejected at dynamic: DYN003: it claims latency"), result.rounds[1]
    assert "DYN003" in requests[2]["messages"][-1]["content"]
    assert result.verdict is not None and result.verdict.claims.approved, result.rounds
    artifact = result.verdict.artifact
    assert artifact.origin == policy_pb2.POLICY_ORIGIN_LLM_WRITTEN and artifact.sched_ext.object
    assert artifact.sched_ext.ops_name == "schedcp_gen_boost" and list(artifact.sched_ext.goals) == ["latency"]
    # What the cycle lists as its candidate: the program as written, on the `generate` path.
    candidate = result.candidate
    assert (candidate.path, candidate.artifact.name, candidate.rationale) == (
        cycle_pb2.SYNTHESIS_PATH_GENERATE, "gen-boost", "vtime")
    assert candidate.artifact.sched_ext.source == VTIME


def test_generation_stops_after_its_rounds_with_nothing_unverified(services):
    services.start("verifier")
    bad = reply({"name": "gen_bad", "source": NO_WATCHDOG, "rationale": "no watchdog"})
    result, requests, usage = run([bad, reply("{oops"), bad, bad], services.addr("verifier"))
    assert usage.calls == generate.MAX_ROUNDS == len(requests) == len(result.rounds)
    assert result.verdict is None
    assert result.rounds[1].startswith("invalid reply")
    assert goals.infer(PROFILE).objective == goal_pb2.OBJECTIVE_TAIL_LATENCY
