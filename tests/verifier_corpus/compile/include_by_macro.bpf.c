/* Verifier corpus: includes a file through a macro, which a look at the #include lines misses.
 * expect: is not an allowed header
 */
#include "common.bpf.h"
#define SECRET "/etc/hostname"
#include SECRET

const volatile u64 slice_us = 5000; /* time slice */

SEC("struct_ops/include_by_macro_select_cpu")
s32 BPF_PROG(include_by_macro_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_us * NSEC_PER_USEC, 0);
    return cpu;
}

SEC("struct_ops/include_by_macro_enqueue")
void BPF_PROG(include_by_macro_enqueue, struct task_struct *p, u64 enq_flags)
{
    scx_bpf_dsq_insert(p, SHARED_DSQ, slice_us * NSEC_PER_USEC, enq_flags);
}

SEC("struct_ops/include_by_macro_dispatch")
void BPF_PROG(include_by_macro_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/include_by_macro_init")
s32 BPF_PROG(include_by_macro_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/include_by_macro_exit")
void BPF_PROG(include_by_macro_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops include_by_macro_ops = {
    .select_cpu = (void *)include_by_macro_select_cpu,
    .enqueue = (void *)include_by_macro_enqueue,
    .dispatch = (void *)include_by_macro_dispatch,
    .init = (void *)include_by_macro_init,
    .exit = (void *)include_by_macro_exit,
    .timeout_ms = 5000,
    .name = "schedcp_include_by_macro",
};
