"""The scenario suite's VM backend without the VM: the guest worker (bench/scenarios/guest.py)
on a real TCP port, driven by the suite's RemoteWorkload as it is through the VM's forward, with
a real program (hackbench, from rt-tests); and the bench files the VM is given are enough for the
worker to start."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from bench.scenarios import backends, guest
from bench.scenarios.backends import RemoteWorkload, WorkerError, ask
from schedcp.runtime.net import free_port

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def worker_port(tmp_path):
    port = free_port()
    worker = guest.Worker(tmp_path)
    threading.Thread(target=guest.serve, args=(worker, port), daemon=True).start()
    for _ in range(100):
        try:
            ask(port, {"cmd": "work"}, timeout_s=10)
            break
        except OSError:
            threading.Event().wait(0.05)
    yield port
    if worker.workload is not None:
        worker.workload.stop()


def _hackbench_pids() -> set[int]:
    """hackbench processes still alive. A killed one's parent may be gone too, and then it stays
    a zombie until init reaps it: dead, and using nothing."""
    found = subprocess.run(["ps", "-C", "hackbench", "-o", "pid=,stat="], capture_output=True, text=True).stdout
    return {int(pid) for pid, stat in (line.split() for line in found.splitlines()) if not stat.startswith("Z")}


def _seen(probe, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while not probe():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_the_suite_runs_a_scenario_in_the_worker_step_by_step(worker_port):
    before = _hackbench_pids()
    # A slow machine's speed: the worker scales hackbench's loops down with it (2000 -> 100).
    workload = RemoteWorkload(worker_port, "hackbench", seconds=1, speed={"system": 0.05, "compute": 0.2})
    workload.start()
    workload.warm(with_batch=False)
    # The warm load is hackbench in a loop: between two runs none may be alive for a moment.
    assert _seen(lambda: _hackbench_pids() - before), "the warm load runs while schedcp would observe it"
    workload.cool()
    result = workload.measure(alone=False)
    # hackbench's own numbers: 4 groups x 20 senders x 20 receivers x 100 loops in time_s.
    assert result["time_s"] > 0
    assert result["messages_per_s"] == pytest.approx(4 * 20 * 20 * 100 / result["time_s"])
    workload.stop()
    assert not _hackbench_pids() - before, "stop leaves none of the scenario's processes behind"


def test_the_worker_answers_a_step_it_cannot_take_with_an_error_and_serves_on(worker_port):
    with pytest.raises(WorkerError, match="before any scenario was opened"):
        ask(worker_port, {"cmd": "measure"}, timeout_s=10)
    with pytest.raises(WorkerError, match="unknown scenario 'nope'"):
        ask(worker_port, {"cmd": "open", "scenario": "nope", "seconds": 1}, timeout_s=10)
    assert set(ask(worker_port, {"cmd": "work"}, timeout_s=30)["seconds"]) == {"system", "compute"}


def test_the_files_given_to_the_vm_are_enough_to_start_the_worker(tmp_path):
    for path, content in backends.guest().files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(content)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / backends.GUEST_BENCH)}
    # Outside the checkout, so that only the shipped files can be imported.
    done = subprocess.run([sys.executable, "-c", "import bench.scenarios.guest as g; print(g.__file__)"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(str(tmp_path))
