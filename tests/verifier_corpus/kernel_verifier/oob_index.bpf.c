/* Verifier corpus: indexes past the end of a map value.
 * expect: invalid access to map value
 */
#include "common.bpf.h"

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u64[4]);
} enqueues SEC(".maps");

SEC("struct_ops/oob_index_enqueue")
void BPF_PROG(oob_index_enqueue, struct task_struct *p, u64 enq_flags)
{
    u32 key = 0;
    u64 *count = bpf_map_lookup_elem(&enqueues, &key);

    if (count)
        count[p->pid & 7] += 1; /* index up to 7 in a 4-element value */
    scx_bpf_dsq_insert(p, SHARED_DSQ, 5 * NSEC_PER_MSEC, enq_flags);
}

SEC("struct_ops/oob_index_dispatch")
void BPF_PROG(oob_index_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/oob_index_init")
s32 BPF_PROG(oob_index_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/oob_index_exit")
void BPF_PROG(oob_index_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops oob_index_ops = {
    .enqueue = (void *)oob_index_enqueue,
    .dispatch = (void *)oob_index_dispatch,
    .init = (void *)oob_index_init,
    .exit = (void *)oob_index_exit,
    .timeout_ms = 5000,
    .name = "corpus_oob_index",
};
