"""`schedcp llm check` and the planner's LlmStatus against the scripted OpenAI-compatible server
(tests/llm_server.py): the endpoint and model the planner uses, the structured-output mode it
negotiated, the last call's latency and tokens, a probe that negotiates now, and clear answers
for a failing endpoint, a missing key and a request that names no possible model."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest

from schedcp.runtime.config import load_settings
from schedcp.runtime.errors import InvalidArgument
from schedcp.v1 import planner_pb2, planner_pb2_grpc
from services.planner import llm
from tests.llm_server import reply, scripted_llm
from tests.test_cycle_cli import schedcp
from tests.test_planner_llm import GOOD, PROFILE
from tests.test_services import call


@pytest.fixture(autouse=True)
def no_state(monkeypatch):
    """Each test's server is new to this process's client."""
    monkeypatch.setattr(llm, "_NEGOTIATED", {})
    monkeypatch.setattr(llm, "_LAST_CALL", {})


def check(*argv: str, env: dict[str, str]) -> tuple[int, dict]:
    done = schedcp(env, "--json", "llm", "check", *argv)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def test_check_shows_what_the_planner_negotiated_and_its_last_call(services):
    probe = reply({"ok": True}, 31, 6)
    with scripted_llm([probe], "refuses json_schema with a bare 500") as (url, script):
        services.env.update(OPENAI_BASE_URL=url, OPENAI_API_KEY="test", SCHEDCP_LLM_MODEL="scripted-model",
                            SCHEDCP_LLM_MAX_RETRIES="0")
        services.start("planner")
        code, before = check(env=services.env)
        assert code == 0 and before["endpoint"] == url and before["model"] == "scripted-model"
        assert before["keyConfigured"] and before["defaultProvider"] == "rules"
        assert before["structuredOutput"] == "" and "lastCall" not in before and not script.requests

        code, probed = check("--probe", env=services.env)
        assert code == 0 and probed["probeOk"], probed["probeMessage"]
        assert probed["structuredOutput"] == "json_object+schema"
        assert probed["probeMessage"] == "answered as json_object+schema (31 tokens in, 6 out)"
        last = probed["lastCall"]
        assert (last["structuredOutput"], last["inputTokens"], last["outputTokens"]) == ("json_object+schema",
                                                                                              "31", "6")
        assert last["latencyMs"] > 0 and last["error"] == ""
        assert script.formats == ["json_schema", "json_schema", "json_object+schema"]
        assert script.requests[-1]["model"] == "scripted-model"

        code, after = check(env=services.env)  # the planner keeps what the probe found
        assert code == 0 and after["structuredOutput"] == "json_object+schema" and after["lastCall"] == last
        text = schedcp(services.env, "llm", "check")
        assert "structured output  json_object+schema" in text.stdout
        assert "json_object+schema, " in text.stdout and "31 tokens in, 6 out" in text.stdout

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            call(services.addr("planner"), lambda ch: planner_pb2_grpc.PlannerServiceStub(ch).LlmStatus(
                planner_pb2.LlmStatusRequest(model="two words")))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'two words' is not a model name" in refused.value.details()
    assert len(script.requests) == 3  # nothing was sent for it


def status(**request) -> planner_pb2.LlmStatusResponse:
    return asyncio.run(llm.status(load_settings(llm_max_retries=0), planner_pb2.LlmStatusRequest(**request)))


def test_the_last_call_is_the_goal_providers_own(monkeypatch):
    with scripted_llm([reply(GOOD, 150, 50)]) as (url, _):
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        provider = llm.OpenAIGoals(load_settings(llm_max_retries=0), api_key="test")
        asyncio.run(provider.infer(PROFILE, "", llm.Usage()))
        found = status()
    assert found.structured_output == "json_schema" and found.model == "gpt-4o-mini"
    assert (found.last_call.input_tokens, found.last_call.output_tokens, found.last_call.error) == (150, 50, "")
    assert status(model="another-model").structured_output == ""  # modes are per model


def test_a_failing_endpoint_is_reported_with_its_error(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    with scripted_llm([{"status": 503}]) as (url, _):
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        found = status(probe=True)
    assert not found.probe_ok and found.probe_message == "no answer: the LLM endpoint answered 503"
    assert found.structured_output == "" and found.last_call.error == "the LLM endpoint answered 503"


def test_an_answer_that_is_not_the_json_asked_for_fails_the_probe(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    with scripted_llm([reply({"fine": "thanks"})]) as (url, _):
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        found = status(probe=True)
    assert not found.probe_ok and "answered as json_schema, but not with the JSON asked for" in found.probe_message


def test_without_a_key_nothing_is_sent_and_the_check_says_so(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    found = status(probe=True)
    assert found.endpoint == llm.OPENAI_URL and not found.key_configured
    assert not found.probe_ok and "not configured" in found.probe_message and not found.HasField("last_call")


@pytest.mark.parametrize("model", ["", "llama3.2:1b", "org/model-7b", "/models/gemma-3-270m-it-Q4_K_M.gguf"])
def test_model_names_servers_use_are_accepted(model, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert status(model=model).model == (model or "gpt-4o-mini")


@pytest.mark.parametrize("model", ["two words", "x" * 201, "new\nline"])
def test_a_name_no_model_could_have_is_invalid(model):
    with pytest.raises(InvalidArgument, match="is not a model name"):
        status(model=model)
