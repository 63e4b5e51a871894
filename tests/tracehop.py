"""The path one decision cycle's trace takes: a traced gRPC call whose handler publishes on a
JetStream subject, and a durable consumer of that message in another component.

Used in-process by test_tracing.py, and as a script (`python tests/tracehop.py NATS_URL`) that
exports through the real OTLP exporter configured by OTEL_EXPORTER_OTLP_ENDPOINT.
"""

from __future__ import annotations

import asyncio
import sys

import grpc

from schedcp.runtime import rpc, telemetry, topology
from schedcp.runtime.bus import Bus, Delivery
from schedcp.v1 import cycle_pb2, info_pb2, info_pb2_grpc

HOST = "testhost"
SUBJECT = topology.subject(topology.Kind.CYCLE, HOST, "c1")


class PublishingInfo(info_pb2_grpc.InfoServiceServicer):
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def GetServiceInfo(self, request, context):
        await self._bus.publish(SUBJECT, cycle_pb2.CycleEvent(cycle_id="c1", host_id=HOST, message="hop"))
        return info_pb2.ServiceInfo(role="hop")


async def run_hop(nats_url: str) -> tuple[str, str]:
    """Returns (trace id at the caller, trace id seen inside the consumer's handler)."""
    bus = await Bus.connect(nats_url, "tracehop")
    await bus.ensure_topology()
    seen: asyncio.Queue[str] = asyncio.Queue()

    async def on_event(event: cycle_pb2.CycleEvent, delivery: Delivery) -> None:
        seen.put_nowait(telemetry.current_trace_id())

    await bus.subscribe(topology.all_hosts(topology.Kind.CYCLE), cycle_pb2.CycleEvent, on_event,
                        durable="tracehop")
    server = grpc.aio.server(interceptors=[rpc.RuntimeInterceptor(5.0)])
    info_pb2_grpc.add_InfoServiceServicer_to_server(PublishingInfo(bus), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with rpc.channel(f"127.0.0.1:{port}") as channel:
            with telemetry.tracer().start_as_current_span("cycle"):
                await info_pb2_grpc.InfoServiceStub(channel).GetServiceInfo(info_pb2.GetServiceInfoRequest())
                caller_trace = telemetry.current_trace_id()
        consumer_trace = await asyncio.wait_for(seen.get(), 10)
        await asyncio.sleep(0.2)  # let the consumer span end after its ack
    finally:
        await server.stop(0)
        await bus.close()
    return caller_trace, consumer_trace


if __name__ == "__main__":
    provider = telemetry.setup_tracing("schedcp-tracehop", HOST)
    caller, consumer = asyncio.run(run_hop(sys.argv[1]))
    provider.shutdown()
    print(caller, consumer)
