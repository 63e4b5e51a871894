/* The vtime scheduler's callbacks, shared by the policies that are the same algorithm with
 * other defaults (vtime: fair and responsive; batch: throughput). One global queue ordered by
 * weighted virtual time (vtime.bpf.h); a task that slept keeps at most one slice of credit; a
 * waking task may preempt the running one.
 *
 * The including program declares the two parameters before including this file, and names
 * these callbacks in its own sched_ext_ops, with its own .name and .timeout_ms:
 *
 *     const volatile u64 slice_us = ...;         time slice
 *     const volatile bool wakeup_preempt = ...;  kick the target CPU when a task wakes
 */
#pragma once

#include "vtime.bpf.h"

/* `p`'s slice: slice_us, shorter for a light task (vtime.bpf.h). Given and charged alike, so a
 * renice while it runs only shifts that one charge. */
static __always_inline u64 vtime_slice_ns(struct task_struct *p)
{
    return vtime_task_slice(p, slice_us * NSEC_PER_USEC);
}

SEC("struct_ops/vtime_select_cpu")
s32 BPF_PROG(vtime_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle) /* an idle CPU: run there at once, skipping the queue */
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, vtime_slice_ns(p), 0);
    return cpu;
}

SEC("struct_ops/vtime_enqueue")
void BPF_PROG(vtime_enqueue, struct task_struct *p, u64 enq_flags)
{
    u64 slice_ns = vtime_slice_ns(p);

    scx_bpf_dsq_insert_vtime(p, SHARED_DSQ, slice_ns, vtime_queue_key(p, slice_ns), enq_flags);
    /* Without preemption a waking task waits for some CPU's slice to end (at most slice_us). */
    if (wakeup_preempt && (enq_flags & SCX_ENQ_WAKEUP))
        scx_bpf_kick_cpu(scx_bpf_task_cpu(p), SCX_KICK_PREEMPT);
}

SEC("struct_ops/vtime_dispatch")
void BPF_PROG(vtime_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops/vtime_running")
void BPF_PROG(vtime_running, struct task_struct *p)
{
    vtime_clock_follow(p);
}

SEC("struct_ops/vtime_stopping")
void BPF_PROG(vtime_stopping, struct task_struct *p, bool runnable)
{
    vtime_charge_used(p, vtime_slice_ns(p));
}

SEC("struct_ops/vtime_enable")
void BPF_PROG(vtime_enable, struct task_struct *p)
{
    vtime_start(p);
}

SEC("struct_ops.s/vtime_init")
s32 BPF_PROG(vtime_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/vtime_exit")
void BPF_PROG(vtime_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}
