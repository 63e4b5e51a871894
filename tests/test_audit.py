"""The audit trail: the executor records every deploy, keep, rollback and refusal with who
caused it, the artifact digest and the verdict; the planner's ListAudit (`schedcp history`)
reads it back; the stream refuses to delete a record."""

from __future__ import annotations

import asyncio

import grpc
import nats.js.errors
import pytest

from schedcp.cli.main import main as cli
from schedcp.domain import artifacts
from schedcp.runtime.bus import Bus
from schedcp.v1 import deployment_pb2, executor_pb2, planner_pb2, planner_pb2_grpc, verdict_pb2
from tests.test_executor import deploy, executor_call, native_artifact, sign
from tests.test_services import call

A = deployment_pb2


def audit(addr: str, host_id: str = "") -> list[A.AuditRecord]:
    return list(call(addr, lambda ch: planner_pb2_grpc.PlannerServiceStub(ch).ListAudit(
        planner_pb2.ListAuditRequest(host_id=host_id))).records)


def test_every_deploy_rollback_and_refusal_is_recorded(stack, hogs, capsys, monkeypatch):
    hogs(1)
    stack.start("planner")
    artifact = native_artifact("batch_sched_idle", hogs.comm)
    verdict = sign(stack.key, artifact)
    # No canary metrics: kept at once.
    asyncio.run(deploy(stack.addr("executor"), executor_pb2.DeployRequest(artifact=artifact, verdict=verdict,
                                                                          cycle_id="c1")))
    executor_call(stack.addr("executor"), "Rollback", executor_pb2.RollbackRequest(reason="test: enough"))
    with pytest.raises(grpc.aio.AioRpcError):
        asyncio.run(deploy(stack.addr("executor"), executor_pb2.DeployRequest(artifact=artifact,
                                                                              verdict=verdict_pb2.Verdict())))

    records = audit(stack.addr("planner"), "testhost")
    assert [r.action for r in records] == [A.AUDIT_ACTION_DEPLOY, A.AUDIT_ACTION_KEEP, A.AUDIT_ACTION_ROLLBACK,
                                           A.AUDIT_ACTION_REFUSE]
    deployed, kept, rolled, refused = records
    digest = artifacts.digest_of(artifact)
    assert (deployed.artifact_digest, deployed.verdict_id, deployed.cycle_id) == (digest, verdict.claims.verdict_id,
                                                                                   "c1")
    assert deployed.verdict_key_id == verdict.claims.key_id and deployed.policy_name == "batch_sched_idle"
    assert deployed.actor.startswith("local ") and kept.actor == "executor"  # no TLS: the caller's address
    assert rolled.actor.startswith("local ") and rolled.reason == "rolled back: test: enough"
    assert "without a signed verdict" in refused.reason, refused.reason
    assert len({r.record_id for r in records}) == 4 and audit(stack.addr("planner"), "otherhost") == []

    # `schedcp history` shows the same trail.
    monkeypatch.setenv("SCHEDCP_PLANNER_ADDR", stack.addr("planner"))
    assert cli(["history", "testhost"]) == 0
    shown = capsys.readouterr().out
    assert "deploy" in shown and "rollback" in shown and "refuse" in shown and digest[:12] in shown

    async def delete_first() -> None:
        bus = await Bus.connect(stack.env["SCHEDCP_NATS_URL"], "test-audit")
        try:
            await bus.js.delete_msg("SCHEDCP_AUDIT", 1)
        finally:
            await bus.close()

    with pytest.raises(nats.js.errors.APIError):
        asyncio.run(delete_first())
    assert len(audit(stack.addr("planner"))) == 4
