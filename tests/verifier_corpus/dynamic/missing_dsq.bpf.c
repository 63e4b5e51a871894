/* Verifier corpus: sends batch tasks to DSQ SHARED_DSQ + 1, which it never created: the first
 * one is a runtime error and the kernel ejects the scheduler.
 * expect: non-existent DSQ
 */
#include "common.bpf.h"

const volatile u64 slice_us = 5000; /* time slice */

SEC("struct_ops/missing_dsq_select_cpu")
s32 BPF_PROG(missing_dsq_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_us * NSEC_PER_USEC, 0);
    return cpu;
}

/* The batch jobs of the workload this scheduler was written for are named "hog". */
static bool is_hog(const struct task_struct *p)
{
    return p->comm[0] == 'h' && p->comm[1] == 'o' && p->comm[2] == 'g' && !p->comm[3];
}

SEC("struct_ops/missing_dsq_enqueue")
void BPF_PROG(missing_dsq_enqueue, struct task_struct *p, u64 enq_flags)
{
    scx_bpf_dsq_insert(p, SHARED_DSQ + is_hog(p), slice_us * NSEC_PER_USEC, enq_flags);
}

SEC("struct_ops/missing_dsq_dispatch")
void BPF_PROG(missing_dsq_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/missing_dsq_init")
s32 BPF_PROG(missing_dsq_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/missing_dsq_exit")
void BPF_PROG(missing_dsq_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops missing_dsq_ops = {
    .select_cpu = (void *)missing_dsq_select_cpu,
    .enqueue = (void *)missing_dsq_enqueue,
    .dispatch = (void *)missing_dsq_dispatch,
    .init = (void *)missing_dsq_init,
    .exit = (void *)missing_dsq_exit,
    .timeout_ms = 5000,
    .name = "schedcp_missing_dsq",
};
