"""Where a scenario's programs run. The suite drives a scenario through five steps (start,
warm, cool, measure, stop) and talks to schedcp over gRPC itself; the programs run either on this
host (`LocalWorkload`) or inside a sched_ext VM, where the guest worker (bench/scenarios/guest.py)
runs a `LocalWorkload` for the suite on the host (`backends.RemoteWorkload`, one JSON line a
step). This module runs in the VM too: it imports nothing of the harness.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from bench.scenarios.programs import Processes
from bench.scenarios.suite import SCENARIOS, Env

# How long the warm load runs before a profile or a decision cycle looks at it.
WARM_S = 4.0


class Workload(Protocol):
    def start(self) -> None:
        """Bring up what runs throughout (servers)."""

    def warm(self, with_batch: bool) -> None:
        """Start the load schedcp observes (with the CPU batch beside it), and let it settle."""

    def cool(self) -> None:
        """Stop the warm load."""

    def measure(self, alone: bool) -> dict:
        """One measurement; `alone`: without the batch (the floor a protected service can reach)."""

    def stop(self) -> None:
        """Stop everything the scenario started."""


@contextlib.contextmanager
def warmed(workload: Workload, with_batch: bool) -> Iterator[None]:
    workload.warm(with_batch)
    try:
        yield
    finally:
        workload.cool()


class LocalWorkload:
    """A scenario's programs on this machine."""

    def __init__(self, name: str, tmp: Path, seconds: float, system: float = 1.0, compute: float = 1.0) -> None:
        """`system`, `compute`: this machine's speeds against the host the loads were sized on."""
        self.scenario = SCENARIOS[name]
        self.env = Env(tmp, seconds, speed=system, compute_speed=compute)
        self.env.tmp.mkdir(parents=True, exist_ok=True)
        self._warm: Processes | None = None

    def start(self) -> None:
        self.scenario.start(self.env)

    def warm(self, with_batch: bool) -> None:
        self.cool()
        self._warm = Processes()
        if with_batch:
            self.scenario.batch.start(self.env, self._warm, 900, "warm")
        self.scenario.warm(self.env, self._warm)
        time.sleep(WARM_S)

    def cool(self) -> None:
        if self._warm is not None:
            self._warm.stop()
            self._warm = None

    def measure(self, alone: bool) -> dict:
        self.env.state["alone"] = alone
        try:
            return self.scenario.measure(self.env)
        finally:
            self.env.state["alone"] = False

    def stop(self) -> None:
        self.cool()
        self.env.procs.stop()
