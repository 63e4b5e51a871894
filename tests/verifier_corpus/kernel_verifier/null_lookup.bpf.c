/* Verifier corpus: uses a map lookup without checking it for NULL.
 * expect: invalid mem access 'map_value_or_null'
 */
#include "common.bpf.h"

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __type(key, u32);
    __type(value, u64);
} enqueues SEC(".maps");

SEC("struct_ops/null_lookup_enqueue")
void BPF_PROG(null_lookup_enqueue, struct task_struct *p, u64 enq_flags)
{
    u32 key = 0;
    u64 *count = bpf_map_lookup_elem(&enqueues, &key);

    *count += 1; /* the lookup may return NULL */
    scx_bpf_dsq_insert(p, SHARED_DSQ, 5 * NSEC_PER_MSEC, enq_flags);
}

SEC("struct_ops/null_lookup_dispatch")
void BPF_PROG(null_lookup_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/null_lookup_init")
s32 BPF_PROG(null_lookup_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/null_lookup_exit")
void BPF_PROG(null_lookup_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops null_lookup_ops = {
    .enqueue = (void *)null_lookup_enqueue,
    .dispatch = (void *)null_lookup_dispatch,
    .init = (void *)null_lookup_init,
    .exit = (void *)null_lookup_exit,
    .timeout_ms = 5000,
    .name = "corpus_null_lookup",
};
