"""Every NATS subject, JetStream stream, KV bucket and Object Store schedcp uses, in one place.

Subjects are `schedcp.<kind>.<host>[.<more>]`. A subject whose kind has a stream below is
durable: `Bus.publish` waits for JetStream's acknowledgement. Everything else (heartbeats) is
core NATS, fire-and-forget.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from schedcp.runtime.errors import InvalidArgument

PREFIX = "schedcp"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")
DAY = 24 * 3600.0


class Kind(StrEnum):
    """The second token of a subject: what the message is."""

    PROFILE = "profile"
    CYCLE = "cycle"
    DEPLOYMENT = "deployment"
    OUTCOME = "outcome"
    AUDIT = "audit"
    DEADLETTER = "deadletter"
    HEARTBEAT = "heartbeat"


def subject(kind: Kind, host_id: str, *rest: str) -> str:
    """`schedcp.<kind>.<host>.<rest...>`, refusing tokens that would change its meaning."""
    for token in (host_id, *rest):
        if not _TOKEN.match(token):
            raise InvalidArgument(
                f"{token!r} cannot be a NATS subject token: use letters, digits, '-' and '_' only"
            )
    return ".".join((PREFIX, kind.value, host_id, *rest))


def all_hosts(kind: Kind) -> str:
    """Wildcard for one kind of message from every host."""
    return f"{PREFIX}.{kind.value}.>"


@dataclass(frozen=True)
class StreamSpec:
    """A JetStream stream and what it keeps."""

    name: str
    kind: Kind
    description: str
    max_age_s: float | None = None
    max_msgs_per_subject: int = -1
    # Audit records are immutable: nobody may delete or purge them.
    immutable: bool = False

    @property
    def subjects(self) -> list[str]:
        return [all_hosts(self.kind)]


@dataclass(frozen=True)
class BucketSpec:
    """A KV bucket or an Object Store."""

    name: str
    description: str
    history: int = 1
    ttl_s: float | None = None


STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec("SCHEDCP_PROFILES", Kind.PROFILE, "Workload profiles from each host's observer.",
               max_age_s=DAY, max_msgs_per_subject=1000),
    StreamSpec("SCHEDCP_CYCLES", Kind.CYCLE, "Progress events of every decision cycle.", max_age_s=30 * DAY),
    StreamSpec("SCHEDCP_DEPLOYMENTS", Kind.DEPLOYMENT, "Deployment steps from each host's executor.",
               max_age_s=90 * DAY),
    StreamSpec("SCHEDCP_OUTCOMES", Kind.OUTCOME, "Measured outcomes of deployments; the learner's input."),
    StreamSpec("SCHEDCP_AUDIT", Kind.AUDIT, "Who deployed, rolled back or was refused what, and why.",
               immutable=True),
    StreamSpec("SCHEDCP_DEADLETTER", Kind.DEADLETTER, "Messages a consumer could not use, with the reason.",
               max_age_s=30 * DAY),
)

# What nats-py accepts as a KV key (it refuses anything else): host ids and outcome ids are keys.
_KV_KEY = re.compile(r"[-/_=.a-zA-Z0-9]{1,200}")


def is_kv_key(key: str) -> bool:
    return _KV_KEY.fullmatch(key) is not None


HOSTS_BUCKET = BucketSpec("schedcp_hosts", "Host registry: each host's addresses and facts.", ttl_s=60.0)
POLICIES_BUCKET = BucketSpec("schedcp_policies", "Policy records by name, with past versions.", history=64)
VERDICTS_BUCKET = BucketSpec("schedcp_verdicts", "Signed verdicts by artifact digest and kernel.",
                             ttl_s=30 * DAY)
# Every outcome the learner applied, by outcome id: `create` is atomic, so an id is applied once.
OUTCOMES_BUCKET = BucketSpec("schedcp_outcomes", "Applied deployment outcomes by outcome id.")
# Per host: when the planner last tuned it on its own and what the workload looked like then;
# replicas claim a host here (compare-and-set) so that one of them tunes it.
PLANNER_BUCKET = BucketSpec("schedcp_planner", "Planner auto-tuning state by host.")
# Rollouts by id, and each host's result under `<rollout>.<host>`: a restarted planner resumes them.
ROLLOUTS_BUCKET = BucketSpec("schedcp_rollouts", "Rollouts and their per-host results.")
KV_BUCKETS: tuple[BucketSpec, ...] = (HOSTS_BUCKET, POLICIES_BUCKET, VERDICTS_BUCKET, OUTCOMES_BUCKET,
                                      PLANNER_BUCKET, ROLLOUTS_BUCKET)

ARTIFACTS_STORE = BucketSpec("schedcp_artifacts", "Policy sources and compiled objects by digest.")
OBJECT_STORES: tuple[BucketSpec, ...] = (ARTIFACTS_STORE,)


def stream_for(subject_name: str) -> StreamSpec | None:
    """The stream that stores a subject, or None for a core-NATS subject."""
    parts = subject_name.split(".")
    if len(parts) < 3 or parts[0] != PREFIX:
        return None
    return next((s for s in STREAMS if s.kind.value == parts[1]), None)
