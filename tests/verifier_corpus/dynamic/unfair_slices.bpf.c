/* Verifier corpus: odd pids get 40 times the slice of even pids: everyone runs, but equal
 * CPU hogs get very unequal CPU.
 * expect: DYN002
 */
#include "common.bpf.h"

const volatile u64 slice_us = 1000; /* time slice */

SEC("struct_ops/unfair_slices_select_cpu")
s32 BPF_PROG(unfair_slices_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_us * NSEC_PER_USEC, 0);
    return cpu;
}

SEC("struct_ops/unfair_slices_enqueue")
void BPF_PROG(unfair_slices_enqueue, struct task_struct *p, u64 enq_flags)
{
    u64 slice = (p->pid & 1) ? 40 * slice_us : slice_us;

    scx_bpf_dsq_insert(p, SHARED_DSQ, slice * NSEC_PER_USEC, enq_flags);
}

SEC("struct_ops/unfair_slices_dispatch")
void BPF_PROG(unfair_slices_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/unfair_slices_init")
s32 BPF_PROG(unfair_slices_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/unfair_slices_exit")
void BPF_PROG(unfair_slices_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops unfair_slices_ops = {
    .select_cpu = (void *)unfair_slices_select_cpu,
    .enqueue = (void *)unfair_slices_enqueue,
    .dispatch = (void *)unfair_slices_dispatch,
    .init = (void *)unfair_slices_init,
    .exit = (void *)unfair_slices_exit,
    .timeout_ms = 5000,
    .name = "schedcp_unfair_slices",
};
