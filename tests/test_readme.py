"""The README's console examples run, in order, against a private stack, and succeed."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from schedcp.net import free_port
from tests.conftest import ROOT, service_env

SCHEDCP = Path(ROOT / ".venv" / "bin" / "schedcp")


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```console\n(.*?)```", text, re.S)
    return [line[2:].split() for block in blocks for line in block.splitlines() if line.startswith("$ ")]


@pytest.mark.timeout(600)  # the tour verifies a policy in the micro-VM
def test_readme_tour_runs(tmp_path):
    commands = readme_commands()
    assert commands[0][:2] == ["schedcp", "up"] and commands[-1] == ["schedcp", "down"]
    env = service_env(f"nats://127.0.0.1:{free_port()}", tmp_path / "data")
    outputs = {}
    try:
        for argv in commands:
            result = subprocess.run([str(SCHEDCP), *argv[1:]], env=env, capture_output=True, text=True,
                                    timeout=300, cwd=ROOT)
            assert result.returncode == 0, f"{' '.join(argv)} failed: {result.stderr}"
            outputs[" ".join(argv[1:])] = result.stdout
    finally:
        subprocess.run([str(SCHEDCP), "down"], env=env, capture_output=True, timeout=60)
    statuses = json.loads(outputs["--json status"])
    assert [(s["role"], s["health"]) for s in statuses] == [
        (role, "SERVING") for role in ("observer", "planner", "executor", "verifier", "learner")]
    assert "testhost" in outputs["hosts"]
    profile = outputs["profile --window 1 --detail detailed"]
    assert "testhost: workload over 1 s (procfs)" in profile and "Groups by process name" in profile
    verdict = outputs["verify policies/sched_ext/fifo.bpf.c --param slice_us=3000"]
    assert verdict.startswith("approved: passed static, compile, kernel verifier, dynamic"), verdict
    assert "stopped observer, planner, executor, verifier, learner, nats" in outputs["down"]
    # After `down` nothing answers any more.
    after = subprocess.run([str(SCHEDCP), "--json", "status", "--timeout", "0.5"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert after.returncode == 1
    assert {s["health"] for s in json.loads(after.stdout)} == {"DOWN"}


def test_up_refuses_a_taken_port_with_one_line(tmp_path, held_port):
    port = held_port
    env = service_env(f"nats://127.0.0.1:{free_port()}", tmp_path / "data",
                      SCHEDCP_VERIFIER_ADDR=f"127.0.0.1:{port}")
    result = subprocess.run([str(SCHEDCP), "up", "--detach"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 3
    assert result.stderr.strip() == (
        f"schedcp: port {port} on 127.0.0.1 is already in use, so the stack cannot use it; stop what "
        f"holds it (ss -ltnp 'sport = :{port}') or set SCHEDCP_VERIFIER_ADDR to a free address"
    )
