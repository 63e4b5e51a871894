"""Verification stage 1 (static analysis) rules in detail; the corpus test runs every bad
candidate through all the stages."""

from __future__ import annotations

from pathlib import Path

import pytest

from schedcp.domain import policies
from services.verifier import static_analysis

CORPUS = sorted((Path(__file__).parent / "verifier_corpus" / "static").glob("*.bpf.c"))
LIBRARY = [m for m in policies.library() if m.kind == "sched_ext"]


def test_findings_point_at_the_offending_line():
    path = next(p for p in CORPUS if p.name == "write_user.bpf.c")
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "bpf_probe_write_user(" in text)
    (found,) = [f for f in static_analysis.analyse(path.read_text()) if f.rule_id == "SCX003"]
    assert found.line == line and "writes user memory" in found.message


def test_comments_do_not_trigger_rules():
    source = (policies.LIBRARY / "sched_ext" / "fifo.bpf.c").read_text()
    commented = source + "\n/* bpf_probe_write_user(dst, src, 1); while (1) {} */\n// #include <linux/sched.h>\n"
    assert static_analysis.analyse(commented) == static_analysis.analyse(source)


@pytest.mark.parametrize("meta", LIBRARY, ids=[m.name for m in LIBRARY])
def test_library_policies_pass(meta):
    findings = static_analysis.analyse(policies.source_of(meta).read_text())
    assert static_analysis.passed(findings) and not findings, findings


def test_a_library_headers_callbacks_count_but_do_not_mask_the_candidates_own():
    batch = (policies.LIBRARY / "sched_ext" / "batch.bpf.c").read_text()
    assert "vtime_enqueue" in batch and "BPF_PROG(vtime_enqueue" not in batch  # it is vtime_sched.bpf.h's
    assert static_analysis.analyse(batch) == []
    own = batch.replace('SEC(".struct_ops.link")', 'SEC("struct_ops/vtime_enqueue")\n'
                        "void BPF_PROG(vtime_enqueue, struct task_struct *p, u64 enq_flags) {}\n\n"
                        'SEC(".struct_ops.link")')
    assert "SCX013" in [f.rule_id for f in static_analysis.analyse(own)]


# SCX017: a DSQ consumed only by chance, at certain times or for certain names. The template is
# fifo with a second DSQ that tasks named "backup" go to; DISPATCH is what dispatch does.
STARVE_TEMPLATE = """#include "common.bpf.h"

#define SLOW_DSQ 7

const volatile u64 slice_us = 5000;
const volatile char slow_comm[16] = "backup";
static u64 dispatches;
HELPERS
SEC("struct_ops/t_enqueue")
void BPF_PROG(t_enqueue, struct task_struct *p, u64 enq_flags)
{
    if (comm_has_prefix(p, slow_comm)) {
        scx_bpf_dsq_insert(p, SLOW_DSQ, slice_us * NSEC_PER_USEC, enq_flags);
        return;
    }
    scx_bpf_dsq_insert(p, SHARED_DSQ, slice_us * NSEC_PER_USEC, enq_flags);
}

SEC("struct_ops/t_dispatch")
void BPF_PROG(t_dispatch, s32 cpu, struct task_struct *prev)
{
DISPATCH
}

SEC("struct_ops.s/t_init")
s32 BPF_PROG(t_init)
{
    s32 err = scx_bpf_create_dsq(SLOW_DSQ, -1);

    return err ? err : scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/t_exit")
void BPF_PROG(t_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops t_ops = {
    .enqueue = (void *)t_enqueue,
    .dispatch = (void *)t_dispatch,
    .init = (void *)t_init,
    .exit = (void *)t_exit,
    .timeout_ms = 5000,
    .name = "schedcp_t",
};
"""


def starved(dispatch: str, helpers: str = "") -> list[str]:
    source = STARVE_TEMPLATE.replace("DISPATCH", dispatch).replace("HELPERS", helpers)
    return [f.message for f in static_analysis.analyse(source) if f.rule_id == "SCX017"]


@pytest.mark.parametrize("dispatch, helpers, words", [
    ("    if (bpf_get_prandom_u32() % 1000)\n        return;\n    scx_bpf_dsq_move_to_local(SLOW_DSQ);",
     "", "unless bpf_get_prandom_u32() % 1000, a condition on a random draw"),
    ("    u32 r = bpf_get_prandom_u32();\n\n    if (!scx_bpf_dsq_move_to_local(SHARED_DSQ) && r < 1000)\n"
     "        scx_bpf_dsq_move_to_local(SLOW_DSQ);", "", "through r -> bpf_get_prandom_u32()"),
    ("    (bpf_ktime_get_ns() & 0xffff) == 0 && scx_bpf_dsq_move_to_local(SLOW_DSQ);\n"
     "    scx_bpf_dsq_move_to_local(SHARED_DSQ);", "", "a condition on the time"),
    ("    if (++dispatches % 10000 == 0) {\n        scx_bpf_dsq_move_to_local(SLOW_DSQ);\n        return;\n    }\n"
     "    scx_bpf_dsq_move_to_local(SHARED_DSQ);", "", "a condition on a count modulo 10000"),
    ("    if (prev && prev->pid == 1)\n        serve();\n    scx_bpf_dsq_move_to_local(SHARED_DSQ);",
     "static void serve(void) { scx_bpf_dsq_move_to_local(SLOW_DSQ); }\n", "a condition on a process id"),
    ("    if (scx_bpf_dsq_move_to_local(SHARED_DSQ))\n        return;\n"
     "    lucky() ? scx_bpf_dsq_move_to_local(SLOW_DSQ) : 0;",
     "#define lucky() (bpf_get_prandom_u32() < 4096)\n", "through lucky -> bpf_get_prandom_u32()"),
    ("    if (prev && !bpf_strncmp(prev->comm, 4, \"sshd\"))\n        scx_bpf_dsq_move_to_local(SLOW_DSQ);\n"
     "    scx_bpf_dsq_move_to_local(SHARED_DSQ);", "", 'when prev && !bpf_strncmp(prev->comm, 4, "sshd"), a condition '
     "on a task's name"),
    ("    if (IS_BACKUP(prev))\n        scx_bpf_dsq_move_to_local(SLOW_DSQ);\n"
     "    scx_bpf_dsq_move_to_local(SHARED_DSQ);",
     '#define IS_BACKUP(t) ((t) && __builtin_memcmp((t)->comm, "backup", 6) == 0)\n',
     "through IS_BACKUP -> __builtin_memcmp()"),
], ids=["early-return", "local-variable", "short-circuit", "counter", "helper-call-site", "ternary-macro", "strncmp",
        "memcmp-macro"])
def test_a_dsq_consumed_only_by_chance_time_name_or_pid_is_starved(dispatch, helpers, words):
    (message,) = starved(dispatch, helpers)
    assert message.startswith("DSQ 7 (SLOW_DSQ) is consumed only ") and words in message, message
    assert message.endswith("tasks inserted into it can wait forever")


def test_a_consume_call_no_callback_reaches_does_not_count():
    unused = "static void unused(void) { char brace = '{'; scx_bpf_dsq_move_to_local(SLOW_DSQ); }\n"
    (message,) = starved("    if (bpf_get_prandom_u32() % 1000 == 0)\n        scx_bpf_dsq_move_to_local(SLOW_DSQ);\n"
                         "    scx_bpf_dsq_move_to_local(SHARED_DSQ);", unused)
    assert "a condition on a random draw" in message
    (message,) = starved("    scx_bpf_dsq_move_to_local(SHARED_DSQ);", unused)
    assert message.startswith("DSQ 7 (SLOW_DSQ) is consumed only in unused(), which no callback of the ops runs")


@pytest.mark.parametrize("dispatch", [
    "    scx_bpf_dsq_move_to_local(SLOW_DSQ);\n    scx_bpf_dsq_move_to_local(SHARED_DSQ);",
    "    if (scx_bpf_dsq_nr_queued(SLOW_DSQ) > 0)\n        scx_bpf_dsq_move_to_local(SLOW_DSQ);\n"
    "    else\n        scx_bpf_dsq_move_to_local(SHARED_DSQ);",
    "    if (!scx_bpf_dsq_move_to_local(SHARED_DSQ))\n        scx_bpf_dsq_move_to_local(SLOW_DSQ);",
    # a rate limit: served first every 10 ms, else when the shared queue is empty
    "    u64 now = scx_bpf_now();\n\n    if (now - dispatches > 10 * NSEC_PER_MSEC) {\n        dispatches = now;\n"
    "        scx_bpf_dsq_move_to_local(SLOW_DSQ);\n    } else if (!scx_bpf_dsq_move_to_local(SHARED_DSQ)) {\n"
    "        scx_bpf_dsq_move_to_local(SLOW_DSQ);\n    }",
    "    if (scx_bpf_now() - dispatches > NSEC_PER_MSEC || !scx_bpf_dsq_move_to_local(SHARED_DSQ))\n"
    "        scx_bpf_dsq_move_to_local(SLOW_DSQ);",
    "    for (int i = 0; i < 4; i++)\n        if (!scx_bpf_dsq_move_to_local(SLOW_DSQ))\n"
    "            break;\n    scx_bpf_dsq_move_to_local(SHARED_DSQ);",
], ids=["unconditional", "when-non-empty", "when-the-other-is-empty", "rate-limit", "time-or-empty", "loop"])
def test_a_dsq_consumed_whenever_it_has_tasks_is_not_starved(dispatch):
    assert starved(dispatch) == []
    source = STARVE_TEMPLATE.replace("DISPATCH", dispatch).replace("HELPERS", "")
    assert static_analysis.passed(static_analysis.analyse(source))
