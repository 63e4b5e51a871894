"""The NATS connection every service shares: reconnecting, JetStream topology, traced messaging.

Messages are protobuf. Each carries its trace context in the W3C `traceparent`/`tracestate`
headers and its type in `Schedcp-Type`, so a consumer's span continues the producer's trace
and a consumer can refuse a message of the wrong type without guessing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import nats
from google.protobuf import message as pb_message
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from opentelemetry.trace import SpanKind

from schedcp.runtime import telemetry, topology
from schedcp.runtime.errors import DependencyUnavailable

log = logging.getLogger(__name__)

TYPE_HEADER = "Schedcp-Type"
REASON_HEADER = "Schedcp-Reason"
M = TypeVar("M", bound=pb_message.Message)
T = TypeVar("T")
# How long one JetStream API request may take (nats-py's default).
JETSTREAM_TIMEOUT_S = 5.0
# Setting up the topology at start: tries of one JetStream request timeout each, and the pause between.
TOPOLOGY_ATTEMPTS = 5
TOPOLOGY_RETRY_PAUSE_S = 1.0
NO_PEERS_FOR_PLACEMENT = 10005  # JetStream's err_code
# How long a JetStream publish is sent again while it is not acknowledged (each try waits up to
# JETSTREAM_TIMEOUT_S): a 3-node cluster losing a stream's leader answered "no responders" for a
# few seconds while it elected another, and the node a client was on cost one timeout.
PUBLISH_RETRY_S = 20.0
PUBLISH_RETRY_PAUSE_S = 0.5
# A publish JetStream did not acknowledge: timed out, or nobody answered (nats-py turns "no
# responders" into NoStreamResponseError in js.publish).
UNACKNOWLEDGED = (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError)


@dataclass(frozen=True)
class Delivery:
    """Where a consumed message came from."""

    subject: str
    headers: dict[str, str]
    # How often JetStream delivered it (1 for core NATS).
    attempt: int = 1


Handler = Callable[[M, Delivery], Awaitable[None]]


class MalformedMessage(ValueError):
    """A message that cannot be decoded as the expected type, or that a handler finds
    unusable (raise it from the handler); it goes to the dead-letter stream with the reason."""


class Bus:
    """A NATS connection with JetStream, opened by `Bus.connect` and closed by `close`."""

    def __init__(self, replicas: int = 1) -> None:
        self.nc = Client()
        self.js: JetStreamContext = self.nc.jetstream(timeout=JETSTREAM_TIMEOUT_S)
        self._replicas = replicas
        self._buckets: dict[str, KeyValue] = {}
        self._url = ""
        self._closing = False
        self._last_error: Exception | None = None
        self._refused: Exception | None = None

    @classmethod
    async def connect(cls, url: str, name: str, timeout_s: float = 2.0, replicas: int = 1, **options) -> Bus:
        """Connect, or raise DependencyUnavailable saying how to fix it. Once connected, the
        client reconnects forever and logs each disconnect and reconnect. `options` carry the
        identity and TLS (`schedcp.runtime.nats_auth.connect_options`)."""
        bus = cls(replicas)
        bus._url = url
        try:
            # nats-py retries the first connection as long as later reconnects (forever here),
            # so bound it: a process that cannot reach NATS at start should say so and exit.
            await asyncio.wait_for(bus._open(url, name, timeout_s, options), timeout_s + 1)
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            bus._closing = True
            await bus.nc.close()
            cause = bus._refused or bus._last_error or exc
            reason = str(cause) or type(cause).__name__
            if "authorization" in reason.lower():
                raise DependencyUnavailable(
                    f"NATS at {url} refused this process's credentials ({reason}): check SCHEDCP_NATS_USER and "
                    "SCHEDCP_NATS_PASSWORD_FILE, or SCHEDCP_NATS_CREDS_FILE") from exc
            # A server that refuses credentials may reset the connection before its reason arrives.
            hint = " (a reset may also be a refusal of this process's credentials)" if "reset" in reason else ""
            raise DependencyUnavailable(
                f"cannot reach NATS at {url} ({reason}){hint}; start a local stack with `schedcp up` "
                "or point SCHEDCP_NATS_URL at a running nats-server"
            ) from exc
        return bus

    async def _open(self, url: str, name: str, timeout_s: float, options: dict) -> None:
        await self.nc.connect(
            **options,
            servers=[s.strip() for s in url.split(",")],
            name=name,
            connect_timeout=timeout_s,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = exc
        if "authorization" in str(exc).lower():
            # Kept: the server closes right after refusing, and the next attempt may see only
            # "connection reset", which would hide the real cause.
            self._refused = exc
        # Connection errors repeat on every reconnect attempt; the disconnect is already logged.
        transient = isinstance(exc, OSError | TimeoutError | nats.errors.ConnectionClosedError)
        log.log(logging.DEBUG if transient else logging.WARNING, "NATS: %s", exc)

    async def _on_disconnected(self) -> None:
        if not self._closing:
            log.warning("NATS connection lost; reconnecting to %s", self._url)

    async def _on_reconnected(self) -> None:
        log.info("NATS connection restored")

    async def close(self) -> None:
        self._closing = True
        if not self.nc.is_closed:
            await self.nc.drain()

    @property
    def connected(self) -> bool:
        return self.nc.is_connected

    async def ensure_topology(self, attempts: int = TOPOLOGY_ATTEMPTS) -> None:
        """Create (or bring up to date) every stream, KV bucket and Object Store (retried as
        `at_start` says: it is idempotent)."""
        await self.at_start("setting up the streams", self._ensure_topology, attempts)

    async def at_start(self, what: str, operation: Callable[[], Awaitable[T]],
                       attempts: int = TOPOLOGY_ATTEMPTS) -> T:
        """Run an idempotent JetStream `operation` that a service needs before it can serve. A
        request that times out (a loaded server, or this process starting on a stalled emulated
        CPU: seen in `make e2e`) or meets a cluster still forming is tried again, up to
        `attempts` times, before DependencyUnavailable says which it was."""
        for attempt in range(1, attempts + 1):
            try:
                return await operation()
            except nats.errors.TimeoutError:
                if attempt == attempts:
                    raise DependencyUnavailable(
                        f"JetStream at {self._url} did not answer while {what} ({attempts} tries "
                        f"of {JETSTREAM_TIMEOUT_S:g} s); is nats-server running with JetStream (-js) and not "
                        "overloaded?") from None
                log.warning("JetStream did not answer within %g s while %s (try %d of %d); trying again",
                            JETSTREAM_TIMEOUT_S, what, attempt, attempts)
            except (nats.js.errors.BadRequestError, nats.js.errors.ServiceUnavailableError) as exc:
                # A cluster that is still forming: no meta leader yet (503), or the leader does
                # not know enough JetStream peers to place replicas (10005). Anything else is final.
                if getattr(exc, "err_code", None) != NO_PEERS_FOR_PLACEMENT and exc.code != 503:
                    raise
                if attempt == attempts:
                    raise DependencyUnavailable(
                        f"the JetStream cluster at {self._url} was not ready while {what} ({exc.description}) "
                        f"after {attempts} tries: are all its nodes up and routed (for {self._replicas} replicas)?"
                    ) from None
                log.warning("the JetStream cluster is not ready while %s (%s; try %d of %d); trying again",
                            what, exc.description, attempt, attempts)
            await asyncio.sleep(TOPOLOGY_RETRY_PAUSE_S)

    async def _ensure_topology(self) -> None:
        for spec in topology.STREAMS:
            config = api.StreamConfig(
                name=spec.name,
                description=spec.description,
                subjects=spec.subjects,
                storage=api.StorageType.FILE,
                num_replicas=self._replicas,
                max_age=spec.max_age_s,
                max_msgs_per_subject=spec.max_msgs_per_subject,
                deny_delete=spec.immutable,
                deny_purge=spec.immutable,
                duplicate_window=120.0,
            )
            try:
                await self.js.stream_info(spec.name)
            except NotFoundError:
                await self.js.add_stream(config)
            else:
                await self.js.update_stream(config)
        for bucket in topology.KV_BUCKETS:
            await self.kv(bucket)
        for store in topology.OBJECT_STORES:
            try:
                await self.js.object_store(store.name)
            except (BucketNotFoundError, NotFoundError):
                # nats-py overwrites config.bucket with the `bucket` argument: pass both.
                await self.js.create_object_store(
                    store.name,
                    config=api.ObjectStoreConfig(
                        bucket=store.name, description=store.description,
                        storage=api.StorageType.FILE, replicas=self._replicas,
                    )
                )

    async def kv(self, bucket: topology.BucketSpec) -> KeyValue:
        """The KV bucket, created on first use."""
        if bucket.name not in self._buckets:
            try:
                handle = await self.js.key_value(bucket.name)
            except (BucketNotFoundError, NotFoundError):
                handle = await self.js.create_key_value(
                    config=api.KeyValueConfig(
                        bucket=bucket.name, description=bucket.description, history=bucket.history,
                        ttl=bucket.ttl_s, storage=api.StorageType.FILE, replicas=self._replicas,
                    )
                )
            self._buckets[bucket.name] = handle
        return self._buckets[bucket.name]

    async def kv_keys(self, bucket: topology.BucketSpec, prefix: str = "") -> list[str]:
        """Every key of a bucket starting with `prefix` (whole tokens: "cycle."), sorted; deleted
        keys too (a delete marker is their subject's last message).

        Read from the stream's subject index, one request per page of subjects. nats-py's
        `KeyValue.keys()` is not used: it watches the bucket and stops at once when the consumer's
        info, asked right after creating it, says nothing is pending and nothing has arrived, and
        the server counts a message as delivered when it sends it, not when it arrives. Twice in
        CI, under load, it answered "no keys" for a bucket holding one, right after a cycle had
        read that key directly (a registered host listed as "registered hosts: none"); on an idle
        server it did not happen in thousands of tries."""
        if prefix and not prefix.endswith("."):
            raise ValueError(f"a key prefix is whole tokens ending in '.', not {prefix!r}")
        await self.kv(bucket)
        stream, subjects_of = f"KV_{bucket.name}", f"$KV.{bucket.name}."
        keys: list[str] = []
        while True:
            request = {"subjects_filter": f"{subjects_of}{prefix}>", "offset": len(keys)}
            reply = json.loads((await self.nc.request(f"{api.DEFAULT_PREFIX}.STREAM.INFO.{stream}",
                                                      json.dumps(request).encode(), JETSTREAM_TIMEOUT_S)).data)
            if "error" in reply:
                nats.js.errors.APIError.from_error(reply["error"])
            page = (reply.get("state") or {}).get("subjects") or {}
            keys.extend(subject.removeprefix(subjects_of) for subject in page)
            if not page or len(keys) >= reply.get("total", 0):
                return sorted(keys)

    async def kv_entries(self, bucket: topology.BucketSpec, prefix: str = "") -> list[tuple[str, bytes]]:
        """Every live key of a bucket starting with `prefix` with its latest value, sorted by key."""
        kv = await self.kv(bucket)
        entries = []
        for key in await self.kv_keys(bucket, prefix):
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:  # deleted, or expired since it was listed
                continue
            if entry.value:
                entries.append((key, entry.value))
        return entries

    async def last_message(self, subject: str, message_type: type[M]) -> M:
        """The newest message JetStream keeps on `subject` (a stream's subject), decoded."""
        raw = await self.js.get_last_msg(topology.stream_for(subject).name, subject)
        return decode(raw.data, raw.headers or {}, message_type)

    async def publish(self, subject: str, message: pb_message.Message, *, msg_id: str | None = None,
                      traced: bool = True) -> None:
        """Publish a protobuf message, in a PRODUCER span unless `traced` is False (heartbeats,
        which would otherwise start a trace of their own every few seconds). On a stream's
        subject this waits for JetStream to store it; `msg_id` makes retries count once."""
        if not traced:
            await self._send(subject, message, msg_id)
            return
        with telemetry.tracer().start_as_current_span(
            f"publish {subject}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "publish",
                "messaging.destination.name": subject,
            },
        ):
            await self._send(subject, message, msg_id)

    async def _send(self, subject: str, message: pb_message.Message, msg_id: str | None) -> None:
        headers = telemetry.inject({TYPE_HEADER: message.DESCRIPTOR.full_name})
        payload = message.SerializeToString()
        stream = topology.stream_for(subject)
        if stream is None:
            if msg_id:
                headers["Nats-Msg-Id"] = msg_id
            await self.nc.publish(subject, payload, headers=headers)
            return
        # Every stored message carries an id, so that a publish whose acknowledgement was lost
        # (its server killed, a cluster electing a new stream leader) can be sent again and is
        # stored once: JetStream drops a repeated id within the stream's duplicate window.
        headers["Nats-Msg-Id"] = msg_id or uuid.uuid4().hex
        deadline = time.monotonic() + PUBLISH_RETRY_S
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.js.publish(subject, payload, headers=headers, stream=stream.name)
                return
            except UNACKNOWLEDGED as exc:
                if time.monotonic() >= deadline or self._closing:
                    raise
                log.warning("JetStream did not acknowledge a message on %s (%s, try %d); sending it again",
                            subject, type(exc).__name__, attempt)
                await asyncio.sleep(PUBLISH_RETRY_PAUSE_S)

    async def subscribe(
        self,
        subject: str,
        message_type: type[M],
        handler: Handler[M],
        *,
        queue: str | None = None,
        durable: str | None = None,
        ack_wait_s: float = 10.0,
        traced: bool = True,
    ) -> Subscription:
        """Consume messages of one type, each in a CONSUMER span that continues the producer's
        trace unless `traced` is False (a stream of which most messages lead nowhere: a span
        each would fill the trace store with one-span traces). With `durable`, the subject must
        be on a stream: a message is acknowledged after the handler returns, redelivered if it
        raises, and dead-lettered if it is malformed. A message delivered to a consumer that died
        unacknowledged comes again after `ack_wait_s` (keep it above the handler's longest run)."""

        async def on_message(msg: Msg) -> None:
            headers = dict(msg.headers or {})
            attempt = msg.metadata.num_delivered if durable else 1
            delivery = Delivery(subject=msg.subject, headers=headers, attempt=attempt)
            if not traced:
                await self._dispatch(msg, message_type, handler, delivery, durable is not None)
                return
            with telemetry.tracer().start_as_current_span(
                f"process {msg.subject}",
                context=telemetry.extract(headers),
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "nats",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": msg.subject,
                },
            ):
                await self._dispatch(msg, message_type, handler, delivery, durable is not None)

        if durable:
            stream = topology.stream_for(subject)
            if stream is None:
                raise ValueError(f"{subject} is not on a JetStream stream; durable consumers need one")
            return await self.js.subscribe(
                subject, queue=queue, durable=durable, stream=stream.name, cb=on_message, manual_ack=True,
                config=api.ConsumerConfig(ack_wait=ack_wait_s),
            )
        return await self.nc.subscribe(subject, queue=queue or "", cb=on_message)

    async def _dispatch(self, msg: Msg, message_type: type[M], handler: Handler[M],
                        delivery: Delivery, acked: bool) -> None:
        try:
            message = decode(msg.data, delivery.headers, message_type)
        except MalformedMessage as exc:
            log.warning("dropping malformed message on %s: %s", msg.subject, exc)
            if acked:
                await self.dead_letter(msg, str(exc))
                await msg.term()
            return
        try:
            await handler(message, delivery)
        except asyncio.CancelledError:
            raise
        except MalformedMessage as exc:  # valid protobuf, unusable content: retrying cannot help
            log.warning("dead-lettering a message on %s: %s", msg.subject, exc)
            if acked:
                await self.dead_letter(msg, str(exc))
                await msg.term()
            return
        except Exception:
            log.exception("handler for %s failed (attempt %d)", msg.subject, delivery.attempt)
            if acked:
                await msg.nak(delay=min(30.0, float(delivery.attempt)))
            return
        if acked:
            await msg.ack()

    async def dead_letter(self, msg: Msg, reason: str) -> None:
        """Keep a message nobody could use, with the reason, on schedcp.deadletter.<origin>."""
        parts = msg.subject.split(".")
        origin = parts[1] if len(parts) > 1 and parts[0] == topology.PREFIX else "foreign"
        # JetStream's own publish headers (Nats-Expected-Stream, Nats-Msg-Id) would make the
        # dead-letter stream refuse or deduplicate the copy.
        kept = {k: v for k, v in (msg.headers or {}).items() if not k.startswith("Nats-")}
        headers = {**kept, REASON_HEADER: reason[:1000], "Schedcp-Subject": msg.subject}
        await self.js.publish(f"{topology.PREFIX}.{topology.Kind.DEADLETTER.value}.{origin}", msg.data,
                              headers=headers)


def decode(data: bytes, headers: dict[str, str], message_type: type[M]) -> M:
    """Parse a payload as `message_type`, refusing a payload labelled as another type."""
    declared = headers.get(TYPE_HEADER)
    expected = message_type.DESCRIPTOR.full_name
    if declared and declared != expected:
        raise MalformedMessage(f"expected {expected}, got {declared}")
    message = message_type()
    try:
        message.ParseFromString(data)
    except pb_message.DecodeError as exc:
        raise MalformedMessage(f"not a valid {expected}: {exc}") from exc
    return message
