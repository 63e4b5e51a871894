"""NATS with auth on, as `schedcp up` runs it (schedcp/runtime/nats_auth.py), against a real nats-server:
wrong credentials cannot connect (so cannot publish an outcome or read the repository), a role
cannot publish what another role owns, and the roles that own a subject or bucket can; the
local stack starts with auth and every service connects as its role."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from schedcp.cli import main as cli
from schedcp.cli.stack import nats_server_binary
from schedcp.runtime import nats_auth, topology
from schedcp.runtime.bus import Bus
from schedcp.runtime.config import load_settings
from schedcp.runtime.errors import DependencyUnavailable
from schedcp.runtime.net import free_port
from schedcp.v1 import deployment_pb2, policy_pb2


@pytest.fixture
def secured_nats(tmp_path: Path):
    """A nats-server with JetStream and schedcp's users; yields (url, auth dir)."""
    auth = tmp_path / "auth"
    config = nats_auth.write_server_config(auth)
    port = free_port()
    proc = subprocess.Popen([nats_server_binary(), "-c", str(config), "-js", "-sd", str(tmp_path / "js"),
                             "-a", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"nats://127.0.0.1:{port}"

    async def wait_up() -> None:
        for _ in range(100):
            try:
                await (await connect(url, auth, nats_auth.OPERATOR)).close()
                return
            except DependencyUnavailable:
                await asyncio.sleep(0.1)
        raise AssertionError("nats-server did not start")

    asyncio.run(wait_up())
    yield url, auth
    proc.terminate()
    proc.wait(10)


async def connect(url: str, auth: Path, identity: str, password: str | None = None) -> Bus:
    if password is not None:
        (auth / "wrong.password").write_text(password)
    file = auth / "wrong.password" if password is not None else nats_auth.password_file(auth, identity)
    settings = load_settings(nats_user=identity, nats_password_file=str(file))
    return await Bus.connect(url, f"test-{identity}", **nats_auth.connect_options(settings))


def outcome() -> deployment_pb2.Outcome:
    return deployment_pb2.Outcome(outcome_id="o1", host_id="h1", policy_name="fifo",
                                  result=deployment_pb2.OUTCOME_RESULT_KEPT)


async def stored_outcomes(url: str, auth: Path) -> int:
    bus = await connect(url, auth, nats_auth.OPERATOR)
    try:
        await bus.ensure_topology()
        stream = next(s for s in topology.STREAMS if s.kind == topology.Kind.OUTCOME)
        return (await bus.js.stream_info(stream.name)).state.messages
    finally:
        await bus.close()


def test_wrong_credentials_cannot_connect(secured_nats):
    url, auth = secured_nats
    with pytest.raises(DependencyUnavailable, match="refused this process's credentials"):
        asyncio.run(connect(url, auth, "executor", password="not-the-password"))
    with pytest.raises(DependencyUnavailable, match="refused this process's credentials"):
        asyncio.run(Bus.connect(url, "anonymous"))


def test_roles_publish_only_what_they_own(secured_nats):
    url, auth = secured_nats
    subject = topology.subject(topology.Kind.OUTCOME, "h1", "d1")

    async def publish_as(identity: str) -> None:
        bus = await connect(url, auth, identity)
        try:
            await bus.ensure_topology()
            await asyncio.wait_for(bus.publish(subject, outcome(), msg_id=f"{identity}-o1"), 2)
        finally:
            await bus.close()

    async def write_repository_as(identity: str) -> None:
        bus = await connect(url, auth, identity)
        try:
            kv = await bus.kv(topology.POLICIES_BUCKET)
            record = policy_pb2.PolicyRecord(metadata=policy_pb2.PolicyMetadata(name="evil"))
            await asyncio.wait_for(kv.put("evil", record.SerializeToString()), 2)
        finally:
            await bus.close()

    for identity in ("observer", "planner"):
        # The server drops a forbidden publish (and tells the client's error callback): no
        # acknowledgement ever comes.
        with pytest.raises(TimeoutError):
            asyncio.run(publish_as(identity))
        with pytest.raises(TimeoutError):
            asyncio.run(write_repository_as(identity))
    assert asyncio.run(stored_outcomes(url, auth)) == 0
    asyncio.run(publish_as("executor"))
    assert asyncio.run(stored_outcomes(url, auth)) == 1
    asyncio.run(write_repository_as("learner"))


def test_nats_auth_init_writes_a_configuration_nats_server_accepts(tmp_path, capsys):
    auth = tmp_path / "auth"
    assert cli.main(["--json", "nats-auth", "init", "--dir", str(auth)]) == 0
    assert '"config"' in capsys.readouterr().out
    for identity in nats_auth.IDENTITIES:
        password = nats_auth.password_file(auth, identity)
        assert password.stat().st_mode & 0o777 == 0o600 and len(password.read_text().strip()) >= 24
    checked = subprocess.run([nats_server_binary(), "-t", "-c", str(auth / "nats.conf")], capture_output=True,
                             text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
