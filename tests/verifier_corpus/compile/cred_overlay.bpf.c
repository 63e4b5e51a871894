/* Verifier corpus: the credential read, disguised: a "hint" struct of the candidate's own laid
 * over the task from its scheduling entity (an allowed field), so the pointer arithmetic starts
 * at a field the allow-list accepts and no kernel type names what is read.
 * expect: SCX016 reads task_struct.cred by raw offset
 */
#include "common.bpf.h"

const volatile u64 slice_us = 5000; /* time slice */

#define HINT_BACK (__builtin_offsetof(struct task_struct, scx))
#define HINT_AT (__builtin_offsetof(struct task_struct, cred))

struct sched_hint {
    char reserved[HINT_AT];
    const u32 *owner;
};

static __always_inline bool privileged(struct task_struct *p)
{
    const struct sched_hint *hint = (const void *)&p->scx - HINT_BACK;
    const u32 *owner = hint->owner;

    return owner && owner[1] == 0;
}

SEC("struct_ops/cred_overlay_select_cpu")
s32 BPF_PROG(cred_overlay_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_us * NSEC_PER_USEC, 0);
    return cpu;
}

SEC("struct_ops/cred_overlay_enqueue")
void BPF_PROG(cred_overlay_enqueue, struct task_struct *p, u64 enq_flags)
{
    u64 slice = slice_us * NSEC_PER_USEC;

    if (privileged(p))
        slice *= 2;
    scx_bpf_dsq_insert(p, SHARED_DSQ, slice, enq_flags);
}

SEC("struct_ops/cred_overlay_dispatch")
void BPF_PROG(cred_overlay_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/cred_overlay_init")
s32 BPF_PROG(cred_overlay_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/cred_overlay_exit")
void BPF_PROG(cred_overlay_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops cred_overlay_ops = {
    .select_cpu = (void *)cred_overlay_select_cpu,
    .enqueue = (void *)cred_overlay_enqueue,
    .dispatch = (void *)cred_overlay_dispatch,
    .init = (void *)cred_overlay_init,
    .exit = (void *)cred_overlay_exit,
    .timeout_ms = 5000,
    .name = "schedcp_cred_overlay",
};
