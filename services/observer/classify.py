"""Which kind of workload a group is, from its features, with a confidence and a reason.

Rules over per-active-thread rates (demand, wakeups), so a group's size does not decide its
class; only "background" also looks at the group's total CPU share. Each class gets a
membership score in 0..1 built from linear ramps between thresholds; the highest wins and its
score is the confidence. The thresholds (and why) are below; docs/observer.md explains them.
"""

from __future__ import annotations

from schedcp.v1 import profile_pb2

C = profile_pb2


def ramp(x: float, low: float, high: float) -> float:
    """0 at or below `low`, 1 at or above `high`, linear between."""
    return min(1.0, max(0.0, (x - low) / (high - low)))


# A thread that is running or waiting to run more than 80 % of the time wants a whole CPU:
# CPU bound (counted as demand, so starvation under contention does not hide it).
BATCH_DEMAND = (0.3, 0.8)
# Latency-sensitive threads sleep and wake often (>= 200/s per thread is clearly so), block by
# themselves (voluntary switches), and run short bursts (under 1 ms).
LATENCY_WAKEUPS = (20.0, 200.0)
LATENCY_VOLUNTARY = (0.5, 0.9)
LATENCY_BURST_US = (1000.0, 5000.0)
# Background: under 0.5 % of the host's CPU and rarely awake.
BACKGROUND_CPU = (0.005, 0.05)
BACKGROUND_WAKEUPS = (10.0, 100.0)


def scores(f: profile_pb2.GroupFeatures) -> dict[int, float]:
    active = max(f.active_threads, 1)
    demand = f.demand / active
    wakeups = f.wakeups_per_s / active
    batch = ramp(demand, *BATCH_DEMAND)
    latency = (ramp(wakeups, *LATENCY_WAKEUPS) * ramp(f.voluntary_ratio, *LATENCY_VOLUNTARY)
               * (1 - ramp(f.mean_burst_us, *LATENCY_BURST_US)) * (1 - batch))
    quiet = (1 - ramp(f.cpu_share, *BACKGROUND_CPU)) * (1 - ramp(wakeups, *BACKGROUND_WAKEUPS)) * (1 - batch)
    # A terminal makes a quiet or moderately busy group a person's: interactive, not background.
    interactive = (1 - batch) * (1 - latency) if f.has_tty else 0.0
    return {
        C.WORKLOAD_CLASS_BATCH: batch,
        C.WORKLOAD_CLASS_LATENCY_SENSITIVE: latency,
        C.WORKLOAD_CLASS_INTERACTIVE: interactive,
        C.WORKLOAD_CLASS_BACKGROUND: quiet * (0.5 if f.has_tty else 1.0),
    }


def _reason(cls: int, f: profile_pb2.GroupFeatures) -> str:
    active = max(f.active_threads, 1)
    per_thread = f"{f.wakeups_per_s / active:.0f} wakeups/s per active thread"
    if cls == C.WORKLOAD_CLASS_BATCH:
        return (f"{active} active thread(s) running or runnable {100 * f.demand / active:.0f}% of the time, "
                f"blocking in {100 * f.voluntary_ratio:.0f}% of their switches: CPU bound")
    if cls == C.WORKLOAD_CLASS_LATENCY_SENSITIVE:
        return (f"{per_thread}, {100 * f.voluntary_ratio:.0f}% voluntary switches, "
                f"mean burst {f.mean_burst_us:.0f} us: sleeps and wakes for short work")
    if cls == C.WORKLOAD_CLASS_INTERACTIVE:
        return f"has a controlling terminal, {100 * f.cpu_share:.1f}% CPU, {per_thread}: a person's session"
    return f"{100 * f.cpu_share:.2f}% CPU and {per_thread}: mostly idle"


def classify(f: profile_pb2.GroupFeatures) -> profile_pb2.Classification:
    ranked = sorted(scores(f).items(), key=lambda item: item[1], reverse=True)
    cls, confidence = ranked[0]
    if confidence == 0.0:
        # Between every rule's thresholds: say so rather than guess.
        return profile_pb2.Classification(
            workload_class=C.WORKLOAD_CLASS_UNSPECIFIED, confidence=0.0,
            reason="features fall between every class's thresholds")
    return profile_pb2.Classification(workload_class=cls, confidence=round(confidence, 3), reason=_reason(cls, f))
