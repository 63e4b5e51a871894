"""The audit trail: one immutable JetStream record per deploy, keep, rollback, refusal,
ejection and failure (who, which artifact digest and verdict, when, why), on
`schedcp.audit.<host>.<deployment>`; the SCHEDCP_AUDIT stream denies deletes and purges.

A policy is applied only after its DEPLOY record is stored (`require`): a host never runs
something the trail does not show. The other records are written as they happen and, should
NATS be down, logged instead (a rollback or a refusal must not wait for the bus).
"""

from __future__ import annotations

import logging
import uuid

from schedcp.runtime import topology
from schedcp.runtime.bus import Bus
from schedcp.runtime.errors import DependencyUnavailable
from schedcp.v1 import deployment_pb2

log = logging.getLogger(__name__)
S = deployment_pb2
# The executor's own decisions (a canary's judgement, an ejection) are recorded as its own.
EXECUTOR = "executor"
ACTIONS = {S.DEPLOYMENT_STATE_APPLYING: S.AUDIT_ACTION_DEPLOY, S.DEPLOYMENT_STATE_KEPT: S.AUDIT_ACTION_KEEP,
           S.DEPLOYMENT_STATE_ROLLED_BACK: S.AUDIT_ACTION_ROLLBACK, S.DEPLOYMENT_STATE_REFUSED: S.AUDIT_ACTION_REFUSE,
           S.DEPLOYMENT_STATE_EJECTED: S.AUDIT_ACTION_EJECT, S.DEPLOYMENT_STATE_FAILED: S.AUDIT_ACTION_FAIL}


class AuditTrail:
    def __init__(self, bus: Bus, host_id: str) -> None:
        self._bus = bus
        self._host_id = host_id

    def record_of(self, deployment: deployment_pb2.Deployment, actor: str, reason: str) -> deployment_pb2.AuditRecord:
        record = deployment_pb2.AuditRecord(
            record_id=uuid.uuid4().hex, host_id=self._host_id, action=ACTIONS[deployment.state], actor=actor,
            deployment_id=deployment.deployment_id, cycle_id=deployment.cycle_id, policy_name=deployment.policy_name,
            artifact_digest=deployment.artifact_digest, verdict_id=deployment.verdict_id,
            verdict_key_id=deployment.verdict_key_id, reason=reason)
        record.at.GetCurrentTime()
        return record

    async def require(self, record: deployment_pb2.AuditRecord) -> None:
        """Store the record or raise DependencyUnavailable: nothing is applied unrecorded."""
        try:
            await self._publish(record)
        except Exception as exc:
            raise DependencyUnavailable(f"the audit record could not be written ({exc or type(exc).__name__}); "
                                        "nothing was applied") from exc

    async def note(self, record: deployment_pb2.AuditRecord) -> None:
        """Store the record; if NATS cannot take it, the log keeps it."""
        try:
            await self._publish(record)
        except Exception as exc:
            log.error("audit record not stored (%s): %s", exc or type(exc).__name__, record)

    async def _publish(self, record: deployment_pb2.AuditRecord) -> None:
        subject = topology.subject(topology.Kind.AUDIT, self._host_id, record.deployment_id or "none")
        await self._bus.publish(subject, record, msg_id=record.record_id)
