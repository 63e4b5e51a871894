/* Shared by every schedcp sched_ext policy: kfunc declarations, DSQ ids, and the exit record
 * the loader reports.
 *
 * Debian bookworm's bpftool emits no kfunc prototypes into vmlinux.h, so they are declared
 * here; each one was checked against the sandbox kernel's BTF
 * (`bpftool btf dump file vmlinux | grep "FUNC 'scx_bpf_"`). Names are the 6.13+ ones: 6.13
 * renamed scx_bpf_dispatch[_vtime] to scx_bpf_dsq_insert[_vtime] and scx_bpf_consume to
 * scx_bpf_dsq_move_to_local (6.12 has only the old names); scx_bpf_now arrived in 6.14. The
 * release each kfunc arrived in is schedcp/domain/kernels.py's KFUNC_SINCE, against which every
 * policy's min_kernel is checked: declare a new kfunc there too.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char _license[] SEC("license") = "GPL";

extern s32 scx_bpf_create_dsq(u64 dsq_id, s32 node) __ksym;
extern void scx_bpf_dsq_insert(struct task_struct *p, u64 dsq_id, u64 slice, u64 enq_flags) __ksym;
extern void scx_bpf_dsq_insert_vtime(struct task_struct *p, u64 dsq_id, u64 slice, u64 vtime,
                                     u64 enq_flags) __ksym;
extern bool scx_bpf_dsq_move_to_local(u64 dsq_id) __ksym;
extern s32 scx_bpf_select_cpu_dfl(struct task_struct *p, s32 prev_cpu, u64 wake_flags,
                                  bool *is_idle) __ksym;
extern void scx_bpf_kick_cpu(s32 cpu, u64 flags) __ksym;
extern s32 scx_bpf_dsq_nr_queued(u64 dsq_id) __ksym;
extern s32 scx_bpf_task_cpu(const struct task_struct *p) __ksym;
extern u64 scx_bpf_now(void) __ksym;

#define NSEC_PER_USEC 1000ULL
#define NSEC_PER_MSEC 1000000ULL

/* Custom DSQ ids used by the library (any u64 below SCX_DSQ_FLAG_BUILTIN). */
#define SHARED_DSQ 0
#define BOOST_DSQ 1

/* How the scheduler ended, for the loader: it reads this from the .bss map when the scheduler
 * goes away, by its own request or the kernel's (watchdog, runtime error). The reason and the
 * message are in the kernel log, where the loader reads them: no kernel memory is copied here. */
struct schedcp_exit {
    s32 kind;          /* enum scx_exit_kind; 0 while running */
    s64 exit_code;
};
struct schedcp_exit schedcp_exit_info SEC(".bss");

#define SCHEDCP_RECORD_EXIT(ei)                                                          \
    do {                                                                                 \
        /* volatile stores stay in order: kind last, since the loader treats a non-zero */ \
        /* kind as "the record is complete". */                                          \
        *(volatile s64 *)&schedcp_exit_info.exit_code = (ei)->exit_code;                 \
        *(volatile s32 *)&schedcp_exit_info.kind = (ei)->kind;                           \
    } while (0)

/* Whether the task's name starts with `prefix` (at most 15 characters; "" matches nothing).
 * The name is compared where it is, never copied out of the task. */
static __always_inline bool comm_has_prefix(const struct task_struct *p, const volatile char *prefix)
{
    if (!prefix[0])
        return false;
    for (int i = 0; i < 16 && prefix[i]; i++) {
        if (p->comm[i] != prefix[i])
            return false;
    }
    return true;
}

/* vtime comparison that survives wrap-around. */
static __always_inline bool vtime_before(u64 a, u64 b)
{
    return (s64)(a - b) < 0;
}
