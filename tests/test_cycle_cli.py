"""The cycle commands as a user runs them (real services, the real `schedcp` program): deploy
a chosen policy and roll it back, clear one-sentence errors for what cannot be done; the local
trace store and the Jaeger reader; the demo workload cleans up after itself."""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2 as otlp_common
from opentelemetry.proto.trace.v1 import trace_pb2

from schedcp.cli import cycle as cli_cycle
from schedcp.cli import tracestore
from schedcp.cli.demo import DemoWorkload
from schedcp.domain import params
from schedcp.runtime.errors import InvalidArgument
from schedcp.v1 import common_pb2, deployment_pb2
from tests.conftest import ROOT, cpu_hogs, latency_probe

SCHEDCP = ROOT / ".venv" / "bin" / "schedcp"


def schedcp(env: dict[str, str], *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCHEDCP), *argv], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture
def fleet(services):
    services.start("observer", "planner", "executor", "verifier", "learner")
    return services


def test_deploy_a_chosen_policy_then_roll_it_back(fleet, workload):
    cpu_hogs(workload)
    latency_probe(workload)
    deployed = schedcp(fleet.env, "--json", "deploy", "testhost", "batch_sched_idle")
    events = [json.loads(line) for line in deployed.stdout.splitlines()]
    assert events, deployed.stderr
    candidates = next(e for e in events if e.get("candidates"))["candidates"]["candidates"]
    assert [c["artifact"]["name"] for c in candidates] == ["batch_sched_idle"]
    result = events[-1]
    assert result["stage"] == "CYCLE_STAGE_RESULT"
    state = result["deployment"]["deployment"]["state"]
    assert state in ("DEPLOYMENT_STATE_KEPT", "DEPLOYMENT_STATE_ROLLED_BACK"), result
    assert deployed.returncode == (0 if state == "DEPLOYMENT_STATE_KEPT" else 1)
    # The judged canary's outcome reached the learner before the result.
    learned = events[-2]
    assert (learned["stage"], learned["status"]) == ("CYCLE_STAGE_LEARN", "STAGE_STATUS_SUCCEEDED"), learned
    assert learned["outcome"]["deploymentId"] == result["deployment"]["deployment"]["deploymentId"], learned
    if state == "DEPLOYMENT_STATE_KEPT":
        undone = schedcp(fleet.env, "rollback", "testhost", "--reason", "test over")
        assert undone.returncode == 0 and "rolled back batch_sched_idle" in undone.stdout, undone.stderr


@pytest.mark.parametrize(("argv", "words"), [
    (("tune", "nohost"), "host 'nohost' is not registered (registered hosts: testhost)"),
    (("deploy", "testhost", "no_such_policy"), "no library policy 'no_such_policy'"),
    (("deploy", "testhost", "latency_boost"), "latency_boost is a sched_ext scheduler and testhost has no sched_ext"),
    (("rollback", "nohost"), "host 'nohost' is not registered (registered hosts: testhost)"),
    (("deploy", "testhost", "batch_sched_idle", "--param", "oops"), "a parameter is NAME=VALUE, got 'oops'"),
])
def test_what_cannot_be_done_is_one_clear_sentence(fleet, argv, words):
    done = schedcp(fleet.env, *argv)
    assert done.returncode != 0 and words in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) <= 3 and "Traceback" not in done.stderr, done.stderr


def test_trace_of_an_unknown_cycle_says_where_it_looked(services):
    done = schedcp(services.env, "trace", "0" * 32)
    assert done.returncode == 1 and "no trace '000" in done.stderr and "traces" in done.stderr, done.stderr


def export_request(trace_id: bytes,
                   spans: list[tuple[bytes, bytes, str, dict]]) -> trace_service_pb2.ExportTraceServiceRequest:
    resource = [otlp_common.KeyValue(key="service.name", value=otlp_common.AnyValue(string_value="schedcp-x"))]
    made = []
    for number, (span_id, parent, name, attributes) in enumerate(spans):
        made.append(trace_pb2.Span(
            trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name, kind=2,
            start_time_unix_nano=1000 + number, end_time_unix_nano=2000 + number,
            attributes=[otlp_common.KeyValue(key=k, value=otlp_common.AnyValue(string_value=v))
                        for k, v in attributes.items()]))
    return trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource={"attributes": resource}, scope_spans=[trace_pb2.ScopeSpans(spans=made)])])


def test_the_trace_store_keeps_spans_and_finds_a_trace_by_cycle_or_trace_id(tmp_path, monkeypatch):
    store = tracestore.TraceStore(tmp_path)
    mine, other = bytes(range(16)), bytes(range(1, 17))
    store.Export(export_request(mine, [(b"\x01" * 8, b"", "Tune", {"schedcp.cycle_id": "c1"}),
                                       (b"\x02" * 8, b"\x01" * 8, "Verify", {})]), None)
    monkeypatch.setattr(tracestore, "MAX_FILE_BYTES", 10)  # the next export rotates the file once
    store.Export(export_request(other, [(b"\x03" * 8, b"", "Tune", {"schedcp.cycle_id": "c2"})]), None)
    assert (tmp_path / "spans.jsonl.1").exists()
    spans = list(tracestore.stored_spans(tmp_path))
    by_cycle = tracestore.find_trace(spans, "c1")
    assert [s["name"] for s in by_cycle] == ["Tune", "Verify"]
    assert by_cycle[1]["parent_span_id"] == by_cycle[0]["span_id"] and by_cycle[0]["service"] == "schedcp-x"
    assert tracestore.find_trace(spans, other.hex())[0]["attributes"] == {"schedcp.cycle_id": "c2"}
    assert tracestore.find_trace(spans, "c3") == []


def test_traces_read_from_jaeger_query_api():
    """Jaeger cannot be installed here: a small HTTP server answers as Jaeger's query API does
    (GET /api/traces/<id> is 404 for a cycle id; the search by tag finds the trace)."""
    trace = {"traceID": "ab" * 16, "processes": {"p1": {"serviceName": "schedcp-planner", "tags": [
        {"key": "schedcp.host_id", "value": "h1"}]}}, "spans": [
        {"traceID": "ab" * 16, "spanID": "01" * 8, "operationName": "Tune", "references": [], "startTime": 5,
         "duration": 7, "processID": "p1", "tags": [{"key": "schedcp.cycle_id", "value": "c9"}]},
        {"traceID": "ab" * 16, "spanID": "02" * 8, "operationName": "Verify", "startTime": 6, "duration": 1,
         "processID": "p1", "references": [{"refType": "CHILD_OF", "spanID": "01" * 8}],
         "tags": [{"key": "error", "value": True}]}]}
    asked = []

    class Jaeger(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            found = self.path.startswith("/api/traces?") and "c9" in self.path
            body = json.dumps({"data": [trace] if found else []}).encode()
            self.send_response(200 if found else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Jaeger)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        spans = tracestore.from_jaeger(f"http://127.0.0.1:{server.server_port}/", "c9")
    finally:
        server.shutdown()
    assert [s["name"] for s in spans] == ["Tune", "Verify"]
    assert spans[1]["parent_span_id"] == "01" * 8 and spans[1]["error"] and not spans[0]["error"]
    assert spans[0]["service"] == "schedcp-planner" and spans[0]["host_id"] == "h1"
    assert spans[0]["start_ns"] == 5000 and spans[0]["end_ns"] == 12000
    assert asked[0] == "/api/traces/c9" and "schedcp-planner" in asked[1]


def test_parameters_parse_as_integers_booleans_or_strings():
    assert params.python(params.parse("slice_us=3000")[1]) == 3000
    assert params.python(params.parse("preempt=false")[1]) is False
    assert params.text(params.parse("comm=cyclictest")[1]) == "cyclictest"
    assert params.text(params.parse("flag=true")[1]) == "true"
    with pytest.raises(InvalidArgument, match="NAME=VALUE"):
        params.parse("=3")


def test_a_comparison_over_rounds_shows_its_interval_as_a_change():
    latency = common_pb2.MetricSpec(name="runq_latency_p99_us", direction=common_pb2.DIRECTION_LOWER_IS_BETTER)
    share = common_pb2.MetricSpec(name="cpu_share", direction=common_pb2.DIRECTION_HIGHER_IS_BETTER)
    # The comparison holds an improvement: 86..90 % better is a change of -90..-86 % for a latency.
    over_rounds = deployment_pb2.MetricComparison(metric=latency, rounds=3, improvement_low=0.86, improvement_high=0.9,
                                                  confidence=0.95)
    assert cli_cycle._change_interval(over_rounds) == "-90%..-86% (95%, 3 rounds)"
    gained = deployment_pb2.MetricComparison(metric=share, rounds=4, improvement_low=-0.02, improvement_high=0.05,
                                             confidence=0.95)
    assert cli_cycle._change_interval(gained) == "-2%..+5% (95%, 4 rounds)"
    assert cli_cycle._change_interval(deployment_pb2.MetricComparison(metric=latency, rounds=1)) == "-"


def test_the_demo_workload_leaves_nothing_behind():
    own_cgroups = Path("/proc/self/cgroup").read_text()
    with pytest.raises(RuntimeError, match="interrupted"), DemoWorkload(hogs=1) as demo:
        pids, cgroup = demo.pids, demo.cgroup
        assert len(pids) == 2 and all(Path(f"/proc/{pid}").exists() for pid in pids)
        if cgroup is not None:
            assert {int(p) for p in (cgroup / "cgroup.procs").read_text().split()} >= set(pids)
        raise RuntimeError("interrupted")
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert cgroup is None or not cgroup.exists()
    assert Path("/proc/self/cgroup").read_text() == own_cgroups  # only the children joined the cgroup
