/* Weighted virtual time, shared by the policies that order a queue by it (vtime and batch,
 * through vtime_sched.bpf.h, and latency_boost).
 *
 * A task's vtime advances by the CPU time it used, scaled by 100/weight (nice 0 = weight
 * 100), so heavier tasks advance slower and get more CPU. The queue's clock, vtime_now,
 * follows the tasks that run; a task that slept is queued at most `credit_ns` behind it, so
 * sleepers cannot bank time and then monopolise the CPU.
 */
#pragma once

#include "common.bpf.h"

static u64 vtime_now;

/* The key to queue `p` with in a vtime-ordered DSQ. */
static __always_inline u64 vtime_queue_key(struct task_struct *p, u64 credit_ns)
{
    u64 vtime = p->scx.dsq_vtime;

    if (vtime_before(vtime, vtime_now - credit_ns))
        vtime = vtime_now - credit_ns;
    return vtime;
}

/* ops.running: the clock follows the task that got a CPU. */
static __always_inline void vtime_clock_follow(struct task_struct *p)
{
    if (vtime_before(vtime_now, p->scx.dsq_vtime))
        vtime_now = p->scx.dsq_vtime;
}

/* ops.stopping: charge the part of the slice it was given (`given_ns`) that it used. The
 * kernel may have refilled the slice beyond it (a lone runnable task keeps running with
 * SCX_SLICE_DFL): charge nothing then rather than wrap around. */
static __always_inline void vtime_charge_used(struct task_struct *p, u64 given_ns)
{
    if (given_ns > p->scx.slice)
        p->scx.dsq_vtime += (given_ns - p->scx.slice) * 100 / p->scx.weight;
}

/* ops.enable: a task joining the scheduler starts at the clock. */
static __always_inline void vtime_start(struct task_struct *p)
{
    p->scx.dsq_vtime = vtime_now;
}
