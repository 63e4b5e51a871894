"""Outcome ingestion, exactly once, and the statistics learned from outcomes.

Exactly once without transactions: an outcome is applied by *creating* its key (the outcome
id) in the `schedcp_outcomes` KV bucket, which is atomic and fails if the key exists. The
statistics are a fold over that bucket, rebuilt from it at start and updated in memory after
each successful create. So a redelivered or duplicated outcome is refused by the create, a
learner that dies between the create and the in-memory update recounts it from the bucket at
its next start, and nothing is counted twice.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field

from nats.js.errors import KeyWrongLastSequenceError

from schedcp.domain import hostclass, params
from schedcp.runtime import metrics, topology
from schedcp.runtime.bus import Bus, Delivery, MalformedMessage
from schedcp.v1 import deployment_pb2, policy_pb2

log = logging.getLogger(__name__)
R = deployment_pb2
CONSUMER = "learner-outcomes"
# A policy is "proven" for a cluster after this many outcomes whose mean improvement is at
# least MIN_PROVEN_IMPROVEMENT and whose lower 1-sigma bound is above zero.
PROVEN_MIN_COUNT = 3
MIN_PROVEN_IMPROVEMENT = 0.05


def validate(outcome: deployment_pb2.Outcome) -> None:
    """Refuse what cannot be learned from; MalformedMessage sends it to the dead-letter stream."""
    missing = [name for name in ("outcome_id", "policy_name", "host_id") if not getattr(outcome, name)]
    if missing:
        raise MalformedMessage(f"outcome lacks {', '.join(missing)}")
    if not topology.is_kv_key(outcome.outcome_id):
        raise MalformedMessage(f"outcome id {outcome.outcome_id!r} may use only letters, digits and -/_=.")
    if outcome.result == R.OUTCOME_RESULT_UNSPECIFIED:
        raise MalformedMessage(f"outcome {outcome.outcome_id} has no result")
    if not outcome.signature.values or len(outcome.signature.values) != len(outcome.signature.dimensions):
        raise MalformedMessage(f"outcome {outcome.outcome_id} has no usable workload signature")
    success = outcome.success
    numbers = (success.improvement, success.improvement_low, success.improvement_high, success.degrees_of_freedom,
               *outcome.signature.values)
    if not all(math.isfinite(x) for x in numbers):
        raise MalformedMessage(f"outcome {outcome.outcome_id} has a non-finite improvement, interval or signature "
                               "value")


@dataclass
class Effect:
    """Running statistics for one (policy, parameters, workload cluster, host class)."""

    improvements: list[float] = field(default_factory=list)
    rollbacks: int = 0
    ejections: int = 0

    @property
    def mean(self) -> float:
        return sum(self.improvements) / len(self.improvements) if self.improvements else 0.0

    @property
    def stddev(self) -> float:
        n = len(self.improvements)
        if n < 2:
            return 0.0
        m = self.mean
        return math.sqrt(sum((x - m) ** 2 for x in self.improvements) / (n - 1))

    @property
    def proven(self) -> bool:
        n = len(self.improvements)
        return (n >= PROVEN_MIN_COUNT and self.ejections == 0 and self.mean >= MIN_PROVEN_IMPROVEMENT
                and self.mean - self.stddev / math.sqrt(n) > 0)


class OutcomeLedger:
    """Applied outcomes (from the KV bucket) and what they add up to."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self.outcomes: list[deployment_pb2.Outcome] = []
        self.effects: dict[tuple[str, str, str, str], Effect] = defaultdict(Effect)
        self._applied: set[str] = set()
        self.duplicates = 0

    async def load(self) -> None:
        """Rebuild everything from the bucket (at start)."""
        for _, data in await self._bus.kv_entries(topology.OUTCOMES_BUCKET):
            self._fold(deployment_pb2.Outcome.FromString(data))
        log.info("outcomes: %d applied so far", len(self.outcomes))

    async def consume(self) -> None:
        """Follow the outcome stream with a durable consumer (resumes where it stopped)."""
        await self._bus.subscribe(topology.all_hosts(topology.Kind.OUTCOME), deployment_pb2.Outcome,
                                  self.apply, durable=CONSUMER)

    async def apply(self, outcome: deployment_pb2.Outcome, delivery: Delivery | None = None) -> bool:
        """Apply once; False when this outcome id was applied before."""
        validate(outcome)
        if outcome.outcome_id in self._applied:
            self.duplicates += 1
            log.info("outcome %s was applied before; ignored", outcome.outcome_id)
            return False
        kv = await self._bus.kv(topology.OUTCOMES_BUCKET)
        try:
            await kv.create(outcome.outcome_id, outcome.SerializeToString(deterministic=True))
        except KeyWrongLastSequenceError:
            # Stored by an earlier attempt whose reply (or our fold) was lost: count what was stored.
            outcome = deployment_pb2.Outcome.FromString((await kv.get(outcome.outcome_id)).value)
        self._fold(outcome)
        metrics.OUTCOMES.labels(R.OutcomeResult.Name(outcome.result).removeprefix("OUTCOME_RESULT_").lower()).inc()
        return True

    def _fold(self, outcome: deployment_pb2.Outcome) -> None:
        self._applied.add(outcome.outcome_id)
        self.outcomes.append(outcome)
        effect = self.effects[self.key(outcome)]
        if outcome.result == R.OUTCOME_RESULT_EJECTED:
            effect.ejections += 1
            return
        if outcome.result == R.OUTCOME_RESULT_ROLLED_BACK:
            effect.rollbacks += 1
        if outcome.result in (R.OUTCOME_RESULT_KEPT, R.OUTCOME_RESULT_ROLLED_BACK):
            effect.improvements.append(outcome.success.improvement)

    @staticmethod
    def key(outcome: deployment_pb2.Outcome) -> tuple[str, str, str, str]:
        return (outcome.policy_name, params.key(outcome.parameters), hostclass.signature_cluster(outcome.signature),
                outcome.host_class)

    def effect_stats(self, policy_name: str) -> list[policy_pb2.EffectStats]:
        return [policy_pb2.EffectStats(
            parameters_key=params, signature_cluster=cluster, host_class=host_class,
            count=len(e.improvements) + e.ejections, mean_improvement=e.mean, stddev_improvement=e.stddev,
            rollbacks=e.rollbacks, ejections=e.ejections, proven=e.proven,
        ) for (name, params, cluster, host_class), e in sorted(self.effects.items()) if name == policy_name]

    def history(self, policy_name: str = "", host_id: str = "", limit: int = 100) -> list[deployment_pb2.Outcome]:
        chosen = [o for o in self.outcomes
                  if (not policy_name or o.policy_name == policy_name) and (not host_id or o.host_id == host_id)]
        return sorted(chosen, key=lambda o: o.at.ToNanoseconds(), reverse=True)[:limit]
