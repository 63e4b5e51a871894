/* Verifier corpus: newest task first. Looks harmless, but under more runnable tasks than CPUs the
 * oldest ones never run again: the watchdog must eject it.
 * expect: runnable task stall
 */
#include "common.bpf.h"

const volatile u64 slice_us = 5000; /* time slice */

SEC("struct_ops/lifo_select_cpu")
s32 BPF_PROG(lifo_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_us * NSEC_PER_USEC, 0);
    return cpu;
}

SEC("struct_ops/lifo_enqueue")
void BPF_PROG(lifo_enqueue, struct task_struct *p, u64 enq_flags)
{
    /* the queue is ordered by vtime: the latest enqueue gets the smallest key */
    scx_bpf_dsq_insert_vtime(p, SHARED_DSQ, slice_us * NSEC_PER_USEC, -scx_bpf_now(), enq_flags);
}

SEC("struct_ops/lifo_dispatch")
void BPF_PROG(lifo_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/lifo_init")
s32 BPF_PROG(lifo_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/lifo_exit")
void BPF_PROG(lifo_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops lifo_ops = {
    .select_cpu = (void *)lifo_select_cpu,
    .enqueue = (void *)lifo_enqueue,
    .dispatch = (void *)lifo_dispatch,
    .init = (void *)lifo_init,
    .exit = (void *)lifo_exit,
    .timeout_ms = 5000,
    .name = "schedcp_lifo",
};
