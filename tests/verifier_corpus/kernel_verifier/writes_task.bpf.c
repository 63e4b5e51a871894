/* Verifier corpus: writes a task_struct field sched_ext does not allow.
 * expect: `p->prio = 100
 */
#include "common.bpf.h"

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u64);
} enqueues SEC(".maps");

SEC("struct_ops/writes_task_enqueue")
void BPF_PROG(writes_task_enqueue, struct task_struct *p, u64 enq_flags)
{
    u32 key = 0;
    u64 *count = bpf_map_lookup_elem(&enqueues, &key);

    if (count)
        *count += 1;
    p->prio = 100; /* raise the task's priority behind the kernel's back */
    scx_bpf_dsq_insert(p, SHARED_DSQ, 5 * NSEC_PER_MSEC, enq_flags);
}

SEC("struct_ops/writes_task_dispatch")
void BPF_PROG(writes_task_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/writes_task_init")
s32 BPF_PROG(writes_task_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/writes_task_exit")
void BPF_PROG(writes_task_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops writes_task_ops = {
    .enqueue = (void *)writes_task_enqueue,
    .dispatch = (void *)writes_task_dispatch,
    .init = (void *)writes_task_init,
    .exit = (void *)writes_task_exit,
    .timeout_ms = 5000,
    .name = "corpus_writes_task",
};
