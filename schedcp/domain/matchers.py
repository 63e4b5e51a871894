"""GroupMatcher: validated, compiled, and applied to processes.

Used wherever a request names threads: the observer's Measure and profiles (group ids), goals,
and the executor's native policies. A matcher selects processes; every thread of a selected
process is selected. Invalid matchers raise InvalidArgument with a sentence saying what is
wrong, so callers get gRPC INVALID_ARGUMENT.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Protocol

from schedcp.runtime.errors import InvalidArgument
from schedcp.v1 import common_pb2

COMM_MAX_BYTES = 15  # TASK_COMM_LEN - 1
REGEX_MAX_CHARS = 256
# Group ids are "<kind>:<key>", so a profile's group can be named again in a later request.
_GROUP_ID_KINDS = ("comm", "pid", "cgroup")


class Process(Protocol):
    pid: int
    comm: str
    cgroup: str
    unified_cgroup: str

    def cmdline(self) -> str: ...


@dataclass(frozen=True)
class Matcher:
    """A compiled GroupMatcher."""

    kind: str
    value: str | int
    pattern: re.Pattern | None
    source: common_pb2.GroupMatcher

    def matches(self, process: Process) -> bool:
        if self.kind == "pid":
            return process.pid == self.value
        if self.kind == "comm":
            return process.comm == self.value
        if self.kind == "comm_regex":
            return self.pattern.fullmatch(process.comm) is not None
        if self.kind == "cgroup":
            return any(_in_cgroup(path, self.value) for path in (process.cgroup, process.unified_cgroup))
        return self.pattern.search(process.cmdline()) is not None  # cmdline_regex

    def describe(self) -> str:
        return describe(self.source)


def describe(matcher: common_pb2.GroupMatcher) -> str:
    """`comm='nginx'`, `pid=42`...: how logs and error messages name a matcher."""
    kind = matcher.WhichOneof("match")
    return f"{kind}={getattr(matcher, kind)!r}" if kind else "an empty matcher"


def _in_cgroup(path: str, cgroup: str) -> bool:
    return bool(path) and (path == cgroup or cgroup == "/" or path.startswith(cgroup + "/"))


def compile_matcher(matcher: common_pb2.GroupMatcher) -> Matcher:
    """Validate and compile; group ids become the matcher they stand for."""
    kind = matcher.WhichOneof("match")
    if kind is None:
        raise InvalidArgument("a group matcher must set one of pid, comm, comm_regex, cgroup, group_id, cmdline_regex")
    value = getattr(matcher, kind)
    if kind == "group_id":
        # Matches like the matcher it stands for, but is reported as the caller wrote it.
        return replace(compile_matcher(matcher_for_group_id(value)), source=matcher)
    if kind == "pid":
        if value <= 0:
            raise InvalidArgument(f"pid must be a positive process id, got {value}")
        return Matcher(kind, value, None, matcher)
    if kind == "comm":
        if not value or len(value.encode()) > COMM_MAX_BYTES:
            raise InvalidArgument(
                f"comm must be a task name of 1 to {COMM_MAX_BYTES} bytes as in /proc/<pid>/comm, got {value!r}"
                " (use comm_regex or cmdline_regex for longer names)")
        return Matcher(kind, value, None, matcher)
    if kind == "cgroup":
        if not value.startswith("/") or "/../" in value + "/" or "\0" in value:
            raise InvalidArgument(f"cgroup must be an absolute cgroup path like /system.slice/nginx.service, "
                                  f"got {value!r}")
        return Matcher(kind, value.rstrip("/") or "/", None, matcher)
    return Matcher(kind, value, _compile_regex(kind, value), matcher)


def _compile_regex(kind: str, value: str) -> re.Pattern:
    if not value:
        raise InvalidArgument(f"{kind} must not be empty")
    if len(value) > REGEX_MAX_CHARS:
        raise InvalidArgument(f"{kind} is longer than {REGEX_MAX_CHARS} characters")
    try:
        return re.compile(value)
    except re.error as exc:
        raise InvalidArgument(f"{kind} {value!r} is not a valid regular expression: {exc}") from None


def compile_all(matchers) -> list[Matcher]:
    if not matchers:
        raise InvalidArgument("at least one group matcher is required")
    return [compile_matcher(m) for m in matchers]


def group_id(kind: str, key: str | int) -> str:
    """The id of a profile group: `comm:nginx`, `pid:42`, `cgroup:/system.slice/x.service`."""
    return f"{kind}:{key}"


def matcher_for_group_id(value: str) -> common_pb2.GroupMatcher:
    kind, sep, key = value.partition(":")
    if not sep or kind not in _GROUP_ID_KINDS:
        raise InvalidArgument(f"group_id {value!r} is not a profile group id (comm:NAME, pid:PID or cgroup:PATH)")
    if kind == "pid":
        if not key.isdigit():
            raise InvalidArgument(f"group_id {value!r}: the part after 'pid:' must be a process id")
        return common_pb2.GroupMatcher(pid=int(key))
    return common_pb2.GroupMatcher(**{kind: key})
