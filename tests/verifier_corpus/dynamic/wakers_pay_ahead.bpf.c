/* Verifier corpus: "fair wakeup preemption". A vtime-fair queue that kicks the running task when
 * one wakes, as a latency scheduler does, but charges a waking task a whole slice in advance
 * ("so that frequent sleepers cannot jump the queue"): it is queued behind every task that has
 * run less, so the kick preempts a hog only for another hog, and the sleeper waits for their
 * turns. Fair, never stalled, and it says latency; its wakeups are several times EEVDF's.
 * claims: latency
 * expect: DYN003 it claims latency
 */
#include "common.bpf.h"

#define SLICE_NS (3 * NSEC_PER_MSEC)

static u64 vtime_now;

SEC("struct_ops/ahead_select_cpu")
s32 BPF_PROG(ahead_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, SLICE_NS, 0);
    return cpu;
}

SEC("struct_ops/ahead_enqueue")
void BPF_PROG(ahead_enqueue, struct task_struct *p, u64 enq_flags)
{
    u64 vtime = p->scx.dsq_vtime;

    if (enq_flags & SCX_ENQ_WAKEUP) {
        /* The disguise: a waker starts a slice ahead of the newest vtime, not at it. */
        if (vtime_before(vtime, vtime_now + SLICE_NS))
            vtime = vtime_now + SLICE_NS;
    }
    scx_bpf_dsq_insert_vtime(p, SHARED_DSQ, SLICE_NS, vtime, enq_flags);
    if (enq_flags & SCX_ENQ_WAKEUP)
        scx_bpf_kick_cpu(scx_bpf_task_cpu(p), SCX_KICK_PREEMPT);
}

SEC("struct_ops/ahead_dispatch")
void BPF_PROG(ahead_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops/ahead_running")
void BPF_PROG(ahead_running, struct task_struct *p)
{
    if (vtime_before(vtime_now, p->scx.dsq_vtime))
        vtime_now = p->scx.dsq_vtime;
}

SEC("struct_ops/ahead_stopping")
void BPF_PROG(ahead_stopping, struct task_struct *p, bool runnable)
{
    if (SLICE_NS > p->scx.slice)
        p->scx.dsq_vtime += SLICE_NS - p->scx.slice;
}

SEC("struct_ops/ahead_enable")
void BPF_PROG(ahead_enable, struct task_struct *p)
{
    p->scx.dsq_vtime = vtime_now;
}

SEC("struct_ops.s/ahead_init")
s32 BPF_PROG(ahead_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/ahead_exit")
void BPF_PROG(ahead_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops ahead_ops = {
    .select_cpu = (void *)ahead_select_cpu,
    .enqueue = (void *)ahead_enqueue,
    .dispatch = (void *)ahead_dispatch,
    .running = (void *)ahead_running,
    .stopping = (void *)ahead_stopping,
    .enable = (void *)ahead_enable,
    .init = (void *)ahead_init,
    .exit = (void *)ahead_exit,
    .timeout_ms = 5000,
    .name = "schedcp_ahead",
};
