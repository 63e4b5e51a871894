/* Verifier corpus: "a simple low-latency scheduler". One global first-in first-out queue with
 * short 2 ms slices, said to be for latency. Fair and never stalled, but a waking task joins the
 * back of the queue behind the hogs' turns and waits for a running one's slice: its wakeups come
 * several times later than under EEVDF. A throughput scheduler may trade wakeups for fewer
 * switches; one that claims latency may not.
 * claims: latency
 * expect: DYN003 it claims latency
 */
#include "common.bpf.h"

#define SLICE_NS (2 * NSEC_PER_MSEC)

SEC("struct_ops/quick_select_cpu")
s32 BPF_PROG(quick_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, SLICE_NS, 0);
    return cpu;
}

SEC("struct_ops/quick_enqueue")
void BPF_PROG(quick_enqueue, struct task_struct *p, u64 enq_flags)
{
    scx_bpf_dsq_insert(p, SHARED_DSQ, SLICE_NS, enq_flags);
}

SEC("struct_ops/quick_dispatch")
void BPF_PROG(quick_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/quick_init")
s32 BPF_PROG(quick_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/quick_exit")
void BPF_PROG(quick_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops quick_ops = {
    .select_cpu = (void *)quick_select_cpu,
    .enqueue = (void *)quick_enqueue,
    .dispatch = (void *)quick_dispatch,
    .init = (void *)quick_init,
    .exit = (void *)quick_exit,
    .timeout_ms = 5000,
    .name = "schedcp_quick",
};
