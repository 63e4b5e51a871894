"""A local OpenAI-compatible endpoint that replays scripted answers (the only fake in the
tests: no external LLM API is reachable here). POST /v1/chat/completions returns the next
scripted reply: content with token counts, an HTTP error status, or a delay (for timeouts).
Every request body is kept, so tests can count calls and read what was sent."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ScriptedLLM:
    def __init__(self, replies: list[dict]) -> None:
        self.replies = list(replies)
        self.requests: list[dict] = []
        self._lock = threading.Lock()

    def next(self, body: dict) -> dict:
        with self._lock:
            self.requests.append(body)
            return self.replies.pop(0) if self.replies else {"status": 500}


def reply(content: dict | str, tokens_in: int = 120, tokens_out: int = 40) -> dict:
    return {"content": content if isinstance(content, str) else json.dumps(content), "usage": (tokens_in, tokens_out)}


@contextmanager
def scripted_llm(replies: list[dict]) -> Iterator[tuple[str, ScriptedLLM]]:
    """(base_url, script) of a server on an ephemeral port, for the duration of the block."""
    script = ScriptedLLM(replies)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            step = script.next(body)
            if "delay" in step:
                time.sleep(step["delay"])
            if "status" in step:
                self._send(step["status"], {"error": {"message": "scripted failure", "type": "server_error"}})
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
