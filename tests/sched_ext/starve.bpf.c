/* Test-only: a scheduler that drops every task it is given. Runnable tasks never run, so the
 * kernel's watchdog must eject it after timeout_ms and fall back to the fair class. */
#include "common.bpf.h"

SEC("struct_ops/starve_enqueue")
void BPF_PROG(starve_enqueue, struct task_struct *p, u64 enq_flags)
{
    /* deliberately nothing: the task is never inserted into any queue */
}

SEC("struct_ops/starve_dispatch")
void BPF_PROG(starve_dispatch, s32 cpu, struct task_struct *prev)
{
}

SEC("struct_ops/starve_exit")
void BPF_PROG(starve_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops starve_ops = {
    .enqueue = (void *)starve_enqueue,
    .dispatch = (void *)starve_dispatch,
    .exit = (void *)starve_exit,
    .timeout_ms = 2000,
    .name = "schedcp_test_starve",
};
