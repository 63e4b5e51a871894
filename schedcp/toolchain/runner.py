"""Boot the sandbox micro-VM with a test plan and read structured results from its console.

A plan is a list of steps, each a shell snippet run inside the VM in order. Everything a
step prints goes to the serial console after a `@@step ID` marker; lines that are JSON
objects (the loader's and the probes' reports) become the step's records, the rest its log
(kernel messages, the verifier log). The VM has a hard timeout.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from schedcp.toolchain import initramfs
from schedcp.toolchain.build import BuildError, Kernel, Toolchain

log = logging.getLogger(__name__)
QEMU = "qemu-system-x86_64"
# The default `pc` machine: `-M microvm` hangs without acpi=on with this kernel (PLATFORM.md).
VCPUS = 2
QEMU_ARGS = ["-cpu", "max", "-smp", str(VCPUS), "-m", "1024", "-nographic", "-no-reboot", "-nodefaults",
             "-serial", "stdio"]
# qemu's instruction counting for the guest's clock (`run(icount=ICOUNT)`): 2^3 ns of guest time
# per instruction, an idle guest jumping to its next timer. It would make guest time follow the
# guest's own work instead of the host's clock (a starved qemu slows down instead of seeing time
# jump, which made the sched_ext watchdog eject sound schedulers), but it is NOT the default:
# under it the guest often livelocks after a scheduler's runtime-error ejection (4 of 9 corpus
# boots; 3 of 4 boots of kfunc_wrong_op + missing_dsq, 1 of 4 with sleep=on, 1 of 8 without
# icount). Decision 35: the verifier guards against a starved run with DYN009 instead.
# `shift=auto` does not help: it speeds the guest's clock up after a stall to catch up, and the
# watchdog fired all the same.
ICOUNT = "shift=3,sleep=off"
# How often qemu's CPU time is sampled while it runs.
SAMPLE_S = 0.1
# A VM's timeout is extended by the time the host kept qemu waiting to run, up to this many
# times the timeout: a starved guest is slower, not stuck (under icount a 16-candidate boot
# needs ~57 s of a CPU, and a host giving qemu 15 % of one takes it past 360 s).
WAIT_ALLOWANCE = 3.0
KERNEL_CMDLINE = "console=ttyS0 quiet panic=-1 loglevel=3"
# Shell helpers every plan can use.
PRELUDE = r"""
scx_state() {
  s=$(cat /sys/kernel/sched_ext/state); o=$(cat /sys/kernel/sched_ext/root/ops 2>/dev/null)
  echo "{\"event\":\"sysfs\",\"when\":\"$1\",\"state\":\"$s\",\"ops\":\"$o\"}"
}
"""


@dataclass
class Step:
    step_id: str
    script: str


@dataclass
class StepResult:
    step_id: str
    records: list[dict] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    # When each record reached the host's console reader (seconds since qemu started, host clock).
    record_times: list[float] = field(default_factory=list)
    # When the step's marker did.
    started: float = 0.0

    def time_of(self, record: dict) -> float | None:
        """When `record` reached the host, None if it is not one of this step's."""
        return next((t for r, t in zip(self.records, self.record_times, strict=True) if r is record), None)

    def events(self, event: str) -> list[dict]:
        return [r for r in self.records if r.get("event") == event]

    def first(self, event: str) -> dict | None:
        found = self.events(event)
        return found[0] if found else None


@dataclass
class HostUsage:
    """How much CPU qemu itself got from the host while the VM ran: its process CPU time
    (/proc/PID/stat, all threads) sampled against the host's clock. Where the guest's clock
    follows the host's (KVM, multi-threaded TCG, no icount) a qemu the host starves sees time
    jump, and even with icount a timing result from such a stretch is suspect: the verifier
    does not judge one (DYN009, docs/verifier.md)."""

    # (seconds since qemu started, qemu's CPU seconds so far), in time order.
    samples: list[tuple[float, float]] = field(default_factory=list)
    # The CPUs a busy guest keeps qemu on: 1 with single-threaded TCG (one host thread runs
    # every vCPU), the vCPU count with one thread per vCPU or KVM.
    needs: float = 1.0
    # How long qemu's busiest thread waited on the host's run queue (added to the VM's timeout).
    waited_s: float = 0.0

    def cpu_seconds(self, at: float) -> float:
        """qemu's CPU time at host time `at`, interpolated between samples."""
        if not self.samples:
            return 0.0
        previous = self.samples[0]
        for sample in self.samples:
            if sample[0] >= at:
                span = sample[0] - previous[0]
                if span <= 0:
                    return sample[1]
                return previous[1] + (sample[1] - previous[1]) * (at - previous[0]) / span
            previous = sample
        return self.samples[-1][1]

    def share(self, start: float, end: float) -> float | None:
        """The CPUs qemu got on average in [start, end] (None for an empty window)."""
        if end - start <= 0 or not self.samples:
            return None
        return (self.cpu_seconds(end) - self.cpu_seconds(start)) / (end - start)

    def longest_stall(self, start: float, end: float, below: float = 0.1) -> float:
        """The longest stretch of [start, end] in which qemu got less than `below` of a CPU."""
        longest = current = 0.0
        for (t0, c0), (t1, c1) in itertools.pairwise(self.samples):
            if t1 <= start or t0 >= end:
                continue
            if t1 > t0 and (c1 - c0) / (t1 - t0) < below:
                current += t1 - t0
                longest = max(longest, current)
            else:
                current = 0.0
        return longest


@dataclass
class VmRun:
    kernel_release: str
    booted: bool
    finished: bool
    seconds: float
    steps: dict[str, StepResult]
    console: str
    usage: HostUsage = field(default_factory=HostUsage)

    @property
    def crashed(self) -> bool:
        """The guest kernel oopsed or panicked."""
        return "Kernel panic" in self.console or "Oops:" in self.console

    def step(self, step_id: str) -> StepResult:
        if step_id not in self.steps:
            raise KeyError(f"step {step_id!r} produced no output; console tail:\n{self.console[-3000:]}")
        return self.steps[step_id]


@dataclass
class Plan:
    """Steps plus the files they need (path in the VM -> bytes)."""

    steps: list[Step] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)

    def add_file(self, vm_path: str, data: bytes) -> str:
        self.files[vm_path] = data
        return vm_path

    def add(self, step_id: str, script: str) -> None:
        self.steps.append(Step(step_id, script))

    def script(self) -> str:
        parts = [PRELUDE]
        for step in self.steps:
            parts.append(f"echo {shlex.quote('@@step ' + step.step_id)}\n{step.script}\n")
        return "".join(parts)


def load_and_hold(obj_vm_path: str, params: dict[str, object] | None = None, hold: str = "sleep 1",
                  loader: str = "/bin/schedcp-loader", enable_timeout_s: float = 5.0,
                  watchdog_ms: int | None = None) -> str:
    """Shell for: start the loader, wait until it reports (enabled or error), print sysfs
    state, run `hold` while the scheduler runs, stop it, print the state after.
    `watchdog_ms` caps the scheduler's watchdog timeout (the loader's --watchdog-ms)."""
    args = " ".join(f"--param {shlex.quote(f'{k}={_param(v)}')}" for k, v in (params or {}).items())
    if watchdog_ms is not None:
        args += f" --watchdog-ms {int(watchdog_ms)}"
    tries = int(enable_timeout_s / 0.1)
    # The output file is emptied here, not in the background job: the wait loop below must
    # never see the previous step's lines.
    return f"""
: > /tmp/loader.out
{shlex.quote(loader)} {shlex.quote(obj_vm_path)} {args} >> /tmp/loader.out 2>&1 &
LPID=$!
i=0
while [ $i -lt {tries} ] && ! grep -q '"event":"\\(enabled\\|error\\)"' /tmp/loader.out 2>/dev/null; do
  if ! kill -0 $LPID 2>/dev/null; then break; fi
  sleep 0.1; i=$((i+1))
done
scx_state loaded
if grep -q '"event":"enabled"' /tmp/loader.out; then
{hold or ':'}
fi
kill -TERM $LPID 2>/dev/null
wait $LPID
echo "{{\\"event\\":\\"loader_exit\\",\\"status\\":$?}}"
cat /tmp/loader.out
sleep 0.2
scx_state unloaded
"""


def _param(value: object) -> str:
    """A parameter as the loader's --param takes it (lists: comma separated)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_param(v) for v in value)
    return str(value)


def run(plan: Plan, kernel: Kernel, toolchain: Toolchain, timeout_s: float = 300.0,
        multithreaded: bool = False, icount: str | None = None) -> VmRun:
    """Boot `kernel` with the plan (the loader and probes are added), wait for it to power off.

    By default the two vCPUs are emulated by one host thread (TCG `thread=single`): with one
    thread per vCPU the guest occasionally oopses on an int3 while sched_ext flips its static
    keys (cross-modifying code that multi-threaded TCG does not synchronise; seen once in ~7
    boots). Single-threaded timing is distorted, though, so latency measurements pass
    `multithreaded=True` and check `VmRun.crashed`. `icount` (e.g. ICOUNT) adds qemu's `-icount`
    to a single-threaded TCG boot; by default the guest's clock follows the host's (see ICOUNT
    for why)."""
    if not shutil.which(QEMU):
        raise BuildError(f"{QEMU} not found: run `make install` (it installs Debian's qemu-system-x86)")
    files = {"bin/schedcp-loader": toolchain.loader(static=True).read_bytes(),
             "plan.sh": plan.script().encode()}
    files.update({f"bin/probe-{name}": path.read_bytes() for name, path in toolchain.probes().items()})
    files.update({path.lstrip("/"): data for path, data in plan.files.items()})
    with tempfile.TemporaryDirectory(prefix="schedcp-vm-") as tmp:
        initrd = Path(tmp) / "initrd.gz"
        initrd.write_bytes(initramfs.build(files))
        kvm = accelerator(kernel)
        accel = kvm or ("tcg,thread=multi" if multithreaded else "tcg,thread=single")
        extra = ["-icount", icount] if icount and not kvm and not multithreaded else []
        needs = 1.0 if accel == "tcg,thread=single" else float(VCPUS)
        started = time.monotonic()
        lines, usage = _boot(accel, kernel, initrd, timeout_s, extra, needs)
    console = "".join(line for _, line in lines)
    return _parse(kernel, lines, time.monotonic() - started, finished="@@done" in console, usage=usage)


def _boot(accel: str, kernel: Kernel, initrd: Path, timeout_s: float, extra: list[str] | None = None,
          needs: float = 1.0) -> tuple[list[tuple[float, str]], HostUsage]:
    """The serial console's lines, each with when it reached the host (whatever came before the
    timeout if it expired), and qemu's own CPU time sampled meanwhile. The timeout runs on the
    host's clock, extended by the time qemu waited for a host CPU (WAIT_ALLOWANCE)."""
    argv = [QEMU, "-accel", accel, *(extra or []), *QEMU_ARGS, "-kernel", str(kernel.vmlinuz), "-initrd",
            str(initrd), "-append", KERNEL_CMDLINE]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        for raw in proc.stdout:
            lines.append((time.monotonic() - started, raw.decode(errors="replace")))

    reader = threading.Thread(target=read, name="qemu-console", daemon=True)
    reader.start()
    usage = HostUsage(needs=needs)
    stat = Path(f"/proc/{proc.pid}/stat")
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        while True:
            try:
                # utime and stime: fields 14 and 15, counted after the ")" that ends the name.
                fields = stat.read_text().rsplit(")", 1)[1].split()
                usage.samples.append((time.monotonic() - started, (int(fields[11]) + int(fields[12])) / ticks))
            except (OSError, IndexError, ValueError):
                pass
            try:
                proc.wait(timeout=SAMPLE_S)
                break
            except subprocess.TimeoutExpired:
                # The timeout is for the guest: time the host kept qemu waiting to run is added
                # to it (a starved guest is slower, not stuck), up to a bound.
                usage.waited_s = max(usage.waited_s, _waited(proc.pid))
                if time.monotonic() - started > timeout_s + min(usage.waited_s, WAIT_ALLOWANCE * timeout_s):
                    break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        reader.join(timeout=5)
    return list(lines), usage


def _waited(pid: int) -> float:
    """The longest any of the process's threads has waited on a host run queue, in seconds
    (schedstat's run_delay; it needs no SCHEDSTATS). 0 if it cannot be read."""
    longest = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                longest = max(longest, int((task / "schedstat").read_text().split()[1]))
            except (OSError, IndexError, ValueError):
                continue
    except OSError:
        return 0.0
    return longest / 1e9


_kvm_verdict: dict[str, bool] = {}


def accelerator(kernel: Kernel) -> str | None:
    """"kvm" when KVM really runs a guest here (checked once per process by booting an empty
    plan), None for TCG. /dev/kvm can exist and still fail: nested virtualisation on this
    project's CI machines aborts qemu at start."""
    if kernel.release not in _kvm_verdict:
        works = False
        if os.access("/dev/kvm", os.R_OK | os.W_OK):
            with tempfile.TemporaryDirectory(prefix="schedcp-kvm-") as tmp:
                initrd = Path(tmp) / "initrd.gz"
                initrd.write_bytes(initramfs.build({"plan.sh": b"true\n"}))
                works = any("@@done" in line for _, line in _boot("kvm", kernel, initrd, 30)[0])
        _kvm_verdict[kernel.release] = works
        log.info("sandbox VM accelerator: %s", "KVM" if works else "TCG (KVM unavailable or not working)")
    return "kvm" if _kvm_verdict[kernel.release] else None


def _parse(kernel: Kernel, lines: list[tuple[float, str]], seconds: float, finished: bool,
           usage: HostUsage | None = None) -> VmRun:
    steps: dict[str, StepResult] = {}
    current: StepResult | None = None
    for at, raw in lines:
        line = raw.rstrip("\r\n").strip("\r")
        if line.startswith("@@step "):
            current = steps[line[7:]] = StepResult(line[7:], started=at)
            continue
        if current is None or line.startswith("@@"):
            continue
        if line.startswith("{"):
            try:
                current.records.append(json.loads(line))
                current.record_times.append(at)
                continue
            except json.JSONDecodeError:
                pass
        current.log.append(line)
    console = "".join(line for _, line in lines)
    return VmRun(kernel.release, "@@booted" in console, finished, seconds, steps, console, usage or HostUsage())
