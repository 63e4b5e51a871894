"""Reads the kernel's sched_ext state from sysfs (/sys/kernel/sched_ext), and what identifies
the running kernel for verdicts (release and BTF digest)."""

from __future__ import annotations

import functools
import hashlib
import platform
from pathlib import Path

from schedcp.v1 import host_pb2, verdict_pb2

SYSFS = Path("/sys/kernel/sched_ext")
BTF_VMLINUX = Path("/sys/kernel/btf/vmlinux")


@functools.cache  # the running kernel's BTF cannot change; hash it once
def btf_sha256() -> str:
    try:
        return hashlib.sha256(BTF_VMLINUX.read_bytes()).hexdigest()
    except OSError:
        return ""


def host_kernel() -> verdict_pb2.TargetKernel:
    """This host's kernel as verdicts name it."""
    return verdict_pb2.TargetKernel(release=platform.release(), btf_sha256=btf_sha256(), arch=platform.machine())

_STATES = {
    "disabled": host_pb2.SCHED_EXT_STATE_DISABLED,
    "enabling": host_pb2.SCHED_EXT_STATE_ENABLING,
    "enabled": host_pb2.SCHED_EXT_STATE_ENABLED,
    "disabling": host_pb2.SCHED_EXT_STATE_DISABLING,
}


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _read_int(path: Path) -> int:
    text = _read(path)
    return int(text) if text.isdigit() else 0


def read_state(root: Path = SYSFS) -> host_pb2.SchedExtInfo:
    """The sched_ext state; UNSUPPORTED when the kernel has no sched_ext."""
    if not (root / "state").exists():
        return host_pb2.SchedExtInfo(state=host_pb2.SCHED_EXT_STATE_UNSUPPORTED)
    return host_pb2.SchedExtInfo(
        state=_STATES.get(_read(root / "state"), host_pb2.SCHED_EXT_STATE_UNSPECIFIED),
        ops_name=_read(root / "root" / "ops"),
        enable_seq=_read_int(root / "enable_seq"),
        nr_rejected=_read_int(root / "nr_rejected"),
    )


def available(info: host_pb2.SchedExtInfo) -> bool:
    return info.state not in (host_pb2.SCHED_EXT_STATE_UNSUPPORTED, host_pb2.SCHED_EXT_STATE_UNSPECIFIED)


def backends(info: host_pb2.SchedExtInfo) -> list[str]:
    """Deployment backends a host with this sched_ext state supports."""
    return (["sched_ext"] if available(info) else []) + ["native"]
