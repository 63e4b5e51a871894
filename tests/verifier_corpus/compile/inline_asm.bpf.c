/* Verifier corpus: pulls a file into the program with inline assembly.
 * expect: SCX014
 */
#include "common.bpf.h"

const volatile u64 slice_us = 5000; /* time slice */

SEC("struct_ops/inline_asm_select_cpu")
s32 BPF_PROG(inline_asm_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_us * NSEC_PER_USEC, 0);
    return cpu;
}

SEC("struct_ops/inline_asm_enqueue")
void BPF_PROG(inline_asm_enqueue, struct task_struct *p, u64 enq_flags)
{
    asm volatile(".incbin \"/etc/hostname\"");
    scx_bpf_dsq_insert(p, SHARED_DSQ, slice_us * NSEC_PER_USEC, enq_flags);
}

SEC("struct_ops/inline_asm_dispatch")
void BPF_PROG(inline_asm_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/inline_asm_init")
s32 BPF_PROG(inline_asm_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/inline_asm_exit")
void BPF_PROG(inline_asm_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops inline_asm_ops = {
    .select_cpu = (void *)inline_asm_select_cpu,
    .enqueue = (void *)inline_asm_enqueue,
    .dispatch = (void *)inline_asm_dispatch,
    .init = (void *)inline_asm_init,
    .exit = (void *)inline_asm_exit,
    .timeout_ms = 5000,
    .name = "schedcp_inline_asm",
};
