/* Verifier corpus: a loop whose counter is never updated (static analysis only warns about
 * while loops; the kernel's verifier proves this one never ends).
 * expect: infinite loop detected
 */
#include "common.bpf.h"

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u64);
} enqueues SEC(".maps");

SEC("struct_ops/unbounded_loop_enqueue")
void BPF_PROG(unbounded_loop_enqueue, struct task_struct *p, u64 enq_flags)
{
    u32 key = 0;
    u64 *count = bpf_map_lookup_elem(&enqueues, &key);

    u64 budget = p->scx.slice;

    while (count && budget > 0) /* budget is never decremented */
        *count += bpf_get_prandom_u32() & 1;
    scx_bpf_dsq_insert(p, SHARED_DSQ, 5 * NSEC_PER_MSEC, enq_flags);
}

SEC("struct_ops/unbounded_loop_dispatch")
void BPF_PROG(unbounded_loop_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/unbounded_loop_init")
s32 BPF_PROG(unbounded_loop_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/unbounded_loop_exit")
void BPF_PROG(unbounded_loop_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops unbounded_loop_ops = {
    .enqueue = (void *)unbounded_loop_enqueue,
    .dispatch = (void *)unbounded_loop_dispatch,
    .init = (void *)unbounded_loop_init,
    .exit = (void *)unbounded_loop_exit,
    .timeout_ms = 5000,
    .name = "corpus_unbounded_loop",
};
