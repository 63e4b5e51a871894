"""Prometheus metrics of a schedcp process, served over HTTP on SCHEDCP_METRICS_ADDR.

All of schedcp's series are declared here, so their names (Prometheus conventions: the
`schedcp_` prefix, base units, `_total` on counters, which prometheus-client appends) are in
one place and docs/operations.md lists them. Every service exports the RPC series (recorded by
the runtime's interceptor) and prometheus-client's process series; each service updates its
own. A series a service never touches stays absent from its endpoint: labelled metrics appear
with their first sample.

The endpoint is plain HTTP and read-only, and carries counts and durations only (no requests,
no keys, no prompts).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

from schedcp.runtime.errors import StartupError
from schedcp.runtime.net import split_address

# Decision stages and RPCs take milliseconds to minutes (a verifier micro-VM boot).
SECONDS = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

RPC_REQUESTS = Counter("schedcp_rpc_requests", "gRPC calls served, by method and status code.", ["method", "code"])
RPC_DURATION = Histogram("schedcp_rpc_duration_seconds", "Time to serve a gRPC call.", ["method"], buckets=SECONDS)

CYCLES = Counter("schedcp_planner_cycles", "Decision cycles by result (succeeded: a policy was kept).", ["result"])
CYCLE_STAGE_DURATION = Histogram("schedcp_planner_stage_duration_seconds", "Time spent in each decision stage.",
                                 ["stage"], buckets=SECONDS)
LLM_TOKENS = Counter("schedcp_planner_llm_tokens", "LLM tokens used, by direction (input, output).", ["direction"])
LLM_CALLS = Counter("schedcp_planner_llm_calls", "LLM calls by result (ok, failed).", ["result"])

VERDICTS = Counter("schedcp_verifier_verdicts", "Verdicts issued (not cached), by result.", ["result"])
REJECTIONS = Counter("schedcp_verifier_rejections", "Rejected candidates, by the stage that rejected them.",
                     ["stage"])
VERIFY_STAGE_DURATION = Histogram("schedcp_verifier_stage_duration_seconds", "Time each verification stage took.",
                                  ["stage"], buckets=SECONDS)

DEPLOYMENTS = Counter("schedcp_executor_deployments", "Deployments by how they ended (kept, rolled_back, ...).",
                      ["result"])
ROLLBACKS = Counter("schedcp_executor_rollbacks", "Rollbacks, by cause (canary, request, ejected, shutdown).",
                    ["cause"])

WINDOW_CPU = Histogram("schedcp_observer_window_cpu_seconds",
                       "CPU time the observer process used per profiling window (its own cost), by mode.",
                       ["mode"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
PROFILES_PUBLISHED = Counter("schedcp_observer_profiles_published", "Profiles published on JetStream.")

OUTCOMES = Counter("schedcp_learner_outcomes", "Outcomes learned from, by result.", ["result"])


def serve(addr: str) -> str:
    """Serve this process's metrics at http://ADDR/metrics; return the address bound (port 0
    picks a free one)."""
    host, port = split_address(addr)
    try:
        server, _ = start_http_server(port, addr=host)
    except OSError as exc:
        raise StartupError(f"cannot serve metrics on {addr} ({exc.strerror}): set SCHEDCP_METRICS_ADDR to a free "
                           "address, or empty to turn metrics off") from None
    return f"{host}:{server.server_port}"
