/* Verifier corpus: round robin with 300 ms slices, and a waking task kicks the running one. A
 * sleeper is served at once (latency passes) and equal hogs get equal shares, but among the
 * fairness test's 9 hogs on 2 CPUs each one waits for 8 others' 300 ms: about 1.2 s without a
 * CPU, under the 2 s watchdog (DYN011). The kernel's own watchdog worker waits in the same line,
 * and in some boots it is what misses 2 s ("watchdog failed to check in", DYN001).
 * expect: DYN011 | DYN001
 */
#include "common.bpf.h"

const volatile u64 slice_us = 300000; /* time slice */

SEC("struct_ops/rr300_select_cpu")
s32 BPF_PROG(rr300_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_us * NSEC_PER_USEC, 0);
    return cpu;
}

SEC("struct_ops/rr300_enqueue")
void BPF_PROG(rr300_enqueue, struct task_struct *p, u64 enq_flags)
{
    scx_bpf_dsq_insert(p, SHARED_DSQ, slice_us * NSEC_PER_USEC, enq_flags);
    if (enq_flags & SCX_ENQ_WAKEUP)
        scx_bpf_kick_cpu(scx_bpf_task_cpu(p), SCX_KICK_PREEMPT);
}

SEC("struct_ops/rr300_dispatch")
void BPF_PROG(rr300_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/rr300_init")
s32 BPF_PROG(rr300_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/rr300_exit")
void BPF_PROG(rr300_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops rr300_ops = {
    .select_cpu = (void *)rr300_select_cpu,
    .enqueue = (void *)rr300_enqueue,
    .dispatch = (void *)rr300_dispatch,
    .init = (void *)rr300_init,
    .exit = (void *)rr300_exit,
    .timeout_ms = 5000,
    .name = "schedcp_rr300",
};
