"""Which kind of workload a group is, from its features, with a confidence and a reason.

Rules over what a thread does between sleeps (CPU per wakeup, wakeups per active thread,
voluntary switches), how much it wants the CPU (demand) and who waits on it (the sockets it
holds, the local servers it is a client of), so neither a group's size nor the contention it
meets decides its class; only "background" also looks at the group's CPU share. Each class gets
a membership score in 0..1 built from linear ramps between thresholds; the highest wins and its
score is the confidence. The thresholds (and why) are below; docs/observer.md explains them.
"""

from __future__ import annotations

from schedcp.v1 import profile_pb2

C = profile_pb2


def ramp(x: float, low: float, high: float) -> float:
    """0 at or below `low`, 1 at or above `high`, linear between."""
    return min(1.0, max(0.0, (x - low) / (high - low)))


# What a group's threads do between sleeps decides its class, not how much CPU they get: under
# contention a starved request worker waits to run most of the time (its demand nears 1, like a
# CPU hog's), but it still blocks by itself after every unit of work, and that unit stays small.
#
# CPU bound (batch): tens of ms or more of CPU per wakeup (a thread that never blocks did all its
# work in one go), and wanting the CPU a good part of the time it is there.
BATCH_WORK_PER_WAKEUP_US = (2000.0, 20000.0)
BATCH_DEMAND = (0.05, 0.3)
# Latency-sensitive: blocks by itself (voluntary switches) often enough to matter, a few ms of
# work per wakeup at most (a request, a message, a period's work), whatever its demand.
LATENCY_WAKEUPS = (5.0, 50.0)
LATENCY_VOLUNTARY = (0.2, 0.6)
# A group that serves requests (it accepts connections) and keeps waking for them, blocks by itself
# in a good part of its switches (it ran out of requests: nginx gzipping 64 KiB responses in the
# emulated VM took 30 ms of CPU per wakeup and blocked in 47 % of its switches), or waits to run
# for over half of what it wants, is a server, however large its units of work look.
STARVED_SERVER_WAIT = (0.3, 0.5)
# Blocking by itself at all is what a server does when it runs out of requests: a CPU hog that
# holds a socket (a worker taking long jobs over it) is preempted far more often than it blocks.
# The same nginx in the VM blocked in 47 % of its switches in one recording and 36 % in the next
# (30 ms of CPU per wakeup, quiet), so a server's ramp sits below the one for groups with no
# sockets to explain their sleeps.
SERVER_VOLUNTARY = (0.1, 0.3)
# Or its threads sleep most of the time (demand per active thread, CPU plus wait, well under one):
# it waits for requests, not for the CPU. nginx gzipping in the emulated VM with more workers than
# CPUs: 19 ms of CPU per wakeup, blocking in 31 % of its switches, waiting 36 %, and each worker
# running or runnable 25 % of the time; a CPU hog, even one holding a socket, wants it all the time.
IDLE_SERVER = (0.5, 0.8)
# A group none of whose processes holds a socket (`socketless`) answers to no one outside it: only
# its own threads, pipes, files and timers wake it. It is latency-sensitive only as periodic work
# is: a timer's short work, after which it nearly always blocks by itself (rt-app, cyclictest).
# Threads handing each other units of work of a millisecond or more, preempted in the middle of
# them as often as they block (pigz, zstd -T: under half their switches voluntary), are a pipeline
# of CPU work wanting a quarter of a CPU or more between them (a pool's idle threads do not
# dilute it; pigz -p 4 on the suite's text wanted 0.3-0.8 CPUs of 2, its compressors waiting on
# one reader): batch, however short each unit is.
PERIODIC_VOLUNTARY = (0.5, 0.8)
PIPELINE_WORK_PER_WAKEUP_US = (200.0, 1000.0)
PIPELINE_DEMAND_CPUS = (0.05, 0.25)
# A client of a server on this host (`client_of`: its connections reach the server's listening
# socket) is part of that server's requests: while it keeps waking for answers in short units of
# work, its own waits add to their latency, however few of its switches are voluntary (a load
# generator always has the next request ready: redis-benchmark blocked in 25-50 % of its
# switches beside batch work). hackbench's senders talk only to each other, over unix sockets.
# Background: under 0.5 % of the host's CPU and rarely awake; not a client that keeps waking for
# its server's answers (wrk pacing 16 connections in the emulated VM: 25 wakeups/s per thread,
# 1.5 % of the CPU), whose waits are its requests'.
BACKGROUND_CPU = (0.005, 0.05)
BACKGROUND_WAKEUPS = (10.0, 100.0)


def scores(f: profile_pb2.GroupFeatures) -> dict[int, float]:
    active = max(f.active_threads, 1)
    wakeups = f.wakeups_per_s / active
    large_units = ramp(f.cpu_per_wakeup_us, *BATCH_WORK_PER_WAKEUP_US)
    server = _server(f, wakeups)
    batch = large_units * ramp(f.demand / active, *BATCH_DEMAND) * (1 - server)
    # A socketless group (never a server) must block by itself as periodic work does.
    voluntary = ramp(f.voluntary_ratio, *(PERIODIC_VOLUNTARY if f.socketless else LATENCY_VOLUNTARY))
    client = ramp(wakeups, *LATENCY_WAKEUPS) * (1 - large_units) if f.client_of else 0.0
    latency = max(ramp(wakeups, *LATENCY_WAKEUPS) * voluntary * (1 - large_units), server, client)
    if f.socketless:
        pipeline = ((1 - voluntary) * ramp(f.cpu_per_wakeup_us, *PIPELINE_WORK_PER_WAKEUP_US)
                    * ramp(f.demand, *PIPELINE_DEMAND_CPUS))
        batch = max(batch, pipeline)
    quiet = ((1 - ramp(f.cpu_share, *BACKGROUND_CPU)) * (1 - ramp(wakeups, *BACKGROUND_WAKEUPS)) * (1 - batch)
             * (1 - client))
    # A terminal makes a quiet or moderately busy group a person's: interactive, not background.
    interactive = (1 - batch) * (1 - latency) if f.has_tty else 0.0
    return {
        C.WORKLOAD_CLASS_BATCH: batch,
        C.WORKLOAD_CLASS_LATENCY_SENSITIVE: latency,
        C.WORKLOAD_CLASS_INTERACTIVE: interactive,
        C.WORKLOAD_CLASS_BACKGROUND: quiet * (0.5 if f.has_tty else 1.0),
    }


def _server(f: profile_pb2.GroupFeatures, wakeups: float) -> float:
    """How surely a group that accepts connections is serving requests: it keeps waking for them
    or blocks for the next one (a busy server handles several per wakeup, so its units of work
    look large), its threads sleep most of the time, or it is starved of CPU and never sleeps
    because its requests pile up. Either way it waits for work from outside, not for the CPU
    alone."""
    if not f.serves:
        return 0.0
    asleep = 1 - f.demand / max(f.active_threads, 1)
    return max(ramp(wakeups, *LATENCY_WAKEUPS), ramp(f.voluntary_ratio, *SERVER_VOLUNTARY),
               ramp(f.wait_share, *STARVED_SERVER_WAIT), ramp(asleep, *IDLE_SERVER))


def _reason(cls: int, f: profile_pb2.GroupFeatures) -> str:
    active = max(f.active_threads, 1)
    per_thread = f"{f.wakeups_per_s / active:.0f} wakeups/s per active thread"
    if cls == C.WORKLOAD_CLASS_BATCH:
        pipeline = f.socketless and f.cpu_per_wakeup_us < BATCH_WORK_PER_WAKEUP_US[1]
        return (f"{active} active thread(s) running or runnable {100 * f.demand / active:.0f}% of the time, "
                f"{_us(f.cpu_per_wakeup_us)} of CPU per wakeup, blocking in {100 * f.voluntary_ratio:.0f}% of their "
                "switches" + (", holding no socket: a pipeline of CPU work" if pipeline else ": CPU bound"))
    if cls == C.WORKLOAD_CLASS_LATENCY_SENSITIVE and f.serves and f.voluntary_ratio < LATENCY_VOLUNTARY[1]:
        starved = f.wait_share >= STARVED_SERVER_WAIT[0]
        return (f"serves connections, {per_thread}, running or runnable {100 * f.demand / active:.0f}% of the "
                f"time, waits to run {100 * f.wait_share:.0f}% of what it wants, blocking in "
                f"{100 * f.voluntary_ratio:.0f}% of its switches: "
                + ("a server starved of CPU (its requests pile up)" if starved else "a busy server"))
    if cls == C.WORKLOAD_CLASS_LATENCY_SENSITIVE and f.client_of and f.voluntary_ratio < LATENCY_VOLUNTARY[1]:
        return (f"a client of {', '.join(f.client_of)} on this host, {per_thread}, {_us(f.cpu_per_wakeup_us)} of CPU "
                f"per wakeup, blocking in {100 * f.voluntary_ratio:.0f}% of its switches: its waits are part of "
                "the requests' latency")
    if cls == C.WORKLOAD_CLASS_LATENCY_SENSITIVE:
        waiting = f", waiting {100 * f.wait_share:.0f}% of what it wants" if f.wait_share >= 0.5 else ""
        return (f"{per_thread}, {100 * f.voluntary_ratio:.0f}% voluntary switches, {_us(f.cpu_per_wakeup_us)} of CPU "
                f"per wakeup{waiting}: sleeps and wakes for short work")
    if cls == C.WORKLOAD_CLASS_INTERACTIVE:
        return f"has a controlling terminal, {100 * f.cpu_share:.1f}% CPU, {per_thread}: a person's session"
    return f"{100 * f.cpu_share:.2f}% CPU and {per_thread}: mostly idle"


def _us(value: float) -> str:
    return f"{value / 1000:.1f} ms" if value >= 1000 else f"{value:.0f} us"


def classify(f: profile_pb2.GroupFeatures) -> profile_pb2.Classification:
    ranked = sorted(scores(f).items(), key=lambda item: item[1], reverse=True)
    cls, confidence = ranked[0]
    if confidence == 0.0:
        # Between every rule's thresholds: say so rather than guess.
        return profile_pb2.Classification(
            workload_class=C.WORKLOAD_CLASS_UNSPECIFIED, confidence=0.0,
            reason="features fall between every class's thresholds")
    return profile_pb2.Classification(workload_class=cls, confidence=round(confidence, 3), reason=_reason(cls, f))
