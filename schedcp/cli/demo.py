"""The demo workload `make run` tunes: a latency probe (cyclictest, a SCHED_OTHER task waking
every millisecond) beside CPU batch work (stress-ng, four workers per CPU), both in a cgroup of
their own, so the host has something worth protecting and nothing else of the host is touched.

`DemoWorkload` starts them and, however it ends, kills them and removes the cgroup. The
processes stay in the caller's session: a session of their own would get an autogroup of its
own, and the kernel would then shield the probe from the batch by itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from schedcp.domain import procfs
from schedcp.runtime.errors import FailedPrecondition

HOGS_PER_CPU = 4
# Longest the workload may outlive its owner (stress-ng and cyclictest stop by themselves).
SAFETY_TIMEOUT_S = 600


def _cgroup_root() -> Path | None:
    """The unified (v2) hierarchy when this process may make a cgroup there. Not a v1 cpu
    hierarchy: its new cgroups have no real-time budget, and cyclictest refuses to start in one
    ("Unable to change scheduling policy")."""
    root = procfs.cgroup_mounts().v2_root
    if root and os.access(root, os.W_OK):
        return Path(root)
    return None


class DemoWorkload:
    """The probe and the batch, started on entry and gone (with their cgroup) on exit."""

    def __init__(self, hogs: int | None = None, probe_outside: bool = False) -> None:
        """`probe_outside`: the probe stays in the caller's cgroup, so the workload's cgroup holds
        the batch alone and matches it (bench/canary_aa.py aims policies at it so)."""
        self.hogs = hogs or HOGS_PER_CPU * (os.cpu_count() or 1)
        self.probe_outside = probe_outside
        self.cgroup: Path | None = None
        self._procs: list[subprocess.Popen] = []

    def __enter__(self) -> DemoWorkload:
        missing = [tool for tool in ("stress-ng", "cyclictest") if not shutil.which(tool)]
        if missing:
            raise FailedPrecondition(f"the demo workload needs {' and '.join(missing)} (Debian's stress-ng and "
                                     "rt-tests; `make install` installs them)")
        root = _cgroup_root()
        if root is not None:
            self.cgroup = root / f"schedcp-demo-{uuid.uuid4().hex[:8]}"
            self.cgroup.mkdir()
        try:
            self._start("cyclictest", "--policy=other", "--interval=1000", "--quiet", "--laptop",
                        f"--duration={SAFETY_TIMEOUT_S}", in_cgroup=not self.probe_outside)
            self._start("stress-ng", "--cpu", str(self.hogs), "--timeout", f"{SAFETY_TIMEOUT_S}s", "-q")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self, *argv: str, in_cgroup: bool = True) -> None:
        cgroup = self.cgroup if in_cgroup else None

        def join_cgroup() -> None:  # in the child, before exec: its children follow it
            if cgroup is not None:
                (cgroup / "cgroup.procs").write_text(str(os.getpid()))

        self._procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            process_group=0, preexec_fn=join_cgroup))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def __exit__(self, *exc: object) -> None:
        for proc in self._procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if self.cgroup is not None:
            self._remove_cgroup(self.cgroup)

    @staticmethod
    def _remove_cgroup(cgroup: Path) -> None:
        # Killed tasks leave the cgroup a moment after wait() returns for their group leader.
        deadline = time.monotonic() + 5
        while True:
            try:
                cgroup.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
