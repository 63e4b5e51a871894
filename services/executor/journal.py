"""The native backend's journal: every change, with the value it replaces, is appended to a file
and fsynced before the change is made. Rollback, clean shutdown and the next start after a
crash all restore from it, newest first, so the oldest original of each setting wins.

A thread is identified by (tid, start time): a tid reused by a new thread after the old one
exited is never touched.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Change:
    """One setting of one thread, process or cgroup, and what it was before."""

    deployment_id: str
    # "sched" (policy, nice, slice), "affinity", "cgroup" (a process moved), "cgroup_dir" (created)
    kind: str
    pid: int = 0
    tid: int = 0
    # Thread start time in clock ticks since boot (/proc stat field 22); 0 for cgroup_dir.
    start_time: int = 0
    original: object = None
    # cgroup: the directory the process was moved into; cgroup_dir: the directory created.
    target: str = ""
    # The value schedcp set: a restore happens only while the task still has it.
    applied: object = None


class Journal:
    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, change: Change) -> None:
        """Durably note a change that is about to be made."""
        line = json.dumps(asdict(change), separators=(",", ":")) + "\n"
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def changes(self) -> list[Change]:
        """Every recorded change, oldest first. A torn last line (a crash mid-write) is skipped:
        its change was never made, since the write comes first."""
        try:
            lines = self._path.read_text().splitlines()
        except FileNotFoundError:
            return []
        found = []
        for number, line in enumerate(lines, 1):
            try:
                found.append(Change(**json.loads(line)))
            except (json.JSONDecodeError, TypeError):
                log.warning("journal %s line %d is unreadable and skipped: %.80s", self._path, number, line)
        return found

    def replace(self, changes: list[Change]) -> None:
        """Keep only `changes` (those a revert could not undo; none once everything is): written
        to a new file and renamed over the old one, so a crash leaves one or the other."""
        tmp = self._path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o600)
        try:
            os.write(fd, "".join(json.dumps(asdict(c), separators=(",", ":")) + "\n" for c in changes).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self._path)

    def __len__(self) -> int:
        return len(self.changes())
