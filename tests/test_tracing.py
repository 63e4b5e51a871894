"""One trace spans a gRPC call and a NATS publish/consume hop; spans reach a real OTLP receiver."""

import asyncio
import itertools
import subprocess
import sys
from pathlib import Path

from opentelemetry.trace import SpanKind

from schedcp.runtime import rpc, telemetry
from schedcp.v1 import observer_pb2, observer_pb2_grpc
from tests.otlp_receiver import OtlpReceiver
from tests.tracehop import SUBJECT, run_hop

ROOT = Path(__file__).resolve().parent.parent
METHOD = "schedcp.v1.InfoService/GetServiceInfo"
CHAIN = [("cycle", SpanKind.INTERNAL), (METHOD, SpanKind.CLIENT), (METHOD, SpanKind.SERVER),
         (f"publish {SUBJECT}", SpanKind.PRODUCER), (f"process {SUBJECT}", SpanKind.CONSUMER)]


async def test_grpc_and_nats_hop_share_one_trace(nats_server, spans):
    caller_trace, consumer_trace = await run_hop(nats_server.url)
    assert consumer_trace == caller_trace
    finished = {(s.name, s.kind): s for s in spans.get_finished_spans()}
    chain = [finished[key] for key in CHAIN]
    assert {format(s.context.trace_id, "032x") for s in chain} == {caller_trace}
    for parent, child in itertools.pairwise(chain):
        assert child.parent.span_id == parent.context.span_id, f"{child.name} is not a child of {parent.name}"


def test_hop_exported_to_otlp_receiver(nats_server, tmp_path):
    with OtlpReceiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "PATH": "/usr/bin:/bin"}
        result = subprocess.run([sys.executable, str(ROOT / "tests" / "tracehop.py"), nats_server.url],
                                env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        caller_trace, consumer_trace = result.stdout.split()
        assert caller_trace == consumer_trace
        got = receiver.wait_for(lambda s: len([x for x in s if x.trace_id == caller_trace]) >= len(CHAIN))
    in_trace = [s for s in got if s.trace_id == caller_trace]
    assert sorted(s.name for s in in_trace) == sorted(name for name, _ in CHAIN)
    by_id = {s.span_id: s for s in in_trace}
    roots = [s for s in in_trace if s.parent_span_id not in by_id]
    assert [r.name for r in roots] == ["cycle"], "every span but the root has its parent in the trace"
    assert {s.service for s in in_trace} == {"schedcp-tracehop"}
    assert all(s.resource["schedcp.host_id"] == "testhost" for s in in_trace)


def test_service_process_continues_the_callers_trace(services, spans):
    with OtlpReceiver() as receiver:
        services.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
        services.env["OTEL_BSP_SCHEDULE_DELAY"] = "100"  # export within 0.1 s, not the default 5 s
        services.start("observer")

        async def call() -> str:
            async with rpc.channel(services.addr("observer")) as channel:
                with telemetry.tracer().start_as_current_span("operator"):
                    await observer_pb2_grpc.ObserverServiceStub(channel).HostInfo(observer_pb2.HostInfoRequest())
                    return telemetry.current_trace_id()

        trace_id = asyncio.run(call())
        got = receiver.wait_for(lambda s: any(x.trace_id == trace_id for x in s))
    server_span = next(s for s in got if s.trace_id == trace_id)
    assert server_span.service == "schedcp-observer"
    assert server_span.name == "schedcp.v1.ObserverService/HostInfo"
    client_span = next(s for s in spans.get_finished_spans()
                       if s.kind == SpanKind.CLIENT and format(s.context.trace_id, "032x") == trace_id)
    assert server_span.parent_span_id == format(client_span.context.span_id, "016x")
