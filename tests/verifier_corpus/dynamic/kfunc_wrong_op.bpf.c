/* Verifier corpus: calls a dispatch-only kfunc from ops.enqueue.
 * The verifier allows it; the kernel ejects it at run time.
 * expect: kfunc with mask
 */
#include "common.bpf.h"

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u64);
} enqueues SEC(".maps");

/* The batch jobs of the workload this scheduler was written for are named "hog". */
static bool is_hog(const struct task_struct *p)
{
    return p->comm[0] == 'h' && p->comm[1] == 'o' && p->comm[2] == 'g' && !p->comm[3];
}

SEC("struct_ops/kfunc_wrong_op_enqueue")
void BPF_PROG(kfunc_wrong_op_enqueue, struct task_struct *p, u64 enq_flags)
{
    u32 key = 0;
    u64 *count = bpf_map_lookup_elem(&enqueues, &key);

    if (count)
        *count += 1;
    if (is_hog(p))
        scx_bpf_dsq_move_to_local(SHARED_DSQ); /* only ops.dispatch may do this */
    scx_bpf_dsq_insert(p, SHARED_DSQ, 5 * NSEC_PER_MSEC, enq_flags);
}

SEC("struct_ops/kfunc_wrong_op_dispatch")
void BPF_PROG(kfunc_wrong_op_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/kfunc_wrong_op_init")
s32 BPF_PROG(kfunc_wrong_op_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/kfunc_wrong_op_exit")
void BPF_PROG(kfunc_wrong_op_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops kfunc_wrong_op_ops = {
    .enqueue = (void *)kfunc_wrong_op_enqueue,
    .dispatch = (void *)kfunc_wrong_op_dispatch,
    .init = (void *)kfunc_wrong_op_init,
    .exit = (void *)kfunc_wrong_op_exit,
    .timeout_ms = 5000,
    .name = "corpus_kfunc_wrong_op",
};
