"""Boot the sandbox micro-VM with a test plan and read structured results from its console.

A plan is a list of steps, each a shell snippet run inside the VM in order. Everything a
step prints goes to the serial console after a `@@step ID` marker; lines that are JSON
objects (the loader's and the probes' reports) become the step's records, the rest its log
(kernel messages, the verifier log). The VM has a hard timeout.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from schedcp.toolchain import initramfs
from schedcp.toolchain.build import BuildError, Kernel, Toolchain

log = logging.getLogger(__name__)
QEMU = "qemu-system-x86_64"
# The default `pc` machine: `-M microvm` hangs without acpi=on with this kernel (PLATFORM.md).
QEMU_ARGS = ["-cpu", "max", "-smp", "2", "-m", "1024", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"]
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

    def events(self, event: str) -> list[dict]:
        return [r for r in self.records if r.get("event") == event]

    def first(self, event: str) -> dict | None:
        found = self.events(event)
        return found[0] if found else None


@dataclass
class VmRun:
    kernel_release: str
    booted: bool
    finished: bool
    seconds: float
    steps: dict[str, StepResult]
    console: str

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
        multithreaded: bool = False) -> VmRun:
    """Boot `kernel` with the plan (the loader and probes are added), wait for it to power off.

    By default the two vCPUs are emulated by one host thread (TCG `thread=single`): with one
    thread per vCPU the guest occasionally oopses on an int3 while sched_ext flips its static
    keys (cross-modifying code that multi-threaded TCG does not synchronise; seen once in ~7
    boots). Single-threaded timing is distorted, though, so latency measurements pass
    `multithreaded=True` and check `VmRun.crashed`."""
    if not shutil.which(QEMU):
        raise BuildError(f"{QEMU} not found: run `make install` (it installs Debian's qemu-system-x86)")
    files = {"bin/schedcp-loader": toolchain.loader(static=True).read_bytes(),
             "plan.sh": plan.script().encode()}
    files.update({f"bin/probe-{name}": path.read_bytes() for name, path in toolchain.probes().items()})
    files.update({path.lstrip("/"): data for path, data in plan.files.items()})
    with tempfile.TemporaryDirectory(prefix="schedcp-vm-") as tmp:
        initrd = Path(tmp) / "initrd.gz"
        initrd.write_bytes(initramfs.build(files))
        accel = accelerator(kernel) or ("tcg,thread=multi" if multithreaded else "tcg,thread=single")
        started = time.monotonic()
        console = _boot(accel, kernel, initrd, timeout_s)
    return _parse(kernel, console, time.monotonic() - started, finished="@@done" in console)


def _boot(accel: str, kernel: Kernel, initrd: Path, timeout_s: float) -> str:
    """The serial console's output; whatever came before the timeout if it expired."""
    argv = [QEMU, "-accel", accel, *QEMU_ARGS, "-kernel", str(kernel.vmlinuz), "-initrd", str(initrd),
            "-append", KERNEL_CMDLINE]
    try:
        result = subprocess.run(argv, capture_output=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
        return result.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired as exc:
        return (exc.stdout or b"").decode(errors="replace")


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
                works = "@@done" in _boot("kvm", kernel, initrd, 30)
        _kvm_verdict[kernel.release] = works
        log.info("sandbox VM accelerator: %s", "KVM" if works else "TCG (KVM unavailable or not working)")
    return "kvm" if _kvm_verdict[kernel.release] else None


def _parse(kernel: Kernel, console: str, seconds: float, finished: bool) -> VmRun:
    steps: dict[str, StepResult] = {}
    current: StepResult | None = None
    for raw in console.splitlines():
        line = raw.strip("\r")
        if line.startswith("@@step "):
            current = steps[line[7:]] = StepResult(line[7:])
            continue
        if current is None or line.startswith("@@"):
            continue
        if line.startswith("{"):
            try:
                current.records.append(json.loads(line))
                continue
            except json.JSONDecodeError:
                pass
        current.log.append(line)
    return VmRun(kernel.release, "@@booted" in console, finished, seconds, steps, console)
