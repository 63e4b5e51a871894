/* vtime: one global queue ordered by weighted virtual time (CFS-like fairness, see
 * vtime.bpf.h), with wakeup preemption so a waking task does not wait out the running task's
 * slice. A task that slept keeps at most one slice of credit. The callbacks are in
 * vtime_sched.bpf.h, shared with batch (the same scheduler with throughput defaults).
 */
#include "common.bpf.h"

const volatile u64 slice_us = 3000;        /* time slice */
const volatile bool wakeup_preempt = true; /* kick the target CPU when a task wakes */

#include "vtime_sched.bpf.h"

SEC(".struct_ops.link")
struct sched_ext_ops vtime_ops = {
    .select_cpu = (void *)vtime_select_cpu,
    .enqueue = (void *)vtime_enqueue,
    .dispatch = (void *)vtime_dispatch,
    .running = (void *)vtime_running,
    .stopping = (void *)vtime_stopping,
    .enable = (void *)vtime_enable,
    .init = (void *)vtime_init,
    .exit = (void *)vtime_exit,
    .timeout_ms = 5000,
    .name = "schedcp_vtime",
};
