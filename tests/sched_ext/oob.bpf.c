/* Test-only: reads past the end of a map value. The kernel's verifier must refuse it. */
#include "common.bpf.h"

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u64[4]);
} table SEC(".maps");

SEC("struct_ops/oob_enqueue")
void BPF_PROG(oob_enqueue, struct task_struct *p, u64 enq_flags)
{
    u32 key = 0;
    u64 *slots = bpf_map_lookup_elem(&table, &key);

    if (slots)
        slots[p->pid & 7] += 1; /* index up to 7 in a 4-element value */
    scx_bpf_dsq_insert(p, SCX_DSQ_GLOBAL, 5000000, enq_flags);
}

SEC(".struct_ops.link")
struct sched_ext_ops oob_ops = {
    .enqueue = (void *)oob_enqueue,
    .name = "schedcp_test_oob",
};
