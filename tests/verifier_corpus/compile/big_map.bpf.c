/* Verifier corpus: one array map of 1 GiB (a "history" per slot). The kernel's verifier accepts
 * it; loading it would take 1 GiB of kernel memory on every host.
 * expect: SCX015 the maps and global data need about 1.0 GiB of kernel memory, over the budget of 16 MiB: map big_arr (array): 1,048,576 entries x 1,024 B = 1 GiB
 */
#include "common.bpf.h"

const volatile u64 slice_us = 5000; /* time slice */

struct history {
    u64 runtimes[128];
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1 << 20);
    __type(key, u32);
    __type(value, struct history);
} big_arr SEC(".maps");

SEC("struct_ops/big_map_select_cpu")
s32 BPF_PROG(big_map_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_us * NSEC_PER_USEC, 0);
    return cpu;
}

SEC("struct_ops/big_map_enqueue")
void BPF_PROG(big_map_enqueue, struct task_struct *p, u64 enq_flags)
{
    u32 slot = (u32)p->pid & ((1 << 20) - 1);
    struct history *h = bpf_map_lookup_elem(&big_arr, &slot);

    if (h)
        h->runtimes[0] = p->se.sum_exec_runtime;
    scx_bpf_dsq_insert(p, SHARED_DSQ, slice_us * NSEC_PER_USEC, enq_flags);
}

SEC("struct_ops/big_map_dispatch")
void BPF_PROG(big_map_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/big_map_init")
s32 BPF_PROG(big_map_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/big_map_exit")
void BPF_PROG(big_map_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops big_map_ops = {
    .select_cpu = (void *)big_map_select_cpu,
    .enqueue = (void *)big_map_enqueue,
    .dispatch = (void *)big_map_dispatch,
    .init = (void *)big_map_init,
    .exit = (void *)big_map_exit,
    .timeout_ms = 5000,
    .name = "schedcp_big_map",
};
