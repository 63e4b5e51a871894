/* Verifier corpus: calls bpf_probe_read_kernel (#113) by its number, without naming it.
 * expect: helper #113
 */
#include "common.bpf.h"

const volatile u64 slice_us = 5000; /* time slice */

SEC("struct_ops/helper_by_number_select_cpu")
s32 BPF_PROG(helper_by_number_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_us * NSEC_PER_USEC, 0);
    return cpu;
}

SEC("struct_ops/helper_by_number_enqueue")
void BPF_PROG(helper_by_number_enqueue, struct task_struct *p, u64 enq_flags)
{
    char name[8];

    ((long (*)(void *, u32, const void *))113)(name, sizeof(name), p->comm);
    scx_bpf_dsq_insert(p, SHARED_DSQ, slice_us * NSEC_PER_USEC, enq_flags);
}

SEC("struct_ops/helper_by_number_dispatch")
void BPF_PROG(helper_by_number_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/helper_by_number_init")
s32 BPF_PROG(helper_by_number_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/helper_by_number_exit")
void BPF_PROG(helper_by_number_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops helper_by_number_ops = {
    .select_cpu = (void *)helper_by_number_select_cpu,
    .enqueue = (void *)helper_by_number_enqueue,
    .dispatch = (void *)helper_by_number_dispatch,
    .init = (void *)helper_by_number_init,
    .exit = (void *)helper_by_number_exit,
    .timeout_ms = 5000,
    .name = "schedcp_helper_by_number",
};
