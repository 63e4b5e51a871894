/* Verifier corpus: no single map or section is large, but together they are over the budget:
 * a per-CPU array that looks like 128 KiB (8 MiB on a 64-CPU machine), a hash of 32,768 tasks,
 * 4 MiB of .bss and 1 MiB in a custom .data section.
 * expect: SCX015 the maps and global data need about 19.3 MiB
 */
#include "common.bpf.h"

const volatile u64 slice_us = 5000; /* time slice */

struct cpu_stats {
    u64 buckets[16];
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1024);
    __type(key, u32);
    __type(value, struct cpu_stats);
} per_cpu_stats SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 32768);
    __type(key, s32);
    __type(value, struct cpu_stats);
} per_task SEC(".maps");

u64 recent_runtimes[512 * 1024];                 /* .bss, 4 MiB */
u64 recent_wakeups[128 * 1024] SEC(".data.ring"); /* a custom section, 1 MiB */

SEC("struct_ops/split_memory_select_cpu")
s32 BPF_PROG(split_memory_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
    bool is_idle = false;
    s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);
    u32 slot = (u32)p->pid & (128 * 1024 - 1);

    recent_wakeups[slot] = bpf_ktime_get_ns();
    if (is_idle)
        scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_us * NSEC_PER_USEC, 0);
    return cpu;
}

SEC("struct_ops/split_memory_enqueue")
void BPF_PROG(split_memory_enqueue, struct task_struct *p, u64 enq_flags)
{
    u32 slot = (u32)p->pid & (512 * 1024 - 1), bucket = (u32)p->pid & 1023;
    s32 pid = p->pid;
    struct cpu_stats *stats = bpf_map_lookup_elem(&per_cpu_stats, &bucket);
    struct cpu_stats *mine = bpf_map_lookup_elem(&per_task, &pid);

    recent_runtimes[slot] = p->se.sum_exec_runtime;
    if (stats)
        stats->buckets[0]++;
    if (mine)
        mine->buckets[1]++;
    scx_bpf_dsq_insert(p, SHARED_DSQ, slice_us * NSEC_PER_USEC, enq_flags);
}

SEC("struct_ops/split_memory_dispatch")
void BPF_PROG(split_memory_dispatch, s32 cpu, struct task_struct *prev)
{
    scx_bpf_dsq_move_to_local(SHARED_DSQ);
}

SEC("struct_ops.s/split_memory_init")
s32 BPF_PROG(split_memory_init)
{
    return scx_bpf_create_dsq(SHARED_DSQ, -1);
}

SEC("struct_ops/split_memory_exit")
void BPF_PROG(split_memory_exit, struct scx_exit_info *ei)
{
    SCHEDCP_RECORD_EXIT(ei);
}

SEC(".struct_ops.link")
struct sched_ext_ops split_memory_ops = {
    .select_cpu = (void *)split_memory_select_cpu,
    .enqueue = (void *)split_memory_enqueue,
    .dispatch = (void *)split_memory_dispatch,
    .init = (void *)split_memory_init,
    .exit = (void *)split_memory_exit,
    .timeout_ms = 5000,
    .name = "schedcp_split_memory",
};
