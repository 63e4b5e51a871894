/* Verifier corpus: "load-aware slices". A vtime-fair queue that, every time a task gets a CPU,
 * takes the mean age of the last 16384 switch times in a ring (reading the clock afresh around
 * every slot, "to be exact") and shortens the slice when switches are rare. Fair and never
 * stalled, but the mean costs milliseconds of kernel time on every context switch of every task
 * on the host, hidden in a callback that looks like bookkeeping (the obvious case:
 * costly_enqueue.bpf.c).
 * expect: DYN010
 */
#include "common.bpf.h"

#define RING 16384
#define BASE_SLICE_NS (3 * NSEC_PER_MSEC)

static u64 vtime_now;
static u64 ring[RING];
static u32 ring_head;

/* How long ago, on average, the last RING switches were. */
static __always_inline u64 mean_switch_age(void)
{
    u64 sum = 0;

    ring[ring_head & (RING - 1)] = bpf_ktime_get_ns();
    ring_head++;
    for (u32 i = 0; i < RING; i++)
        sum += (bpf_ktime_get_ns() + bpf_ktime_get_ns()) / 2 - ring[i];
    return sum / RING;
}

SEC("struct_ops/load_select_cpu")
s32 BPF_PROG(load_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, BASE_SLICE_NS, 0);
    return cpu;
}

SEC("struct_ops/load_enqueue")
void BPF_PROG(load_enqueue, struct task_struct *p, u64 enq_flags)
{
    u64 vtime = p->scx.dsq_vtime;

    if (vtime_before(vtime, vtime_now - BASE_SLICE_NS))
        vtime = vtime_now - BASE_SLICE_NS;
    scx_bpf_dsq_insert_vtime(p, SHARED_DSQ, BASE_SLICE_NS, vtime, enq_flags);
    if (enq_flags & SCX_ENQ_WAKEUP)
        scx_bpf_kick_cpu(scx_bpf_task_cpu(p), SCX_KICK_PREEMPT);
}

SEC("struct_ops/load_dispatch")
void BPF_PROG(load_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops/load_running")
void BPF_PROG(load_running, struct task_struct *p)
{
    if (vtime_before(vtime_now, p->scx.dsq_vtime))
        vtime_now = p->scx.dsq_vtime;
    /* A quiet CPU gives a shorter turn, so a newcomer waits less. */
    if (mean_switch_age() > RING * BASE_SLICE_NS)
        p->scx.slice = BASE_SLICE_NS * 9 / 10;
}

SEC("struct_ops/load_stopping")
void BPF_PROG(load_stopping, struct task_struct *p, bool runnable)
{
    if (BASE_SLICE_NS > p->scx.slice)
        p->scx.dsq_vtime += BASE_SLICE_NS - p->scx.slice; /* every task alike: no nice */
}

SEC("struct_ops/load_enable")
void BPF_PROG(load_enable, struct task_struct *p)
{
    p->scx.dsq_vtime = vtime_now;
}

SEC("struct_ops.s/load_init")
s32 BPF_PROG(load_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/load_exit")
void BPF_PROG(load_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops load_ops = {
    .select_cpu = (void *)load_select_cpu,
    .enqueue = (void *)load_enqueue,
    .dispatch = (void *)load_dispatch,
    .running = (void *)load_running,
    .stopping = (void *)load_stopping,
    .enable = (void *)load_enable,
    .init = (void *)load_init,
    .exit = (void *)load_exit,
    .timeout_ms = 5000,
    .name = "schedcp_load",
};
