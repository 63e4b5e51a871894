/* Verifier corpus: a "maintenance" DSQ served only in a time window. The clock is read in
 * ops.running into a global, and the window test hides in a macro, so nothing near the consume
 * call names the time: the DSQ is served only in the first 2 of every 4096 "milliseconds"
 * (ns >> 20), and only if a dispatch happens to fall there. Tasks at nice 19 go there.
 * expect: SCX017 DSQ 3 (MAINT_DSQ) is consumed only when IN_MAINTENANCE_WINDOW(), a condition on the time
 */
#include "common.bpf.h"

#define MAINT_DSQ 3
#define MAX_NICE_PRIO 139
#define MS(ns) ((ns) >> 20)
#define IN_MAINTENANCE_WINDOW() (MS(last_tick) % 4096 < 2)

const volatile u64 slice_us = 5000; /* time slice */

static u64 last_tick;

SEC("struct_ops/window_select_cpu")
s32 BPF_PROG(window_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;

    return scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);
}

SEC("struct_ops/window_enqueue")
void BPF_PROG(window_enqueue, struct task_struct *p, u64 enq_flags)
{
    if (p->static_prio == MAX_NICE_PRIO) { /* nice 19: maintenance work */
        scx_bpf_dsq_insert(p, MAINT_DSQ, slice_us * NSEC_PER_USEC, enq_flags);
        return;
    }
    scx_bpf_dsq_insert(p, SHARED_DSQ, slice_us * NSEC_PER_USEC, enq_flags);
}

SEC("struct_ops/window_dispatch")
void BPF_PROG(window_dispatch, s32 cpu, struct task_struct *prev)
{
    if (scx_bpf_dsq_move_to_local(SHARED_DSQ))
        return;
    if (IN_MAINTENANCE_WINDOW())
        scx_bpf_dsq_move_to_local(MAINT_DSQ);
}

SEC("struct_ops/window_running")
void BPF_PROG(window_running, struct task_struct *p)
{
    last_tick = scx_bpf_now();
}

SEC("struct_ops.s/window_init")
s32 BPF_PROG(window_init)
{
    s32 err = scx_bpf_create_dsq(MAINT_DSQ, -1);

    return err ? err : scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/window_exit")
void BPF_PROG(window_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops window_ops = {
    .select_cpu = (void *)window_select_cpu,
    .enqueue = (void *)window_enqueue,
    .dispatch = (void *)window_dispatch,
    .running = (void *)window_running,
    .exit = (void *)window_exit,
    .init = (void *)window_init,
    .timeout_ms = 5000,
    .name = "schedcp_window",
};
