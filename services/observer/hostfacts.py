"""Facts about this host's kernel and hardware, read from /proc and /sys."""

from __future__ import annotations

import functools
import os
import platform
import socket
from collections.abc import Sequence
from pathlib import Path

from google.protobuf import timestamp_pb2

from schedcp.domain import kernels, procfs, sched_ext
from schedcp.v1 import host_pb2

CPU_SYSFS = Path("/sys/devices/system/cpu")
# The release that brought cgroup v2's cpu.idle (SCHED_IDLE for a whole cgroup).
CPU_IDLE_SINCE = "5.15"
# Capability bits (linux/capability.h) that schedcp's privileged parts need.
_CAPABILITIES = {"CAP_SYS_ADMIN": 21, "CAP_SYS_NICE": 23, "CAP_PERFMON": 38, "CAP_BPF": 39}


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


@functools.cache  # read once: re-reading sysfs for every profile costs more than hotplug is likely
def cpu_topology() -> host_pb2.CpuTopology:
    cpus = sorted(CPU_SYSFS.glob("cpu[0-9]*"))
    cores, packages, llcs = set(), set(), set()
    for cpu in cpus:
        topo = cpu / "topology"
        package = _read(topo / "physical_package_id")
        cores.add((package, _read(topo / "core_id")))
        packages.add(package)
        caches = sorted((cpu / "cache").glob("index[0-9]*"), key=lambda p: _read(p / "level"))
        if caches:
            llcs.add(_read(caches[-1] / "shared_cpu_list"))
    model = next((line.split(":", 1)[1].strip() for line in _read(Path("/proc/cpuinfo")).splitlines()
                  if line.startswith("model name")), "")
    return host_pb2.CpuTopology(
        logical_cpus=os.cpu_count() or len(cpus),
        physical_cores=len(cores),
        packages=len(packages),
        numa_nodes=max(1, len(list(Path("/sys/devices/system/node").glob("node[0-9]*")))),
        llc_cpulists=sorted(x for x in llcs if x),
        model_name=model,
    )


def cgroup_info(mounts_text: str | None = None) -> host_pb2.CgroupInfo:
    """Where the cpu controller lives. A v2 mount counts only if it delegates `cpu`."""
    raw = None if mounts_text is None else mounts_text.encode()
    mounts = procfs.cgroup_mounts(raw)
    path, version = procfs.cpu_controller(raw)
    overall = 2 if mounts.v2_root and not mounts.any_v1 else (1 if mounts.any_v1 else 0)
    idle_file = Path(path) / "cpu.idle" if path else None
    # A v2 root never shows cpu.idle, only the cgroups below it (where the executor puts a
    # demoted batch, enabling the cpu controller for them): there the kernel says, since 5.15.
    below_v2_root = version == 2 and bool(kernels.at_least(platform.release(), CPU_IDLE_SINCE))
    return host_pb2.CgroupInfo(
        version=overall,
        cpu_controller_path=path,
        cpu_controller_version=version,
        cpu_idle_supported=bool(idle_file and idle_file.exists()) or below_v2_root,
    )


def privileges() -> host_pb2.Privileges:
    effective = 0
    for line in _read(Path("/proc/self/status")).splitlines():
        if line.startswith("CapEff:"):
            effective = int(line.split()[1], 16)
    names = [name for name, bit in sorted(_CAPABILITIES.items()) if effective >> bit & 1]
    return host_pb2.Privileges(is_root=os.geteuid() == 0, capabilities=names)


@functools.cache
def memory_bytes() -> int:
    for line in _read(Path("/proc/meminfo")).splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def collect(host_id: str, observer_modes: Sequence[str] = ("procfs",)) -> host_pb2.HostFacts:
    """Everything the planner and verifier need to know about this host's kernel and CPUs.
    `observer_modes`: how the observer can sample (its Sampler knows; see server.py)."""
    scx = sched_ext.read_state()
    privs = privileges()
    now = timestamp_pb2.Timestamp()
    now.GetCurrentTime()
    return host_pb2.HostFacts(
        host_id=host_id,
        hostname=socket.gethostname(),
        kernel_release=platform.release(),
        arch=platform.machine(),
        cpu=cpu_topology(),
        memory_bytes=memory_bytes(),
        sched_ext=scx,
        cgroup=cgroup_info(),
        btf_present=sched_ext.BTF_VMLINUX.exists(),
        btf_sha256=sched_ext.btf_sha256(),
        privileges=privs,
        backends=sched_ext.backends(scx),
        observer_modes=observer_modes,
        collected_at=now,
    )
