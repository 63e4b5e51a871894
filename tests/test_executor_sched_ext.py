"""The executor's sched_ext path against a real sched_ext kernel: the sandbox VM runs the
loader (this host's kernel has no sched_ext), driven by the executor's own backend through the
VM's agent. A verified library policy is deployed and enabled; then a starving scheduler (its
verdict signed as if a verifier had missed the problem) is deployed, ejected by the kernel's
watchdog, reported, and the executor puts the previous policy back; Rollback leaves the
kernel on its fair class."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from harness.agent import AgentVm
from schedcp.domain import policies
from schedcp.runtime.bus import Bus
from schedcp.runtime.config import load_settings
from schedcp.toolchain.build import Toolchain
from schedcp.v1 import deployment_pb2, executor_pb2, policy_pb2, verdict_pb2
from services.executor.deployments import EventLog, Executor
from services.executor.journal import Journal
from services.executor.native import NativeBackend
from services.executor.sched_ext_backend import SchedExtBackend
from services.verifier.signing import SigningKey
from tests.test_executor import sign

S = deployment_pb2
STARVE = Path(__file__).parent / "sched_ext" / "starve.bpf.c"


class VmLoaderHost:
    """The LoaderHost of a sandbox VM: loaders run inside it, their records come back over its agent."""

    def __init__(self, vm: AgentVm, kernel: verdict_pb2.TargetKernel) -> None:
        self._vm = vm
        self._kernel = kernel

    def kernel(self) -> verdict_pb2.TargetKernel:
        return self._kernel

    async def start(self, name: str, obj: bytes, args: list[str]) -> None:
        await asyncio.to_thread(self._vm.put, name, obj)
        self._vm.send(f"start {name} {' '.join(args)}")

    async def record(self, name: str, timeout_s: float) -> dict | None:
        # Short waits in a thread, so a cancelled watcher leaves no thread blocked for long.
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = await asyncio.to_thread(self._vm.expect, name, lambda text: text.startswith("{"), 0.5)
            if line:
                return json.loads(line)
        return None

    async def stop(self, name: str) -> None:
        self._vm.send(f"stop {name}")


def artifact(name: str, source: Path, ops_name: str, toolchain: Toolchain, out: Path) -> policy_pb2.PolicyArtifact:
    obj = toolchain.compile_policy(source, toolchain.kernel(), out_dir=out)
    program = policy_pb2.SchedExtProgram(source=source.read_text(), object=obj.read_bytes(), ops_name=ops_name)
    return policy_pb2.PolicyArtifact(name=name, kind=policy_pb2.POLICY_KIND_SCHED_EXT, sched_ext=program)


@pytest.mark.timeout(600)
def test_deploy_eject_and_restore_in_a_sched_ext_vm(nats_server, tmp_path):
    toolchain = Toolchain()
    kernel = toolchain.kernel()
    vm_kernel = verdict_pb2.TargetKernel(release=kernel.release, btf_sha256=kernel.btf_sha256, arch="x86_64")
    data = tmp_path / "data"
    key = SigningKey.load_or_create(data / "verifier" / "ed25519.pem")
    fifo_meta = policies.load(policies.LIBRARY / "sched_ext" / "fifo.toml")
    fifo = artifact("fifo", policies.source_of(fifo_meta), fifo_meta.ops_name, toolchain, tmp_path / "fifo")
    starve = artifact("starve", STARVE, "schedcp_test_starve", toolchain, tmp_path / "starve")
    settings = load_settings(data_dir=data, nats_url=nats_server.url, host_id="vmhost")

    async def scenario(vm: AgentVm) -> None:
        bus = await Bus.connect(nats_server.url, "test-executor")
        await bus.ensure_topology()
        executor = Executor(settings, bus, NativeBackend(Journal(data / "journal.jsonl"), None),
                            EventLog(data / "events.jsonl"), SchedExtBackend(VmLoaderHost(vm, vm_kernel)))
        try:
            first = [e async for e in executor.deploy(executor_pb2.DeployRequest(
                artifact=fifo, verdict=sign(key, fifo, kernel=vm_kernel)))]
            assert first[-1].deployment.state == S.DEPLOYMENT_STATE_KEPT, [e.message for e in first]
            assert "schedcp_fifo enabled" in first[-2].message
            assert vm.state() == ("enabled", "schedcp_fifo")

            second = [e async for e in executor.deploy(executor_pb2.DeployRequest(
                artifact=starve, verdict=sign(key, starve, kernel=vm_kernel)))]
            assert second[-1].deployment.state == S.DEPLOYMENT_STATE_KEPT
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and executor.status().current.policy_name != "fifo":
                await asyncio.sleep(0.5)
            history = executor.history(50)
            ejected = [e for e in history if e.deployment.state == S.DEPLOYMENT_STATE_EJECTED]
            assert ejected and "error_stall" in ejected[0].message, [e.message for e in history]
            assert history[-1].message == "restored fifo (the last known good)"
            assert vm.state() == ("enabled", "schedcp_fifo")

            rolled = await executor.rollback("end of test")
            assert "the host runs its defaults" in rolled.message
            assert vm.state()[0] == "disabled"
        finally:
            await executor.close()
            await bus.close()

    with AgentVm(kernel, toolchain) as vm:
        asyncio.run(scenario(vm))


@pytest.mark.skipif(Path("/sys/kernel/sched_ext").exists(),
                    reason="this host has sched_ext: the test must not load a scheduler on the host")
def test_the_local_loader_path_reports_why_this_kernel_refuses(tmp_path):
    from schedcp.domain import sched_ext
    from schedcp.runtime.errors import FailedPrecondition
    from services.executor.sched_ext_backend import LocalLoaderHost

    toolchain = Toolchain()
    meta = policies.load(policies.LIBRARY / "sched_ext" / "fifo.toml")
    fifo = artifact("fifo", policies.source_of(meta), meta.ops_name, toolchain, tmp_path / "obj")
    backend = SchedExtBackend(LocalLoaderHost(toolchain.loader(static=False), tmp_path / "run",
                                              sched_ext.host_kernel()))
    with pytest.raises(FailedPrecondition, match="did not start: the kernel refused the program"):
        asyncio.run(backend.apply("d1", fifo))
    assert not backend.active
