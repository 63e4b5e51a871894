/* Test-only: a loop whose bound the verifier cannot prove. It must be refused. */
#include "common.bpf.h"

SEC("struct_ops/loop_enqueue")
void BPF_PROG(loop_enqueue, struct task_struct *p, u64 enq_flags)
{
    u64 spins = p->scx.dsq_vtime; /* unknown to the verifier */

    /* The helper call keeps clang from turning the loop into a formula. */
    for (u64 i = 0; i < spins; i++)
        if (bpf_get_prandom_u32() == 42)
            break;
    scx_bpf_dsq_insert(p, SCX_DSQ_GLOBAL, 5000000, enq_flags);
}

SEC(".struct_ops.link")
struct sched_ext_ops loop_ops = {
    .enqueue = (void *)loop_enqueue,
    .name = "schedcp_test_loop",
};
