// What runqlat.bpf.c needs from BCC, spelt for clang and libbpf, so the same probes can be
// compiled ahead of time (CO-RE, against a vmlinux.h) for hosts without BCC: the fleet's guests
// carry no compiler. services/observer/prebuilt.py turns BCC's map method calls
// (`stats.lookup(&tid)`) into the map_* macros below; BCC itself refuses them inside a macro, so
// the source keeps its BCC spelling.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define MAP_KIND_lru_hash BPF_MAP_TYPE_LRU_HASH
#define MAP_KIND_array BPF_MAP_TYPE_ARRAY
#define BPF_TABLE(kind, key_type, value_type, name, entries)                                        \
    struct {                                                                                        \
        __uint(type, MAP_KIND_##kind);                                                              \
        __uint(max_entries, entries);                                                               \
        __type(key, key_type);                                                                      \
        __type(value, value_type);                                                                  \
    } name SEC(".maps")
#define BPF_ARRAY(name, value_type, entries) BPF_TABLE(array, u32, value_type, name, entries)

#define map_lookup(map, key) bpf_map_lookup_elem(map, key)
#define map_update(map, key, value) bpf_map_update_elem(map, key, value, BPF_ANY)
#define map_delete(map, key) bpf_map_delete_elem(map, key)
// BCC's lookup_or_try_init: insert `init` unless another CPU got there first, then look up.
#define map_lookup_or_try_init(map, key, init)                                                      \
    ({                                                                                              \
        void *found_ = bpf_map_lookup_elem(map, key);                                               \
        if (!found_) {                                                                              \
            bpf_map_update_elem(map, key, init, BPF_NOEXIST);                                       \
            found_ = bpf_map_lookup_elem(map, key);                                                 \
        }                                                                                           \
        found_;                                                                                     \
    })

// BCC names each probe's `args` struct after the tracepoint and builds it from tracefs; the
// kernel's BTF has the same fields in trace_event_raw_* structs, some shared by several events.
// CO-RE relocates their offsets to the running kernel's.
#define TRACEPOINT_PROBE(category, event)                                                           \
    SEC("tracepoint/" #category "/" #event)                                                         \
    int tracepoint__##category##__##event(struct tp_args_##event *args)
#define tp_args_sched_wakeup trace_event_raw_sched_wakeup_template
#define tp_args_sched_wakeup_new trace_event_raw_sched_wakeup_template
#define tp_args_sched_switch trace_event_raw_sched_switch
#define tp_args_sched_process_exit trace_event_raw_sched_process_exit
#define tp_args_sched_stat_runtime trace_event_raw_sched_stat_runtime

// A CO-RE field of the tracepoint's context is reached through a relocated pointer, which the
// verifier refuses to dereference with an offset (as a copy of the array does): read it instead.
#define COPY_TASK_NAME(dst, src) bpf_probe_read_kernel(dst, 16, src)

// BCC's bpf_log2l: floor(log2(v)) + 1, and 1 for 0 (the histogram's slot numbering).
static __always_inline u32 bpf_log2l(u64 v) {
    u32 r = 0;
    for (int shift = 32; shift > 0; shift >>= 1) {
        if (v >> shift) {
            v >>= shift;
            r += shift;
        }
    }
    return r + 1;
}
