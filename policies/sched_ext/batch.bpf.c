/* batch: throughput first. Long slices and no wakeup preemption, so CPU-bound work keeps its
 * caches warm and context switches stay rare; a global vtime queue keeps it fair over time. */
#include "vtime.bpf.h"

const volatile u64 slice_ms = 20; /* long time slice */

static __always_inline u64 slice_ns(void)
{
    return slice_ms * NSEC_PER_MSEC;
}

SEC("struct_ops/batch_select_cpu")
s32 BPF_PROG(batch_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_ns(), 0);
    return cpu;
}

SEC("struct_ops/batch_enqueue")
void BPF_PROG(batch_enqueue, struct task_struct *p, u64 enq_flags)
{
    scx_bpf_dsq_insert_vtime(p, SHARED_DSQ, slice_ns(), vtime_queue_key(p, slice_ns()), enq_flags);
}

SEC("struct_ops/batch_dispatch")
void BPF_PROG(batch_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops/batch_running")
void BPF_PROG(batch_running, struct task_struct *p)
{
    vtime_clock_follow(p);
}

SEC("struct_ops/batch_stopping")
void BPF_PROG(batch_stopping, struct task_struct *p, bool runnable)
{
    vtime_charge_used(p, slice_ns());
}

SEC("struct_ops/batch_enable")
void BPF_PROG(batch_enable, struct task_struct *p)
{
    vtime_start(p);
}

SEC("struct_ops.s/batch_init")
s32 BPF_PROG(batch_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/batch_exit")
void BPF_PROG(batch_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops batch_ops = {
    .select_cpu = (void *)batch_select_cpu,
    .enqueue = (void *)batch_enqueue,
    .dispatch = (void *)batch_dispatch,
    .running = (void *)batch_running,
    .stopping = (void *)batch_stopping,
    .enable = (void *)batch_enable,
    .init = (void *)batch_init,
    .exit = (void *)batch_exit,
    .timeout_ms = 10000,
    .name = "schedcp_batch",
};
