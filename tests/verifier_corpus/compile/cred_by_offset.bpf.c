/* Verifier corpus: the credential read of cred_by_offset, by raw offset: no field is named, so no
 * CO-RE record is left for the allow-list. The kernel's verifier allows it.
 * expect: SCX016 reads task_struct.cred by raw offset
 */
#include "common.bpf.h"

const volatile u64 slice_us = 5000; /* time slice */

SEC("struct_ops/cred_by_offset_select_cpu")
s32 BPF_PROG(cred_by_offset_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_us * NSEC_PER_USEC, 0);
    return cpu;
}

SEC("struct_ops/cred_by_offset_enqueue")
void BPF_PROG(cred_by_offset_enqueue, struct task_struct *p, u64 enq_flags)
{
    u64 slice = slice_us * NSEC_PER_USEC;

    const struct cred *c = *(const struct cred **)((void *)p + __builtin_offsetof(struct task_struct, cred));

    if (c && *(u32 *)((void *)c + __builtin_offsetof(struct cred, uid)) == 0)
        slice *= 2;
    scx_bpf_dsq_insert(p, SHARED_DSQ, slice, enq_flags);
}

SEC("struct_ops/cred_by_offset_dispatch")
void BPF_PROG(cred_by_offset_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/cred_by_offset_init")
s32 BPF_PROG(cred_by_offset_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/cred_by_offset_exit")
void BPF_PROG(cred_by_offset_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops cred_by_offset_ops = {
    .select_cpu = (void *)cred_by_offset_select_cpu,
    .enqueue = (void *)cred_by_offset_enqueue,
    .dispatch = (void *)cred_by_offset_dispatch,
    .init = (void *)cred_by_offset_init,
    .exit = (void *)cred_by_offset_exit,
    .timeout_ms = 5000,
    .name = "schedcp_cred_by_offset",
};
