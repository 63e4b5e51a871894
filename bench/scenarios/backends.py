"""Where the suite runs a scenario, with the schedcp it talks to:

- `local_backend`: this host (the native backend: EEVDF, nice, cgroups), a local stack;
- `vm_backend`: a sched_ext kernel in a qemu VM booted from the fleet's host image with the
  suite's programs added (the `scenarios` variant). The central services (planner, verifier,
  learner) run here as in a fleet; the VM runs its own observer and executor, and the suite's
  guest worker runs the scenario's programs there. The suite measures the VM's CPU speed against
  this host's and scales paced loads and job sizes by it (emulation is several times slower).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.scenarios import arms
from bench.scenarios.guest import fixed_work_s
from bench.scenarios.workload import LocalWorkload, Workload
from bench.stack import running_stack
from harness.fleet import Fleet, FleetError, Guest, ask_line
from schedcp.runtime.config import Settings

BENCH = Path(__file__).resolve().parent.parent
GUEST_PORT = 7001
GUEST_BENCH = "opt/bench"
VM_HOST = "scenario-vm"
VM_MEMORY_MB = 3072
WORKER_START_S = 180.0
SPEED_RUNS = 5
# trixie's names (nginx-light is gone there); rt-tests and stress-ng are in every host image.
VM_PACKAGES = ("nginx", "wrk", "redis-server", "redis-tools", "postgresql", "rt-app", "xz-utils", "pigz")
# Scenarios whose programs do not fit the VM, and why (the report says so).
NOT_IN_VM = {
    "build": "compiling libbpf under emulation takes minutes a run, times every arm and repetition; and the "
             "compiler would double the image",
    "kv_build": "its batch is the same build",
}


@dataclass
class Backend:
    """The settings the suite's gRPC calls use, where it runs, and how to run a scenario there."""

    settings: Settings
    where: str
    workload: Callable[[str, float], Workload]


@contextlib.contextmanager
def local_backend() -> Iterator[Backend]:
    with running_stack(SCHEDCP_GOAL_PROVIDER="rules") as (_, _, settings), \
            tempfile.TemporaryDirectory(prefix="schedcp-scenarios-") as tmp:
        yield Backend(settings, "this host (native)",
                      lambda name, seconds: LocalWorkload(name, Path(tmp) / name, seconds))


def guest() -> Guest:
    """The VM's extras: the suite's programs, pyyaml, the bench package, the worker as workload."""
    files = {f"{GUEST_BENCH}/bench/{path.relative_to(BENCH)}": path.read_bytes()
             for path in [BENCH / "__init__.py", *sorted((BENCH / "scenarios").glob("*.py"))]}
    worker = ("env", f"PYTHONPATH=/{GUEST_BENCH}", "python3", "-m", "bench.scenarios.guest", str(GUEST_PORT))
    return Guest(image_name="scenarios", packages=VM_PACKAGES, requirements=("pyyaml",), workload=(worker,),
                 files=files, extra_ports={"scenarios": GUEST_PORT})


@contextlib.contextmanager
def vm_backend(progress: Callable[[str], None]) -> Iterator[Backend]:
    work = Path(tempfile.mkdtemp(prefix="schedcp-scenarios-vm-"))
    fleet = Fleet(work, [VM_HOST], memory_mb=VM_MEMORY_MB, progress=progress, guest=guest())
    asyncio.run(fleet.__aenter__())
    failed = True
    try:
        host = fleet.hosts[0]
        host.ask("workload")
        port = host.ports["scenarios"]
        speed = _relative_speed(port)
        progress(f"{VM_HOST}: the scenario worker is up; the VM runs system work at {speed['system']:.2f}x and "
                 f"compute at {speed['compute']:.2f}x this host's speed")
        settings = fleet.settings.model_copy(update={"host_id": host.name, "observer_addr": host.observer_addr,
                                                     "executor_addr": host.executor_addr})
        kernel = arms.host_facts(settings).kernel_release
        yield Backend(settings, f"a sched_ext VM ({kernel}, qemu TCG, 2 vCPUs; {speed['system']:.2f}x this host's "
                                f"speed at system work and {speed['compute']:.2f}x at compute, loads scaled by them)",
                      lambda name, seconds: RemoteWorkload(port, name, seconds, speed))
        failed = False
    finally:
        _save_worker_log(fleet, work)
        asyncio.run(fleet.__aexit__())
        if failed:
            progress(f"the VM's consoles and service logs are kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _save_worker_log(fleet: Fleet, work: Path) -> None:
    """The worker's log, beside the services' (the VM's disk goes with it)."""
    host = fleet.hosts[0]
    with contextlib.suppress(OSError, FleetError, ValueError):
        (work / f"{host.name}.worker.log").write_text(host.ask("log", role="workload-0", lines=100_000)["log"])


def _relative_speed(port: int) -> dict[str, float]:
    """The VM's speed over this host's for the same fixed work, of each kind: the fastest of
    several runs on each side, alternating (other work on this machine slows both, and the
    fastest run is the least disturbed)."""
    _wait_for_worker(port)
    here, there = [], []
    for _ in range(SPEED_RUNS):
        here.append(fixed_work_s())
        there.append(ask(port, {"cmd": "work"}, timeout_s=120)["seconds"])
    return {kind: min(r[kind] for r in here) / min(r[kind] for r in there) for kind in here[0]}


def _wait_for_worker(port: int) -> None:
    """Until the worker answers (the agent starts it after the services)."""
    deadline = time.monotonic() + WORKER_START_S
    while True:
        try:
            ask(port, {"cmd": "work"}, timeout_s=120)
            return
        except (OSError, WorkerError):
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


class WorkerError(RuntimeError):
    """The guest worker answered a step with an error (its message, from inside the VM)."""


def ask(port: int, request: dict, timeout_s: float) -> dict:
    """One request to the guest worker on this machine's forward of its port; its answer."""
    answer = ask_line(port, request, timeout_s)
    if answer is None:
        raise WorkerError(f"the guest worker on port {port} closed the connection")
    if "error" in answer:
        raise WorkerError(answer["error"])
    return answer


class RemoteWorkload:
    """A scenario's programs in a VM, driven through the guest worker's forwarded port."""

    def __init__(self, port: int, name: str, seconds: float, speed: dict[str, float]) -> None:
        self.port = port
        self.seconds = seconds
        self._ask("open", scenario=name, seconds=seconds, speed=speed)

    def _ask(self, cmd: str, **args) -> dict:
        # A step's own time, with room for emulation: a measurement takes its window, a
        # run-to-completion scenario its jobs, starting PostgreSQL its initdb.
        return ask(self.port, {"cmd": cmd, **args}, timeout_s=900 + 10 * self.seconds)

    def start(self) -> None:
        self._ask("start")

    def warm(self, with_batch: bool) -> None:
        self._ask("warm", with_batch=with_batch)

    def cool(self) -> None:
        self._ask("cool")

    def measure(self, alone: bool) -> dict:
        return self._ask("measure", alone=alone)["result"]

    def stop(self) -> None:
        self._ask("stop")
