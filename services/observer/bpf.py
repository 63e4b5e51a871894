"""The observer's BPF probes (runqlat.bpf.c) and the reader of their per-thread counters.

The probes are loaded through BCC where it can run, and otherwise from an object compiled ahead
of time by schedcp-loader (prebuilt.py; hosts without a compiler, like the fleet's guests).
BCC is Debian's python3-bpfcc (the PyPI package named `bcc` is something else). It compiles
at start-up against kernel headers; hosts without headers for their kernel (like this
project's CI) use a Debian header package that `make` extracts into the virtualenv. That
works because the program reads tracepoint fields only (see the comment in the C file).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from services.observer.bpf_maps import SLOTS, STRIDE, WORD, BpfUnavailable, StatsMap
from services.observer.prebuilt import LoadedProbes

log = logging.getLogger(__name__)

PROGRAM = Path(__file__).with_name("runqlat.bpf.c")
DEBIAN_BCC = Path("/usr/lib/python3/dist-packages/bcc")
TRACEFS = Path("/sys/kernel/tracing")
# Where scripts/bootstrap.sh puts extracted headers: inside the virtualenv.
BUNDLED_HEADERS = Path(sys.prefix) / "share" / "schedcp" / "kernel-headers"
# Exited threads' counters stay this long, so windows that began before the exit (up to the
# longest Measure, 600 s) still see the thread's last counts; then they are removed.
DEAD_THREAD_GRACE_S = 660.0
PRUNE_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class BpfCounters:
    """Cumulative counters of one thread from the BPF program."""

    tid: int
    tgid: int = 0
    runq_slots: Sequence[int] = ()  # cumulative log2 ns buckets (histogram.SLOTS of them)
    runq_delay_ns: int = 0
    runs: int = 0
    # The waits that began with a wakeup: log2 ns buckets, their sum and count.
    wakeup_slots: Sequence[int] = ()
    wakeup_delay_ns: int = 0
    wakeup_runs: int = 0
    wakeups: int = 0
    cpu_ns: int = 0
    voluntary: int = 0
    involuntary: int = 0
    # Wakeup to the next block (runqlat.bpf.c): log2 ns buckets, their sum and count.
    response_slots: Sequence[int] = ()
    response_ns: int = 0
    responses: int = 0
    comm: str = ""  # the thread's name when it was last switched out
    # When it was created and when it exited (CLOCK_MONOTONIC ns, time.monotonic_ns's clock);
    # 0: before the program was loaded, or not yet.
    born_ns: int = 0
    exited_ns: int = 0


def _comm(low: int, high: int) -> str:
    """A 16-byte task name from the two little-endian words that hold it."""
    raw = low.to_bytes(8, "little") + high.to_bytes(8, "little")
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def _import_bcc():
    try:
        import bcc  # the virtualenv links Debian's package in (scripts/bootstrap.sh)

        return bcc
    except ImportError:
        pass
    if not (DEBIAN_BCC / "__init__.py").exists():
        raise BpfUnavailable("BCC is not installed (Debian package python3-bpfcc; `make install` adds it)")
    # Import Debian's package alone: putting all of dist-packages on sys.path would let
    # Debian's other modules shadow the virtualenv's.
    spec = importlib.util.spec_from_file_location(
        "bcc", DEBIAN_BCC / "__init__.py", submodule_search_locations=[str(DEBIAN_BCC)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["bcc"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop("bcc", None)
        raise BpfUnavailable(f"BCC is installed but does not load: {exc}") from exc
    return module


def kernel_headers() -> Path | None:
    """A header tree BCC can compile against, in BCC's own order of preference."""
    if os.environ.get("BCC_KERNEL_SOURCE"):
        return Path(os.environ["BCC_KERNEL_SOURCE"])
    for candidate in (Path("/lib/modules") / platform.release() / "build", BUNDLED_HEADERS):
        if (candidate / "include" / "linux" / "kconfig.h").exists():
            return candidate
    return None


def _ensure_tracefs() -> None:
    """BCC reads tracepoint formats from tracefs; mount it where systemd would if it is missing."""
    if (TRACEFS / "events").exists() or Path("/sys/kernel/debug/tracing/events").exists():
        return
    result = subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], capture_output=True, text=True)
    if result.returncode != 0:
        raise BpfUnavailable(f"tracefs is not mounted and mounting it failed: {result.stderr.strip()}")
    log.info("mounted tracefs at %s (BCC reads tracepoint formats there)", TRACEFS)


def check_privileges() -> None:
    if os.geteuid() != 0:
        raise BpfUnavailable("BPF sampling needs root (or CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN for BCC)")


class BccProbes:
    """runqlat.bpf.c compiled and attached by BCC in this process."""

    def __init__(self) -> None:
        check_privileges()
        bcc = _import_bcc()
        headers = kernel_headers()
        if headers is None:
            raise BpfUnavailable(
                f"no kernel headers for BCC: none in /lib/modules/{platform.release()}/build, none bundled "
                f"in {BUNDLED_HEADERS} (`make install` fetches them), and BCC_KERNEL_SOURCE is not set")
        os.environ.setdefault("BCC_KERNEL_SOURCE", str(headers))
        _ensure_tracefs()
        try:
            # -Wno-visibility: BCC declares each tracepoint's args struct inside the probe macro.
            self._bpf = bcc.BPF(text=PROGRAM.read_bytes(), cflags=["-Wno-visibility"])
        except Exception as exc:
            raise BpfUnavailable(f"BCC could not compile or attach {PROGRAM.name} against {headers}: {exc}") from exc
        self.map_fd = self._bpf[b"stats"].map_fd
        self.description = f"BCC (headers: {headers})"

    def close(self) -> None:
        self._bpf.cleanup()


class BpfSampler:
    """The loaded probes and a reader for their per-thread counters. `close()` detaches them.

    Loaded by BCC when it can run here; otherwise, given a prebuilt object and a loader, by the
    loader (prebuilt.LoadedProbes). The reason BCC could not is kept in `fallback_reason`."""

    def __init__(self, prebuilt: Path | None = None, loader: Path | None = None) -> None:
        started = time.monotonic()
        self.fallback_reason = ""
        try:
            self._probes = BccProbes()
        except BpfUnavailable as exc:
            if prebuilt is None or loader is None:
                raise
            check_privileges()
            _ensure_tracefs()
            try:
                self._probes = LoadedProbes(prebuilt, loader)
            except BpfUnavailable as prebuilt_failed:
                raise BpfUnavailable(f"{exc}; and {prebuilt_failed}") from prebuilt_failed
            self.fallback_reason = str(exc)
        try:
            self._map = StatsMap(self._probes.map_fd)
        except BpfUnavailable:
            self._probes.close()
            raise
        self._lock = threading.Lock()
        self._dead_since: dict[int, float] = {}
        self._previous: dict[int, BpfCounters] = {}
        self._closed = False
        self._last_prune = time.monotonic()
        log.info("BPF probes attached to the sched_wakeup(_new), sched_switch, sched_stat_runtime and "
                 "sched_process_exit tracepoints in %.2f s: %s%s", time.monotonic() - started,
                 self._probes.description, f" (BCC: {self.fallback_reason})" if self.fallback_reason else "")

    @property
    def description(self) -> str:
        return self._probes.description

    def read(self) -> dict[int, BpfCounters]:
        """Every thread's cumulative counters (CPU time up to the kernel's last update of it, at
        most a tick ago). Safe to call from several threads; after close() it returns the last
        counters read."""
        with self._lock:
            if self._closed:
                return dict(self._previous)
            counters = self._read_stats()
            if time.monotonic() - self._last_prune >= PRUNE_EVERY_S:
                self._prune(counters)
            self._previous = counters
            return dict(counters)

    def _read_stats(self) -> dict[int, BpfCounters]:
        total = self._map.lookup_all()
        words = self._map.words(total)
        field, stride = WORD, STRIDE
        out = {}
        previous = self._previous
        for i, tid in enumerate(self._map.keys[:total]):
            at = i * stride
            runs, wakeups = words[at + field["runs"]], words[at + field["wakeups"]]
            cpu_ns, exited_ns = words[at + field["cpu_ns"]], words[at + field["exited_ns"]]
            seen = previous.get(tid)
            # Most threads did nothing since the last read: keep their previous record.
            if seen is not None and seen.runs == runs and seen.wakeups == wakeups and seen.cpu_ns == cpu_ns \
                    and seen.exited_ns == exited_ns:
                out[tid] = seen
                continue
            first_slot, first_response = at + field["runq_slots"], at + field["response_slots"]
            first_wakeup = at + field["wakeup_slots"]
            out[tid] = BpfCounters(
                tid=tid, tgid=words[at + field["tgid"]] & 0xFFFFFFFF, runq_slots=words[first_slot:first_slot + SLOTS],
                runq_delay_ns=words[at + field["runq_delay_ns"]], runs=runs, wakeups=wakeups, cpu_ns=cpu_ns,
                voluntary=words[at + field["voluntary"]], involuntary=words[at + field["involuntary"]],
                response_slots=words[first_response:first_response + SLOTS],
                response_ns=words[at + field["response_ns"]], responses=words[at + field["responses"]],
                comm=_comm(words[at + field["comm"]], words[at + field["comm"] + 1]),
                born_ns=words[at + field["born_ns"]], exited_ns=exited_ns,
                wakeup_slots=words[first_wakeup:first_wakeup + SLOTS],
                wakeup_delay_ns=words[at + field["wakeup_delay_ns"]], wakeup_runs=words[at + field["wakeup_runs"]],
            )
        return out

    def _prune(self, counters: dict[int, BpfCounters]) -> None:
        now = self._last_prune = time.monotonic()
        expired = []
        for tid in counters:
            if os.path.exists(f"/proc/{tid}"):
                self._dead_since.pop(tid, None)
            elif now - self._dead_since.setdefault(tid, now) >= DEAD_THREAD_GRACE_S:
                expired.append(tid)
        for tid in expired:
            self._dead_since.pop(tid, None)
            self._map.delete(tid)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._probes.close()
