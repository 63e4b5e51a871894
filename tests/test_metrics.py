"""Prometheus metrics: a real Prometheus server (Debian's package) scrapes all five services,
each on its own SCHEDCP_METRICS_ADDR, after a little real work (a verification, a refused
deployment, a decision cycle with nothing to do, the observer's profiles), and the expected
series appear with the right labels."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import grpc
import pytest

from schedcp.domain import sched_ext
from schedcp.runtime import rpc
from schedcp.runtime.net import free_port
from schedcp.v1 import (
    executor_pb2,
    planner_pb2,
    planner_pb2_grpc,
    verdict_pb2,
    verifier_pb2,
    verifier_pb2_grpc,
)
from tests.test_executor import deploy, native_artifact
from tests.test_planner import wait_registered

ROLES = ("observer", "executor", "verifier", "learner", "planner")
PROMETHEUS = shutil.which("prometheus")


def start_with_metrics(services) -> dict[str, str]:
    """Start every service with a metrics address of its own; role -> host:port."""
    addrs = {}
    for role in ROLES:
        addrs[role] = f"127.0.0.1:{free_port()}"
        services.env["SCHEDCP_METRICS_ADDR"] = addrs[role]
        services.start(role)
    return addrs


def do_some_work(services) -> None:
    artifact = native_artifact("batch_sched_idle", "metrics-test")

    async def work() -> None:
        async with rpc.channel(services.addr("verifier")) as channel:
            request = verifier_pb2.VerifyRequest(artifact=artifact, target=sched_ext.host_kernel())
            [p async for p in verifier_pb2_grpc.VerifierServiceStub(channel).Verify(request)]
        # An unsigned verdict: refused before anything is touched.
        with pytest.raises(grpc.aio.AioRpcError):
            await deploy(services.addr("executor"), executor_pb2.DeployRequest(artifact=artifact,
                                                                                verdict=verdict_pb2.Verdict()))
        # The rules provider cannot infer a makespan goal: a whole cycle that changes nothing.
        async with rpc.channel(services.addr("planner")) as channel:
            stub = planner_pb2_grpc.PlannerServiceStub(channel)
            [e async for e in stub.Tune(planner_pb2.TuneRequest(host_id="testhost", intent="finish sooner: makespan"))]

    wait_registered(services.addr("planner"))
    asyncio.run(work())


def query(port: int, expr: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.load(reply)["data"]["result"]


@pytest.fixture
def prometheus(tmp_path: Path):
    """Start a Prometheus server scraping the given targets every second; yields a starter."""
    procs = []

    def start(targets: dict[str, str]) -> int:
        if PROMETHEUS is None:
            # make test installs Debian's prometheus (scripts/bpf_setup.sh); in CI its absence fails.
            (pytest.fail if os.environ.get("CI") else pytest.skip)("prometheus is not installed")
        port = free_port()
        jobs = "\n".join(f"  - job_name: schedcp-{role}\n    static_configs:\n      - targets: ['{addr}']"
                         for role, addr in targets.items())
        config = tmp_path / "prometheus.yml"
        config.write_text(f"global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{jobs}\n")
        procs.append(subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        return port

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=20)


EXPECTED = {
    # series (PromQL) -> the job it must come from
    'schedcp_rpc_requests_total{method="/schedcp.v1.VerifierService/Verify",code="OK"}': "verifier",
    'schedcp_verifier_verdicts_total{result="approved"}': "verifier",
    'schedcp_verifier_stage_duration_seconds_count{stage="native_checks"}': "verifier",
    'schedcp_executor_deployments_total{result="refused"}': "executor",
    'schedcp_rpc_requests_total{method="/schedcp.v1.ExecutorService/Deploy",code="PERMISSION_DENIED"}': "executor",
    'schedcp_planner_cycles_total{result="skipped"}': "planner",
    'schedcp_planner_stage_duration_seconds_count{stage="observe"}': "planner",
    'schedcp_rpc_requests_total{method="/schedcp.v1.LearnerService/SearchPolicies",code="OK"}': "learner",
    'schedcp_observer_window_cpu_seconds_count{mode="procfs"}': "observer",
    "schedcp_observer_profiles_published_total": "observer",
    'schedcp_rpc_requests_total{method="/schedcp.v1.ObserverService/GetProfile",code="OK"}': "observer",
}


def test_prometheus_scrapes_every_service(services, prometheus):
    services.env["SCHEDCP_PROFILE_INTERVAL_S"] = "1"
    addrs = start_with_metrics(services)
    do_some_work(services)
    port = prometheus(addrs)
    deadline = time.monotonic() + 60
    missing = dict(EXPECTED)
    up: list[dict] = []
    while time.monotonic() < deadline and (missing or len(up) < len(ROLES)):
        time.sleep(1)
        try:
            up = [r for r in query(port, "up == 1") if r["metric"]["job"].startswith("schedcp-")]
            for expr, job in list(missing.items()):
                found = query(port, expr)
                if any(r["metric"]["job"] == f"schedcp-{job}" and float(r["value"][1]) > 0 for r in found):
                    del missing[expr]
        except OSError:  # Prometheus still starting
            continue
    assert sorted(r["metric"]["job"] for r in up) == sorted(f"schedcp-{r}" for r in ROLES)
    assert not missing, f"series never scraped: {sorted(missing)}"
    process = {r["metric"]["job"] for r in query(port, "process_cpu_seconds_total")}
    assert process >= {f"schedcp-{r}" for r in ROLES}
