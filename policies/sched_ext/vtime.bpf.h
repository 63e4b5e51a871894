/* Weighted virtual time, shared by the policies that order a queue by it (vtime and batch,
 * through vtime_sched.bpf.h, and latency_boost).
 *
 * A task's vtime advances by the CPU time it used, scaled by 100/weight (nice 0 = weight
 * 100), so heavier tasks advance slower and get more CPU. The queue's clock, vtime_now,
 * follows the tasks that run; a task that slept is queued at most `credit_ns` behind it, so
 * sleepers cannot bank time and then monopolise the CPU.
 *
 * A light task (nice > 0) gets a slice shorter in proportion to its weight, so one full turn
 * costs it about the vtime it costs any task: it takes short turns often instead of one turn
 * charged at up to 100x and then a wait of seconds behind every other task (a nice-19 kthread
 * among 32 hogs on 2 CPUs waited 4.8 s at a 3 ms slice, past the watchdog). Its share of the
 * CPU is the same either way.
 */
#pragma once

#include "common.bpf.h"

static u64 vtime_now;

/* The shortest slice a light task gets: shorter turns would cost more in switches than they run. */
#define VTIME_MIN_SLICE_NS (100 * NSEC_PER_USEC)

/* The slice to give `p`: `base_ns` at the default weight or heavier, less for a lighter task. */
static __always_inline u64 vtime_task_slice(struct task_struct *p, u64 base_ns)
{
    u64 ns = base_ns * p->scx.weight / 100;

    if (ns >= base_ns)
        return base_ns;
    if (ns < VTIME_MIN_SLICE_NS)
        ns = VTIME_MIN_SLICE_NS < base_ns ? VTIME_MIN_SLICE_NS : base_ns;
    return ns;
}

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
 * SCX_SLICE_DFL): charge nothing then rather than wrap around. `given_ns` is the turn's slice
 * at the task's weight now (vtime_task_slice), not the one stored when it was given: a thread
 * that reniced itself from 0 to 19 mid-turn would be charged its whole nice-0 slice at weight
 * 1 (100x) and wait seconds; this way one turn costs it at most a light turn. */
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
