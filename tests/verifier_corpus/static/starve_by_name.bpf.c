/* Verifier corpus: daemons get a DSQ of their own, which dispatch serves only when the task
 * that just ran (prev) is itself a daemon: the name test hides in a helper that loops over the
 * name. Once no daemon is running, none ever runs again.
 * expect: SCX017 DSQ 2 (DAEMON_DSQ) is consumed only when prev && is_daemon(prev), a condition on a task's name
 */
#include "common.bpf.h"

#define DAEMON_DSQ 2

const volatile u64 slice_us = 5000; /* time slice */

static __always_inline bool is_daemon(const struct task_struct *p)
{
    int n = 0;

    for (int i = 0; i < 15; i++) {
        if (!p->comm[i])
            break;
        n = i;
    }
    return n > 0 && p->comm[n] == 'd';
}

static __always_inline void serve_daemons(void)
{
    scx_bpf_dsq_move_to_local(DAEMON_DSQ);
}

SEC("struct_ops/named_select_cpu")
s32 BPF_PROG(named_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;

    return scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);
}

SEC("struct_ops/named_enqueue")
void BPF_PROG(named_enqueue, struct task_struct *p, u64 enq_flags)
{
    if (is_daemon(p)) {
        scx_bpf_dsq_insert(p, DAEMON_DSQ, slice_us * NSEC_PER_USEC, enq_flags);
        return;
    }
    scx_bpf_dsq_insert(p, SHARED_DSQ, slice_us * NSEC_PER_USEC, enq_flags);
}

SEC("struct_ops/named_dispatch")
void BPF_PROG(named_dispatch, s32 cpu, struct task_struct *prev)
{
    if (prev && is_daemon(prev))
        serve_daemons();
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/named_init")
s32 BPF_PROG(named_init)
{
    s32 err = scx_bpf_create_dsq(DAEMON_DSQ, -1);

    return err ? err : scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/named_exit")
void BPF_PROG(named_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops named_ops = {
    .select_cpu = (void *)named_select_cpu,
    .enqueue = (void *)named_enqueue,
    .dispatch = (void *)named_dispatch,
    .init = (void *)named_init,
    .exit = (void *)named_exit,
    .timeout_ms = 5000,
    .name = "schedcp_named",
};
