"""The process runtime every schedcp service starts with (`run_service`).

It reads the settings, sets up logging and tracing, binds the gRPC port, connects to NATS and
declares the JetStream topology, lets the service build its servicers, and serves them with
health, reflection and `schedcp.v1.InfoService` beside them until SIGTERM or SIGINT, when it
stops taking calls, gives in-flight ones `SCHEDCP_SHUTDOWN_GRACE_S`, and exits 0.

Startup failures are one line on stderr and a non-zero exit: 2 for bad configuration, 3 for
something unavailable (port taken, NATS unreachable).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, NoReturn

import grpc
from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from schedcp import __version__
from schedcp.runtime import limits, nats_auth, rpc, tasks, tls, topology
from schedcp.runtime.bus import Bus
from schedcp.runtime.config import ConfigError, Role, Settings, addr_env_var, load_settings
from schedcp.runtime.errors import EXIT_CONFIG, EXIT_UNAVAILABLE, DependencyUnavailable, StartupError
from schedcp.runtime.limits import RateLimiter
from schedcp.runtime.logs import setup_logging
from schedcp.runtime.metrics import serve as serve_metrics
from schedcp.runtime.net import is_loopback, port_free, split_address
from schedcp.runtime.rpc import RuntimeInterceptor
from schedcp.runtime.telemetry import setup_tracing
from schedcp.v1 import info_pb2, info_pb2_grpc

log = logging.getLogger(__name__)

# Large enough for a compiled BPF object with its source; small enough to refuse abuse.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class GrpcService:
    """A servicer and the generated function that adds it to a server."""

    descriptor: ServiceDescriptor
    servicer: Any
    add_to_server: Callable[[Any, grpc.aio.Server], None]

    @classmethod
    def of(cls, servicer: Any, pb2: ModuleType, pb2_grpc: ModuleType) -> GrpcService:
        """Wrap the servicer of the one service a generated module pair defines."""
        (descriptor,) = pb2.DESCRIPTOR.services_by_name.values()
        return cls(descriptor, servicer, getattr(pb2_grpc, f"add_{descriptor.name}Servicer_to_server"))


@dataclass
class ServiceContext:
    """What a service's `build` function gets: its settings, the bus, and a place for
    background tasks and status details."""

    role: Role
    settings: Settings
    bus: Bus
    listen_addr: str
    started_at: float = field(default_factory=time.time)
    # Shown by `schedcp status` (InfoService.GetServiceInfo); services add their own entries.
    details: dict[str, str] = field(default_factory=dict)
    _tasks: list[asyncio.Task] = field(default_factory=list)
    _on_close: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run a background task for the life of the process; a crash is logged, not silent."""
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(_log_task_end)
        self._tasks.append(task)

    def on_close(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run `callback` at shutdown, after the server stopped and before NATS closes."""
        self._on_close.append(callback)

    def service_info(self) -> info_pb2.ServiceInfo:
        started = timestamp_pb2.Timestamp()
        started.FromSeconds(int(self.started_at))
        details = {"nats": "connected" if self.bus.connected else "reconnecting", **self.details}
        return info_pb2.ServiceInfo(
            role=self.role.value, version=__version__, host_id=self.settings.host_id,
            listen_addr=self.listen_addr, started_at=started, pid=os.getpid(), details=details,
        )

    async def close(self) -> None:
        await tasks.stop(self._tasks, f"{self.role.value} background tasks")
        for callback in reversed(self._on_close):
            await callback()


def _log_task_end(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s died", task.get_name(), exc_info=task.exception())


class _InfoServicer(info_pb2_grpc.InfoServiceServicer):
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    async def GetServiceInfo(self, request, context):
        return self._ctx.service_info()


Build = Callable[[ServiceContext], Awaitable[list[GrpcService]]]


def bind(server: grpc.aio.Server, role: Role, addr: str, files: tls.TlsFiles | None) -> str:
    """Listen on `addr` (over mutual TLS when `files` are given; without, only on loopback);
    return the address actually bound (port 0 picks a free port)."""
    host = split_address(addr)[0]
    if files is None and not is_loopback(host):
        raise StartupError(
            f"{addr_env_var(role)}={addr} is not a loopback address, and without TLS schedcp listens on "
            "loopback only: set SCHEDCP_TLS_DIR (`schedcp certs init` makes one) or listen on 127.0.0.1")
    credentials = tls.server_credentials(files) if files else None
    port = 0
    # Checked first so the answer is our one line rather than gRPC core's log.
    if port_free(*split_address(addr)):
        with contextlib.suppress(RuntimeError):  # lost a race for the port
            port = server.add_secure_port(addr, credentials) if credentials else server.add_insecure_port(addr)
    if port == 0:
        raise StartupError(
            f"cannot listen on {addr}: the port is taken or the address is not on this host; "
            f"stop what holds it (ss -ltnp) or set {addr_env_var(role)} to a free address"
        )
    return f"{addr.rsplit(':', 1)[0]}:{port}"


async def serve(role: Role, settings: Settings, build: Build) -> None:
    """Serve until SIGTERM/SIGINT. Raises StartupError/DependencyUnavailable before serving."""
    files = tls.files_for(settings, role.value)
    rpc.configure_clients(files, settings.stream_timeout_s)
    server = grpc.aio.server(
        interceptors=[RuntimeInterceptor(settings.rpc_timeout_s, check_access=files is not None,
                                         limiter=RateLimiter({limits.TUNE: settings.rate_limit_tune_per_min,
                                                              limits.VERIFY: settings.rate_limit_verify_per_min}))],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # gRPC's default SO_REUSEPORT would let a second copy of a service share the port
            # silently; one address, one process.
            ("grpc.so_reuseport", 0),
        ],
    )
    listen_addr = bind(server, role, settings.addr(role), files)
    bus = await Bus.connect(
        settings.nats_url, name=f"schedcp-{role.value}@{settings.host_id}",
        timeout_s=settings.nats_connect_timeout_s, replicas=settings.nats_replicas,
        **nats_auth.connect_options(settings),
    )
    ctx = ServiceContext(role=role, settings=settings, bus=bus, listen_addr=listen_addr)
    if settings.metrics_addr:
        ctx.details["metrics"] = f"http://{serve_metrics(settings.metrics_addr)}/metrics"
    try:
        await bus.ensure_topology()
        services = await build(ctx)
        health_servicer = await _register(server, ctx, services)
        await server.start()
        log.info("%s %s serving on %s (host %s, NATS %s); %s", role.value, __version__, listen_addr,
                 settings.host_id, settings.nats_url,
                 f"mutual TLS as {role.value!r} (CA {files.ca})" if files else
                 "TLS off: loopback only, every local caller is trusted (set SCHEDCP_TLS_DIR for more)")
        ctx.spawn(_heartbeat(ctx), "heartbeat")
        await _wait_for_stop_signal()
        log.info("stopping: no new calls, %.0fs for calls in flight", settings.shutdown_grace_s)
        await health_servicer.enter_graceful_shutdown()
        await server.stop(settings.shutdown_grace_s)
    finally:
        await ctx.close()
        await rpc.close_shared()
        await bus.close()
    log.info("stopped")


async def _register(server: grpc.aio.Server, ctx: ServiceContext, services: list[GrpcService]):
    info = GrpcService.of(_InfoServicer(ctx), info_pb2, info_pb2_grpc)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = []
    for svc in (*services, info):
        svc.add_to_server(svc.servicer, server)
        names.append(svc.descriptor.full_name)
    for name in ("", *names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (*names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    return health_servicer


async def _heartbeat(ctx: ServiceContext) -> None:
    subject = topology.subject(topology.Kind.HEARTBEAT, ctx.settings.host_id, ctx.role.value)
    while True:
        if ctx.bus.connected:
            try:
                await ctx.bus.publish(subject, ctx.service_info(), traced=False)
            except Exception as exc:  # a missed heartbeat is logged and retried next interval
                log.debug("heartbeat not sent: %s", exc)
        await asyncio.sleep(ctx.settings.heartbeat_interval_s)


async def _wait_for_stop_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def run_service(role: Role, build: Build) -> NoReturn:
    """Entry point of `python -m services.<role>`."""
    name = f"schedcp-{role.value}"
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"{name}: configuration error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    setup_logging(role.value, settings.log_level, settings.log_format)
    provider = setup_tracing(name, settings.host_id)
    code = 0
    try:
        asyncio.run(serve(role, settings, build))
    except (StartupError, DependencyUnavailable) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        code = EXIT_UNAVAILABLE
    except ConfigError as exc:
        print(f"{name}: configuration error: {exc}", file=sys.stderr)
        code = EXIT_CONFIG
    finally:
        provider.shutdown()
    sys.exit(code)
