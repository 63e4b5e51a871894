"""A local OpenAI-compatible endpoint that replays scripted answers (the only fake in the
tests: no external LLM API is reachable here). POST /v1/chat/completions returns the next
scripted reply: content with token counts, an HTTP error status, or a delay (for timeouts).
Every request body is kept, so tests can count calls and read what was sent, and so is the
structured-output format each request asked for (`formats`).

A server kind makes it refuse formats the way real servers do (`KINDS`): a refused request gets
the kind's error status and consumes no scripted reply, as a server that rejects a request
before running the model."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# What each kind of server refuses: format -> (status, error message). The format of a request is
# its response_format's type, "json_object+schema" when a json_object carries a schema, and
# "text" without a response_format.
KINDS: dict[str, dict[str, tuple[int, str]]] = {
    "openai": {},
    # llama-cpp-python 0.3.36 answers json_schema with a 500; both a 500 that says nothing and one
    # that names the format are played.
    "refuses json_schema with a bare 500": {"json_schema": (500, "Internal Server Error")},
    "refuses json_schema with a 500 naming it": {
        "json_schema": (500, "ValueError: response_format type json_schema is not supported")},
    "json_object without a schema only": {
        "json_schema": (400, "response_format: unknown type json_schema"),
        "json_object+schema": (400, "response_format: unexpected field 'schema'")},
    "text only": {fmt: (400, "response_format is not supported")
                  for fmt in ("json_schema", "json_object+schema", "json_object")},
}


def format_of(body: dict) -> str:
    response_format = body.get("response_format")
    if response_format is None:
        return "text"
    if response_format["type"] == "json_object" and "schema" in response_format:
        return "json_object+schema"
    return response_format["type"]


class ScriptedLLM:
    def __init__(self, replies: list[dict], kind: str = "openai") -> None:
        self.replies = list(replies)
        self.refuses = KINDS[kind]
        self.requests: list[dict] = []
        self.formats: list[str] = []
        self._lock = threading.Lock()

    def next(self, body: dict) -> dict:
        with self._lock:
            self.requests.append(body)
            self.formats.append(format_of(body))
            if self.formats[-1] in self.refuses:
                status, message = self.refuses[self.formats[-1]]
                return {"status": status, "message": message}
            return self.replies.pop(0) if self.replies else {"status": 500}


def reply(content: dict | str, tokens_in: int = 120, tokens_out: int = 40) -> dict:
    return {"content": content if isinstance(content, str) else json.dumps(content), "usage": (tokens_in, tokens_out)}


@contextmanager
def scripted_llm(replies: list[dict], kind: str = "openai") -> Iterator[tuple[str, ScriptedLLM]]:
    """(base_url, script) of a server of that kind on an ephemeral port, for the duration of the
    block."""
    script = ScriptedLLM(replies, kind)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            step = script.next(body)
            if "delay" in step:
                time.sleep(step["delay"])
            if "status" in step:
                self._send(step["status"], {"error": {"message": step.get("message", "scripted failure"),
                                                      "type": "server_error"}})
                return
            tokens_in, tokens_out = step.get("usage", (0, 0))
            self._send(200, {"id": "chatcmpl-scripted", "object": "chat.completion", "created": 0,
                             "model": body.get("model", "scripted"),
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": step.get("content", "")}}],
                             "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
                                       "total_tokens": tokens_in + tokens_out}})

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", script
    finally:
        server.shutdown()
        server.server_close()
