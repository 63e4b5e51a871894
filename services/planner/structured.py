"""Structured output across OpenAI-compatible servers, which do not all accept the same
`response_format`: the modes a chat request can ask for an answer in (best first), the request
of each, the schema sent for decoding, how a refusal of a mode is told from other failures,
and how the JSON is taken out of an answer. `llm.LlmClient` negotiates the mode per endpoint.
"""

from __future__ import annotations

import json
from enum import StrEnum

import openai
from pydantic import BaseModel


class Mode(StrEnum):
    """How the answer's structure is asked for, in the order they are tried."""

    JSON_SCHEMA = "json_schema"  # OpenAI's strict structured output
    JSON_OBJECT_SCHEMA = "json_object+schema"  # llama.cpp and llama-cpp-python: a schema-driven grammar
    JSON_OBJECT = "json_object"  # JSON of any shape; the schema is only in the prompt
    TEXT = "text"  # no response_format at all; the schema is in the prompt, the JSON taken from the prose


MODES = tuple(Mode)

# Every length or item bound becomes a repetition count in a server's decoding grammar
# (llama-cpp-python died on the 2000-character rationale); pydantic enforces them after decoding.
UNBOUNDED = frozenset({"minLength", "maxLength", "minItems", "maxItems"})
# Keys whose values map names to schemas: a property called "maxLength" is not a bound.
NAMED_SCHEMAS = frozenset({"properties", "$defs", "definitions", "patternProperties"})
# A server that refuses a response_format says so with an invalid-request status, or a 500 whose
# message names what it could not handle (llama-cpp-python answers 500 to json_schema).
REFUSAL_STATUSES = frozenset({400, 422, 501})
FORMAT_WORDS = ("response_format", "schema", "grammar", "json_object")


def request(mode: Mode, messages: list[dict], model: type[BaseModel]) -> dict:
    """The chat request's messages and response_format in this mode."""
    if mode is Mode.JSON_SCHEMA:
        # The server shows a json_schema to the model itself, so the prompt stays as it is.
        return {"messages": messages, "response_format": {"type": "json_schema", "json_schema": {
            "name": model.__name__.lower(), "strict": True, "schema": decoding_schema(model)}}}
    prompted = _with_schema(messages, model)
    if mode is Mode.JSON_OBJECT_SCHEMA:
        return {"messages": prompted, "response_format": {"type": "json_object", "schema": decoding_schema(model)}}
    if mode is Mode.JSON_OBJECT:
        return {"messages": prompted, "response_format": {"type": "json_object"}}
    return {"messages": prompted}


def _with_schema(messages: list[dict], model: type[BaseModel]) -> list[dict]:
    """The messages with the full schema (bounds included: here they cost no grammar) appended to
    the system message: a grammar constrains what the model writes but does not tell it what the
    fields mean."""
    system, *rest = messages
    note = ("\n\nAnswer with one JSON object that matches this JSON schema, and nothing else:\n"
            + json.dumps(model.model_json_schema()))
    return [{**system, "content": system["content"] + note}, *rest]


def decoding_schema(model: type[BaseModel]) -> dict:
    """The model's JSON schema without length or item bounds, at every depth."""
    return _unbounded(model.model_json_schema())


def _unbounded(node: object) -> object:
    if isinstance(node, list):
        return [_unbounded(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {key: {name: _unbounded(schema) for name, schema in value.items()} if key in NAMED_SCHEMAS
            else _unbounded(value) for key, value in node.items() if key not in UNBOUNDED}


def refuses_mode(exc: openai.APIStatusError) -> bool:
    """Whether the error says the server cannot answer in the requested mode (rather than being
    overloaded, unreachable, unauthorised or missing the model: those say nothing of the mode)."""
    return exc.status_code in REFUSAL_STATUSES or (exc.status_code == 500 and _names_format(exc))


def bare_500(exc: openai.APIStatusError) -> bool:
    """A 500 that does not say why: a refusal of the mode or a passing failure; the same request
    again tells them apart."""
    return exc.status_code == 500 and not _names_format(exc)


def _names_format(exc: openai.APIStatusError) -> bool:
    text = str(exc).lower()
    return any(word in text for word in FORMAT_WORDS)


def extract_json(answer: str) -> str:
    """The first JSON object in the answer, looked for first in its fenced code blocks (models
    asked for JSON in prose often fence it), then in the whole answer; the answer itself when it
    holds none, so that validation says what is wrong with it."""
    for block in [*_fenced_blocks(answer), answer]:
        found = _first_object(block)
        if found is not None:
            return found
    return answer


def _fenced_blocks(text: str) -> list[str]:
    """The contents of ``` blocks, without the language tag on the opening line."""
    parts = text.split("```")
    return [block.partition("\n")[2] if block[:1].isalpha() else block for block in parts[1::2]]


def _first_object(text: str) -> str | None:
    """The first balanced {...} that is a JSON object (braces inside strings do not count: the
    JSON decoder reads them)."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return text[start:end]
        start = text.find("{", start + 1)
    return None
