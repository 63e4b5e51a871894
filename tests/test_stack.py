"""How the local stack starts and stops its children (schedcp/cli/stack.py), with stand-in
children: in a session of their own, or in the starting process's session (so in its autogroup)
in a process group of their own; a start that does not listen fails with what the child was
doing; a killed child has exited before a restart starts the next."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from schedcp.cli import stack as stackmod
from schedcp.cli.stack import Child, LocalStack, ephemeral_env
from schedcp.runtime.config import Role, Settings, addr_env_var
from schedcp.runtime.errors import StartupError
from schedcp.runtime.net import free_port, free_ports


def spawn_into(local: LocalStack, children: list[Child], script: str) -> Child:
    """A stand-in child started as the stack starts its own; it prints `up` once running."""
    children.append(local._spawn("child", [sys.executable, "-c", script], {}))
    child = children[-1]
    while "up" not in Path(child.log).read_text():
        time.sleep(0.01)
    return child


@pytest.fixture
def local(tmp_path, monkeypatch):
    monkeypatch.setattr(stackmod, "READY_TIMEOUT_S", 0.5)
    local = LocalStack(Settings(data_dir=tmp_path, shutdown_grace_s=0))
    children: list[Child] = []
    yield local, lambda script: spawn_into(local, children, script)
    local._terminate(children)


def test_children_get_a_session_of_their_own_or_a_process_group_in_this_one(tmp_path):
    # Either way Ctrl-C on `schedcp up` is not theirs. A session of their own is an autogroup of
    # their own: beside two TCG VMs, a nats-server restarted into a new one took up to 4.6 s to
    # listen (0.58 s at most in the VMs' session), and once in `make e2e` 30 s (decision 36).
    children: list[Child] = []
    own = LocalStack(Settings(data_dir=tmp_path / "own", shutdown_grace_s=0))
    shared = LocalStack(Settings(data_dir=tmp_path / "shared", shutdown_grace_s=0), own_sessions=False)
    try:
        alone = spawn_into(own, children, "import time; print('up', flush=True); time.sleep(60)")
        assert os.getsid(alone.pid) == alone.pid
        beside = spawn_into(shared, children, "import time; print('up', flush=True); time.sleep(60)")
        assert os.getsid(beside.pid) == os.getsid(0) and os.getpgid(beside.pid) == beside.pid != os.getpgid(0)
        autogroup = Path("/proc/self/autogroup")
        if autogroup.exists():
            assert Path(f"/proc/{beside.pid}/autogroup").read_text() == autogroup.read_text()
            assert Path(f"/proc/{alone.pid}/autogroup").read_text() != autogroup.read_text()
    finally:
        own._terminate(children)


def test_a_start_that_does_not_listen_says_what_the_child_was_doing(local):
    stack, spawn = local
    port = free_port()
    child = spawn("import time; print('up; loading the store', flush=True); time.sleep(60)")
    with pytest.raises(StartupError) as failure:
        asyncio.run(stack._wait_for_port(child, "127.0.0.1", port))
    message = str(failure.value)
    assert f"did not listen on 127.0.0.1:{port} within" in message
    assert "sleeping" in message and "s of CPU used" in message and "last log line: up; loading the store" in message


def test_a_killed_child_is_gone_when_terminate_returns(local, monkeypatch):
    # restart() starts the new child right after _terminate: one still exiting after SIGKILL
    # would still hold the port (the new nats-server then fails to listen) and its files.
    monkeypatch.setattr(stackmod, "STOP_MARGIN_S", 0.2)
    kill = os.kill

    def slow_exit(pid: int, sig: int) -> None:  # SIGKILL takes effect 0.3 s later, as on a busy machine
        if sig == signal.SIGKILL:
            threading.Timer(0.3, kill, (pid, sig)).start()
        else:
            kill(pid, sig)

    monkeypatch.setattr(stackmod.os, "kill", slow_exit)
    stack, spawn = local
    child = spawn("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\n"
                  "time.sleep(60)")
    stack._terminate([child])
    assert not child.alive()


def test_ports_picked_together_are_distinct_and_not_the_ones_given_out(tmp_path):
    given = set(free_ports(20))
    picked = free_ports(200, avoid=given)
    assert len(set(picked)) == 200 and not given & set(picked)
    env = ephemeral_env(nats_nodes=3)
    ports = [int(url.rpartition(":")[2]) for url in env["SCHEDCP_NATS_URL"].split(",")]
    ports += [int(env[addr_env_var(role)].rpartition(":")[2]) for role in Role]
    assert len(set(ports)) == len(ports) == 3 + len(Role)
    # The stack's own listeners (metrics, routes, trace store) keep off the services' addresses.
    local = LocalStack(Settings(data_dir=tmp_path, **{f"{role.value}_addr": env[addr_env_var(role)] for role in Role},
                                nats_url=env["SCHEDCP_NATS_URL"], nats_replicas=3))
    spare = [local._spare_port() for _ in range(100)]
    assert len(set(spare)) == 100 and not set(spare) & set(ports)
