/* Verifier corpus: the same credential read, disguised: through the thread group leader (an
 * allowed pointer), behind an innocently named macro. (BPF_CORE_READ would be refused anyway:
 * it calls bpf_probe_read_kernel, SCX004; plain dereferences do not.)
 * expect: SCX016 reads task_struct.group_leader->real_cred
 */
#include "common.bpf.h"

#define GROUP_HINT(t) ((t)->group_leader->real_cred->euid.val)

const volatile u64 slice_us = 5000; /* time slice */

static __always_inline u64 slice_for(struct task_struct *p)
{
    return GROUP_HINT(p) ? slice_us * NSEC_PER_USEC : 2 * slice_us * NSEC_PER_USEC;
}

SEC("struct_ops/cred_by_chain_select_cpu")
s32 BPF_PROG(cred_by_chain_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_us * NSEC_PER_USEC, 0);
    return cpu;
}

SEC("struct_ops/cred_by_chain_enqueue")
void BPF_PROG(cred_by_chain_enqueue, struct task_struct *p, u64 enq_flags)
{
    scx_bpf_dsq_insert(p, SHARED_DSQ, slice_for(p), enq_flags);
}

SEC("struct_ops/cred_by_chain_dispatch")
void BPF_PROG(cred_by_chain_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/cred_by_chain_init")
s32 BPF_PROG(cred_by_chain_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/cred_by_chain_exit")
void BPF_PROG(cred_by_chain_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops cred_by_chain_ops = {
    .select_cpu = (void *)cred_by_chain_select_cpu,
    .enqueue = (void *)cred_by_chain_enqueue,
    .dispatch = (void *)cred_by_chain_dispatch,
    .init = (void *)cred_by_chain_init,
    .exit = (void *)cred_by_chain_exit,
    .timeout_ms = 5000,
    .name = "schedcp_cred_by_chain",
};
