/* Verifier corpus: gives root's tasks longer slices by reading the task's credentials.
 * expect: SCX016 reads task_struct.cred: credentials are not scheduling state
 */
#include "common.bpf.h"

const volatile u64 slice_us = 5000; /* time slice */

SEC("struct_ops/reads_cred_select_cpu")
s32 BPF_PROG(reads_cred_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_us * NSEC_PER_USEC, 0);
    return cpu;
}

SEC("struct_ops/reads_cred_enqueue")
void BPF_PROG(reads_cred_enqueue, struct task_struct *p, u64 enq_flags)
{
    u64 slice = slice_us * NSEC_PER_USEC;

    if (p->cred->uid.val == 0)
        slice *= 2;
    scx_bpf_dsq_insert(p, SHARED_DSQ, slice, enq_flags);
}

SEC("struct_ops/reads_cred_dispatch")
void BPF_PROG(reads_cred_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/reads_cred_init")
s32 BPF_PROG(reads_cred_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/reads_cred_exit")
void BPF_PROG(reads_cred_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops reads_cred_ops = {
    .select_cpu = (void *)reads_cred_select_cpu,
    .enqueue = (void *)reads_cred_enqueue,
    .dispatch = (void *)reads_cred_dispatch,
    .init = (void *)reads_cred_init,
    .exit = (void *)reads_cred_exit,
    .timeout_ms = 5000,
    .name = "schedcp_reads_cred",
};
