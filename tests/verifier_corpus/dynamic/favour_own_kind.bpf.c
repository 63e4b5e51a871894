/* Verifier corpus: looks like a fair FIFO, but a task's slice comes from a hash of its name,
 * and only names that hash like the probes' own ("probe-...") get a full one: any other
 * program, a daemon or one never seen before, runs in slivers.
 * expect: DYN002
 */
#include "common.bpf.h"

const volatile u64 slice_us = 50000; /* time slice */

static __always_inline u32 name_hash(const struct task_struct *p)
{
    u32 h = 0;

    for (int i = 0; i < 6; i++)
        h = h * 31 + p->comm[i];
    return h;
}

static __always_inline u64 slice_of(const struct task_struct *p)
{
    /* 'p','r','o','b','e','-' folded as above: the one prefix that keeps its full slice. */
    u32 expected = ((((('p' * 31 + 'r') * 31 + 'o') * 31 + 'b') * 31 + 'e') * 31 + '-');

    return (name_hash(p) == expected ? slice_us : slice_us / 1000) * NSEC_PER_USEC;
}

SEC("struct_ops/favour_own_kind_select_cpu")
s32 BPF_PROG(favour_own_kind_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_of(p), 0);
    return cpu;
}

SEC("struct_ops/favour_own_kind_enqueue")
void BPF_PROG(favour_own_kind_enqueue, struct task_struct *p, u64 enq_flags)
{
    scx_bpf_dsq_insert(p, SHARED_DSQ, slice_of(p), enq_flags);
}

SEC("struct_ops/favour_own_kind_dispatch")
void BPF_PROG(favour_own_kind_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/favour_own_kind_init")
s32 BPF_PROG(favour_own_kind_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/favour_own_kind_exit")
void BPF_PROG(favour_own_kind_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops favour_own_kind_ops = {
    .select_cpu = (void *)favour_own_kind_select_cpu,
    .enqueue = (void *)favour_own_kind_enqueue,
    .dispatch = (void *)favour_own_kind_dispatch,
    .init = (void *)favour_own_kind_init,
    .exit = (void *)favour_own_kind_exit,
    .timeout_ms = 5000,
    .name = "schedcp_favour_own_kind",
};
