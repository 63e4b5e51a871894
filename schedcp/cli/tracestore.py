"""The local stack's trace store: an OTLP/gRPC trace receiver that keeps spans on disk, so
`schedcp trace` can show a decision cycle's span tree on a machine without Jaeger.

`schedcp up` runs it (`python -m schedcp.cli.tracestore`) and points the services'
`OTEL_EXPORTER_OTLP_ENDPOINT` at it, unless the environment already names an endpoint (a
Jaeger or a Collector: then the spans go there and `schedcp trace` asks Jaeger's query API
given `SCHEDCP_JAEGER_URL`). Spans are appended as JSON lines to `<data dir>/traces/spans.jsonl`;
past `MAX_FILE_BYTES` the file is rotated once (`spans.jsonl.1`), so the store stays bounded.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2

from schedcp.runtime import telemetry
from schedcp.runtime.errors import DependencyUnavailable

FILE_NAME = "spans.jsonl"
MAX_FILE_BYTES = 64 * 1024 * 1024
_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def _value(value: common_pb2.AnyValue) -> object:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind in ("string_value", "bool_value", "int_value", "double_value") else str(value)


def span_records(request: trace_service_pb2.ExportTraceServiceRequest) -> Iterator[dict]:
    """One flat, JSON-ready record per span of an OTLP export."""
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope in resource_spans.scope_spans:
            for span in scope.spans:
                yield {
                    "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(), "name": span.name,
                    "kind": _KINDS.get(span.kind, str(span.kind)),
                    "service": resource.get("service.name", ""), "host_id": resource.get("schedcp.host_id", ""),
                    "start_ns": span.start_time_unix_nano, "end_ns": span.end_time_unix_nano,
                    "error": span.status.code == 2,
                    "attributes": {a.key: _value(a.value) for a in span.attributes},
                }


class TraceStore(trace_service_pb2_grpc.TraceServiceServicer):
    """Appends every exported span to `directory/spans.jsonl`."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._path = directory / FILE_NAME
        self._lock = threading.Lock()

    def Export(self, request, context):
        lines = "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in span_records(request))
        with self._lock:
            if self._path.exists() and self._path.stat().st_size > MAX_FILE_BYTES:
                self._path.replace(self._path.with_name(FILE_NAME + ".1"))
            with open(self._path, "a") as f:
                f.write(lines)
        return trace_service_pb2.ExportTraceServiceResponse()


def stored_spans(directory: Path) -> Iterator[dict]:
    """Every span in the store, older file first."""
    for path in (directory / (FILE_NAME + ".1"), directory / FILE_NAME):
        if path.exists():
            with open(path) as f:
                for line in f:
                    if line.strip():
                        yield json.loads(line)


def find_trace(spans: Iterable[dict], wanted: str) -> list[dict]:
    """The spans of the trace `wanted` names: a trace id, or a cycle id (the trace holding the
    span whose `schedcp.cycle_id` attribute it is)."""
    spans = list(spans)
    trace_id = wanted
    if not any(s["trace_id"] == wanted for s in spans):
        trace_id = next((s["trace_id"] for s in spans if s["attributes"].get(telemetry.CYCLE_ATTRIBUTE) == wanted), "")
    return sorted((s for s in spans if s["trace_id"] == trace_id), key=lambda s: s["start_ns"])


def from_jaeger(url: str, wanted: str, timeout_s: float = 10.0) -> list[dict]:
    """The trace `wanted` names (a trace id, or a cycle id found by the planner span's tag) from
    Jaeger's query API, as the store's records."""
    base = url.rstrip("/")
    data = _get_json(f"{base}/api/traces/{urllib.parse.quote(wanted)}", timeout_s, missing_ok=True)
    if not data.get("data"):
        query = urllib.parse.urlencode({"service": "schedcp-planner", "limit": 1,
                                        "tags": json.dumps({telemetry.CYCLE_ATTRIBUTE: wanted})})
        data = _get_json(f"{base}/api/traces?{query}", timeout_s)
    traces = data.get("data") or []
    return sorted(_jaeger_records(traces[0]), key=lambda s: s["start_ns"]) if traces else []


def _get_json(url: str, timeout_s: float, missing_ok: bool = False) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        if missing_ok and exc.code == 404:
            return {}
        raise DependencyUnavailable(f"Jaeger at {url} answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DependencyUnavailable(f"cannot read traces from Jaeger at {url} ({exc}); check SCHEDCP_JAEGER_URL") \
            from None


def _jaeger_records(trace: dict) -> Iterator[dict]:
    processes = trace.get("processes", {})
    for span in trace.get("spans", []):
        tags = {t["key"]: t.get("value") for t in span.get("tags", [])}
        process = processes.get(span.get("processID"), {})
        parent = next((r["spanID"] for r in span.get("references", []) if r.get("refType") == "CHILD_OF"), "")
        start_ns = int(span["startTime"]) * 1000
        yield {
            "trace_id": span["traceID"], "span_id": span["spanID"], "parent_span_id": parent,
            "name": span["operationName"], "kind": str(tags.get("span.kind", "")),
            "service": process.get("serviceName", ""),
            "host_id": next((t.get("value") for t in process.get("tags", []) if t["key"] == "schedcp.host_id"), ""),
            "start_ns": start_ns, "end_ns": start_ns + int(span.get("duration", 0)) * 1000,
            "error": tags.get("error") is True or tags.get("otel.status_code") == "ERROR", "attributes": tags,
        }


def serve(listen: str, directory: Path) -> None:
    """Serve TraceService/Export on `listen` until SIGTERM or SIGINT."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceStore(directory), server)
    if server.add_insecure_port(listen) == 0:
        raise SystemExit(f"tracestore: cannot listen on {listen}")
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"tracestore: receiving OTLP spans on {listen}, storing them in {directory / FILE_NAME}", flush=True)
    stop.wait()
    # Let exports in flight (the services' last batches on shutdown) finish.
    server.stop(grace=2).wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m schedcp.cli.tracestore", description=__doc__)
    parser.add_argument("--listen", required=True, help="HOST:PORT for OTLP/gRPC (loopback)")
    parser.add_argument("--dir", required=True, type=Path, help="where spans.jsonl is kept")
    args = parser.parse_args()
    serve(args.listen, args.dir)


if __name__ == "__main__":
    main()
