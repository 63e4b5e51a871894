/* ljf: longest job first, for makespan. When many jobs share few CPUs and one is much longer
 * than the rest, running the long one first (and the short ones around it) finishes the whole
 * set sooner than fair sharing, which leaves the long job for last.
 *
 * "Longest" is the CPU time a task has used so far (p->se.sum_exec_runtime, which the core
 * keeps for sched_ext tasks too). The queue is ordered by enqueue time minus that CPU time,
 * with the lead a long task gets capped at max_lead_ms: a task that used more CPU goes ahead,
 * but nobody waits more than about max_lead_ms behind it, so short tasks and system threads
 * are delayed, never starved (the watchdog, timeout_ms, is only the backstop).
 *
 * CPU time so far cannot tell the long job apart while every job has run as much as the
 * others (a set started at once, served round robin). When the long job's name is known
 * (long_comm: a build's linker, a test suite's slowest binary), its tasks get the whole lead
 * from the start.
 */
#include "common.bpf.h"

const volatile u64 slice_us = 20000;  /* time slice */
const volatile u64 max_lead_ms = 200; /* most CPU time that counts as a head start */
const volatile char long_comm[16] = ""; /* name prefix of known long jobs ("" = none) */

SEC("struct_ops/ljf_select_cpu")
s32 BPF_PROG(ljf_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_us * NSEC_PER_USEC, 0);
    return cpu;
}

SEC("struct_ops/ljf_enqueue")
void BPF_PROG(ljf_enqueue, struct task_struct *p, u64 enq_flags)
{
    /* More CPU used so far -> smaller key -> dispatched first, within the cap; a known long
     * job has the whole cap. */
    u64 cap = max_lead_ms * NSEC_PER_MSEC;
    u64 lead = comm_has_prefix(p, long_comm) ? cap : p->se.sum_exec_runtime;
    u64 key = scx_bpf_now() - (lead < cap ? lead : cap);

    scx_bpf_dsq_insert_vtime(p, SHARED_DSQ, slice_us * NSEC_PER_USEC, key, enq_flags);
}

SEC("struct_ops/ljf_dispatch")
void BPF_PROG(ljf_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/ljf_init")
s32 BPF_PROG(ljf_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/ljf_exit")
void BPF_PROG(ljf_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops ljf_ops = {
    .select_cpu = (void *)ljf_select_cpu,
    .enqueue = (void *)ljf_enqueue,
    .dispatch = (void *)ljf_dispatch,
    .init = (void *)ljf_init,
    .exit = (void *)ljf_exit,
    .timeout_ms = 10000,
    .name = "schedcp_ljf",
};
