"""Shared fixtures: a real nats-server on an ephemeral port, real service processes, spans."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from schedcp.cli.probe import probe
from schedcp.cli.stack import ephemeral_env, nats_server_binary
from schedcp.domain import verdicts
from schedcp.runtime import rpc, tls
from schedcp.runtime.config import Settings
from schedcp.runtime.net import free_port
from services.executor.native import get_sched
from services.verifier.signing import SigningKey

ROOT = Path(__file__).resolve().parent.parent

_EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))
trace.set_tracer_provider(_PROVIDER)


def _own_scheduling() -> dict[str, object]:
    """How the kernel schedules this test process: what its children inherit at fork."""
    return {"sched": get_sched(0), "affinity": sorted(os.sched_getaffinity(0)),
            "cgroup": Path("/proc/self/cgroup").read_text(),
            "autogroup": _autogroup()}


def _autogroup() -> str | None:
    """The autogroup line ("/autogroup-N nice K"); empty where the kernel runs without
    autogroups (sched_autogroup_enabled=0 shows an empty file), None where it has none at all."""
    path = Path("/proc/self/autogroup")
    return path.read_text().strip() if path.exists() else None


@pytest.fixture(autouse=True)
def _this_process_is_scheduled_as_before():
    """No test may leave the test process scheduled differently: every later test's workloads
    would inherit it (a demoted parent once made every hog idle, and a latency probe beside
    them never waited)."""
    before = _own_scheduling()
    yield
    assert _own_scheduling() == before, "this test changed how the test process itself is scheduled"


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """Spans finished in this test process (cleared before each test)."""
    _EXPORTER.clear()
    return _EXPORTER


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port some other process is listening on, for the duration of a test."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@dataclass
class NatsServer:
    """A nats-server with JetStream; port chosen by the server, store under a temp dir."""

    store: Path
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        ports_dir = self.store / "ports"
        ports_dir.mkdir(parents=True, exist_ok=True)
        for old in ports_dir.iterdir():
            old.unlink()
        # Restarts reuse the first port so clients can reconnect to the same URL.
        port = str(self.port) if self.port else "-1"
        self.proc = subprocess.Popen(
            [nats_server_binary(), "-js", "-sd", str(self.store / "js"), "-a", "127.0.0.1", "-p", port,
             "--ports_file_dir", str(ports_dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            files = list(ports_dir.glob("*.ports"))
            if files:
                self.port = int(json.loads(files[0].read_text())["nats"][0].rsplit(":", 1)[1])
                return
            time.sleep(0.02)
        raise RuntimeError("nats-server did not write its ports file")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(store=tmp_path / "nats")
    server.start()
    yield server
    server.stop()


def service_env(nats_url: str | None, data_dir: Path, **extra: str) -> dict[str, str]:
    """An environment for schedcp processes: this test's NATS (None: one on a port picked with the
    services', for a stack that starts its own), free ports, a private data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCHEDCP_", "OTEL_"))}
    env.update(ephemeral_env())
    env.update({
        "SCHEDCP_NATS_URL": nats_url or env["SCHEDCP_NATS_URL"],
        "SCHEDCP_DATA_DIR": str(data_dir),
        "SCHEDCP_HOST_ID": "testhost",
        "SCHEDCP_HEARTBEAT_INTERVAL_S": "0.5",
        "SCHEDCP_SHUTDOWN_GRACE_S": "1",
        # Tests that are not about the observer do not need it to compile BPF probes.
        "SCHEDCP_OBSERVER_MODE": "procfs",
    })
    env.update(extra)
    return env


@dataclass
class ServiceProcesses:
    """Service processes started by a test; stopped with SIGTERM at teardown. Each one's output
    goes to a file in `log_dir` (a pipe that nobody reads until the end fills up, and a chatty
    service then blocks in its next log line)."""

    env: dict[str, str]
    log_dir: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    # Where this run of each role's output starts in its log (a role may be started again).
    logs: dict[str, tuple[Path, int]] = field(default_factory=dict)

    def addr(self, role: str) -> str:
        return self.env[f"SCHEDCP_{role.upper()}_ADDR"]

    def start(self, *roles: str) -> None:
        for role in roles:
            self._spawn(role, role, self.env)
        for role in roles:
            wait_serving(role, self.addr(role), self.procs[role], lambda role=role: self.output(role))

    def start_replica(self, role: str) -> str:
        """A second process of `role` on a port of its own (named `<role>-2`, stopped with the
        others); returns its address."""
        name, addr = f"{role}-2", f"127.0.0.1:{free_port()}"
        self._spawn(name, role, {**self.env, f"SCHEDCP_{role.upper()}_ADDR": addr})
        wait_serving(role, addr, self.procs[name], lambda: self.output(name))
        return addr

    def start_host(self, host_id: str, trusted: bool = True) -> dict[str, str]:
        """A second host on this machine: an observer and an executor of its own (named
        `<role>@<host_id>`, stopped with the others) on ports and a data dir of their own,
        registering as `host_id`; returns their environment. `trusted`: its executor trusts the
        verifier's key (started already), as a fleet host is configured to; else it trusts none."""
        env = {**self.env, "SCHEDCP_HOST_ID": host_id, "SCHEDCP_DATA_DIR": f"{self.env['SCHEDCP_DATA_DIR']}-{host_id}",
               "SCHEDCP_OBSERVER_ADDR": f"127.0.0.1:{free_port()}", "SCHEDCP_EXECUTOR_ADDR": f"127.0.0.1:{free_port()}"}
        if trusted:  # the key the first host's executor trusts: the local verifier's
            keys = verdicts.trusted_keys(Settings(data_dir=Path(self.env["SCHEDCP_DATA_DIR"])))
            env["SCHEDCP_TRUSTED_VERIFIER_KEYS"] = ",".join(k.public_key.hex() for k in keys)
        roles = ("observer", "executor")
        for role in roles:
            self._spawn(f"{role}@{host_id}", role, env)
        for role in roles:
            name = f"{role}@{host_id}"
            wait_serving(role, env[f"SCHEDCP_{role.upper()}_ADDR"], self.procs[name],
                         lambda name=name: self.output(name))
        return env

    def _spawn(self, name: str, role: str, env: dict[str, str]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        self.logs[name] = (log, log.stat().st_size if log.exists() else 0)
        with open(log, "a") as out:
            self.procs[name] = subprocess.Popen([sys.executable, "-m", f"services.{role}"], env=env,
                                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    def output(self, role: str) -> str:
        """What this run of the role has written so far."""
        log, start = self.logs[role]
        with open(log, errors="replace") as text:
            text.seek(start)
            return text.read()

    def stop(self, role: str) -> tuple[int, str]:
        """SIGTERM one service; returns its exit code and output."""
        proc = self.procs.pop(role)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        return proc.returncode, self.output(role)

    def stop_all(self) -> None:
        for role in list(self.procs):
            self.stop(role)


def wait_serving(role: str, addr: str, proc: subprocess.Popen, output: Callable[[], str],
                 timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{role} exited with {proc.returncode}: {output()}")
        if asyncio.run(probe(role, addr, timeout_s=0.5)).serving:
            return
        time.sleep(0.1)
    raise AssertionError(f"{role} not serving on {addr} after {timeout_s}s")


@pytest.fixture
def services(nats_server: NatsServer, tmp_path: Path) -> Iterator[ServiceProcesses]:
    procs = ServiceProcesses(service_env(nats_server.url, tmp_path / "data"), tmp_path / "logs")
    yield procs
    procs.stop_all()


# Enough CPU hogs to keep every CPU's run queue several deep: with only two per CPU, EEVDF's
# wakeup preemption keeps a sleeper's run-queue wait p99 near idle (only p99.9 grows).
HOGS_PER_CPU = 4


@pytest.fixture
def workload() -> Iterator[Callable[..., subprocess.Popen]]:
    """Starts commands as this test's own processes, each in its own process group (killed,
    with everything it forked, at teardown). They stay in the test's session: a new session
    would get its own autogroup, and the kernel would then shield them from each other."""
    started: list[subprocess.Popen] = []

    def start(*argv: str, stdout: int = subprocess.DEVNULL, text: bool = False) -> subprocess.Popen:
        """`stdout=subprocess.PIPE` for a command that reports readiness on it."""
        proc = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.DEVNULL, text=text, process_group=0)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# How long a test's workload runs unless the test's teardown kills it first (it always does): a
# safety net for a test runner killed outright, longer than any test that uses it runs under
# load. It was 120 s, and a planner test that took 139 s beside a foreign CPU hog (its canaries
# measured again while other processes were busy) lost its hogs and its probe before its last
# cycle, which then found no contention: issue 21's flake, the test's own.
WORKLOAD_SAFETY_S = 900


def cpu_hogs(start: Callable[..., subprocess.Popen], seconds: int = WORKLOAD_SAFETY_S) -> subprocess.Popen:
    """stress-ng CPU workers, HOGS_PER_CPU per CPU; the timeout is only a safety net."""
    return start("stress-ng", "--cpu", str(HOGS_PER_CPU * (os.cpu_count() or 1)), "--timeout", f"{seconds}s", "-q")


def latency_probe(start: Callable[..., subprocess.Popen], seconds: int = WORKLOAD_SAFETY_S) -> subprocess.Popen:
    """cyclictest as a normal (SCHED_OTHER) task waking every millisecond. --laptop: do not
    touch /dev/cpu_dma_latency, a host-wide setting."""
    return start("cyclictest", "--policy=other", "--interval=1000", "--quiet", f"--duration={seconds}", "--laptop")


@pytest.fixture
def hogs(workload, tmp_path):
    """CPU hogs whose task name is unique to this test (a symlink to sh: comm is its name)."""
    comm = f"hog-{uuid.uuid4().hex[:8]}"
    (tmp_path / comm).symlink_to("/bin/sh")  # before any hog starts: tests fork hogs by this path too

    def start(count: int = HOGS_PER_CPU * (os.cpu_count() or 1)) -> list[int]:
        return [workload(str(tmp_path / comm), "-c", "while :; do :; done").pid for _ in range(count)]

    start.comm, start.path = comm, tmp_path / comm
    return start


@pytest.fixture
def stack(services):
    """An observer and an executor; `stack.key` signs verdicts as the verifier would."""
    services.env["SCHEDCP_OBSERVER_MODE"] = "auto"
    key = SigningKey.load_or_create(Path(services.env["SCHEDCP_DATA_DIR"]) / "verifier" / "ed25519.pem")
    services.start("observer", "executor")
    services.key = key
    return services


def identity(directory: Path, name: str, ca: Path | None = None) -> tls.TlsFiles:
    """The TLS files of one identity in a `schedcp certs init` directory."""
    return tls.TlsFiles(ca or directory / "ca.pem", directory / f"{name}.pem", directory / f"{name}-key.pem")


@pytest.fixture
def secured(services, tmp_path, monkeypatch):
    """Services with TLS on; this test process calls as the operator unless told otherwise."""
    certs = tmp_path / "tls"
    tls.create_dev_certs(certs)
    services.env["SCHEDCP_TLS_DIR"] = str(certs)
    monkeypatch.setattr(rpc, "_identity", identity(certs, tls.OPERATOR))
    return services, certs


def host_profile(seconds: float, mode: str = "procfs"):
    """A profile of this host over one window of `seconds`, as the observer builds it."""
    from services.observer import hostfacts
    from services.observer.profiler import Profiler
    from services.observer.sampling import Sampler

    sampler = Sampler(mode)
    try:
        window, _ = sampler.window(seconds)
        return Profiler(sampler, lambda: hostfacts.collect("testhost")).build(window)
    finally:
        sampler.close()
