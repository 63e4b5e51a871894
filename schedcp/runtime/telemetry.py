"""OpenTelemetry setup shared by every schedcp process.

Spans always go to the process's tracer provider; they leave the process only when the
standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and
then over OTLP/gRPC in batches. `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` are honoured
by the SDK and override the defaults set here.
"""

from __future__ import annotations

import functools
import os
import socket

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from schedcp import __version__

TRACER_NAME = "schedcp"
# The attribute the planner puts on a cycle's Tune span, so a cycle id finds its trace.
CYCLE_ATTRIBUTE = "schedcp.cycle_id"
_OTLP_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def otlp_endpoint() -> str | None:
    """The OTLP endpoint spans are exported to, or None when export is off."""
    for name in _OTLP_ENDPOINT_VARS:
        if os.environ.get(name):
            return os.environ[name]
    return None


def build_resource(service_name: str, host_id: str) -> Resource:
    """Resource attributes that say which service on which host made a span."""
    attributes = {
        "service.name": service_name,
        "service.namespace": "schedcp",
        "service.version": __version__,
        "host.name": socket.gethostname(),
        "schedcp.host_id": host_id,
    }
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME over these.
    return Resource.create(attributes)


def setup_tracing(service_name: str, host_id: str) -> TracerProvider:
    """Install the process-wide tracer provider; returns it so callers can flush on exit."""
    provider = TracerProvider(resource=build_resource(service_name, host_id))
    if otlp_endpoint():
        # Imported here so processes that never export skip loading the gRPC exporter.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


@functools.cache
def tracer() -> trace.Tracer:
    """schedcp's tracer, made once: `get_tracer` builds and compares an instrumentation scope at
    every call (a few percent of a busy planner's CPU). One taken before `setup_tracing` is a
    proxy that uses the provider once it is installed."""
    return trace.get_tracer(TRACER_NAME, __version__)


def inject(carrier: dict[str, str]) -> dict[str, str]:
    """Write the current trace context (W3C traceparent/tracestate) into a header dict."""
    propagate.inject(carrier)
    return carrier


def extract(carrier: dict[str, str] | None):
    """The trace context carried in headers, to parent a span on."""
    return propagate.extract(carrier or {})


def mark_cycle(cycle_id: str) -> None:
    """Label the active span as the root of a decision cycle (what `schedcp trace CYCLE` finds)."""
    trace.get_current_span().set_attribute(CYCLE_ATTRIBUTE, cycle_id)


def current_trace_id() -> str:
    """Hex trace id of the active span, or "" outside any span."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""
