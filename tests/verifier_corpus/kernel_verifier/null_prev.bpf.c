/* Verifier corpus: dereferences ops.dispatch's prev, which is NULL when the CPU was idle.
 * expect: invalid mem access
 */
#include "common.bpf.h"

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u64);
} enqueues SEC(".maps");

SEC("struct_ops/null_prev_enqueue")
void BPF_PROG(null_prev_enqueue, struct task_struct *p, u64 enq_flags)
{
    u32 key = 0;
    u64 *count = bpf_map_lookup_elem(&enqueues, &key);

    if (count)
        *count += 1;
    scx_bpf_dsq_insert(p, SHARED_DSQ, 5 * NSEC_PER_MSEC, enq_flags);
}

SEC("struct_ops/null_prev_dispatch")
void BPF_PROG(null_prev_dispatch, s32 cpu, struct task_struct *prev)
{
    if (prev->scx.slice == 0) /* prev may be NULL */
        scx_bpf_dsq_move_to_local(SHARED_DSQ);
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/null_prev_init")
s32 BPF_PROG(null_prev_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/null_prev_exit")
void BPF_PROG(null_prev_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops null_prev_ops = {
    .enqueue = (void *)null_prev_enqueue,
    .dispatch = (void *)null_prev_dispatch,
    .init = (void *)null_prev_init,
    .exit = (void *)null_prev_exit,
    .timeout_ms = 5000,
    .name = "corpus_null_prev",
};
