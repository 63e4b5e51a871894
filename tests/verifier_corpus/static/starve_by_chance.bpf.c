/* Verifier corpus: tasks of one name go to their own DSQ, which dispatch consumes only once in
 * a thousand calls, at random. SCX010 is satisfied (the DSQ is consumed somewhere); the dynamic
 * tests never run a task by that name.
 * expect: SCX017 DSQ 7 (SLOW_DSQ) is consumed only when bpf_get_prandom_u32() % 1000 == 0, a condition on a random draw
 */
#include "common.bpf.h"

#define SLOW_DSQ 7

const volatile u64 slice_us = 5000;          /* time slice */
const volatile char slow_comm[16] = "backup"; /* name prefix of the tasks sent to SLOW_DSQ */

SEC("struct_ops/chance_select_cpu")
s32 BPF_PROG(chance_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;

    return scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);
}

SEC("struct_ops/chance_enqueue")
void BPF_PROG(chance_enqueue, struct task_struct *p, u64 enq_flags)
{
    if (comm_has_prefix(p, slow_comm)) {
        scx_bpf_dsq_insert(p, SLOW_DSQ, slice_us * NSEC_PER_USEC, enq_flags);
        return;
    }
    scx_bpf_dsq_insert(p, SHARED_DSQ, slice_us * NSEC_PER_USEC, enq_flags);
}

SEC("struct_ops/chance_dispatch")
void BPF_PROG(chance_dispatch, s32 cpu, struct task_struct *prev)
{
    if (bpf_get_prandom_u32() % 1000 == 0)
        scx_bpf_dsq_move_to_local(SLOW_DSQ);
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/chance_init")
s32 BPF_PROG(chance_init)
{
    s32 err = scx_bpf_create_dsq(SLOW_DSQ, -1);

    return err ? err : scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/chance_exit")
void BPF_PROG(chance_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops chance_ops = {
    .select_cpu = (void *)chance_select_cpu,
    .enqueue = (void *)chance_enqueue,
    .dispatch = (void *)chance_dispatch,
    .init = (void *)chance_init,
    .exit = (void *)chance_exit,
    .timeout_ms = 5000,
    .name = "schedcp_chance",
};
