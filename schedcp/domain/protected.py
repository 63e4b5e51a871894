"""Processes schedcp never changes, whatever a policy says: init, kernel threads, the daemons a
host needs to stay reachable and logged, and schedcp itself.

Two uses. The verifier refuses a native policy whose matchers could select any of the
examples below (names, command lines, cgroups a matcher can express centrally). The executor
re-checks every real process on the host before it changes it (`reason_protected`), so a
matcher that slips past the examples still cannot reach them.
"""

from __future__ import annotations

import os
import re

PIDS = {1: "init", 2: "kthreadd"}
DAEMONS = ("systemd", "init", "sshd", "sshd-session", "sshd-auth", "systemd-journal", "systemd-journald",
           "systemd-logind", "systemd-udevd", "systemd-network", "systemd-resolve", "dbus-daemon", "dbus-broker",
           "containerd", "dockerd", "kubelet", "crio", "nats-server", "schedcp-loader", "schedcp")
# Kernel thread names as they appear (a regex is tried against each).
KERNEL_THREADS = ("kthreadd", "kworker/0:0", "kworker/1:1", "kworker/3:2H", "kworker/u8:0", "kworker/R-rcu_g",
                  "ksoftirqd/0", "ksoftirqd/1", "migration/0", "migration/3", "rcu_sched", "rcu_preempt",
                  "rcu_tasks_kthread", "rcu_exp_gp_kthread_worker", "cpuhp/0", "cpuhp/2", "idle_inject/0",
                  "watchdogd", "kswapd0", "khugepaged", "kcompactd0", "kauditd", "oom_reaper", "writeback",
                  "kblockd", "jbd2/sda1-8", "irq/24-nvme0q0", "irq/9-acpi", "kdevtmpfs", "khungtaskd")
KERNEL_THREAD_PATTERN = re.compile(
    r"(kworker|ksoftirqd|migration|cpuhp|idle_inject|irq|jbd2|rcu_\w+|kswapd\d*|kcompactd\d*)(/.*)?|k\w+d")
CGROUPS = ("/init.scope", "/system.slice/ssh.service", "/system.slice/sshd.service",
           "/system.slice/systemd-journald.service", "/system.slice/systemd-logind.service",
           "/system.slice/systemd-udevd.service", "/system.slice/dbus.service", "/system.slice/dbus-broker.service",
           "/system.slice/containerd.service", "/system.slice/docker.service", "/system.slice/kubelet.service",
           "/system.slice/nats-server.service", "/system.slice/schedcp-observer.service",
           "/system.slice/schedcp-executor.service")
CMDLINES = ("/sbin/init", "/lib/systemd/systemd --system --deserialize 42", "/usr/lib/systemd/systemd-journald",
            "/lib/systemd/systemd-logind", "/lib/systemd/systemd-udevd",
            "/usr/bin/dbus-daemon --system --address=systemd: --nofork", "/usr/sbin/sshd -D",
            "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups", "/usr/bin/containerd",
            "/usr/bin/dockerd -H fd://", "/usr/bin/kubelet --config=/var/lib/kubelet/config.yaml",
            "nats-server -js -p 4222", "/usr/bin/schedcp-loader /var/lib/schedcp/x.bpf.o",
            *(f"python -m services.{role}" for role in ("observer", "planner", "executor", "verifier", "learner")),
            *(f"/usr/bin/python3 -m services.{role}" for role in ("observer", "executor")))
_SCHEDCP_CMDLINE = re.compile(r"-m services\.(observer|planner|executor|verifier|learner)\b|schedcp-loader|nats-server")


class Example:
    """A stand-in process for asking "would this matcher select it?"."""

    def __init__(self, comm: str = "\0", cgroup: str = "", cmdline_text: str = "", pid: int = 0) -> None:
        self.pid, self.comm, self.cgroup, self.unified_cgroup = pid, comm, cgroup, cgroup
        self._cmdline = cmdline_text

    def cmdline(self) -> str:
        return self._cmdline


def examples() -> list[tuple[str, Example]]:
    """Every protected example, described, for the verifier to try matchers against."""
    found = [(f"pid {pid} ({name})", Example(pid=pid)) for pid, name in PIDS.items()]
    found += [(f"process {name!r}", Example(comm=name)) for name in DAEMONS]
    found += [(f"kernel thread {name!r}", Example(comm=name)) for name in KERNEL_THREADS]
    found += [(f"cgroup {path}", Example(cgroup=path)) for path in CGROUPS]
    found += [(f"the process running {text!r}", Example(cmdline_text=text)) for text in CMDLINES]
    return found


def reason_protected(process) -> str:
    """Why the executor must leave this real process alone ("" if it may change it)."""
    if process.pid in PIDS or process.kernel_thread:
        return "init or a kernel thread"
    if process.pid == os.getpid():
        return "the executor itself"
    if process.comm in DAEMONS:
        return f"a system daemon ({process.comm})"
    for path in (process.cgroup, process.unified_cgroup):
        if any(path == c or path.startswith(c + "/") for c in CGROUPS):
            return f"in a protected cgroup ({path})"
    if _SCHEDCP_CMDLINE.search(process.cmdline()):
        return "part of schedcp"
    return ""
