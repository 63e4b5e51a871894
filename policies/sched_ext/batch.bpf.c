/* batch: the vtime scheduler (vtime_sched.bpf.h) with throughput defaults. Long slices and no
 * wakeup preemption, so CPU-bound work keeps its caches warm and context switches stay rare;
 * the global vtime queue keeps it fair over time. Same algorithm as vtime: only the defaults
 * and the watchdog timeout differ (a waking task may wait a whole long slice).
 */
#include "common.bpf.h"

const volatile u64 slice_us = 20000;        /* long time slice */
const volatile bool wakeup_preempt = false; /* a waking task waits for a slice to end */

#include "vtime_sched.bpf.h"

SEC(".struct_ops.link")
struct sched_ext_ops batch_ops = {
    .select_cpu = (void *)vtime_select_cpu,
    .enqueue = (void *)vtime_enqueue,
    .dispatch = (void *)vtime_dispatch,
    .running = (void *)vtime_running,
    .stopping = (void *)vtime_stopping,
    .enable = (void *)vtime_enable,
    .init = (void *)vtime_init,
    .exit = (void *)vtime_exit,
    .timeout_ms = 10000,
    .name = "schedcp_batch",
};
