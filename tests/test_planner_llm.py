"""The openai goal provider against a local OpenAI-compatible server that replays scripted
answers: a valid structured reply becomes the goal; malformed JSON is repaired in one more
round; schema violations, unknown groups, timeouts, errors and a spent token budget fall back
to the rules provider, and the goal says why. The scripted server also plays the kinds of
server people run, which accept different structured-output formats: the client negotiates the
mode once per endpoint and model, again after an error, sends schemas without the bounds that
blow up decoding grammars, and enforces those bounds itself."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from pydantic import BaseModel, Field

from schedcp.runtime.config import load_settings
from schedcp.v1 import goal_pb2, planner_pb2, planner_pb2_grpc
from services.planner import llm, structured
from tests.conftest import cpu_hogs, latency_probe
from tests.llm_server import KINDS, reply, scripted_llm
from tests.test_planner import BATCH, LATENCY, group, profile, wait_registered
from tests.test_services import call

PROFILE = profile(group("nginx", LATENCY, 0.2, p99_us=3500), group("ffmpeg", BATCH, 4.0))
GOOD = {"objective": "tail_latency", "target_group_ids": ["comm:nginx"], "batch_group_ids": ["comm:ffmpeg"],
        "rationale": "nginx waits behind ffmpeg", "confidence": 0.8}


@pytest.fixture(autouse=True)
def no_negotiated_modes(monkeypatch):
    """Each test's server is new to the client (a port of an earlier test's may be reused)."""
    monkeypatch.setattr(llm, "_NEGOTIATED", {})


def infer(replies: list[dict], kind: str = "openai",
          **settings) -> tuple[goal_pb2.OptimizationGoal, llm.Usage, list[dict]]:
    usage = llm.Usage()
    with scripted_llm(replies, kind) as (url, script):
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


@pytest.mark.parametrize("answer, rules", [
    ({**GOOD, "objective": "none", "target_group_ids": [], "batch_group_ids": []}, "tail_latency"),
    ({**GOOD, "target_group_ids": ["comm:ffmpeg"], "batch_group_ids": ["comm:nginx"]}, "tail_latency"),
], ids=["no objective", "other targets"])
def test_a_valid_answer_the_rules_read_otherwise_stays_and_says_so(answer, rules):
    goal, _, _ = infer([reply(answer)])
    assert goal.provider == "openai" and goal.rationale.startswith(f"{GOOD['rationale']} (the rules provider infers "
                                                                   f"otherwise: {rules}; nginx ")


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


def test_the_answer_length_bound_is_sent_only_when_set():
    _, _, requests = infer([reply(GOOD)], llm_max_output_tokens=300)
    assert requests[0]["max_tokens"] == 300
    _, _, requests = infer([reply(GOOD)])
    assert "max_tokens" not in requests[0]


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
    # The rules may read this host otherwise (other busy processes beside the test's): then the
    # rationale goes on to say so.
    assert plan.goal.provider == "openai" and plan.goal.rationale.startswith("cyclictest waits behind the hogs")
    assert (plan.llm_usage.calls, plan.llm_usage.input_tokens, plan.llm_usage.output_tokens) == (1, 300, 60)
    assert script.requests[0]["model"] == "scripted-model"
    assert plan.candidates.candidates[0].artifact.native.rules[0].match[0].comm == "stress-ng-cpu"


# Each kind of server, and the formats the first call sends until one is accepted: the last.
NEGOTIATIONS = {
    "openai": ["json_schema"],
    "refuses json_schema with a bare 500": ["json_schema", "json_schema", "json_object+schema"],
    "refuses json_schema with a 500 naming it": ["json_schema", "json_object+schema"],
    "json_object without a schema only": ["json_schema", "json_object+schema", "json_object"],
    "text only": ["json_schema", "json_object+schema", "json_object", "text"],
}
assert set(NEGOTIATIONS) == set(KINDS)


@pytest.mark.parametrize("kind", NEGOTIATIONS)
def test_the_mode_is_negotiated_once_and_again_after_an_error(kind, spans, caplog):
    caplog.set_level(logging.INFO, logger=llm.__name__)
    first = NEGOTIATIONS[kind]
    mode = first[-1]
    with scripted_llm([reply(GOOD), reply(GOOD), {"status": 503}, reply(GOOD)], kind) as (url, script):
        provider = llm.OpenAIGoals(load_settings(llm_max_retries=0), base_url=url, api_key="test")
        goals = [asyncio.run(provider.infer(PROFILE, "", llm.Usage())) for _ in range(4)]
    assert [g.provider for g in goals] == ["openai", "openai", "rules", "openai"]
    assert "answered 503" in goals[2].rationale
    # The second call reuses the mode (one request); the error makes the fourth negotiate again.
    assert script.formats == [*first, mode, mode, *first]
    assert caplog.text.count(f"structured output as {mode}\n") == 2
    chats = [s for s in spans.get_finished_spans() if s.name.startswith("chat ")]
    assert [s.attributes["schedcp.llm.structured_output"] for s in chats] == script.formats


def test_a_mode_refused_later_steps_down_from_it():
    with scripted_llm([reply(GOOD), reply(GOOD)]) as (url, script):
        provider = llm.OpenAIGoals(load_settings(llm_max_retries=0), base_url=url, api_key="test")
        asyncio.run(provider.infer(PROFILE, "", llm.Usage()))
        script.refuses = KINDS["json_object without a schema only"]  # another server behind the address
        goal = asyncio.run(provider.infer(PROFILE, "", llm.Usage()))
    assert goal.provider == "openai"
    assert script.formats == ["json_schema", "json_schema", "json_object+schema", "json_object"]


def test_a_passing_500_does_not_step_down():
    goal, _, requests = infer([{"status": 500}, reply(GOOD), reply(GOOD)])
    assert goal.provider == "openai"
    assert [r["response_format"]["type"] for r in requests] == ["json_schema", "json_schema"]


def test_the_clients_own_retry_is_the_second_try_of_a_bare_500():
    with scripted_llm([reply(GOOD)], "refuses json_schema with a bare 500") as (url, script):
        provider = llm.OpenAIGoals(load_settings(llm_max_retries=1), base_url=url, api_key="test")
        goal = asyncio.run(provider.infer(PROFILE, "", llm.Usage()))
    assert goal.provider == "openai"
    assert script.formats == ["json_schema", "json_schema", "json_object+schema"]


def test_text_mode_puts_the_schema_in_the_prompt_and_extracts_the_fenced_json():
    prose = f"The {{batch}} is the problem.\n```json\n{json.dumps(GOOD, indent=2)}\n```\nHope this helps."
    goal, usage, requests = infer([reply(prose)], "text only")
    assert goal.provider == "openai" and goal.rationale == GOOD["rationale"] and usage.calls == 1
    assert "response_format" not in requests[-1]
    system = requests[-1]["messages"][0]["content"]
    assert system.startswith(llm.SYSTEM) and '"maxLength": 2000' in system  # the full schema, to read


@pytest.mark.parametrize("kind", ["openai", "refuses json_schema with a bare 500"])
def test_the_schema_sent_for_decoding_has_no_bounds(kind):
    _, _, requests = infer([reply(GOOD)], kind)
    response_format = requests[-1]["response_format"]
    sent = response_format["json_schema"]["schema"] if kind == "openai" else response_format["schema"]
    assert sent == structured.decoding_schema(llm.GoalProposal)
    for field in ("target_group_ids", "batch_group_ids", "rationale"):
        assert not {"minLength", "maxLength", "minItems", "maxItems"} & set(sent["properties"][field])
    assert sent["properties"]["confidence"] == {"maximum": 1, "minimum": 0, "title": "Confidence", "type": "number"}


@pytest.mark.parametrize("bad, bound", [
    ({**GOOD, "rationale": "x" * 2001}, "at most 2000 characters"),
    ({**GOOD, "batch_group_ids": ["comm:ffmpeg"] * 17}, "at most 16 items"),
], ids=["rationale too long", "too many ids"])
def test_a_bound_left_out_of_decoding_is_enforced_after_it(bad, bound):
    goal, _, requests = infer([reply(bad), reply(GOOD)])
    assert goal.provider == "openai" and bound in requests[1]["messages"][-1]["content"]
    goal, _, _ = infer([reply(bad), reply(bad)])
    assert goal.provider == "rules" and bound in goal.rationale


class Inner(BaseModel):
    maxLength: list[str] = Field(max_length=3)  # a property named like a bound is kept


class Outer(BaseModel):
    inner: list[Inner] = Field(min_length=1, max_length=16)
    text: str = Field(min_length=1, max_length=2000)


def test_bounds_are_left_out_at_every_depth():
    schema = structured.decoding_schema(Outer)
    assert schema["properties"]["inner"] == {"items": {"$ref": "#/$defs/Inner"}, "title": "Inner", "type": "array"}
    assert schema["properties"]["text"] == {"title": "Text", "type": "string"}
    assert schema["$defs"]["Inner"]["properties"] == {
        "maxLength": {"items": {"type": "string"}, "title": "Maxlength", "type": "array"}}
    Outer.model_validate_json(json.dumps({"inner": [{"maxLength": ["a"]}], "text": "t"}))  # the model keeps them


@pytest.mark.parametrize("answer, found", [
    ('{"a": 1}', '{"a": 1}'),
    ('Sure:\n```json\n{"a": "}"}\n```', '{"a": "}"}'),
    ('```\n{"a": 1}\n```', '{"a": 1}'),
    ('Use {braces} well: {"a": {"b": 2}} done', '{"a": {"b": 2}}'),
    ('```c\nint x() { return 0; }\n```\nAnswer: {"a": 1}', '{"a": 1}'),
    ("{not json", "{not json"),
], ids=["bare", "fenced with a brace in a string", "fenced without a tag", "prose with braces",
        "a code block before the JSON", "none"])
def test_the_json_is_taken_from_the_answer(answer, found):
    assert structured.extract_json(answer) == found
