"""Linux releases: reading a host's release string, and the release each sched_ext kfunc the
policy library declares (policies/sched_ext/common.bpf.h) first appeared in, so that a policy's
`min_kernel` can be checked against what it calls and a host checked against `min_kernel`.

KFUNC_SINCE is the mainline release that first exported each name, from the kernel commits
that added or renamed it (release tags as docs.ebpf.io's kfunc pages give them, and the scx
project's compat.bpf.h notes):

- 6.12 merged sched_ext (f0e1a0643a59 "sched_ext: Implement BPF extensible scheduler class"):
  scx_bpf_create_dsq, scx_bpf_select_cpu_dfl, scx_bpf_kick_cpu, scx_bpf_dsq_nr_queued,
  scx_bpf_task_cpu.
- 6.13 renamed the verb "dispatch" away: scx_bpf_dispatch[_vtime] became
  scx_bpf_dsq_insert[_vtime] (cc26abb1a19a) and scx_bpf_consume became
  scx_bpf_dsq_move_to_local (5209c03c8ed2). A 6.12 kernel has only the old names, so a
  program calling the new ones does not load there.
- 6.14 added scx_bpf_now, the rq-clock based timestamp (3a9910b5904d).

Distribution kernels backport; the table is mainline, so a backporting distribution kernel is
judged by its version number like any other (conservatively: it is offered nothing newer than
its number says).
"""

from __future__ import annotations

import re

Release = tuple[int, int, int]

KFUNC_SINCE: dict[str, Release] = {
    "scx_bpf_create_dsq": (6, 12, 0),
    "scx_bpf_select_cpu_dfl": (6, 12, 0),
    "scx_bpf_kick_cpu": (6, 12, 0),
    "scx_bpf_dsq_nr_queued": (6, 12, 0),
    "scx_bpf_task_cpu": (6, 12, 0),
    "scx_bpf_dsq_insert": (6, 13, 0),
    "scx_bpf_dsq_insert_vtime": (6, 13, 0),
    "scx_bpf_dsq_move_to_local": (6, 13, 0),
    "scx_bpf_now": (6, 14, 0),
}

# major.minor[.patch] at the start; whatever follows ("+deb13-cloud-amd64", "-rc1",
# "-fc-v1272", "-generic") is the distribution's or the build's and ignored.
_RELEASE = re.compile(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?")


def parse(release: str) -> Release | None:
    """(major, minor, patch) of a release such as "6.18.12+deb13-cloud-amd64" or "6.12.0-rc1"
    (patch 0 when absent); None when it does not start with major.minor."""
    match = _RELEASE.match(release)
    if not match:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def text(release: Release) -> str:
    """The release as a minimum is written: "6.13", or "6.13.4" when the patch matters."""
    return ".".join(map(str, release if release[2] else release[:2]))


def at_least(release: str, minimum: str) -> bool | None:
    """Whether `release` is `minimum` or newer; None when either cannot be read (an empty or
    odd release string: the caller decides what unknown means). An -rc of a release counts as
    that release: the kfuncs of a release are in its release candidates."""
    have, want = parse(release), parse(minimum)
    if have is None or want is None:
        return None
    return have >= want


def required_by(kfuncs: set[str] | list[str]) -> Release:
    """The newest release among those that introduced `kfuncs` (KeyError for one not in the table)."""
    return max((KFUNC_SINCE[k] for k in kfuncs), default=(0, 0, 0))
