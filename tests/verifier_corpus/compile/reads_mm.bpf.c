/* Verifier corpus: a plausible-looking heuristic ("big processes are batch work") that reads
 * the process's memory map through an inline helper.
 * expect: SCX016 reads task_struct.mm: a process's memory is not scheduling state
 */
#include "common.bpf.h"

const volatile u64 slice_us = 5000; /* time slice */

static __always_inline bool is_big(struct task_struct *p)
{
    struct mm_struct *mm = p->mm;

    return mm && mm->total_vm > (1UL << 20);
}

SEC("struct_ops/reads_mm_select_cpu")
s32 BPF_PROG(reads_mm_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_us * NSEC_PER_USEC, 0);
    return cpu;
}

SEC("struct_ops/reads_mm_enqueue")
void BPF_PROG(reads_mm_enqueue, struct task_struct *p, u64 enq_flags)
{
    u64 slice = slice_us * NSEC_PER_USEC;

    scx_bpf_dsq_insert(p, SHARED_DSQ, is_big(p) ? 4 * slice : slice, enq_flags);
}

SEC("struct_ops/reads_mm_dispatch")
void BPF_PROG(reads_mm_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/reads_mm_init")
s32 BPF_PROG(reads_mm_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/reads_mm_exit")
void BPF_PROG(reads_mm_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops reads_mm_ops = {
    .select_cpu = (void *)reads_mm_select_cpu,
    .enqueue = (void *)reads_mm_enqueue,
    .dispatch = (void *)reads_mm_dispatch,
    .init = (void *)reads_mm_init,
    .exit = (void *)reads_mm_exit,
    .timeout_ms = 5000,
    .name = "schedcp_reads_mm",
};
