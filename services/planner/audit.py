"""ListAudit: the newest records of the fleet's audit trail (the executors write it; the
SCHEDCP_AUDIT stream keeps every record, immutable), for `schedcp history`."""

from __future__ import annotations

from collections import deque

import nats.errors
from nats.js import api
from nats.js.errors import NotFoundError

from schedcp.runtime import topology
from schedcp.runtime.bus import Bus
from schedcp.runtime.errors import InvalidArgument
from schedcp.v1 import deployment_pb2

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
BATCH = 256
STREAM = next(s for s in topology.STREAMS if s.kind == topology.Kind.AUDIT)


async def newest(bus: Bus, host_id: str = "", limit: int = 0) -> list[deployment_pb2.AuditRecord]:
    """The newest `limit` records (of one host, or all), oldest first."""
    if limit > MAX_LIMIT:
        raise InvalidArgument(f"limit must be at most {MAX_LIMIT}, got {limit}")
    limit = limit or DEFAULT_LIMIT
    kind = topology.Kind.AUDIT
    subject = topology.subject(kind, host_id) + ".>" if host_id else topology.all_hosts(kind)
    try:
        last = (await bus.js.stream_info(STREAM.name)).state.last_seq
    except NotFoundError:
        return []
    # Without a host filter the newest records are the stream's last sequences; with one, the
    # whole trail is read (and only the newest kept).
    start = max(1, last - limit + 1) if not host_id else 1
    config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start,
                                ack_policy=api.AckPolicy.NONE, inactive_threshold=30.0)
    records: deque[deployment_pb2.AuditRecord] = deque(maxlen=limit)
    sub = await bus.js.pull_subscribe(subject, stream=STREAM.name, config=config)
    try:
        while last:
            try:
                messages = await sub.fetch(BATCH, timeout=2)
            except nats.errors.TimeoutError:  # nothing (more) for this filter
                break
            for msg in messages:
                records.append(deployment_pb2.AuditRecord.FromString(msg.data))
            if messages[-1].metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return list(records)
