/* vtime: one global queue ordered by weighted virtual time (CFS-like fairness, see
 * vtime.bpf.h), with wakeup preemption so a waking task does not wait out the running task's
 * slice. A task that slept keeps at most one slice of credit.
 */
#include "vtime.bpf.h"

const volatile u64 slice_us = 3000;       /* time slice */
const volatile bool wakeup_preempt = true; /* kick the target CPU when a task wakes */

static __always_inline u64 slice_ns(void)
{
    return slice_us * NSEC_PER_USEC;
}

SEC("struct_ops/vtime_select_cpu")
s32 BPF_PROG(vtime_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle) /* an idle CPU: run there at once, skipping the queue */
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_ns(), 0);
    return cpu;
}

SEC("struct_ops/vtime_enqueue")
void BPF_PROG(vtime_enqueue, struct task_struct *p, u64 enq_flags)
{
    scx_bpf_dsq_insert_vtime(p, SHARED_DSQ, slice_ns(), vtime_queue_key(p, slice_ns()), enq_flags);
    if (wakeup_preempt && (enq_flags & SCX_ENQ_WAKEUP))
        scx_bpf_kick_cpu(scx_bpf_task_cpu(p), SCX_KICK_PREEMPT);
}

SEC("struct_ops/vtime_dispatch")
void BPF_PROG(vtime_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops/vtime_running")
void BPF_PROG(vtime_running, struct task_struct *p)
{
    vtime_clock_follow(p);
}

SEC("struct_ops/vtime_stopping")
void BPF_PROG(vtime_stopping, struct task_struct *p, bool runnable)
{
    vtime_charge_used(p, slice_ns());
}

SEC("struct_ops/vtime_enable")
void BPF_PROG(vtime_enable, struct task_struct *p)
{
    vtime_start(p);
}

SEC("struct_ops.s/vtime_init")
s32 BPF_PROG(vtime_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/vtime_exit")
void BPF_PROG(vtime_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops vtime_ops = {
    .select_cpu = (void *)vtime_select_cpu,
    .enqueue = (void *)vtime_enqueue,
    .dispatch = (void *)vtime_dispatch,
    .running = (void *)vtime_running,
    .stopping = (void *)vtime_stopping,
    .enable = (void *)vtime_enable,
    .init = (void *)vtime_init,
    .exit = (void *)vtime_exit,
    .timeout_ms = 5000,
    .name = "schedcp_vtime",
};
