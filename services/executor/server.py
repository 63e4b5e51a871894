"""The executor's gRPC servicer (thin: the work is in the domain modules)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from schedcp.domain import sched_ext
from schedcp.domain.procfs import cpu_controller
from schedcp.runtime import tls
from schedcp.runtime.errors import FailedPrecondition
from schedcp.runtime.service import GrpcService, ServiceContext
from schedcp.toolchain.build import BuildError, Toolchain
from schedcp.v1 import executor_pb2, executor_pb2_grpc
from services.executor.deployments import EventLog, Executor
from services.executor.journal import Journal
from services.executor.native import CgroupTree, NativeBackend
from services.executor.sched_ext_backend import LocalLoaderHost, SchedExtBackend

log = logging.getLogger(__name__)


class ExecutorServicer(executor_pb2_grpc.ExecutorServiceServicer):
    def __init__(self, executor: Executor, host_id: str) -> None:
        self._executor = executor
        self._host_id = host_id

    async def Deploy(self, request, context):
        self._meant_for_this_host(request.host_id)
        async for event in self._executor.deploy(request, tls.caller(context)):
            yield event

    async def Rollback(self, request, context):
        self._meant_for_this_host(request.host_id)
        return await self._executor.rollback(request.reason, tls.caller(context))

    async def Status(self, request, context):
        self._meant_for_this_host(request.host_id)
        return self._executor.status()

    def _meant_for_this_host(self, host_id: str) -> None:
        if host_id and host_id != self._host_id:
            raise FailedPrecondition(f"this is the executor of {self._host_id}, the call was meant for {host_id} "
                                     "(a stale host registration?); nothing was done")

    async def History(self, request, context):
        return executor_pb2.HistoryResponse(events=self._executor.history(request.limit))


def sched_ext_backend(ctx: ServiceContext, state: Path) -> SchedExtBackend | None:
    """The sched_ext backend when this kernel has sched_ext and the loader can be built."""
    if not sched_ext.available(sched_ext.read_state()):
        ctx.details["sched_ext"] = "not in this kernel: native policies only"
        return None
    try:
        loader = prebuilt_loader(ctx.settings.loader_path) or Toolchain(ctx.settings.cache_dir).loader(static=False)
    except BuildError as exc:
        log.warning("sched_ext policies cannot be deployed here: %s", exc)
        ctx.details["sched_ext"] = f"loader unavailable: {exc}"
        return None
    ctx.details["sched_ext"] = f"loader {loader}"
    return SchedExtBackend(LocalLoaderHost(loader, state / "objects", sched_ext.host_kernel()))


def prebuilt_loader(path: str) -> Path | None:
    """SCHEDCP_LOADER_PATH, checked: a loader that cannot run is a clear error, not a failed deploy."""
    if not path:
        return None
    loader = Path(path)
    if not (loader.is_file() and os.access(loader, os.X_OK)):
        raise BuildError(f"SCHEDCP_LOADER_PATH={path} is not an executable file; fix it, or unset it to build the "
                         "loader in the cache dir")
    return loader


async def build(ctx: ServiceContext) -> list[GrpcService]:
    state = ctx.settings.data_dir / "executor"
    root, version = cpu_controller()
    native = NativeBackend(Journal(state / "journal.jsonl"), CgroupTree(root, version) if root else None)
    scx = await asyncio.to_thread(sched_ext_backend, ctx, state)
    executor = Executor(ctx.settings, ctx.bus, native, EventLog(state / "events.jsonl"), scx)
    restored = await executor.recover()
    ctx.details["restored_at_start"] = str(restored)
    ctx.details["cpu_controller"] = f"cgroup v{version} at {root}" if root else "none"
    ctx.on_close(executor.close)
    return [GrpcService.of(ExecutorServicer(executor, ctx.settings.host_id), executor_pb2, executor_pb2_grpc)]
