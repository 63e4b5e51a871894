/* Verifier corpus: tasks named "sshd" get a 20 us slice (a tick, in effect), every other task
 * 50 ms, all from one FIFO: sshd always runs, but a fraction of the time the others do.
 * expect: DYN002
 */
#include "common.bpf.h"

const volatile u64 slice_us = 50000; /* time slice */

static __always_inline u64 slice_of(const struct task_struct *p)
{
    bool sshd = p->comm[0] == 's' && p->comm[1] == 's' && p->comm[2] == 'h' && p->comm[3] == 'd' && !p->comm[4];

    return (sshd ? 20 : slice_us) * NSEC_PER_USEC;
}

SEC("struct_ops/slight_sshd_select_cpu")
s32 BPF_PROG(slight_sshd_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_of(p), 0);
    return cpu;
}

SEC("struct_ops/slight_sshd_enqueue")
void BPF_PROG(slight_sshd_enqueue, struct task_struct *p, u64 enq_flags)
{
    scx_bpf_dsq_insert(p, SHARED_DSQ, slice_of(p), enq_flags);
}

SEC("struct_ops/slight_sshd_dispatch")
void BPF_PROG(slight_sshd_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/slight_sshd_init")
s32 BPF_PROG(slight_sshd_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/slight_sshd_exit")
void BPF_PROG(slight_sshd_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops slight_sshd_ops = {
    .select_cpu = (void *)slight_sshd_select_cpu,
    .enqueue = (void *)slight_sshd_enqueue,
    .dispatch = (void *)slight_sshd_dispatch,
    .init = (void *)slight_sshd_init,
    .exit = (void *)slight_sshd_exit,
    .timeout_ms = 5000,
    .name = "schedcp_slight_sshd",
};
