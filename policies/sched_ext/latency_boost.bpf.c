/* latency_boost: tasks that matter for latency (matched by name prefix or process id) go to a
 * priority queue with a short slice and preempt on wakeup; everything else shares a weighted
 * vtime queue. The priority queue is always served first.
 *
 * Only wakeups are boosted: a matched task that is still runnable when its slice ends (CPU-bound
 * at that moment) is re-queued in the shared queue, so a misbehaving boosted task cannot
 * starve the rest.
 */
#include "vtime.bpf.h"

#define MAX_BOOST_TGIDS 8

const volatile char boost_comm[16] = "";        /* name prefix to boost ("" = none) */
const volatile u32 boost_tgid[MAX_BOOST_TGIDS] = {}; /* process ids to boost (0 = unused) */
const volatile u64 boost_slice_us = 500;        /* slice of boosted tasks */
const volatile u64 slice_us = 5000;             /* slice of everything else */

/* Whether each task's last turn was boosted: boosted and shared turns have different slices,
 * and stopping() charges against the slice of the turn it had. */
struct task_ctx {
    bool boosted;
};

struct {
    __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, struct task_ctx);
} task_ctxs SEC(".maps");

/* The slice of a turn for `p` at its weight now: shorter for a light task (vtime.bpf.h). */
static __always_inline u64 turn_ns(struct task_struct *p, bool boosted)
{
    return vtime_task_slice(p, (boosted ? boost_slice_us : slice_us) * NSEC_PER_USEC);
}

static __always_inline u64 give(struct task_struct *p, bool boosted)
{
    struct task_ctx *ctx = bpf_task_storage_get(&task_ctxs, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);

    if (ctx)
        ctx->boosted = boosted;
    return turn_ns(p, boosted);
}

static __always_inline bool matches(struct task_struct *p)
{
    if (comm_has_prefix(p, boost_comm))
        return true;
    for (int i = 0; i < MAX_BOOST_TGIDS; i++) {
        if (boost_tgid[i] && boost_tgid[i] == (u32)p->tgid)
            return true;
    }
    return false;
}

SEC("struct_ops/latency_boost_select_cpu")
s32 BPF_PROG(latency_boost_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, give(p, matches(p)), 0);
    return cpu;
}

SEC("struct_ops/latency_boost_enqueue")
void BPF_PROG(latency_boost_enqueue, struct task_struct *p, u64 enq_flags)
{
    if ((enq_flags & SCX_ENQ_WAKEUP) && matches(p)) {
        scx_bpf_dsq_insert(p, BOOST_DSQ, give(p, true), enq_flags);
        scx_bpf_kick_cpu(scx_bpf_task_cpu(p), SCX_KICK_PREEMPT);
        return;
    }
    u64 slice_ns = give(p, false);

    scx_bpf_dsq_insert_vtime(p, SHARED_DSQ, slice_ns, vtime_queue_key(p, slice_ns), enq_flags);
}

SEC("struct_ops/latency_boost_dispatch")
void BPF_PROG(latency_boost_dispatch, s32 cpu, struct task_struct *prev)
{
    if (!scx_bpf_dsq_move_to_local(BOOST_DSQ))
        scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops/latency_boost_running")
void BPF_PROG(latency_boost_running, struct task_struct *p)
{
    vtime_clock_follow(p);
}

SEC("struct_ops/latency_boost_stopping")
void BPF_PROG(latency_boost_stopping, struct task_struct *p, bool runnable)
{
    /* (not `ctx`: BPF_PROG names its context argument that) */
    struct task_ctx *tctx = bpf_task_storage_get(&task_ctxs, p, 0, 0);

    vtime_charge_used(p, turn_ns(p, tctx && tctx->boosted));
}

SEC("struct_ops/latency_boost_enable")
void BPF_PROG(latency_boost_enable, struct task_struct *p)
{
    vtime_start(p);
}

SEC("struct_ops.s/latency_boost_init")
s32 BPF_PROG(latency_boost_init)
{
    s32 err = scx_bpf_create_dsq(BOOST_DSQ, -1);

    return err ? err : scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/latency_boost_exit")
void BPF_PROG(latency_boost_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops latency_boost_ops = {
    .select_cpu = (void *)latency_boost_select_cpu,
    .enqueue = (void *)latency_boost_enqueue,
    .dispatch = (void *)latency_boost_dispatch,
    .running = (void *)latency_boost_running,
    .stopping = (void *)latency_boost_stopping,
    .enable = (void *)latency_boost_enable,
    .init = (void *)latency_boost_init,
    .exit = (void *)latency_boost_exit,
    .timeout_ms = 5000,
    .name = "schedcp_latency_boost",
};
