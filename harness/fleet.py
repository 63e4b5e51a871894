"""A fleet on one machine (issue 10): the central services (planner, verifier, learner, with
nats-server and the trace store) as a local stack with mutual TLS and NATS auth, and host VMs
booted from the host image (harness/hostimage.py), each running its own observer and executor
under harness/fleet_agent.py.

Inside a VM the services reach the central NATS and trace store through 10.0.2.2 (qemu's
user-mode network maps it to this machine's loopback); the planner reaches each VM's observer
and executor through loopback-only forwards, which the VM's observer registers as the host's
advertised addresses. The services in the VMs listen on 0.0.0.0, so TLS is on everywhere (the
development CA of `schedcp certs init`, whose certificates name 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from harness.hostimage import HostImage, HostVm
from schedcp.cli.stack import TRACES, LocalStack, ephemeral_env
from schedcp.runtime import nats_auth, rpc, tls
from schedcp.runtime.config import Role, Settings, env_var, load_settings
from schedcp.runtime.net import free_port
from schedcp.toolchain.build import Kernel, Toolchain
from schedcp.v1 import planner_pb2, planner_pb2_grpc

AGENT = Path(__file__).resolve().parent / "fleet_agent.py"
WORK_MARKER = ".schedcp-fleet"
CENTRAL = (Role.PLANNER, Role.VERIFIER, Role.LEARNER)
ON_HOST = (Role.OBSERVER, Role.EXECUTOR)
GUEST_PORTS = {"agent": 7000, Role.OBSERVER.value: 50051, Role.EXECUTOR.value: 50053}
GUEST_CONFIG = "/etc/schedcp"
GUEST_LOADER = "/usr/local/bin/schedcp-loader"
GUEST_PROBES = "/usr/local/lib/schedcp/runqlat.bpf.o"
# The VMs' workload: a 1 kHz latency probe beside CPU batch (2 hogs per vCPU), the co-location
# the planner's rules recognise. Each VM's starts just before its first cycle, so the only
# verification that boots the verifier's own VM (the first: the second host's comes from the
# verdict cache) competes with one busy VM for this machine's two CPUs, not two.
WORKLOAD = (("cyclictest", "-q", "-i", "1000", "-t", "1"), ("stress-ng", "--cpu", "4", "--quiet"))
# Everything in a VM runs under TCG emulation (no KVM on CI machines): calls get generous deadlines.
RPC_TIMEOUT_S = 120.0
GUEST_LOG_LINES = 200_000
BOOT_TIMEOUT_S = 900.0
# qemu's words when a forward's host port was taken between free_port() and its bind: it exits
# at once. The host boots again on fresh ports, up to this many times in all.
FORWARD_TAKEN = "Could not set up host forwarding rule"
BOOT_ATTEMPTS = 3
WORKLOAD_SETTLE_S = 15.0
# Emulated CPUs make short windows noisy: a 5 s canary once missed the batch guard by 0.1 %.
CANARY_WINDOW_S = 10.0


def ask_line(port: int, request: dict, timeout_s: float) -> dict | None:
    """One JSON request line to a line server in a VM (the agent, the scenario suite's worker)
    through its forward on this machine's loopback: its JSON answer, or None when the connection
    closed first (qemu accepts on a forward before anything in the guest listens)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as conn, conn.makefile("rw") as stream:
        stream.write(json.dumps(request) + "\n")
        stream.flush()
        line = stream.readline()
    return json.loads(line) if line else None


@dataclass(frozen=True)
class Guest:
    """What the host VMs carry besides schedcp: the image variant, the workload the agent starts,
    more files for the VM's configuration initramfs and more guest ports to forward (name ->
    port in the VM). The default is the e2e fleet's."""

    image_name: str = "image"
    packages: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()
    workload: tuple[tuple[str, ...], ...] = WORKLOAD
    files: dict[str, bytes] = field(default_factory=dict)
    extra_ports: dict[str, int] = field(default_factory=dict)

    @property
    def ports(self) -> dict[str, int]:
        return {**GUEST_PORTS, **self.extra_ports}

    def image(self, toolchain: Toolchain) -> HostImage:
        return HostImage(toolchain, self.image_name, self.packages, self.requirements)


@dataclass(frozen=True)
class Central:
    """How the central plane runs: nats-servers (1, or a cluster of 3 with every stream on all
    three), planner replicas and their cycle lease. The default is one of each, as `schedcp up`."""

    nats_nodes: int = 1
    planner_replicas: int = 1
    planner_lease_s: float = 15.0


class FleetError(RuntimeError):
    """Something the fleet needs did not happen; the message says what and where to look."""


@dataclass
class VmHost:
    """One host VM: its forwards on this machine's loopback and its console log."""

    name: str
    ports: dict[str, int]
    console: Path
    vm: HostVm | None = None
    boots: int = 0
    workload: dict[str, int] = field(default_factory=dict)
    workload_argv: tuple[tuple[str, ...], ...] = WORKLOAD

    @property
    def observer_addr(self) -> str:
        return f"127.0.0.1:{self.ports[Role.OBSERVER.value]}"

    @property
    def executor_addr(self) -> str:
        return f"127.0.0.1:{self.ports[Role.EXECUTOR.value]}"

    def ask(self, cmd: str, timeout_s: float = 60.0, **args) -> dict:
        """One command to the VM's agent (fleet_agent.py), its JSON answer."""
        answer = ask_line(self.ports["agent"], {"cmd": cmd, **args}, timeout_s)
        if answer is None:
            raise FleetError(f"the agent in {self.name} closed the connection (console: {self.console})")
        if "error" in answer:
            raise FleetError(f"{self.name}: {answer['error']}")
        return answer

    def sched_ext(self) -> tuple[str, str]:
        """(state, ops) as the VM's kernel shows them in /sys/kernel/sched_ext."""
        state = self.ask("state")
        return state["state"], state["ops"]

    async def start_workload(self, progress: Callable[[str], None]) -> None:
        """Start the VM's workload (once) and give it WORKLOAD_SETTLE_S: under emulation
        stress-ng starts its workers one by one, and a profile taken meanwhile sees a different
        workload (once: "only batch work contends")."""
        if self.workload:
            return
        self.workload = self.ask("workload")
        started = zip(self.workload_argv, self.workload.values(), strict=True)
        progress(f"{self.name}: workload started: " + ", ".join(
            f"{' '.join(argv)} (pid {pid})" for argv, pid in started)
            + f"; letting it settle for {WORKLOAD_SETTLE_S:.0f} s")
        await asyncio.sleep(WORKLOAD_SETTLE_S)

    def console_tail(self, lines: int = 40) -> str:
        text = self.console.read_text(errors="replace") if self.console.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Fleet:
    """The central stack and the host VMs; `async with Fleet(...)` starts both and stops both."""

    def __init__(self, work: Path, host_names: list[str], memory_mb: int = 2048,
                 progress: Callable[[str], None] = print, guest: Guest | None = None,
                 central: Central | None = None) -> None:
        self.work = work
        self.progress = progress
        self.memory_mb = memory_mb
        self.guest = guest or Guest()
        self.central = central or Central()
        self.certs = work / "tls"
        self.settings = self._central_settings()
        # Every planner replica's address, the stack's own first (more once started).
        self.planner_addrs = [self.settings.planner_addr]
        # The central services stay in this process's session, so in the VMs' autogroup: in a new
        # one each, a restarted nats-server waited seconds for a CPU beside the VMs (decision 36).
        self.stack = LocalStack(self.settings, own_sessions=False)
        self.hosts = [VmHost(name, {key: free_port() for key in self.guest.ports}, work / f"{name}.console.log",
                             workload_argv=self.guest.workload)
                      for name in host_names]
        self._exit = contextlib.ExitStack()
        self._boot_image: tuple[Kernel, Path] | None = None  # set once the image is ready

    def _central_settings(self) -> Settings:
        ports = ephemeral_env(nats_nodes=self.central.nats_nodes)
        return load_settings(
            host_id="central", data_dir=self.work / "central", tls_dir=str(self.certs), rpc_timeout_s=RPC_TIMEOUT_S,
            canary_window_s=CANARY_WINDOW_S, planner_lease_s=self.central.planner_lease_s,
            nats_url=ports[env_var("nats_url")], nats_replicas=int(ports.get(env_var("nats_replicas"), 1)),
            **{f"{role.value}_addr": ports[env_var(f"{role.value}_addr")] for role in Role})

    @property
    def trace_dir(self) -> Path:
        return self.stack.trace_dir

    async def __aenter__(self) -> Fleet:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def _start(self) -> None:
        self._fresh_work_dir()
        tls.create_dev_certs(self.certs)
        rpc.configure_clients(tls.files_for(self.settings, tls.OPERATOR), self.settings.stream_timeout_s)
        started = time.monotonic()
        toolchain = Toolchain(self.settings.cache_dir)
        kernel = toolchain.kernel()
        image = self.guest.image(toolchain).image(kernel)
        self.progress(f"host image {image.name} ({image.stat().st_size >> 20} MiB, kernel {kernel.entry.release}) "
                      f"ready in {time.monotonic() - started:.0f} s")
        await self.stack.start(self.progress, roles=CENTRAL)
        for _ in range(self.central.planner_replicas - 1):
            self.planner_addrs.append(await self.stack.start_replica(Role.PLANNER))
            self.progress(f"planner replica on {self.planner_addrs[-1]}")
        self._boot_image = (kernel, image)
        for host in self.hosts:
            self._boot(host)
        await self._wait_registered(started)

    def _boot(self, host: VmHost) -> None:
        kernel, image = self._boot_image
        forwards = {port: self.guest.ports[key] for key, port in host.ports.items()}
        host.vm = HostVm(kernel, image, self._guest_files(host), forwards, host.console, self.memory_mb).__enter__()
        self._exit.push(host.vm)  # powered off when the fleet stops
        host.boots += 1
        self.progress(f"{host.name}: booting (2 vCPUs, {self.memory_mb} MiB; console {host.console})")

    def _boot_again_if_a_port_was_taken(self, host: VmHost) -> bool:
        """After the VM powered off: when qemu could not bind a forward (another program took the
        port free_port() had found), boot it again on fresh ports, a bounded number of times."""
        if FORWARD_TAKEN not in host.console_tail() or host.boots >= BOOT_ATTEMPTS:
            return False
        host.vm.__exit__(None, None, None)
        self.progress(f"{host.name}: a forwarded port was taken before qemu could bind it; booting again on fresh "
                      "ports")
        host.ports = {key: free_port() for key in self.guest.ports}
        self._boot(host)
        return True

    def _fresh_work_dir(self) -> None:
        """Empty the work dir of a previous run; refuse any other non-empty directory."""
        marker = self.work / WORK_MARKER
        if self.work.exists() and any(self.work.iterdir()) and not marker.exists():
            raise FleetError(f"{self.work} is not empty and not a previous fleet run's directory; choose another")
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        marker.write_text("a fleet run's state (harness/fleet.py); emptied by the next run\n")

    def _guest_files(self, host: VmHost) -> dict[str, bytes]:
        trace_store = next(c.listen for c in self.stack.running() if c.name == TRACES)
        verifier_key = (self.settings.data_dir / "verifier" / "ed25519.pub").read_text().strip()
        env = {
            env_var("host_id"): host.name,
            env_var("nats_url"): self.settings.nats_url.replace("127.0.0.1", "10.0.2.2"),
            env_var("nats_connect_timeout_s"): "30",
            env_var("tls_dir"): f"{GUEST_CONFIG}/tls",
            env_var("data_dir"): "/var/lib/schedcp",
            env_var("cache_dir"): "/var/cache/schedcp",
            env_var("loader_path"): GUEST_LOADER,
            env_var("trusted_verifier_keys"): verifier_key,
            # No BCC in the image: the observer's probes come compiled, loaded by the loader.
            env_var("observer_mode"): "bpf",
            env_var("observer_bpf_object"): GUEST_PROBES,
            env_var("profile_interval_s"): "0",  # the planner profiles on demand
            env_var("rpc_timeout_s"): str(RPC_TIMEOUT_S),
            env_var("observer_addr"): f"127.0.0.1:{GUEST_PORTS[Role.OBSERVER.value]}",
            env_var("executor_addr"): f"127.0.0.1:{GUEST_PORTS[Role.EXECUTOR.value]}",
            env_var("observer_advertise_addr"): host.observer_addr,
            env_var("executor_advertise_addr"): host.executor_addr,
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{trace_store.replace('127.0.0.1', '10.0.2.2')}",
            "OTEL_BSP_SCHEDULE_DELAY": "500",
        }
        roles = {role.value: {env_var(f"{role.value}_addr"): f"0.0.0.0:{GUEST_PORTS[role.value]}",
                              env_var("nats_user"): role.value,
                              env_var("nats_password_file"): f"{GUEST_CONFIG}/nats/{role.value}.password"}
                 for role in ON_HOST}
        config = {"env": env, "roles": roles, "workload": [list(argv) for argv in self.guest.workload],
                  "agent_port": GUEST_PORTS["agent"]}
        files = {"etc/schedcp/fleet.json": json.dumps(config, indent=1).encode(),
                 "etc/schedcp/agent.py": AGENT.read_bytes(),
                 "etc/schedcp/start.sh": f"exec python3 {GUEST_CONFIG}/agent.py {GUEST_CONFIG}/fleet.json\n".encode(),
                 "etc/schedcp/tls/ca.pem": (self.certs / "ca.pem").read_bytes(), **self.guest.files}
        for role in ON_HOST:
            files[f"etc/schedcp/tls/{role.value}.pem"] = (self.certs / f"{role.value}.pem").read_bytes()
            files[f"etc/schedcp/tls/{role.value}-key.pem"] = (self.certs / f"{role.value}-key.pem").read_bytes()
            files[f"etc/schedcp/nats/{role.value}.password"] = nats_auth.password_file(
                self.stack.auth_dir, role.value).read_bytes()
        return files

    async def _wait_registered(self, started: float) -> None:
        """Until every VM's observer has registered the host with sched_ext in its backends."""
        waiting = {h.name: h for h in self.hosts}
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while waiting:
            for host in waiting.values():
                if host.vm.wait(0) is not None and not self._boot_again_if_a_port_was_taken(host):
                    raise FleetError(f"{host.name} powered off during start:\n{host.console_tail()}")
            for registration in await self.registrations():
                host = waiting.get(registration.host_id)
                if host is not None and "sched_ext" in registration.facts.backends:
                    del waiting[host.name]
                    self.progress(f"{host.name}: registered after {time.monotonic() - started:.0f} s (kernel "
                                  f"{registration.facts.kernel_release}, observer {registration.observer_addr}, "
                                  f"executor {registration.executor_addr})")
            if time.monotonic() > deadline:
                raise FleetError(f"not registered within {BOOT_TIMEOUT_S:.0f} s: {', '.join(waiting)}; consoles: "
                                 + ", ".join(str(h.console) for h in waiting.values()))
            await asyncio.sleep(2.0)

    async def registrations(self) -> list:
        return list((await self.planner_call("ListHosts", planner_pb2.ListHostsRequest())).hosts)

    async def planner_call(self, method: str, request, stub=planner_pb2_grpc.PlannerServiceStub):
        """One call to the first planner replica that answers (a drill may have killed one)."""
        for addr in self.planner_addrs:
            try:
                async with rpc.channel(addr, RPC_TIMEOUT_S) as channel:
                    return await getattr(stub(channel), method)(request)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or addr == self.planner_addrs[-1]:
                    raise
        raise FleetError("no planner replica")

    def _save_guest_logs(self, host: VmHost) -> None:
        """The guest's observer and executor logs, as work/<host>.<role>.log: the VM's disk is gone
        once it powers off."""
        for role in ON_HOST:
            text = host.ask("log", role=role.value, lines=GUEST_LOG_LINES)["log"]
            (self.work / f"{host.name}.{role.value}.log").write_text(text + "\n")

    async def __aexit__(self, *exc: object) -> None:
        """Keep the VMs' service logs, power the VMs off (their executors revert what they
        applied), then stop the stack."""
        for host in self.hosts:
            if host.vm is None:
                continue
            if (status := host.vm.wait(0)) is not None:
                self.progress(f"{host.name}: its VM had stopped before the end (qemu exit status {status}); "
                              f"console: {host.vm.console}")
                continue
            with contextlib.suppress(OSError, FleetError, json.JSONDecodeError):
                self._save_guest_logs(host)
                host.ask("poweroff", timeout_s=60)
            if host.vm.wait(60) is None:
                self.progress(f"{host.name}: did not power off within 60 s; stopped")
        self._exit.close()
        self.stack.stop()
