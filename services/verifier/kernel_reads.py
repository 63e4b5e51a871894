"""Rule SCX016: which kernel structures and fields a scheduler may touch.

A struct_ops program gets BTF-typed pointers (the task, the exit info...), and the kernel's
verifier lets it follow them into any field: from a task to its credentials, its memory map,
its open files. None of that is scheduling state, and a scheduler written by an LLM has no
business reading it (it could leak it through its maps, or decide on it). The allow-list below
is what the library's policies touch (measured: docs/verifier.md) plus the other fields a
scheduler plausibly decides on.

The fields come from the object's CO-RE relocations (.BTF.ext): vmlinux.h marks every kernel
struct `preserve_access_index`, so `p->real_cred->uid`, BPF_CORE_READ chains and helper macros
alike leave one record per field, naming the struct and the member path. Each hop of a chain
is checked on its own, so an allowed pointer (task_struct.group_leader) leads only to allowed
fields. What leaves no record (a struct of the candidate's own laid over a kernel pointer,
pointer arithmetic) is found by raw_reads.py, which judges it with `allowed` and `reason` here.
"""

from __future__ import annotations

from collections.abc import Iterator

from schedcp.toolchain.bpf_object import BpfObject, FieldAccess
from schedcp.v1 import verdict_pb2
from services.verifier.static_analysis import ERROR, finding

ANY = "*"
# struct -> the member paths that may be touched (a path allows everything below it).
ALLOWED_FIELDS: dict[str, frozenset[str]] = {
    "task_struct": frozenset({
        "pid", "tgid", "comm", "prio", "static_prio", "normal_prio", "rt_priority", "policy", "flags", "__state",
        "scx", "se", "cpus_ptr", "cpus_mask", "nr_cpus_allowed", "migration_disabled", "on_cpu", "on_rq",
        "recent_used_cpu", "wake_cpu", "nvcsw", "nivcsw", "utime", "stime", "group_leader",
    }),
    # The scheduling entities and what they hold (weights, load averages, the DSQ a task is on).
    "sched_ext_entity": frozenset({ANY}), "sched_entity": frozenset({ANY}), "load_weight": frozenset({ANY}),
    "sched_avg": frozenset({ANY}), "scx_dispatch_q": frozenset({"nr", "id"}), "cpumask": frozenset({ANY}),
    "rq": frozenset({"cpu", "nr_running", "clock", "clock_task", "curr", "scx"}), "scx_rq": frozenset({ANY}),
    # The arguments of the ops callbacks.
    "scx_exit_info": frozenset({"kind", "exit_code"}), "scx_init_task_args": frozenset({ANY}),
    "scx_exit_task_args": frozenset({ANY}), "scx_cgroup_init_args": frozenset({ANY}),
    "scx_cpu_acquire_args": frozenset({ANY}), "scx_cpu_release_args": frozenset({ANY}),
    "cgroup": frozenset({"level", "kn"}), "kernfs_node": frozenset({"id"}),
}
# Why the structs a scheduler is most likely to reach for are refused.
REASONS: dict[str, str] = {
    "cred": "credentials are not scheduling state",
    "mm_struct": "a process's memory is not scheduling state",
    "vm_area_struct": "a process's memory is not scheduling state",
    "files_struct": "open files are not scheduling state",
    "fdtable": "open files are not scheduling state",
    "file": "open files are not scheduling state",
    "fs_struct": "file system paths are not scheduling state",
    "nsproxy": "namespaces are not scheduling state",
    "signal_struct": "signal state is not scheduling state",
    "sighand_struct": "signal state is not scheduling state",
}


def allowed(access: FieldAccess) -> bool:
    struct, members = access.path[0], access.path[1:]
    permitted = ALLOWED_FIELDS.get(struct, frozenset())
    return ANY in permitted or any(".".join(members[:n]) in permitted for n in range(1, len(members) + 1))


def reason(access: FieldAccess) -> str:
    """The sentence that says why: the struct the field leads to or lives in, else the list."""
    for struct in (access.target, access.path[0]):
        if struct in REASONS:
            return REASONS[struct]
    if access.path[0] not in ALLOWED_FIELDS:
        return f"struct {access.path[0]} is not one a scheduler may read"
    return f"{access.dotted} is not among the {access.path[0]} fields a scheduler may read"


def findings(obj: BpfObject) -> list[verdict_pb2.Finding]:
    """SCX016 for each refused field, once, in the order the program touches them."""
    found, seen = [], set()
    for access, shown in _chained(obj.field_accesses()):
        if access.dotted in seen or allowed(access):
            continue
        seen.add(access.dotted)
        found.append(finding("SCX016", ERROR, 0, f"reads {shown}: {reason(access)}",
                             "a scheduler may read the task's scheduling fields (pid, tgid, comm, priorities, "
                             "policy, scx, se, its CPUs) and its callbacks' arguments; see docs/verifier.md"))
    return found


def _chained(accesses: list[FieldAccess]) -> Iterator[tuple[FieldAccess, str]]:
    """(access, how to show it): `task_struct.group_leader->mm` when the access before it
    loaded a pointer to this struct. The records are in instruction order, so this is how a
    chain usually reads; it only shapes the message, every access is judged on its own."""
    previous, previous_shown = None, ""
    for access in accesses:
        shown = access.dotted
        if previous is not None and previous.target == access.path[0] and len(access.path) > 1:
            shown = f"{previous_shown}->{'.'.join(access.path[1:])}"
        yield access, shown
        previous, previous_shown = access, shown
