"""The compiled object's rules in detail: the kernel memory it reckons (SCX015) and the kernel
fields it lets a scheduler touch (SCX016). The corpus test runs the bad candidates through the
stages; tests/test_verifier_stages.py runs the library through them."""

from __future__ import annotations

import pytest

from schedcp.runtime.config import Settings
from schedcp.toolchain.bpf_object import FieldAccess, MapDef
from services.verifier import footprint, kernel_reads

BUDGET = footprint.Budget(bytes=16 << 20, cpus=64, tasks=4096)


@pytest.mark.parametrize(("map_def", "expected_bytes", "words"), [
    (MapDef("big_arr", 2, 1 << 20, 4, 1024, 0), 1 << 30, "1,048,576 entries x 1,024 B"),
    (MapDef("odd", 2, 10, 4, 12, 0), 10 * 16, "10 entries x 16 B"),  # values are 8-byte aligned
    (MapDef("stats", 6, 1024, 4, 128, 0), 1024 * 128 * 64, "x 64 CPUs"),
    (MapDef("tasks", 1, 1000, 4, 64, 0), 1000 * (8 + 64 + 64), "8 B key + 64 B value + ~64 B"),
    (MapDef("pcpu", 5, 100, 8, 8, 0), 100 * (64 + 8 + 8 * 64), "8 B value x 64 CPUs"),
    (MapDef("ctx", 29, 0, 4, 8, 1), 4096 * (8 + 64), "each of 4,096 tasks"),
    (MapDef("events", 27, 1 << 20, 0, 0, 0), 1 << 20, "1,048,576 B"),
    (MapDef("heap", 33, 100, 0, 0, 0), 100 * 4096, "100 pages"),
])
def test_each_map_type_is_reckoned_as_the_kernel_lays_it_out(map_def, expected_bytes, words):
    use = footprint.map_use(map_def, BUDGET)
    assert use.bytes == expected_bytes and words in use.reckoning and map_def.name in use.what


@pytest.mark.parametrize(("size", "said"), [(473, "473 B"), (295424, "288.5 KiB"), (16 << 20, "16 MiB"),
                                            ((1 << 30) + 1, "1.0 GiB")])
def test_sizes_are_said_in_the_unit_a_person_would_use(size, said):
    assert footprint.human(size) == said


def test_the_budget_is_a_setting_in_mib(monkeypatch):
    assert Settings().verifier_memory_budget_mib == footprint.DEFAULT_BUDGET_MIB == 16
    monkeypatch.setenv("SCHEDCP_VERIFIER_MEMORY_BUDGET_MIB", "0.5")
    assert footprint.Budget.of_mib(Settings().verifier_memory_budget_mib).bytes == 512 << 10


@pytest.mark.parametrize("path", [("task_struct", "pid"), ("task_struct", "scx", "dsq_vtime"),
                                  ("task_struct", "se", "sum_exec_runtime"), ("sched_ext_entity", "slice"),
                                  ("scx_exit_info", "kind"), ("cpumask", "bits")])
def test_scheduling_fields_are_allowed(path):
    assert kernel_reads.allowed(FieldAccess(path))


@pytest.mark.parametrize(("access", "why"), [
    (FieldAccess(("task_struct", "real_cred"), "cred"), "credentials are not scheduling state"),
    (FieldAccess(("cred", "uid", "val")), "credentials are not scheduling state"),
    (FieldAccess(("task_struct", "mm"), "mm_struct"), "memory is not scheduling state"),
    (FieldAccess(("task_struct", "nsproxy"), "nsproxy"), "namespaces are not scheduling state"),
    (FieldAccess(("task_struct", "loginuid")), "task_struct.loginuid is not among the task_struct fields"),
    (FieldAccess(("scx_exit_info", "msg")), "scx_exit_info.msg is not among"),
    (FieldAccess(("bpf_map", "max_entries")), "struct bpf_map is not one a scheduler may read"),
])
def test_other_kernel_state_is_refused_with_a_reason(access, why):
    assert not kernel_reads.allowed(access)
    assert why in kernel_reads.reason(access)


def test_an_allowed_member_does_not_allow_its_siblings_by_prefix():
    # "se" is allowed as a whole, "sessionid" is not: paths match by member, not by text.
    assert kernel_reads.allowed(FieldAccess(("task_struct", "se", "vruntime")))
    assert not kernel_reads.allowed(FieldAccess(("task_struct", "sessionid")))
