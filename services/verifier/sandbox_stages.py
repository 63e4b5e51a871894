"""Stages 3 and 4 in one boot of the sandbox micro-VM: the kernel's own BPF verifier (load and
enable), then dynamic tests while the candidate runs, then unload.

The tests, in this order, all under the candidate:
- latency: a 1 kHz sleeper among CPU hogs; its p99 wakeup latency is compared with the same
  probe under EEVDF earlier in the same boot (TCG timing only compares within a boot);
- fairness: equal CPU hogs, the least-served one's CPU time over the most-served one's; each hog
  has its own name (p->comm), common daemons' and random ones drawn for this plan, so that a
  scheduler treating some names worse (or all but its probe's) shows as unfair;
- flood: many more runnable tasks than CPUs for longer than the watchdog timeout, which the
  loader caps (--watchdog-ms) so that a scheduler leaving any task behind is ejected here; the
  tasks take the same names in turn;
- fork storm: short-lived children forked and reaped for a second;
- unload: the kernel must be back to `disabled`.
An ejection (watchdog or runtime error) at any point fails the stage and names the test it
happened in; the tests after it ran under EEVDF and are not judged.

Under TCG the guest's clock is the host's, so a host that starves qemu makes the guest's time
jump (qemu's icount would stop that but livelocks the guest, runner.ICOUNT). A timing failure
(a watchdog stall, unfairness, latency) in a test during which qemu got clearly less CPU than
it needs is reported as DYN009, inconclusive: signed, never an approval, not cached
(docs/verifier.md).
"""

from __future__ import annotations

import re
import secrets
import shlex
import time
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from schedcp.runtime.errors import DependencyUnavailable
from schedcp.toolchain import runner
from schedcp.toolchain.build import Kernel, Toolchain
from schedcp.v1 import common_pb2, verdict_pb2
from services.verifier.stages import LOG_LIMIT, stage_result, status_of
from services.verifier.static_analysis import finding

TESTS = ("latency", "fairness", "flood", "forkstorm")
EVERY_TEST = "every"  # a finding measured over all the tests (callback costs)
# Verifier log lines that are bookkeeping rather than the reason for a refusal.
_SOURCE_NOTE = re.compile(r"^; (.*) @ candidate\.bpf\.c:(\d+)$")
_INSN = re.compile(r"^\d+: (\(|R\d)")
# The fairness hogs' names besides random ones: daemons every host runs, and the usual services.
HOG_NAMES = ("sshd", "systemd", "systemd-journal", "cron", "dbus-daemon", "rsyslogd")
RANDOM_NAMES, RANDOM_NAME_BYTES = 2, 4
# A parameter value that can be a task's name (p->comm, 15 characters), not a list of ids.
_TASK_NAME = re.compile(r"(?=.*[A-Za-z])[\w.-]{1,15}")
_LOG_NOISE = ("processed ", "verification time", "stack depth", "-- END PROG LOAD LOG --", "libbpf:", "mark_precise")


class DynamicBounds(BaseModel):
    """What a candidate must stay within in the sandbox. The bounds catch pathologies (starving,
    grossly unfair or latency-destroying schedulers), not mediocre ones: whether a policy helps
    a workload is the canary's question, on the real host."""

    watchdog_ms: int = Field(2000, ge=500, le=30000, description="cap on the candidate's watchdog timeout")
    latency_hogs: int = Field(4, ge=1, le=64)
    latency_s: float = Field(2.0, gt=0)
    latency_factor: float = Field(4.0, ge=1, description="p99 may be this many times EEVDF's ...")
    latency_slack_ms: float = Field(500.0, ge=0, description="... or EEVDF's plus this, whichever is larger")
    claimed_p50_factor: float = Field(1.5, ge=1, description="a candidate that claims latency: its sleeper's p50 "
                                      "at most this many times EEVDF's (the library's claimants: 1.00)")
    claimed_p99_factor: float = Field(2.0, ge=1, description="... and its p99 at most this many times EEVDF's")
    fairness_hogs: int = Field(9, ge=2, le=64, description="one per name of hog_names()")
    fairness_s: float = Field(4.0, gt=0, description="long enough that a head start of 200 ms (ljf's) does not decide")
    min_fairness: float = Field(0.5, gt=0, le=1, description="least over most CPU time among equal hogs")
    flood_tasks: int = Field(32, ge=2, le=128)
    flood_niced: int = Field(4, ge=0, le=128, description="more flood tasks at nice 19: a scheduler that charges "
                             "a light task's whole slice at its weight makes it wait seconds behind the others")
    flood_s: float = Field(3.5, gt=0, description="longer than 1.5 x watchdog_ms: the kernel checks every half timeout")
    max_wait_s: float = Field(1.0, gt=0, description="the longest a fairness or flood hog at nice 0 may go "
                              "without a CPU: well under the watchdog, which lets anything shorter pass; the "
                              "library's worst was 0.69 s (batch's 20 ms slices in the flood)")
    forkstorm_s: float = Field(1.0, gt=0)
    host_min_cpu: float = Field(0.5, gt=0, le=1, description="a test in which qemu got less than this part of the "
                                "CPU it needs (1 CPU with single-threaded TCG) was starved by the host ...")
    host_max_stall_s: float = Field(0.5, gt=0, description="... or one in which it got none for this long")
    callback_cost_us: float = Field(1000.0, gt=0, description="the mean cost of one call of a callback called on "
                                    "every wakeup or dispatch, in the VM: the library's worst was 218 us under TCG on "
                                    "a loaded host, most are 1-20 us")
    callback_min_calls: int = Field(100, ge=1, description="a callback called fewer times over the tests runs once "
                                    "(init, exit): its cost is not per wakeup")

    def latency_limit_us(self, eevdf_p99_us: float) -> float:
        return max(eevdf_p99_us * self.latency_factor, eevdf_p99_us + self.latency_slack_ms * 1000)


@dataclass
class Candidate:
    """A compiled scheduler to test, with the parameters it will run with."""

    name: str
    obj: bytes
    params: dict[str, object] = field(default_factory=dict)
    # When set, the name the kernel must report in /sys/kernel/sched_ext/root/ops.
    ops_name: str = ""
    # What it claims to be for (SchedExtProgram.goals): "latency" is held to EEVDF's wakeups.
    goals: tuple[str, ...] = ()

    @property
    def claims_latency(self) -> bool:
        return "latency" in self.goals

    def favoured_name(self) -> str:
        """The task name its parameters tell it to favour (latency_boost's boost_comm), or ""."""
        return next((v for _, v in sorted(self.params.items()) if isinstance(v, str) and _TASK_NAME.fullmatch(v)),
                    "")


@dataclass
class SandboxResult:
    kernel_verifier: verdict_pb2.StageResult
    dynamic: verdict_pb2.StageResult
    # What /sys/kernel/sched_ext/root/ops showed once enabled ("" if it never was).
    ops_name: str = ""


def hog_names() -> list[str]:
    """Names for the fairness and flood hogs: common system daemons' (what a scheduler that
    starves "others" would pick on), random ones, new for every plan (what no scheduler can know
    in advance), and the probe's own (beside which a scheduler favouring its own kind shows).
    Shell-safe: letters, digits and dashes."""
    return [*HOG_NAMES, *(secrets.token_hex(RANDOM_NAME_BYTES) for _ in range(RANDOM_NAMES)), "probe-fairness"]


def hold_script(bounds: DynamicBounds, names: list[str], sleeper: str = "") -> str:
    """The tests' shell. `sleeper` names the latency probe's sleeper (the task a latency claim
    is about); by default it keeps the probe's own name."""
    b = bounds
    named = " ".join(names)
    latency = f"/bin/probe-wakeup {b.latency_hogs} {b.latency_s:g}"
    if sleeper:
        latency += f" 1000 {shlex.quote(sleeper)}"  # the probe's period, then the sleeper's name
    return "\n".join([
        latency, "scx_state after-latency",
        f"/bin/probe-fairness {b.fairness_hogs} {b.fairness_s:g} {named}", "scx_state after-fairness",
        f"/bin/probe-fairness -n {b.flood_niced} {b.flood_tasks} {b.flood_s:g} {named}", "scx_state after-flood",
        f"/bin/probe-forkstorm {b.forkstorm_s:g}", "scx_state after-forkstorm",
    ])


def build_plan(candidates: list[Candidate], bounds: DynamicBounds) -> runner.Plan:
    """The EEVDF baseline first, then each candidate under its own step id (c0, c1, ...)."""
    plan = runner.Plan()
    # The kernel counts each BPF program's calls and run time only with bpf_stats on: the
    # loader reports them per callback before it unloads (the cost test).
    plan.add("baseline", "echo 1 > /proc/sys/kernel/bpf_stats_enabled\n"
                         f"/bin/probe-wakeup {bounds.latency_hogs} {bounds.latency_s:g}")
    names = hog_names()
    for i, candidate in enumerate(candidates):
        path = plan.add_file(f"/art/c{i}.bpf.o", candidate.obj)
        # A name the candidate is told to favour (latency_boost's boost_comm) is favoured openly.
        named = [n for n in names if n not in candidate.params.values()]
        # A latency claim is about the tasks the candidate favours: the sleeper takes their name.
        sleeper = candidate.favoured_name() if candidate.claims_latency else ""
        plan.add(f"c{i}", runner.load_and_hold(path, candidate.params, hold=hold_script(bounds, named, sleeper),
                                               watchdog_ms=bounds.watchdog_ms))
    return plan


def run(candidates: list[Candidate], kernel: Kernel, toolchain: Toolchain,
        bounds: DynamicBounds | None = None, timeout_s: float = 600.0) -> dict[str, SandboxResult]:
    """Boot once and judge every candidate. The service passes one candidate per boot, so a
    hostile one cannot disturb another's verdict; tests and benches batch them."""
    bounds = bounds or DynamicBounds()
    started = time.monotonic()
    vm = runner.run(build_plan(candidates, bounds), kernel, toolchain, timeout_s=timeout_s)
    if not vm.booted:
        raise DependencyUnavailable(f"the sandbox VM did not boot ({kernel.release}); console tail: "
                                    f"{vm.console[-500:]}")
    baseline = _probe(vm.steps.get("baseline"), "wakeup")
    return {c.name: judge(vm, f"c{i}", c, bounds, baseline, started) for i, c in enumerate(candidates)}


def judge(vm: runner.VmRun, step_id: str, candidate: Candidate, bounds: DynamicBounds,
          baseline: dict | None, started: float) -> SandboxResult:
    step = vm.steps.get(step_id)
    kernel_verifier = _kernel_verifier_result(vm, step, started)
    if kernel_verifier.status != common_pb2.STAGE_STATUS_SUCCEEDED:
        skipped = stage_result(verdict_pb2.VERIFY_STAGE_DYNAMIC, common_pb2.STAGE_STATUS_SKIPPED, started)
        return SandboxResult(kernel_verifier, skipped)
    ops_name = step.first("enabled").get("ops", "")
    findings, measurements = dynamic_findings(step, candidate, bounds, baseline)
    findings = host_starvation(vm, step, findings, bounds, measurements) + findings
    if vm.crashed:
        findings.append(_finding("DYN008", "the sandbox kernel crashed while the candidate ran"))
    dynamic = stage_result(verdict_pb2.VERIFY_STAGE_DYNAMIC, status_of(not findings), started, findings=findings,
                     measurements=measurements, log="\n".join(step.log)[-LOG_LIMIT:])
    return SandboxResult(kernel_verifier, dynamic, ops_name)


def _kernel_verifier_result(vm: runner.VmRun, step: runner.StepResult | None,
                            started: float) -> verdict_pb2.StageResult:
    stage = verdict_pb2.VERIFY_STAGE_KERNEL_VERIFIER
    if step is None:
        reason = "the sandbox VM crashed" if vm.crashed else "the sandbox VM did not reach this candidate (timeout)"
        return stage_result(stage, status_of(False), started, findings=[_finding("KV004", reason)],
                      log=vm.console[-LOG_LIMIT:])
    enabled, error = step.first("enabled"), step.first("error")
    if enabled and not error:
        return stage_result(stage, status_of(True), started)
    error = error or {"stage": "load", "error": "the loader reported nothing", "log": "\n".join(step.log)}
    log = error.get("log") or ""
    reason, line = verifier_reason(log, error.get("error", "").removeprefix("the kernel refused the program: "))
    rule, message = {
        "load": ("KV001", f"the kernel's BPF verifier refused the program {reason}"),
        "enable": ("KV002", "the program loaded but the scheduler did not enable: "
                            + (_exit_text(step.first("exit")) if step.first("exit") else error.get("error", ""))),
        "params": ("KV003", f"parameters rejected: {error.get('error', '')}"),
    }.get(error.get("stage"), ("KV001", f"{error.get('stage')}: {error.get('error', '')}"))
    finding = _finding(rule, message)
    finding.line = line if rule == "KV001" else 0
    return stage_result(stage, status_of(False), started, findings=[finding], log=log[-LOG_LIMIT:])


def dynamic_findings(step: runner.StepResult, candidate: Candidate, bounds: DynamicBounds,
                     baseline: dict | None) -> tuple[list[verdict_pb2.Finding], dict[str, float]]:
    """What went wrong while the candidate ran, and what was measured."""
    findings: list[verdict_pb2.Finding] = []
    ops = step.first("enabled").get("ops", "")
    if candidate.ops_name and ops != candidate.ops_name:
        findings.append(_finding("DYN006", f"the kernel shows ops {ops!r}, the artifact declares "
                                           f"{candidate.ops_name!r}"))
    judged = _tests_before_ejection(step)
    exit_ = step.first("exit")
    # sysfs is the authority: a scheduler without an exit record is ejected all the same.
    if len(judged) < len(TESTS) or (exit_ and exit_.get("by") == "kernel"):
        during = TESTS[len(judged)] if len(judged) < len(TESTS) else "unload"
        why = _exit_text(exit_) if exit_ else "sched_ext was no longer enabled"
        findings.append(_finding("DYN001", f"ejected by the kernel during the {during} test: {why}"))
    probes = _probes_by_test(step)
    measurements: dict[str, float] = {}
    if "latency" in judged:
        findings += _latency(probes.get("latency"), baseline, candidate, bounds, measurements)
    if "fairness" in judged:
        findings += _fairness(probes.get("fairness"), bounds, measurements, "fairness", "DYN002")
        findings += _waits(probes.get("fairness"), "fairness", bounds, measurements)
    if "flood" in judged and (flood := probes.get("flood")):
        measurements["flood_min_max_ratio"] = flood["min_max_ratio"]
        findings += _waits(flood, "flood", bounds, measurements)
    # Costs are means per call while the scheduler ran, so they count after an ejection too
    # (a callback that costs milliseconds is often why the watchdog fired).
    findings += _callback_costs(step.first("prog_stats"), bounds, measurements)
    if "forkstorm" in judged:
        forks = probes.get("forkstorm") or {}
        measurements["forks"] = forks.get("forks", 0)
        if not forks.get("forks") or forks.get("failed"):
            findings.append(_finding("DYN004", f"the fork storm failed: {forks or 'no report'}"))
    after = step.events("sysfs")[-1] if step.events("sysfs") else {}
    if after.get("when") != "unloaded" or after.get("state") != "disabled":
        state = after.get("state", "unknown")
        findings.append(_finding("DYN005", f"after unload sched_ext is {state!r}, not disabled"))
    return findings, measurements


def host_starvation(vm: runner.VmRun, step: runner.StepResult, findings: list[verdict_pb2.Finding],
                    bounds: DynamicBounds, measurements: dict[str, float]) -> list[verdict_pb2.Finding]:
    """[DYN009] when a timing finding comes from a test during which the host starved qemu,
    else []. Records qemu's CPU during the tests (the least, as a part of the CPU it needs, and
    the longest stretch without any) in `measurements` either way."""
    windows = host_windows(step)
    if not windows or not vm.usage.samples:
        return []
    needs = vm.usage.needs or 1.0
    usage = {test: ((vm.usage.share(start, end) or 0.0) / needs, vm.usage.longest_stall(start, end))
             for test, (start, end) in windows.items()}
    measurements.update(host_cpu_min=round(min(u[0] for u in usage.values()), 3),
                        host_stall_max_s=round(max(u[1] for u in usage.values()), 3))
    watchdog_s = bounds.watchdog_ms / 1000
    for f in findings:
        test = _timing_test(f)
        if test == EVERY_TEST:
            spans = windows  # a callback's cost is a mean over every test: a starved one inflates it
        elif test in windows:
            spans = {test: windows[test]}
        else:
            continue
        for name, (start, end) in spans.items():
            # A watchdog stall looks back a whole timeout: the stall that fired it may have come
            # before the test it was noticed in.
            if f.rule_id == "DYN001":
                start = max(step.started, start - watchdog_s)
            share = (vm.usage.share(start, end) or 0.0) / needs
            stall = vm.usage.longest_stall(start, end)
            if share < bounds.host_min_cpu or stall >= bounds.host_max_stall_s:
                return [_finding("DYN009", f"the host starved the sandbox VM: {share:.0%} of the CPU it needs and "
                                           f"none for {stall:.1f} s during the {name} test, where {f.rule_id} was "
                                           "found; not judged (ask again)")]
    return []


def host_windows(step: runner.StepResult) -> dict[str, tuple[float, float]]:
    """Each test's stretch of host time: from the marker before it to its own `after-` marker."""
    windows: dict[str, tuple[float, float]] = {}
    previous = None
    for record in step.events("sysfs"):
        at = step.time_of(record)
        if at is None:
            continue
        test = record.get("when", "").removeprefix("after-")
        if test in TESTS and previous is not None:
            windows[test] = (previous, at)
        previous = at
    return windows


# Timing findings that name their test in the message. DYN001 only for the watchdog
# (error_stall: "runnable task stall"), not a runtime error.
_TEST_NAMED_IN = {"DYN001": r"ejected by the kernel during the (\w+) test: error_stall\b",
                  "DYN011": r"during the (\w+) test"}


def _timing_test(f: verdict_pb2.Finding) -> str | None:
    """The test a timing finding came from; None for a finding that does not measure time. Time
    is measured by a watchdog stall, CPU shares among hogs and wakeup latency, which a qemu the
    host starves can distort; a runtime error, a failed fork or a wrong ops name cannot be."""
    if pattern := _TEST_NAMED_IN.get(f.rule_id):
        match = re.match(pattern, f.message)
        return match.group(1) if match else None
    return {"DYN002": "fairness", "DYN003": "latency", "DYN010": EVERY_TEST}.get(f.rule_id)


def _tests_before_ejection(step: runner.StepResult) -> list[str]:
    """The tests that ran entirely under the candidate (sched_ext still enabled after them)."""
    judged = []
    for record in step.events("sysfs"):
        test = record.get("when", "").removeprefix("after-")
        if test in TESTS:
            if record.get("state") != "enabled":
                break
            judged.append(test)
    return judged


def _probes_by_test(step: runner.StepResult) -> dict[str, dict]:
    """Each test's probe report: the one printed before that test's `after-` marker."""
    probes, last = {}, None
    for record in step.records:
        if record.get("event") == "probe":
            last = record
        elif record.get("event") == "sysfs" and record.get("when", "").startswith("after-"):
            if last is not None:
                probes[record["when"].removeprefix("after-")] = last
            last = None
    return probes


def _latency(probe: dict | None, baseline: dict | None, candidate: Candidate, bounds: DynamicBounds,
             measurements: dict[str, float]) -> list[verdict_pb2.Finding]:
    """[DYN003] a p99 past the pathology bound, or, for a candidate that claims latency, a sleeper
    woken clearly later than under EEVDF; DYN007 when a probe reported nothing."""
    if not probe or not probe.get("samples"):
        return [_finding("DYN007", "the latency probe reported nothing: the sleeper never ran")]
    measurements.update(wakeup_p50_us=probe["p50_us"], wakeup_p99_us=probe["p99_us"], wakeup_max_us=probe["max_us"])
    if not baseline:
        return [_finding("DYN007", "the EEVDF baseline probe reported nothing, so latency cannot be judged")]
    limit = bounds.latency_limit_us(baseline["p99_us"])
    ratios = {q: probe[f"{q}_us"] / max(baseline[f"{q}_us"], 1.0) for q in ("p50", "p99")}
    measurements.update(eevdf_p50_us=baseline["p50_us"], eevdf_p99_us=baseline["p99_us"], wakeup_p99_limit_us=limit,
                        **{f"wakeup_{q}_ratio": round(r, 3) for q, r in ratios.items()})
    if probe["p99_us"] > limit:
        return [_finding("DYN003", f"p99 wakeup latency {probe['p99_us'] / 1000:.1f} ms against EEVDF's "
                                   f"{baseline['p99_us'] / 1000:.1f} ms in the same boot "
                                   f"(limit {limit / 1000:.1f} ms)")]
    return _latency_claim(probe, baseline, ratios, candidate, bounds) if candidate.claims_latency else []


def _latency_claim(probe: dict, baseline: dict, ratios: dict[str, float], candidate: Candidate,
                   bounds: DynamicBounds) -> list[verdict_pb2.Finding]:
    """[DYN003] when a candidate that claims latency wakes the sleeper (named as the task it
    favours, if any) clearly later than EEVDF did in the same boot (`ratios`: p50 and p99 over
    EEVDF's). Throughput and makespan schedulers delay wakeups by design (long slices, a lead for
    long jobs) and are held only to the pathology bound."""
    limits = {"p50": bounds.claimed_p50_factor, "p99": bounds.claimed_p99_factor}
    over = [q for q in ("p50", "p99") if ratios[q] > limits[q]]
    if not over:
        return []
    sleeper = candidate.favoured_name()
    whose = f"its sleeper ({sleeper!r}, the task it favours)" if sleeper else "the sleeper"
    said = " and ".join(f"{q} {probe[f'{q}_us'] / 1000:.2f} ms, {ratios[q]:.1f}x EEVDF's "
                        f"{baseline[f'{q}_us'] / 1000:.2f} ms (at most {limits[q]:g}x)" for q in over)
    return [_finding("DYN003", f"it claims latency, but {whose} woke later than under EEVDF in the same boot: "
                               f"{said}")]


def _callback_costs(stats: dict | None, bounds: DynamicBounds,
                    measurements: dict[str, float]) -> list[verdict_pb2.Finding]:
    """[DYN010] a callback whose mean cost per call, over the tests it ran in, is over the budget:
    work the kernel does on every wakeup, enqueue or dispatch of every task on the host."""
    if not stats:
        return []  # the loader reported none (it did not stop on request: the unload test says so)
    costs = {p["name"]: p["run_time_ns"] / p["run_cnt"] / 1000 for p in stats["progs"] if p["run_cnt"]}
    measurements.update({f"cost_us_{name}": round(us, 2) for name, us in costs.items()})
    calls = {p["name"]: p["run_cnt"] for p in stats["progs"]}
    over = {name: us for name, us in costs.items()
            if us > bounds.callback_cost_us and calls[name] >= bounds.callback_min_calls}
    if not over:
        return []
    listed = ", ".join(f"{name} {us:.1f} us" for name, us in sorted(over.items(), key=lambda i: -i[1]))
    return [_finding("DYN010", f"callbacks cost more per call than the {bounds.callback_cost_us:g} us allowed "
                               f"(mean over the tests it ran in, under emulation): {listed}")]


def _fairness(probe: dict | None, bounds: DynamicBounds, measurements: dict[str, float], name: str,
              rule: str) -> list[verdict_pb2.Finding]:
    if not probe:
        return [_finding("DYN007", f"the {name} probe reported nothing")]
    ratio = probe["min_max_ratio"]
    measurements[f"{name}_min_max_ratio"] = ratio
    if ratio >= bounds.min_fairness:
        return []
    least = probe.get("least_served", "")
    return [_finding(rule, f"{probe['hogs']} equal CPU hogs got unequal CPU: the least served"
                           + (f" ({least!r})" if least else "") + f" got {ratio:.2f} of the most served's time "
                           f"(at least {bounds.min_fairness:.2f} required)")]


def _waits(probe: dict | None, test: str, bounds: DynamicBounds,
           measurements: dict[str, float]) -> list[verdict_pb2.Finding]:
    """[DYN011] when a hog of the test at nice 0, always runnable, went longer than `max_wait_s`
    without a CPU: a starvation the watchdog lets pass. The flood's nice-19 hogs have only the
    watchdog's bound (under EEVDF they wait seconds); their longest wait is recorded."""
    if not probe or "longest_wait_s" not in probe:
        return []
    wait = probe["longest_wait_s"]
    measurements[f"{test}_longest_wait_s"] = wait
    if probe.get("niced"):
        measurements[f"{test}_niced_longest_wait_s"] = probe["niced_longest_wait_s"]
    if wait <= bounds.max_wait_s:
        return []
    return [_finding("DYN011", f"during the {test} test a runnable task ({probe.get('longest_waiter', '')!r}) "
                               f"waited {wait:.2f} s for a CPU (at most {bounds.max_wait_s:g} s allowed; the "
                               f"watchdog ejects at {bounds.watchdog_ms / 1000:g} s)")]


def verifier_reason(log: str, fallback: str = "") -> tuple[str, int]:
    """Why the verifier refused, and the source line it refused at (0 if the log has none).

    With log level 1 the kernel prints each instruction as it checks it, preceded by the source
    line it came from (`; code @ candidate.bpf.c:N`); the refusal follows the last instruction.
    Some refusals print no reason at all: then the errno (`fallback`) is all there is."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    source = [(i, m) for i, line in enumerate(lines) if (m := _SOURCE_NOTE.match(line))]
    last_insn = max((i for i, line in enumerate(lines) if _INSN.match(line)), default=-1)
    reasons = [line for line in lines[last_insn + 1:]
               if not line.startswith(_LOG_NOISE) and not _SOURCE_NOTE.match(line)]
    reason = "; ".join(reasons)[:300] or fallback or "no reason given (see the stage log)"
    if not source:
        return reason, 0
    code, line = source[-1][1].group(1).strip(), int(source[-1][1].group(2))
    return f"at line {line} `{code[:120]}`: {reason}", line


def _exit_text(exit_: dict) -> str:
    parts = [exit_.get("kind_name", "?"), exit_.get("reason", ""), exit_.get("msg", "")]
    return " / ".join(p for p in parts if p)


def _probe(step: runner.StepResult | None, name: str) -> dict | None:
    return next((r for r in step.events("probe") if r.get("probe") == name), None) if step else None


def _finding(rule: str, message: str) -> verdict_pb2.Finding:
    """An error of the whole run (no source line)."""
    return finding(rule, verdict_pb2.SEVERITY_ERROR, 0, message)
