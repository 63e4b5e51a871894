"""The sched_ext backend: one verified scheduler at a time, run and supervised through
schedcp-loader (loader/schedcp-loader.c), which holds it attached and reports how it ended.

The scheduler lives exactly as long as its loader: stopping the loader (or the executor dying)
hands every task back to the fair class. An ejection by the kernel (watchdog stall, runtime
error) shows as the loader's `exit` record with `by: kernel`, which the loader notices within
50 ms from sysfs; the executor then restores the last known good policy.

Where the loader runs is a LoaderHost: this host (LocalLoaderHost), or in tests a sandbox VM
whose kernel has sched_ext.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Protocol

from schedcp.domain import params
from schedcp.runtime.errors import FailedPrecondition
from schedcp.v1 import policy_pb2, verdict_pb2

log = logging.getLogger(__name__)
ENABLE_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


class LoaderHost(Protocol):
    """Runs loaders and hands back their JSON records, in order."""

    def kernel(self) -> verdict_pb2.TargetKernel: ...

    async def start(self, name: str, obj: bytes, args: list[str]) -> None: ...

    async def record(self, name: str, timeout_s: float) -> dict | None: ...

    async def stop(self, name: str) -> None: ...


class LocalLoaderHost:
    """schedcp-loader as a child process of the executor, on this host."""

    def __init__(self, loader: Path, workdir: Path, kernel: verdict_pb2.TargetKernel) -> None:
        self._loader = loader
        self._workdir = workdir
        self._kernel = kernel
        self._procs: dict[str, asyncio.subprocess.Process] = {}

    def kernel(self) -> verdict_pb2.TargetKernel:
        return self._kernel

    async def start(self, name: str, obj: bytes, args: list[str]) -> None:
        self._workdir.mkdir(parents=True, exist_ok=True)
        path = self._workdir / f"{name}.bpf.o"
        path.write_bytes(obj)
        self._procs[name] = await asyncio.create_subprocess_exec(
            str(self._loader), str(path), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)

    async def record(self, name: str, timeout_s: float) -> dict | None:
        proc = self._procs[name]
        while True:
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), timeout_s)
            except TimeoutError:
                return None
            if not line:
                return {"event": "loader_exit", "status": await proc.wait()}
            with contextlib.suppress(json.JSONDecodeError):
                return json.loads(line)

    async def stop(self, name: str) -> None:
        """SIGTERM (the loader detaches the scheduler), SIGKILL if it lingers; its records stay
        readable until the end."""
        proc = self._procs.get(name)
        if proc is None:
            return
        if proc.returncode is None:
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()


class SchedExtBackend:
    def __init__(self, host: LoaderHost) -> None:
        self._host = host
        self._running = ""
        # How the last scheduler ended on its own, once wait_for_ejection saw it.
        self.last_exit: dict = {}

    @property
    def active(self) -> bool:
        return bool(self._running)

    def kernel(self) -> verdict_pb2.TargetKernel:
        return self._host.kernel()

    async def apply(self, deployment_id: str, artifact: policy_pb2.PolicyArtifact) -> str:
        """Start the artifact's scheduler; the ops name once the kernel says it is enabled."""
        if self._running:
            raise FailedPrecondition(f"scheduler {self._running} is still attached; revert it first")
        name = f"scx-{deployment_id}"
        await self._host.start(name, artifact.sched_ext.object, loader_args(artifact))
        while True:
            record = await self._host.record(name, ENABLE_TIMEOUT_S)
            event = (record or {}).get("event")
            if event == "enabled":
                break
            if event in ("error", "loader_exit", None):
                await self._host.stop(name)
                why = record.get("error") if record else f"no report from the loader in {ENABLE_TIMEOUT_S:g} s"
                raise FailedPrecondition(f"the scheduler did not start: {why}")
        self._running = name
        ops = record.get("ops", "")
        if artifact.sched_ext.ops_name and ops != artifact.sched_ext.ops_name:
            await self.revert()
            raise FailedPrecondition(f"the kernel shows ops {ops!r}, the artifact declares "
                                     f"{artifact.sched_ext.ops_name!r}")
        return ops

    async def wait_for_ejection(self) -> dict:
        """Returns when the running scheduler goes without being asked: the loader's exit record."""
        name = self._running
        while True:
            record = await self._host.record(name, 3600.0)
            if record is None:
                continue
            if record.get("event") == "exit" and record.get("by") == "kernel":
                self._running, self.last_exit = "", record
                return record
            if record.get("event") == "loader_exit":
                self._running = ""
                self.last_exit = {"event": "exit", "by": "loader",
                                  "reason": f"the loader exited ({record.get('status')})"}
                return self.last_exit

    async def revert(self) -> None:
        """Stop the running scheduler and wait for its loader to go (the kernel is then back on
        the fair class)."""
        name, self._running = self._running, ""
        if not name:
            return
        await self._host.stop(name)
        while (record := await self._host.record(name, STOP_TIMEOUT_S)) is not None:
            if record.get("event") == "loader_exit":
                return
        log.warning("the loader of %s did not report its exit within %g s", name, STOP_TIMEOUT_S)


def loader_args(artifact: policy_pb2.PolicyArtifact) -> list[str]:
    args = []
    for key, value in sorted(artifact.parameters.items()):
        args += ["--param", f"{key}={params.text(value)}"]
    return args
