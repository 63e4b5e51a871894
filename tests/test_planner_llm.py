"""The openai goal provider against a local OpenAI-compatible server that replays scripted
answers: a valid structured reply becomes the goal; malformed JSON is repaired in one more
round; schema violations, unknown groups, timeouts, errors and a spent token budget fall back
to the rules provider, and the goal says why."""

from __future__ import annotations

import asyncio

import pytest

from schedcp.runtime.config import load_settings
from schedcp.v1 import goal_pb2, planner_pb2, planner_pb2_grpc
from services.planner import llm
from tests.conftest import cpu_hogs, latency_probe
from tests.llm_server import reply, scripted_llm
from tests.test_planner import BATCH, LATENCY, group, profile, wait_registered
from tests.test_services import call

PROFILE = profile(group("nginx", LATENCY, 0.2, p99_us=3500), group("ffmpeg", BATCH, 4.0))
GOOD = {"objective": "tail_latency", "target_group_ids": ["comm:nginx"], "batch_group_ids": ["comm:ffmpeg"],
        "rationale": "nginx waits behind ffmpeg", "confidence": 0.8}


def infer(replies: list[dict], **settings) -> tuple[goal_pb2.OptimizationGoal, llm.Usage, list[dict]]:
    usage = llm.Usage()
    with scripted_llm(replies) as (url, script):
        provider = llm.OpenAIGoals(load_settings(llm_max_retries=0, **settings), base_url=url, api_key="test")
        goal = asyncio.run(provider.infer(PROFILE, "", usage))
    return goal, usage, script.requests


def test_a_valid_structured_reply_becomes_the_goal(spans):
    goal, usage, requests = infer([reply(GOOD, 150, 50)])
    assert goal.provider == "openai" and goal.objective == goal_pb2.OBJECTIVE_TAIL_LATENCY
    assert [m.comm for m in goal.target_groups] == ["nginx"] and goal.rationale == "nginx waits behind ffmpeg"
    assert [m.comm for m in goal.guards[0].metric.groups] == ["nginx", "ffmpeg"]
    assert (usage.calls, usage.input_tokens, usage.output_tokens) == (1, 150, 50)
    assert usage.cost_usd == pytest.approx((150 * 0.15 + 50 * 0.6) / 1e6)
    sent = requests[0]
    assert sent["response_format"]["type"] == "json_schema" and "comm:nginx" in sent["messages"][1]["content"]
    (span,) = [s for s in spans.get_finished_spans() if s.name == "chat gpt-4o-mini"]
    assert span.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert (span.attributes["gen_ai.usage.input_tokens"], span.attributes["gen_ai.usage.output_tokens"]) == (150, 50)
    assert span.attributes["schedcp.llm.cost_usd"] == pytest.approx(usage.cost_usd)


def test_malformed_json_is_repaired_from_the_error():
    goal, usage, requests = infer([reply("{not json"), reply(GOOD)])
    assert goal.provider == "openai" and usage.calls == 2
    assert "That reply is invalid" in requests[1]["messages"][-1]["content"]


@pytest.mark.parametrize("bad", [
    {**GOOD, "objective": "make_it_fast"},
    {**GOOD, "target_group_ids": ["comm:nosuch"]},
    {**GOOD, "confidence": 7},
], ids=["unknown objective", "unknown group", "out of range"])
def test_schema_violations_twice_fall_back_to_rules(bad):
    goal, usage, _ = infer([reply(bad), reply(bad)])
    assert goal.provider == "rules" and usage.calls == 2
    assert goal.objective == goal_pb2.OBJECTIVE_TAIL_LATENCY  # the rules' own answer
    assert "the openai provider was not used: invalid reply" in goal.rationale


def test_a_timeout_falls_back_and_says_so():
    goal, _, _ = infer([{"delay": 2, **reply(GOOD)}], llm_timeout_s=0.3)
    assert goal.provider == "rules" and "APITimeoutError" in goal.rationale


def test_an_error_status_falls_back():
    goal, _, _ = infer([{"status": 503}])
    assert goal.provider == "rules" and "answered 503" in goal.rationale


def test_a_spent_budget_stops_the_repair_round():
    goal, usage, requests = infer([reply("{not json", 400, 200), reply(GOOD)], llm_token_budget=500)
    assert len(requests) == 1 and usage.tokens == 600
    assert goal.provider == "rules" and "token budget (500) is spent" in goal.rationale


def test_without_a_key_the_rules_decide(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    provider = llm.OpenAIGoals(load_settings())
    goal = asyncio.run(provider.infer(PROFILE, "", llm.Usage()))
    assert goal.provider == "rules" and "not configured" in goal.rationale


def test_plan_with_the_openai_provider_counts_its_usage(services, workload):
    cpu_hogs(workload)
    latency_probe(workload)
    proposal = {"objective": "tail_latency", "target_group_ids": ["comm:cyclictest"],
                "batch_group_ids": ["comm:stress-ng-cpu"], "rationale": "cyclictest waits behind the hogs",
                "confidence": 0.9}
    with scripted_llm([reply(proposal, 300, 60)]) as (url, script):
        services.env.update(OPENAI_BASE_URL=url, OPENAI_API_KEY="test", SCHEDCP_LLM_MODEL="scripted-model")
        services.start("observer", "planner")
        wait_registered(services.addr("planner"))
        plan = call(services.addr("planner"), lambda ch: planner_pb2_grpc.PlannerServiceStub(ch).Plan(
            planner_pb2.PlanRequest(host_id="testhost", provider="openai")))
    assert plan.goal.provider == "openai" and plan.goal.rationale == "cyclictest waits behind the hogs"
    assert (plan.llm_usage.calls, plan.llm_usage.input_tokens, plan.llm_usage.output_tokens) == (1, 300, 60)
    assert script.requests[0]["model"] == "scripted-model"
    assert plan.candidates.candidates[0].artifact.native.rules[0].match[0].comm == "stress-ng-cpu"
