/* Verifier corpus: half-second slices and no preemption: a waking task waits behind every
 * CPU hog's whole slice. That destroys the sleeper's latency (DYN003); on an emulator whose
 * host is busy, a wait of a few slices also outlasts the verifier's 2 s watchdog cap, and the
 * kernel ejects the scheduler during that same test (DYN001, seen in CI). Either rejects it.
 * expect: DYN003 | DYN001
 */
#include "common.bpf.h"

const volatile u64 slice_us = 500000; /* time slice */

SEC("struct_ops/long_slices_select_cpu")
s32 BPF_PROG(long_slices_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_us * NSEC_PER_USEC, 0);
    return cpu;
}

SEC("struct_ops/long_slices_enqueue")
void BPF_PROG(long_slices_enqueue, struct task_struct *p, u64 enq_flags)
{
    scx_bpf_dsq_insert(p, SHARED_DSQ, slice_us * NSEC_PER_USEC, enq_flags);
}

SEC("struct_ops/long_slices_dispatch")
void BPF_PROG(long_slices_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/long_slices_init")
s32 BPF_PROG(long_slices_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/long_slices_exit")
void BPF_PROG(long_slices_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops long_slices_ops = {
    .select_cpu = (void *)long_slices_select_cpu,
    .enqueue = (void *)long_slices_enqueue,
    .dispatch = (void *)long_slices_dispatch,
    .init = (void *)long_slices_init,
    .exit = (void *)long_slices_exit,
    .timeout_ms = 5000,
    .name = "schedcp_long_slices",
};
