/* Verifier corpus: a FIFO that "spreads tasks" with a hash it salts 40000 times with random
 * draws on every enqueue: every task on the host pays milliseconds of kernel work per
 * wakeup, which is fair and never stalls, so only the callbacks' cost tells.
 * expect: DYN010
 */
#include "common.bpf.h"

const volatile u64 slice_us = 5000; /* time slice */
const volatile u32 hash_rounds = 40000; /* rounds of mixing per enqueue */

static __always_inline u64 spread(u64 key)
{
    u64 h = key;

    for (u32 i = 0; i < 40000 && i < hash_rounds; i++)
        h = (h ^ (h >> 29) ^ bpf_get_prandom_u32()) * 0xbf58476d1ce4e5b9ULL + i;
    return h;
}

SEC("struct_ops/costly_enqueue_select_cpu")
s32 BPF_PROG(costly_enqueue_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_us * NSEC_PER_USEC, 0);
    return cpu;
}

SEC("struct_ops/costly_enqueue_enqueue")
void BPF_PROG(costly_enqueue_enqueue, struct task_struct *p, u64 enq_flags)
{
    /* The hash decides nothing: its low bit picks between two equal slices. */
    u64 slice = (spread(p->pid) & 1) ? slice_us : slice_us;

    scx_bpf_dsq_insert(p, SHARED_DSQ, slice * NSEC_PER_USEC, enq_flags);
}

SEC("struct_ops/costly_enqueue_dispatch")
void BPF_PROG(costly_enqueue_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/costly_enqueue_init")
s32 BPF_PROG(costly_enqueue_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/costly_enqueue_exit")
void BPF_PROG(costly_enqueue_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops costly_enqueue_ops = {
    .select_cpu = (void *)costly_enqueue_select_cpu,
    .enqueue = (void *)costly_enqueue_enqueue,
    .dispatch = (void *)costly_enqueue_dispatch,
    .init = (void *)costly_enqueue_init,
    .exit = (void *)costly_enqueue_exit,
    .timeout_ms = 5000,
    .name = "schedcp_costly_enqueue",
};
