"""Checks of a native policy (settings for the kernel's own scheduler), the native counterpart
of stages 1-4: every rule well formed, every value within bounds, and no matcher that could
reach a process the host cannot do without.

Protection here is by what a matcher can express centrally: pid 1 and 2, the names of system
daemons and kernel threads, their cgroups and command lines, schedcp's own services. The
executor re-checks on the host, where it knows the real pids (itself, kernel threads).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from schedcp import matchers
from schedcp.errors import InvalidArgument
from schedcp.v1 import common_pb2, policy_pb2, verdict_pb2

MAX_RULES = 32
MAX_MATCHERS = 32
NICE_RANGE = (-20, 19)
# A policy may raise a group's priority this far, no further: lower nice values let the group
# crowd out the host's own services.
MOST_FAVOURED_NICE = -10
SLICE_US_RANGE = (100, 100_000)  # what the kernel clamps sched_runtime to for EEVDF
CPU_WEIGHT_RANGE = (1, 10_000)
MAX_CPU = 4095
PROTECTED_PIDS = {1: "init", 2: "kthreadd"}
PROTECTED_COMMS = ("systemd", "init", "kthreadd", "sshd", "systemd-journal", "systemd-logind", "systemd-udevd",
                   "dbus-daemon", "containerd", "kubelet", "nats-server", "schedcp-loader")
# Kernel threads, by name pattern, with an example for regexes to be tried against.
KERNEL_THREADS = {"kworker/0:1": r"kworker/.*", "ksoftirqd/0": r"ksoftirqd/\d+", "migration/0": r"migration/\d+",
                  "rcu_preempt": r"rcu_.*", "cpuhp/0": r"cpuhp/\d+", "kswapd0": r"kswapd\d+",
                  "irq/9-acpi": r"irq/.*", "watchdogd": r"watchdogd"}
# Cgroups holding services a host must keep: a matcher on one of these or an ancestor is refused.
PROTECTED_CGROUPS = ("/init.scope", "/system.slice/ssh.service", "/system.slice/sshd.service",
                     "/system.slice/systemd-journald.service", "/system.slice/nats-server.service",
                     "/system.slice/schedcp-executor.service", "/system.slice/schedcp-observer.service")
PROTECTED_CMDLINES = ("/sbin/init", "/lib/systemd/systemd --system --deserialize 42", "/usr/sbin/sshd -D",
                      "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups", "nats-server -js -p 4222",
                      "python -m services.executor", "python -m services.observer",
                      "/usr/bin/python3 -m services.executor", "/usr/bin/schedcp-loader /var/lib/x.bpf.o")


def check(policy: policy_pb2.NativePolicy) -> list[verdict_pb2.Finding]:
    """Every problem with the policy; empty when it may be signed."""
    if not policy.rules:
        return [_error("NAT001", 0, "the policy has no rules")]
    if len(policy.rules) > MAX_RULES:
        return [_error("NAT001", 0, f"{len(policy.rules)} rules; at most {MAX_RULES}")]
    return [f for number, rule in enumerate(policy.rules, 1) for f in _check_rule(number, rule)]


def _check_rule(number: int, rule: policy_pb2.NativeRule) -> Iterator[verdict_pb2.Finding]:
    if not rule.match:
        yield _error("NAT001", number, "the rule matches nothing (no matchers)", "name the target group")
    elif len(rule.match) > MAX_MATCHERS:
        yield _error("NAT001", number, f"{len(rule.match)} matchers; at most {MAX_MATCHERS}")
    for matcher in rule.match:
        yield from _check_matcher(number, matcher)
    yield from _check_settings(number, rule)


def _check_matcher(number: int, matcher: common_pb2.GroupMatcher) -> Iterator[verdict_pb2.Finding]:
    try:
        compiled = matchers.compile_matcher(matcher)
    except InvalidArgument as exc:
        yield _error("NAT009", number, str(exc))
        return
    reached = protected_reached(compiled)
    if reached:
        yield _error("NAT010", number, f"{compiled.describe()} could reach {reached}, which schedcp never changes",
                     "match the workload's own processes by a narrower name, cgroup or command line")


def protected_reached(compiled: matchers.Matcher) -> str:
    """A protected process the matcher could select, described; "" when none."""
    kind, value = compiled.kind, compiled.value
    if kind == "pid":
        return f"pid {value} ({PROTECTED_PIDS[value]})" if value in PROTECTED_PIDS else ""
    if kind in ("comm", "comm_regex"):
        hit = next((n for n in (*PROTECTED_COMMS, *KERNEL_THREADS) if compiled.matches(_Sample(comm=n))), None)
        if hit is None and kind == "comm" and any(re.fullmatch(p, value) for p in KERNEL_THREADS.values()):
            hit = value
        if hit is None:
            return ""
        return f"process {hit!r}" if hit in PROTECTED_COMMS else f"kernel thread {hit!r}"
    if kind == "cgroup":
        hit = next((c for c in PROTECTED_CGROUPS if compiled.matches(_Sample(cgroup=c))), None)
        return f"cgroup {hit}" if hit else ""
    hit = next((c for c in PROTECTED_CMDLINES if compiled.matches(_Sample(cmdline_text=c))), None)
    return f"the process running {hit!r}" if hit else ""


def _check_settings(number: int, rule: policy_pb2.NativeRule) -> Iterator[verdict_pb2.Finding]:
    changes = [rule.policy != policy_pb2.SCHED_POLICY_UNSPECIFIED, rule.HasField("nice"), rule.HasField("slice_us"),
               rule.HasField("rt_priority"), rule.HasField("cgroup_cpu_idle"), rule.HasField("cgroup_cpu_weight"),
               bool(rule.cpus)]
    if not any(changes):
        yield _error("NAT002", number, "the rule changes nothing", "set a policy, nice, slice, cgroup knob or cpus")
    if rule.policy in (policy_pb2.SCHED_POLICY_FIFO, policy_pb2.SCHED_POLICY_RR):
        yield _error("NAT005", number, "real-time classes (FIFO, RR) are not allowed: a busy real-time task "
                     "takes its CPU from everything else", "use nice, an EEVDF slice or SCHED_BATCH/IDLE for the rest")
    if rule.HasField("rt_priority"):
        yield _error("NAT006", number, "rt_priority applies only to real-time classes, which are not allowed")
    if rule.HasField("nice"):
        if not NICE_RANGE[0] <= rule.nice <= NICE_RANGE[1]:
            yield _error("NAT003", number, f"nice {rule.nice} is outside {NICE_RANGE[0]}..{NICE_RANGE[1]}")
        elif rule.nice < MOST_FAVOURED_NICE:
            yield _error("NAT004", number, f"nice {rule.nice} favours the group too much (at most "
                         f"{MOST_FAVOURED_NICE})", "demote the competing group instead")
        if rule.policy == policy_pb2.SCHED_POLICY_IDLE:
            yield _warning("NAT008", number, "nice has no effect on SCHED_IDLE tasks")
    if rule.HasField("slice_us") and not SLICE_US_RANGE[0] <= rule.slice_us <= SLICE_US_RANGE[1]:
        yield _error("NAT003", number, f"slice_us {rule.slice_us} is outside {SLICE_US_RANGE[0]}..{SLICE_US_RANGE[1]}")
    if rule.HasField("cgroup_cpu_weight") and not CPU_WEIGHT_RANGE[0] <= rule.cgroup_cpu_weight <= CPU_WEIGHT_RANGE[1]:
        yield _error("NAT003", number, f"cgroup_cpu_weight {rule.cgroup_cpu_weight} is outside "
                     f"{CPU_WEIGHT_RANGE[0]}..{CPU_WEIGHT_RANGE[1]}")
    if rule.cpus and not _valid_cpulist(rule.cpus):
        yield _error("NAT007", number, f"cpus {rule.cpus!r} is not a CPU list", 'write it like "0-3,6"')


def _valid_cpulist(text: str) -> bool:
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:-(\d+))?\s*", part)
        if not m:
            return False
        low, high = int(m.group(1)), int(m.group(2) or m.group(1))
        if low > high or high > MAX_CPU:
            return False
    return True


class _Sample:
    """A stand-in process for asking "would this matcher select it?"."""

    def __init__(self, comm: str = "\0", cgroup: str = "", cmdline_text: str = "") -> None:
        self.pid, self.comm, self.cgroup, self.unified_cgroup = 0, comm, cgroup, cgroup
        self._cmdline = cmdline_text

    def cmdline(self) -> str:
        return self._cmdline


def _error(rule: str, number: int, message: str, hint: str = "") -> verdict_pb2.Finding:
    return _finding(rule, verdict_pb2.SEVERITY_ERROR, number, message, hint)


def _warning(rule: str, number: int, message: str, hint: str = "") -> verdict_pb2.Finding:
    return _finding(rule, verdict_pb2.SEVERITY_WARNING, number, message, hint)


def _finding(rule: str, severity: int, number: int, message: str, hint: str) -> verdict_pb2.Finding:
    where = f"rule {number}: " if number else ""
    # `line` carries the rule's number (1-based), so tools can point at it like a source line.
    return verdict_pb2.Finding(rule_id=rule, severity=severity, line=number, message=where + message, hint=hint)
