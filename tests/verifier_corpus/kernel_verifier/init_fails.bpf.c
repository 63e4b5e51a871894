/* Verifier corpus: creates its DSQ twice, so ops.init fails and the scheduler never enables.
 * expect: did not enable
 */
#include "common.bpf.h"

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u64);
} enqueues SEC(".maps");

SEC("struct_ops/init_fails_enqueue")
void BPF_PROG(init_fails_enqueue, struct task_struct *p, u64 enq_flags)
{
    u32 key = 0;
    u64 *count = bpf_map_lookup_elem(&enqueues, &key);

    if (count)
        *count += 1;
    scx_bpf_dsq_insert(p, SHARED_DSQ, 5 * NSEC_PER_MSEC, enq_flags);
}

SEC("struct_ops/init_fails_dispatch")
void BPF_PROG(init_fails_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/init_fails_init")
s32 BPF_PROG(init_fails_init)
{
    scx_bpf_create_dsq(SHARED_DSQ, -1);
    return scx_bpf_create_dsq(SHARED_DSQ, -1); /* -EEXIST */
}

SEC("struct_ops/init_fails_exit")
void BPF_PROG(init_fails_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops init_fails_ops = {
    .enqueue = (void *)init_fails_enqueue,
    .dispatch = (void *)init_fails_dispatch,
    .init = (void *)init_fails_init,
    .exit = (void *)init_fails_exit,
    .timeout_ms = 5000,
    .name = "corpus_init_fails",
};
