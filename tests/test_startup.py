"""Bad configuration, a taken port, or unreachable NATS: one clear line and a non-zero exit."""

import subprocess
import sys

import pytest

from schedcp.runtime.net import free_port
from tests.conftest import ROOT, service_env


def start(role: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"services.{role}"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def the_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {result.stderr}"
    return lines[0]


@pytest.mark.parametrize("role", ["observer", "planner", "executor", "verifier", "learner"])
def test_invalid_setting(role, tmp_path):
    result = start(role, service_env("nats://127.0.0.1:4222", tmp_path, SCHEDCP_LOG_FORMAT="yaml"))
    assert result.returncode == 2
    assert the_line(result) == (
        f"schedcp-{role}: configuration error: SCHEDCP_LOG_FORMAT='yaml' is invalid: "
        "Input should be 'text' or 'json'; fix it or unset it for the default"
    )


def test_port_taken(tmp_path, nats_server, held_port):
    port = held_port
    result = start("planner", service_env(nats_server.url, tmp_path, SCHEDCP_PLANNER_ADDR=f"127.0.0.1:{port}"))
    assert result.returncode == 3
    line = the_line(result)
    assert f"cannot listen on 127.0.0.1:{port}" in line
    assert "set SCHEDCP_PLANNER_ADDR to a free address" in line


def test_nats_unreachable(tmp_path):
    url = f"nats://127.0.0.1:{free_port()}"
    result = start("learner", service_env(url, tmp_path, SCHEDCP_NATS_CONNECT_TIMEOUT_S="0.5"))
    assert result.returncode == 3
    line = the_line(result)
    assert line.startswith(f"schedcp-learner: cannot reach NATS at {url} (")
    assert "SCHEDCP_NATS_URL" in line
