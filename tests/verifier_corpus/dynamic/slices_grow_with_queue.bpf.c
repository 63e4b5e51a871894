/* Verifier corpus: "fewer switches under load". A vtime-fair queue whose slice grows with the
 * number of tasks waiting (3 ms each, up to 80 ms), so a busy host spends less time switching.
 * Shares stay equal and nothing is starved outright, but the more tasks wait, the longer each
 * waits: among the flood's 36 hogs the slice reaches 80 ms and a hog goes about 1.4 s without a
 * CPU, under the 2 s watchdog. With few tasks (the latency and fairness tests) it looks fine.
 * expect: DYN011 | DYN001
 */
#include "common.bpf.h"

#define SLICE_PER_WAITER_NS (3 * NSEC_PER_MSEC)
#define MAX_SLICE_NS (80 * NSEC_PER_MSEC)

static u64 vtime_now;

static __always_inline u64 slice_for_load(void)
{
    u64 ns = (scx_bpf_dsq_nr_queued(SHARED_DSQ) + 1) * SLICE_PER_WAITER_NS;

    return ns < MAX_SLICE_NS ? ns : MAX_SLICE_NS;
}

SEC("struct_ops/grow_select_cpu")
s32 BPF_PROG(grow_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, SLICE_PER_WAITER_NS, 0);
    return cpu;
}

SEC("struct_ops/grow_enqueue")
void BPF_PROG(grow_enqueue, struct task_struct *p, u64 enq_flags)
{
    u64 vtime = p->scx.dsq_vtime;

    if (vtime_before(vtime, vtime_now - SLICE_PER_WAITER_NS))
        vtime = vtime_now - SLICE_PER_WAITER_NS;
    scx_bpf_dsq_insert_vtime(p, SHARED_DSQ, slice_for_load(), vtime, enq_flags);
    if (enq_flags & SCX_ENQ_WAKEUP)
        scx_bpf_kick_cpu(scx_bpf_task_cpu(p), SCX_KICK_PREEMPT);
}

SEC("struct_ops/grow_dispatch")
void BPF_PROG(grow_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops/grow_running")
void BPF_PROG(grow_running, struct task_struct *p)
{
    if (vtime_before(vtime_now, p->scx.dsq_vtime))
        vtime_now = p->scx.dsq_vtime;
    p->scx.dsq_vtime += MAX_SLICE_NS / 16; /* each turn counts alike, whatever it ran */
}

SEC("struct_ops/grow_enable")
void BPF_PROG(grow_enable, struct task_struct *p)
{
    p->scx.dsq_vtime = vtime_now;
}

SEC("struct_ops.s/grow_init")
s32 BPF_PROG(grow_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/grow_exit")
void BPF_PROG(grow_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops grow_ops = {
    .select_cpu = (void *)grow_select_cpu,
    .enqueue = (void *)grow_enqueue,
    .dispatch = (void *)grow_dispatch,
    .running = (void *)grow_running,
    .enable = (void *)grow_enable,
    .init = (void *)grow_init,
    .exit = (void *)grow_exit,
    .timeout_ms = 5000,
    .name = "schedcp_grow",
};
