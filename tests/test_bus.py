"""The NATS runtime against a real nats-server: topology, durable and core messaging, errors."""

import asyncio
import signal

import pytest

from schedcp.runtime import topology
from schedcp.runtime.bus import JETSTREAM_TIMEOUT_S, REASON_HEADER, Bus, Delivery
from schedcp.runtime.errors import DependencyUnavailable, InvalidArgument
from schedcp.runtime.net import free_port
from schedcp.v1 import cycle_pb2, deployment_pb2, info_pb2


@pytest.fixture
async def bus(nats_server):
    connected = await Bus.connect(nats_server.url, "test")
    await connected.ensure_topology()
    yield connected
    await connected.close()


def queue_handler(queue: asyncio.Queue, pick):
    """A handler that puts `pick(message, delivery)` on `queue`."""

    async def handler(message, delivery: Delivery) -> None:
        queue.put_nowait(pick(message, delivery))

    return handler


async def test_topology_is_declared_idempotently(bus):
    await bus.ensure_topology()  # a second service starting must not fail or change anything
    for spec in topology.STREAMS:
        info = await bus.js.stream_info(spec.name)
        assert info.config.subjects == spec.subjects
    audit = await bus.js.stream_info("SCHEDCP_AUDIT")
    assert audit.config.deny_delete and audit.config.deny_purge
    for bucket in topology.KV_BUCKETS:
        await bus.js.key_value(bucket.name)
    await bus.js.object_store(topology.ARTIFACTS_STORE.name)


async def test_a_buckets_keys_are_listed_from_the_streams_subjects(bus):
    kv = await bus.kv(topology.PLANNER_BUCKET)
    assert await bus.kv_keys(topology.PLANNER_BUCKET) == [] and await bus.kv_entries(topology.PLANNER_BUCKET) == []
    for key in ("lease.b", "lease.a", "auto.h1", "lease.gone"):
        await kv.put(key, key.encode())
    await kv.put("lease.a", b"again")
    await kv.delete("lease.gone")
    assert await bus.kv_keys(topology.PLANNER_BUCKET, "lease.") == ["lease.a", "lease.b", "lease.gone"]
    assert await bus.kv_entries(topology.PLANNER_BUCKET) == [
        ("auto.h1", b"auto.h1"), ("lease.a", b"again"), ("lease.b", b"lease.b")]
    assert await bus.kv_entries(topology.PLANNER_BUCKET, "auto.") == [("auto.h1", b"auto.h1")]


async def test_durable_messages_are_stored_and_consumed_once_acked(bus):
    got: asyncio.Queue = asyncio.Queue()
    handler = queue_handler(got, lambda outcome, delivery: (outcome.outcome_id, delivery.subject))
    subject = topology.subject(topology.Kind.OUTCOME, "h1")
    await bus.publish(subject, deployment_pb2.Outcome(outcome_id="o1"), msg_id="o1")
    await bus.publish(subject, deployment_pb2.Outcome(outcome_id="o1"), msg_id="o1")  # a retry
    info = await bus.js.stream_info("SCHEDCP_OUTCOMES")
    assert info.state.messages == 1, "the retried publish was deduplicated"
    await bus.subscribe(topology.all_hosts(topology.Kind.OUTCOME), deployment_pb2.Outcome, handler,
                        durable="learner-test")
    assert await asyncio.wait_for(got.get(), 5) == ("o1", subject)
    await asyncio.sleep(0.3)
    consumer = await bus.js.consumer_info("SCHEDCP_OUTCOMES", "learner-test")
    assert consumer.num_ack_pending == 0 and consumer.num_pending == 0


async def test_failed_handler_gets_the_message_again(bus):
    attempts: list[int] = []
    done = asyncio.Event()

    async def flaky(event: cycle_pb2.CycleEvent, delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        if delivery.attempt == 1:
            raise RuntimeError("transient")
        done.set()

    await bus.subscribe(topology.all_hosts(topology.Kind.CYCLE), cycle_pb2.CycleEvent, flaky,
                        durable="flaky")
    await bus.publish(topology.subject(topology.Kind.CYCLE, "h1"), cycle_pb2.CycleEvent(cycle_id="c"))
    await asyncio.wait_for(done.wait(), 10)
    assert attempts == [1, 2]


async def test_wrong_type_goes_to_dead_letter_with_reason(bus):
    handled: list = []

    async def handler(outcome, delivery) -> None:
        handled.append(outcome)

    await bus.subscribe(topology.all_hosts(topology.Kind.OUTCOME), deployment_pb2.Outcome, handler,
                        durable="strict")
    await bus.publish(topology.subject(topology.Kind.OUTCOME, "h1"), cycle_pb2.CycleEvent(cycle_id="x"))
    dead = await bus.js.subscribe(topology.all_hosts(topology.Kind.DEADLETTER), ordered_consumer=True)
    msg = await dead.next_msg(timeout=5)
    assert msg.subject == "schedcp.deadletter.outcome"
    assert "expected schedcp.v1.Outcome, got schedcp.v1.CycleEvent" in msg.headers[REASON_HEADER]
    assert handled == []


async def test_core_subjects_are_fire_and_forget(bus):
    got: asyncio.Queue = asyncio.Queue()
    handler = queue_handler(got, lambda info, delivery: info.role)
    subject = topology.subject(topology.Kind.HEARTBEAT, "h1", "observer")
    assert topology.stream_for(subject) is None
    await bus.subscribe(topology.all_hosts(topology.Kind.HEARTBEAT), info_pb2.ServiceInfo, handler)
    await bus.nc.flush()
    await bus.publish(subject, info_pb2.ServiceInfo(role="observer"))
    assert await asyncio.wait_for(got.get(), 5) == "observer"


async def test_setting_up_the_topology_outlasts_a_stalled_server(nats_server):
    connected = await Bus.connect(nats_server.url, "test")
    try:
        nats_server.proc.send_signal(signal.SIGSTOP)  # as a server, or this process, stalls
        try:
            with pytest.raises(DependencyUnavailable, match=r"JetStream at .* did not answer .*\(1 tries of 5 s\)"):
                await connected.ensure_topology(attempts=1)
            setup = asyncio.ensure_future(connected.ensure_topology())
            await asyncio.sleep(JETSTREAM_TIMEOUT_S + 1)  # the first try has timed out
            assert not setup.done()
        finally:
            nats_server.proc.send_signal(signal.SIGCONT)
        await asyncio.wait_for(setup, 30)
        for spec in topology.STREAMS:
            await connected.js.stream_info(spec.name)
    finally:
        await connected.close()


async def test_unreachable_nats_says_what_and_how():
    url = f"nats://127.0.0.1:{free_port()}"
    with pytest.raises(DependencyUnavailable, match=rf"cannot reach NATS at {url} .*SCHEDCP_NATS_URL"):
        await Bus.connect(url, "test", timeout_s=0.5)


@pytest.mark.parametrize("token", ["a.b", "*", ">", "", "has space"])
def test_subject_tokens_are_checked(token):
    with pytest.raises(InvalidArgument):
        topology.subject(topology.Kind.PROFILE, token)


def test_every_durable_kind_has_exactly_one_stream():
    kinds = [s.kind for s in topology.STREAMS]
    assert len(kinds) == len(set(kinds))
    assert set(topology.Kind) - set(kinds) == {topology.Kind.HEARTBEAT}
