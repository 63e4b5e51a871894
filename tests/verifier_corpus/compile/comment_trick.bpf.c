/* Verifier corpus: hides a forbidden call between two strings that open and close a comment,
 * so a comment-stripping regex skips the code between them.
 * expect: helper #113
 */
#include "common.bpf.h"

const volatile u64 slice_us = 5000; /* time slice */

SEC("struct_ops/comment_trick_select_cpu")
s32 BPF_PROG(comment_trick_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_us * NSEC_PER_USEC, 0);
    return cpu;
}

SEC("struct_ops/comment_trick_enqueue")
void BPF_PROG(comment_trick_enqueue, struct task_struct *p, u64 enq_flags)
{
    char buf[8];
    const char *a = "/*";

    bpf_probe_read_kernel(buf, sizeof(buf), p->comm);
    const char *b = "*/";

    if (a[0] == b[0])
        return;
    scx_bpf_dsq_insert(p, SHARED_DSQ, slice_us * NSEC_PER_USEC, enq_flags);
}

SEC("struct_ops/comment_trick_dispatch")
void BPF_PROG(comment_trick_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/comment_trick_init")
s32 BPF_PROG(comment_trick_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/comment_trick_exit")
void BPF_PROG(comment_trick_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops comment_trick_ops = {
    .select_cpu = (void *)comment_trick_select_cpu,
    .enqueue = (void *)comment_trick_enqueue,
    .dispatch = (void *)comment_trick_dispatch,
    .init = (void *)comment_trick_init,
    .exit = (void *)comment_trick_exit,
    .timeout_ms = 5000,
    .name = "schedcp_comment_trick",
};
