"""The `openai` goal provider: any OpenAI-compatible endpoint (the client's own OPENAI_BASE_URL
and OPENAI_API_KEY; SCHEDCP_LLM_MODEL).

The model gets the profile's groups (ids, classes, numbers) and the intent, and answers with a
structured GoalProposal (validated by pydantic); how the structure is asked for depends on what
the endpoint accepts, negotiated once per endpoint and model (`structured.py`). A reply that
does not parse or validate, or names groups the profile does not have, is sent back once with
the error; then, or on a timeout, a transport error or a spent token budget, the rules provider
decides and the goal says why (`provider` is "rules", the rationale names the failure). A
valid goal whose objective or targets the rules read otherwise says so in its rationale. Every
call is a span with the GenAI attributes (model, tokens, estimated cost) and the structured-
output mode; prompts are not recorded. The planner's LlmStatus (`schedcp llm check`) reports
the negotiated mode and the last call per endpoint and model, and can probe the endpoint.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Literal

import openai
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schedcp.domain import matchers
from schedcp.runtime import metrics, telemetry
from schedcp.runtime.config import Settings
from schedcp.runtime.errors import InvalidArgument
from schedcp.v1 import cycle_pb2, goal_pb2, planner_pb2, profile_pb2
from services.planner import goals, structured
from services.planner.structured import MODES, Mode

log = logging.getLogger(__name__)
REPAIR_ROUNDS = 1
# Where the OpenAI client sends requests when neither the caller nor OPENAI_BASE_URL names an endpoint.
OPENAI_URL = "https://api.openai.com/v1"
# Model names as servers spell them: "gpt-4o-mini", "llama3.2:1b", "org/model", a GGUF file's path.
MODEL_NAME = re.compile(r"[\w.:/@+-]{1,200}")
SYSTEM = ("You are the goal-inference agent of schedcp, a Linux CPU scheduling control plane. From a host's "
          "workload groups, decide what to optimise: protect the tail latency of latency-sensitive groups from the "
          "work that competes with them (tail_latency with batch_group_ids), or of latency-sensitive groups that "
          "contend among themselves (tail_latency without batch_group_ids: an over-subscribed service); raise the "
          "throughput of batch work or of a batch of jobs (throughput); finish a batch of jobs sooner by running "
          "its long jobs first (makespan, naming the long jobs as targets, or the batch whose long_jobs the "
          "observer found); or nothing (none). Evidence: a group "
          "that serves connections is a service, even when starved of CPU it never sleeps; a group with no sockets "
          "answers to no one outside: unless it wakes periodically for short work it is batch; a group that is a "
          "client_of a local server sends it requests, and its waits are part of their latency; cpu_per_wakeup_us is "
          "the size of one unit of work; wait_share is how much of what it wants a group waits for; many "
          "processes started within seconds of each other, or new ones every second, are jobs. Use only the "
          "group ids given. Answer with JSON only.")


class GoalProposal(BaseModel):
    """What the model must answer."""

    model_config = ConfigDict(extra="forbid")

    objective: Literal["tail_latency", "throughput", "makespan", "none"]
    target_group_ids: list[str] = Field(max_length=16, description="groups to protect (tail_latency), speed up "
                                        "(throughput) or run first (makespan: the long jobs)")
    batch_group_ids: list[str] = Field(max_length=16, description="groups competing with the targets")
    rationale: str = Field(min_length=1, max_length=2000)
    confidence: float = Field(ge=0, le=1)


@dataclass
class Usage:
    """LLM use in one decision cycle."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def message(self) -> cycle_pb2.LlmUsage:
        return cycle_pb2.LlmUsage(calls=self.calls, input_tokens=self.input_tokens, output_tokens=self.output_tokens,
                                  cost_usd=self.cost_usd)


class LlmUnavailable(Exception):
    """The LLM gave no answer: not configured, timed out, unreachable, an error status, or the
    cycle's token budget is spent. The message says which."""


@dataclass(frozen=True)
class Call:
    """One chat call as `schedcp llm check` reports it."""

    at: float  # wall-clock seconds
    mode: Mode
    latency_ms: float
    input_tokens: int = 0
    output_tokens: int = 0
    error: str = ""

    def message(self) -> planner_pb2.LlmCall:
        call = planner_pb2.LlmCall(structured_output=str(self.mode), latency_ms=self.latency_ms,
                                   input_tokens=self.input_tokens, output_tokens=self.output_tokens, error=self.error)
        call.at.FromNanoseconds(int(self.at * 1e9))
        return call


# The structured-output mode each (endpoint, model) answered in, for the life of the process:
# found out by the first call, and again by the call after any error (the endpoint may have
# been restarted with another server or model behind the same address).
_NEGOTIATED: dict[tuple[str, str], Mode] = {}
# The last call to each (endpoint, model), answered or not: module state like the modes, since
# the goal provider and the code generator each hold a client of the same endpoint.
_LAST_CALL: dict[tuple[str, str], Call] = {}


class LlmClient:
    """Chat completions with a structured answer, each call a GenAI span, usage counted."""

    def __init__(self, settings: Settings, base_url: str | None = None, api_key: str | None = None,
                 model: str | None = None) -> None:
        self._settings = settings
        self._base_url = base_url
        self._api_key = api_key
        self.model = model or settings.llm_model

    @property
    def endpoint(self) -> str:
        """The base URL the calls go to, as the OpenAI client chooses it."""
        return (self._base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL).rstrip("/")

    @property
    def key_configured(self) -> bool:
        return bool(self._api_key or os.environ.get("OPENAI_API_KEY"))

    def negotiated(self) -> Mode | None:
        return _NEGOTIATED.get((self.endpoint, self.model))

    def last_call(self) -> Call | None:
        return _LAST_CALL.get((self.endpoint, self.model))

    async def complete(self, messages: list[dict], schema: type[BaseModel], usage: Usage) -> str:
        """The answer's JSON (not yet validated). `messages` starts with the system message."""
        budget = self._settings.llm_token_budget
        if usage.tokens >= budget:
            raise LlmUnavailable(f"the cycle's LLM token budget ({budget}) is spent")
        try:
            # Closed with the call: its connections otherwise outlive it until garbage collection,
            # which fails once the event loop that opened them is gone.
            async with openai.AsyncOpenAI(base_url=self.endpoint, api_key=self._api_key,
                                          timeout=self._settings.llm_timeout_s,
                                          max_retries=self._settings.llm_max_retries) as client:
                reply = await self._structured(client, messages, schema, usage)
        except openai.OpenAIError as exc:
            metrics.LLM_CALLS.labels("failed").inc()
            raise LlmUnavailable(_explain(exc)) from exc
        metrics.LLM_CALLS.labels("ok").inc()
        return structured.extract_json(reply)

    async def _structured(self, client: openai.AsyncOpenAI, messages: list[dict], schema: type[BaseModel],
                          usage: Usage) -> str:
        """The answer in the mode negotiated for this endpoint and model, or in the first mode
        the server does not refuse (from the best when none is known, else stepping down from the
        known one when the server refuses it now), which is kept for the next calls. Plain text,
        the last, is never refused (`_attempt` raises instead), so the loop ends with an answer."""
        key = (self.endpoint, self.model)
        known = _NEGOTIATED.get(key)
        try:
            for mode in MODES[MODES.index(known):] if known is not None else MODES:
                reply = await self._attempt(client, mode, messages, schema, usage)
                if reply is not None:
                    break
        except openai.OpenAIError:
            _NEGOTIATED.pop(key, None)  # the next call negotiates again, from the best mode
            raise
        if mode is not known:
            _NEGOTIATED[key] = mode
            log.info("LLM endpoint %s, model %s: structured output as %s", *key, mode)
        return reply

    async def _attempt(self, client: openai.AsyncOpenAI, mode: Mode, messages: list[dict],
                       schema: type[BaseModel], usage: Usage) -> str | None:
        """The answer in this mode, or None when the server refuses the mode. A 500 that does
        not say why may be a passing failure: it counts as a refusal only when the same request
        failed again (the client's own retries, when configured, already sent it again)."""
        tries = 1 if self._settings.llm_max_retries else 2
        for attempt in range(1, tries + 1):
            try:
                return await self._call(client, mode, messages, schema, usage)
            except openai.APIStatusError as exc:
                if structured.bare_500(exc) and attempt < tries:
                    continue
                # A bare 500 on the last try is a refusal. Without a response_format, an invalid
                # request is not about the mode.
                if mode is Mode.TEXT or not (structured.refuses_mode(exc) or structured.bare_500(exc)):
                    raise
                log.info("LLM endpoint %s refuses structured output as %s: %s", client.base_url, mode,
                         str(exc)[:300])
                return None

    async def _call(self, client: openai.AsyncOpenAI, mode: Mode, messages: list[dict], schema: type[BaseModel],
                    usage: Usage) -> str:
        model = self.model
        with telemetry.tracer().start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT, attributes={
                "gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": model,
                "schedcp.llm.structured_output": str(mode)}) as span:
            started, at = time.monotonic(), time.time()
            try:
                response = await client.chat.completions.create(model=model, temperature=0, **self._limit(),
                                                                **structured.request(mode, messages, schema))
            except openai.OpenAIError as exc:
                self._record(Call(at, mode, 1000 * (time.monotonic() - started), error=_explain(exc)))
                raise
            latency_ms = 1000 * (time.monotonic() - started)
            tokens_in = response.usage.prompt_tokens if response.usage else 0
            tokens_out = response.usage.completion_tokens if response.usage else 0
            cost = (tokens_in * self._settings.llm_usd_per_mtok_input
                    + tokens_out * self._settings.llm_usd_per_mtok_output) / 1e6
            usage.calls += 1
            usage.input_tokens += tokens_in
            usage.output_tokens += tokens_out
            usage.cost_usd += cost
            metrics.LLM_TOKENS.labels("input").inc(tokens_in)
            metrics.LLM_TOKENS.labels("output").inc(tokens_out)
            self._record(Call(at, mode, latency_ms, tokens_in, tokens_out))
            span.set_attributes({"gen_ai.response.model": response.model or model,
                                 "gen_ai.usage.input_tokens": tokens_in, "gen_ai.usage.output_tokens": tokens_out,
                                 "schedcp.llm.latency_ms": latency_ms, "schedcp.llm.cost_usd": cost})
            return response.choices[0].message.content or ""

    def _limit(self) -> dict:
        bound = self._settings.llm_max_output_tokens
        return {"max_tokens": bound} if bound else {}

    def _record(self, call: Call) -> None:
        _LAST_CALL[(self.endpoint, self.model)] = call


def _explain(exc: openai.OpenAIError) -> str:
    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError):
        return f"the LLM call failed: {type(exc).__name__}: {exc}"
    if isinstance(exc, openai.APIStatusError):
        return f"the LLM endpoint answered {exc.status_code}"
    return f"the openai provider is not configured ({exc})"


class Probe(BaseModel):
    """The answer to the probe's fixed question: small, so that the call is cheap."""

    model_config = ConfigDict(extra="forbid")

    ok: bool


PROBE = [{"role": "system", "content": "You check that structured output works. Answer with JSON only."},
         {"role": "user", "content": 'Answer {"ok": true}.'}]


async def status(settings: Settings, request: planner_pb2.LlmStatusRequest) -> planner_pb2.LlmStatusResponse:
    """What the planner knows of its LLM endpoint and model (or of another model there), after
    one probe call when asked. InvalidArgument for a model name no server could have."""
    if request.model and not MODEL_NAME.fullmatch(request.model):
        raise InvalidArgument(f"model {request.model[:80]!r} is not a model name: 1 to 200 letters, digits and "
                              "._:/@+- (e.g. gpt-4o-mini, llama3.2:1b); empty for the planner's own")
    client = LlmClient(settings, model=request.model or None)
    response = planner_pb2.LlmStatusResponse(endpoint=client.endpoint, model=client.model,
                                             key_configured=client.key_configured,
                                             default_provider=settings.goal_provider)
    if request.probe:
        response.probe_ok, response.probe_message = await _probe(client)
    mode, last = client.negotiated(), client.last_call()
    response.structured_output = str(mode) if mode else ""
    if last is not None:
        response.last_call.CopyFrom(last.message())
    return response


async def _probe(client: LlmClient) -> tuple[bool, str]:
    """(answered with valid JSON, what happened in words) for one call with the fixed question."""
    usage = Usage()
    try:
        reply = await client.complete(list(PROBE), Probe, usage)
    except LlmUnavailable as exc:
        return False, f"no answer: {exc}"
    try:
        Probe.model_validate_json(reply)
    except ValidationError as exc:
        return False, f"answered as {client.negotiated()}, but not with the JSON asked for ({short_error(exc)})"
    return True, f"answered as {client.negotiated()} ({usage.input_tokens} tokens in, {usage.output_tokens} out)"


class OpenAIGoals:
    def __init__(self, settings: Settings, base_url: str | None = None, api_key: str | None = None) -> None:
        self._llm = LlmClient(settings, base_url, api_key)

    async def infer(self, profile: profile_pb2.WorkloadProfile, intent: str, usage: Usage) -> goal_pb2.OptimizationGoal:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt(profile, intent)}]
        problem = ""
        for _ in range(1 + REPAIR_ROUNDS):
            try:
                reply = await self._llm.complete(messages, GoalProposal, usage)
            except LlmUnavailable as exc:
                return _fallback(profile, intent, f"{exc}{': ' + problem if problem else ''}")
            try:
                goal = to_goal(GoalProposal.model_validate_json(reply), profile, intent)
            except (ValidationError, ValueError) as exc:
                problem = f"invalid reply ({short_error(exc)})"
                log.info("LLM goal reply rejected: %s", problem)
                retry = (f"That reply is invalid: {short_error(exc)}. Answer again with JSON that matches the "
                         "schema, using only the given ids.")
                messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": retry}]
            else:
                return second_opinion(goal, profile, intent)
        return _fallback(profile, intent, problem)


def prompt(profile: profile_pb2.WorkloadProfile, intent: str) -> str:
    groups = [{"id": g.group_id, "name": g.name, "class": _class_name(g),
               "confidence": round(g.classification.confidence, 2), "cpus_wanted": round(g.features.demand, 2),
               "wakeups_per_s": round(g.features.wakeups_per_s),
               "runq_wait_p99_us": round(g.features.runq_latency.p99_us),
               "cpu_per_wakeup_us": round(g.features.cpu_per_wakeup_us), "wait_share": round(g.features.wait_share, 2),
               "serves_connections": g.features.serves, "no_sockets": g.features.socketless,
               "client_of": list(g.features.client_of),
               "processes": g.features.processes,
               "started_within_s": round(g.features.start_spread_s, 1),
               "new_processes_per_s": round(g.features.spawns_per_s, 1), "jobs": goals.is_job_batch(g),
               "long_jobs": [{"cmdline": j.cmdline, "evidence": j.evidence} for j in g.long_jobs[:4]]}
              for g in profile.groups]
    return json.dumps({"host_cpus": profile.host.cpu.logical_cpus, "groups": groups,
                       "operator_intent": intent or None})


def _class_name(group: profile_pb2.WorkloadGroup) -> str:
    return profile_pb2.WorkloadClass.Name(group.classification.workload_class).removeprefix("WORKLOAD_CLASS_").lower()


def to_goal(proposal: GoalProposal, profile: profile_pb2.WorkloadProfile, intent: str) -> goal_pb2.OptimizationGoal:
    """The proposal as a goal built like the rules provider builds one; ValueError for ids the
    profile does not have."""
    by_id = {g.group_id: g for g in profile.groups}
    unknown = [i for i in [*proposal.target_group_ids, *proposal.batch_group_ids] if i not in by_id]
    if unknown:
        raise ValueError(f"unknown group ids {unknown}; known: {sorted(by_id)}")
    targets = [by_id[i] for i in proposal.target_group_ids]
    batch = [by_id[i] for i in proposal.batch_group_ids]
    if proposal.objective == "tail_latency" and targets and batch:
        goal = goals.protect_latency(targets, batch, intent)
    elif proposal.objective == "tail_latency" and targets:
        goal = goals.oversubscribed(targets, profile, intent)
    elif proposal.objective == "throughput" and targets:
        goal = goals.throughput(targets, profile, intent)
    elif proposal.objective == "makespan" and (long := goals.long_jobs(targets)):
        # A batch named as the target: the observer's long jobs in it are what runs first.
        goal = goals.makespan_of(long, [*targets, *(g for g in batch if g not in targets)], profile, intent)
    elif proposal.objective == "makespan" and targets:
        goal = goals.makespan(targets, batch, intent)
    elif proposal.objective == "none":
        goal = goal_pb2.OptimizationGoal(objective=goal_pb2.OBJECTIVE_UNSPECIFIED, intent=intent)
    else:
        raise ValueError(f"objective {proposal.objective} needs target group ids")
    goal.provider, goal.confidence, goal.rationale = "openai", proposal.confidence, proposal.rationale
    return goal


def second_opinion(goal: goal_pb2.OptimizationGoal, profile: profile_pb2.WorkloadProfile,
                   intent: str) -> goal_pb2.OptimizationGoal:
    """The model's goal, its rationale ending with the rules provider's reading when that differs
    in objective or targets. A valid answer can still be wrong (a small model called a contended
    host's nginx and batch "none"); the rules are not always right either, so the goal stays the
    model's and the difference is only stated, for the operator and the cycle's events to show."""
    rules = goals.infer(profile, intent)
    if _gist(rules) != _gist(goal):
        goal.rationale += f" (the rules provider infers otherwise: {objective_word(rules)}; {rules.rationale})"
    return goal


def objective_word(goal: goal_pb2.OptimizationGoal) -> str:
    """The objective as GoalProposal spells it ("none" for a goal without one)."""
    return goal_pb2.Objective.Name(goal.objective).removeprefix("OBJECTIVE_").lower().replace("unspecified", "none")


def _gist(goal: goal_pb2.OptimizationGoal) -> tuple[int, list[str]]:
    return goal.objective, sorted(matchers.describe(m) for m in goal.target_groups)


def _fallback(profile: profile_pb2.WorkloadProfile, intent: str, why: str) -> goal_pb2.OptimizationGoal:
    log.warning("openai goal provider: %s; the rules provider decides", why)
    goal = goals.infer(profile, intent)
    goal.rationale = f"{goal.rationale} (rules provider: the openai provider was not used: {why})"
    return goal


def short_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc']) or 'reply'}: {first['msg']}"
    return str(exc)[:300]
