"""The README's console examples run, in order, against a private stack, and succeed."""

import json
import re
import subprocess
from pathlib import Path

import pytest

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
    env = service_env(None, tmp_path / "data")
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
    assert "goal:" in outputs["tune --dry-run"]
    assert "structured output  not negotiated yet" in outputs["llm check"]  # the rules provider made no call
    assert "batch_idle_cgroup" in outputs["policies"] and "latency_boost" in outputs["policies"]
    assert outputs["policy show batch_idle_cgroup"].startswith("batch_idle_cgroup (native, library")
    check_demo(outputs["demo"], outputs["history"], env)
    verdict = outputs["verify policies/sched_ext/fifo.bpf.c --param slice_us=3000"]
    assert verdict.startswith("approved: passed static, compile, kernel verifier, dynamic"), verdict
    assert "stopped observer, planner, executor, verifier, learner, tracestore, nats" in outputs["down"]
    # After `down` nothing answers any more.
    after = subprocess.run([str(SCHEDCP), "--json", "status", "--timeout", "0.5"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert after.returncode == 1
    assert {s["health"] for s in json.loads(after.stdout)} == {"DOWN"}


def check_demo(demo: str, history: str, env: dict[str, str]) -> None:
    """`schedcp demo` measured a policy on this host and undid it; its cycle is one trace with
    spans from all five services (the NATS hops to the learner included) under one root."""
    assert "before and after" in demo and "runq_latency_p99_us of comm='cyclictest'" in demo, demo
    policy = re.search(r"result: (\w+) (kept|rolled back)", demo)
    assert policy, demo
    actions = [line.split("│")[3].strip() for line in history.splitlines() if line.startswith("│ 20")]
    assert actions[:1] == ["deploy"] and actions[-1] == "rollback", history
    cycle = re.search(r"schedcp trace (\w+)", demo)[1]
    result = subprocess.run([str(SCHEDCP), "--json", "trace", cycle], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    spans = json.loads(result.stdout)
    assert {s["service"] for s in spans} == {f"schedcp-{r}" for r in
                                            ("planner", "observer", "learner", "verifier", "executor")}
    ids = {s["span_id"] for s in spans}
    roots = [s for s in spans if s["parent_span_id"] not in ids]
    assert [r["name"] for r in roots] == ["schedcp.v1.PlannerService/Tune"], roots
    assert roots[0]["attributes"]["schedcp.cycle_id"] == cycle
    assert any(s["name"].startswith("process schedcp.outcome.") and s["service"] == "schedcp-learner"
               for s in spans)


def test_up_refuses_a_taken_port_with_one_line(tmp_path, held_port):
    port = held_port
    env = service_env(None, tmp_path / "data",
                      SCHEDCP_VERIFIER_ADDR=f"127.0.0.1:{port}")
    result = subprocess.run([str(SCHEDCP), "up", "--detach"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 3
    assert result.stderr.strip() == (
        f"schedcp: port {port} on 127.0.0.1 is already in use, so the stack cannot use it; stop what "
        f"holds it (ss -ltnp 'sport = :{port}') or set SCHEDCP_VERIFIER_ADDR to a free address"
    )
