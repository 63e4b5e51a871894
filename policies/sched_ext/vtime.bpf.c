/* vtime: one global queue ordered by weighted virtual time (CFS-like fairness), with wakeup
 * preemption so a waking task does not wait out the running task's slice.
 *
 * A task's vtime advances by the time it ran, scaled by 100/weight (nice 0 = weight 100), so
 * heavier tasks advance slower and get more CPU. A task that slept keeps at most one slice of
 * credit, so sleepers cannot bank time and then monopolise the CPU.
 */
#include "common.bpf.h"

const volatile u64 slice_us = 3000;       /* time slice */
const volatile bool wakeup_preempt = true; /* kick the target CPU when a task wakes */

static u64 vtime_now;

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
    u64 vtime = p->scx.dsq_vtime;

    if (vtime_before(vtime, vtime_now - slice_ns()))
        vtime = vtime_now - slice_ns();
    scx_bpf_dsq_insert_vtime(p, SHARED_DSQ, slice_ns(), vtime, enq_flags);
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
    if (vtime_before(vtime_now, p->scx.dsq_vtime))
        vtime_now = p->scx.dsq_vtime;
}

SEC("struct_ops/vtime_stopping")
void BPF_PROG(vtime_stopping, struct task_struct *p, bool runnable)
{
    /* Charge the part of the slice used, scaled by weight. The kernel may have refilled the
     * slice beyond ours (a lone runnable task keeps running with SCX_SLICE_DFL): charge nothing
     * then rather than wrap around. */
    if (slice_ns() > p->scx.slice)
        p->scx.dsq_vtime += (slice_ns() - p->scx.slice) * 100 / p->scx.weight;
}

SEC("struct_ops/vtime_enable")
void BPF_PROG(vtime_enable, struct task_struct *p)
{
    p->scx.dsq_vtime = vtime_now;
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
