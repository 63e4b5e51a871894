"""Checks of a native policy (settings for the kernel's own scheduler), the native counterpart
of stages 1-4: every rule well formed, every value within bounds, and no matcher that could
reach a process the host cannot do without.

Protection here is by examples (schedcp/domain/protected.py): a matcher that would select pid 1 or 2,
a system daemon or kernel thread by name, their cgroups or command lines, or schedcp's own
services is refused. The executor re-checks every real process before changing it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from schedcp.domain import matchers, protected
from schedcp.runtime.errors import InvalidArgument
from schedcp.v1 import common_pb2, policy_pb2, verdict_pb2
from services.verifier.static_analysis import finding

MAX_RULES = 32
MAX_MATCHERS = 32
NICE_RANGE = (-20, 19)
# A policy may raise a group's priority this far, no further: lower nice values let the group
# crowd out the host's own services.
MOST_FAVOURED_NICE = -10
SLICE_US_RANGE = (100, 100_000)  # what the kernel clamps sched_runtime to for EEVDF
CPU_WEIGHT_RANGE = (1, 10_000)
MAX_CPU = 4095
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
    if compiled.kind == "comm" and protected.KERNEL_THREAD_PATTERN.fullmatch(compiled.value):
        return f"kernel thread {compiled.value!r}"
    return next((what for what, example in protected.examples() if compiled.matches(example)), "")


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


def _error(rule: str, number: int, message: str, hint: str = "") -> verdict_pb2.Finding:
    return _finding(rule, verdict_pb2.SEVERITY_ERROR, number, message, hint)


def _warning(rule: str, number: int, message: str, hint: str = "") -> verdict_pb2.Finding:
    return _finding(rule, verdict_pb2.SEVERITY_WARNING, number, message, hint)


def _finding(rule: str, severity: int, number: int, message: str, hint: str) -> verdict_pb2.Finding:
    where = f"rule {number}: " if number else ""
    # `line` carries the rule's number (1-based), so tools can point at it like a source line.
    return finding(rule, severity, number, where + message, hint)
