// Per-thread scheduling counters from the sched tracepoints, for the schedcp observer.
//
// Only tracepoint fields (TRACEPOINT_PROBE, described by tracefs formats) are read, never
// struct task_struct: BCC compiles against whatever kernel headers it finds, and on hosts
// whose headers do not match the running kernel a struct read would return garbage.
//
// Counters are cumulative and never reset by the reader, so several readers (periodic
// profiles, GetProfile, Measure) can take overlapping deltas independently.

#define SLOTS 40   // log2 ns buckets: slot s holds [2^(s-1), 2^s) ns; the last one is open-ended
#define TASK_RUNNING 0
#ifndef COPY_TASK_NAME
#define COPY_TASK_NAME(dst, src) __builtin_memcpy(dst, src, 16)
#endif

struct thread_stats {
    u64 runq_slots[SLOTS];
    u64 runq_delay_ns;   // time spent runnable, waiting for a CPU
    u64 runs;            // times it got a CPU after waiting
    // The waits that began with a wakeup, apart: what a periodic task or a request waits before it
    // starts. The ones above also include the waits after each preemption.
    u64 wakeup_slots[SLOTS];
    u64 wakeup_delay_ns;
    u64 wakeup_runs;
    // Response: from a wakeup to the thread's next block, so the wait to run, the work and any
    // waits after preemption in the middle of it. For a request worker that is one request
    // (or a batch of them) from arrival to done; a long slice can lengthen the first wait and
    // still shorten the whole, which is what a request's latency sees.
    u64 response_slots[SLOTS];
    u64 response_ns;
    u64 responses;
    u64 wakeups;
    u64 cpu_ns;          // the kernel's own accounting (sched_stat_runtime): what schedstat and top show
    u64 voluntary;       // switched out because it blocked
    u64 involuntary;     // switched out while still runnable (preempted, yielded)
    // When the thread was created (its first wakeup) and when it exited, 0 until then: a job's
    // length is its main thread's, and a batch that repeats jobs (a build, a benchmark loop)
    // does more work per second exactly when its jobs finish sooner.
    u64 born_ns;
    u64 exited_ns;
    u32 tgid;            // learnt when the thread is switched out (it is `current` then)
    u32 pad;
    // Its name at its last switch-out: a process that ran and exited between two reads of
    // /proc (a compressor run in a loop, a compiler) still counts for its group.
    char comm[16];
};

// When each runnable thread joined a run queue, with the lowest bit set when a wakeup put it
// there (WOKEN; a nanosecond less is of no account). LRU: a thread that exits while runnable
// must not leak an entry.
BPF_TABLE("lru_hash", u32, u64, enqueued_at, 65536);
// When each thread was last woken, until it blocks again (LRU for the same reason).
BPF_TABLE("lru_hash", u32, u64, woke_at, 65536);
// LRU too: the reader prunes exited threads, but a fork storm between reads must evict the
// oldest entries rather than stop counting new threads.
BPF_TABLE("lru_hash", u32, struct thread_stats, stats, 32768);
// A zeroed thread_stats to start new threads from: the struct (two histograms) is larger than
// the 512-byte BPF stack, so it cannot be a local. Never written.
BPF_ARRAY(zero_stats, struct thread_stats, 1);

static __always_inline struct thread_stats *stats_of(u32 tid) {
    int first = 0;
    struct thread_stats *zero = zero_stats.lookup(&first);
    if (!zero)
        return 0;
    return stats.lookup_or_try_init(&tid, zero);
}

#define WOKEN 1ULL

static __always_inline void mark_enqueued(u32 tid, u64 now, u64 woken) {
    u64 at = (now & ~WOKEN) | woken;
    if (tid)
        enqueued_at.update(&tid, &at);
}

static __always_inline void add_to(u64 *slots, u64 delta) {
    u32 slot = bpf_log2l(delta);
    if (slot >= SLOTS)
        slot = SLOTS - 1;
    __sync_fetch_and_add(&slots[slot], 1);
}

static __always_inline int on_wakeup(u32 tid) {
    if (!tid)
        return 0;
    u64 now = bpf_ktime_get_ns();
    mark_enqueued(tid, now, WOKEN);
    woke_at.update(&tid, &now);
    struct thread_stats *s = stats_of(tid);
    if (s)
        __sync_fetch_and_add(&s->wakeups, 1);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_wakeup) { return on_wakeup(args->pid); }

TRACEPOINT_PROBE(sched, sched_wakeup_new) {
    u32 tid = args->pid;
    on_wakeup(tid);
    struct thread_stats *s = tid ? stats.lookup(&tid) : 0;
    if (s) {
        // A reused thread id is a new thread: its record's exit was the previous one's.
        s->born_ns = bpf_ktime_get_ns();
        s->exited_ns = 0;
    }
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit) {
    u32 tid = args->pid;
    struct thread_stats *s = tid ? stats.lookup(&tid) : 0;
    if (s) {
        s->exited_ns = bpf_ktime_get_ns();
        s->tgid = bpf_get_current_pid_tgid() >> 32;  // the exiting task is `current`
    }
    return 0;
}

TRACEPOINT_PROBE(sched, sched_switch) {
    u64 now = bpf_ktime_get_ns();
    u32 prev = args->prev_pid, next = args->next_pid;

    if (prev) {
        struct thread_stats *s = stats_of(prev);
        // Since 6.x a preempted task reports state bits above 0xff (TASK_REPORT_MAX);
        // only the low byte says whether it blocked.
        int still_runnable = (args->prev_state & 0xff) == TASK_RUNNING;
        if (still_runnable)
            mark_enqueued(prev, now, 0);
        if (s) {
            s->tgid = bpf_get_current_pid_tgid() >> 32;
            COPY_TASK_NAME(s->comm, args->prev_comm);
            if (still_runnable)
                __sync_fetch_and_add(&s->involuntary, 1);
            else
                __sync_fetch_and_add(&s->voluntary, 1);
        }
        u64 *woke = still_runnable ? 0 : woke_at.lookup(&prev);
        if (woke) {
            u64 response = now - *woke;
            woke_at.delete(&prev);
            if (s) {
                add_to(s->response_slots, response);
                __sync_fetch_and_add(&s->response_ns, response);
                __sync_fetch_and_add(&s->responses, 1);
            }
        }
    }
    if (!next)
        return 0;

    u64 *queued = enqueued_at.lookup(&next);
    if (!queued)
        return 0;
    u64 at = *queued;
    u64 delta = now - (at & ~WOKEN);
    enqueued_at.delete(&next);
    struct thread_stats *s = stats_of(next);
    if (!s)
        return 0;
    add_to(s->runq_slots, delta);
    __sync_fetch_and_add(&s->runq_delay_ns, delta);
    __sync_fetch_and_add(&s->runs, 1);
    if (at & WOKEN) {
        add_to(s->wakeup_slots, delta);
        __sync_fetch_and_add(&s->wakeup_delay_ns, delta);
        __sync_fetch_and_add(&s->wakeup_runs, 1);
    }
    return 0;
}

// CPU time as the kernel accounts it, on every update of the running task's runtime (each tick,
// switch and wakeup preemption check, in every scheduling class, sched_ext included). Timing runs
// between sched_switch events instead would count steal and interrupt time that the kernel leaves
// out (rq_clock_task), and place each run's edges after the scheduler picked: cyclictest's 8 us
// runs read 40 % short that way, and a busy virtual machine's steal made them read long.
TRACEPOINT_PROBE(sched, sched_stat_runtime) {
    u32 tid = args->pid;
    if (!tid)
        return 0;
    struct thread_stats *s = stats_of(tid);
    if (s)
        __sync_fetch_and_add(&s->cpu_ns, args->runtime);
    return 0;
}
