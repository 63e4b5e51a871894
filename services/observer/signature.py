"""A fixed-length numeric description of a profile, for similarity search in the repository.

Every dimension is scaled to roughly 0..1 so that a plain Euclidean or cosine distance weighs
them alike. Change a dimension's meaning or order only together with VERSION: the learner
compares signatures of equal versions only.
"""

from __future__ import annotations

import math

from schedcp.v1 import profile_pb2

# 2: cpu_pressure is the window's own share of time with a task waiting for a CPU, not PSI's
# avg10, which remembers the tens of seconds before the window (a workload that started 5 s
# earlier read 0.43 and 0.84 at steady state: its own outcome was no longer "similar").
# 3: latency_serving, the share of the latency groups' CPU that serves requests or makes them to
# a local server: periodic work and request work beside the same batch looked alike, and the
# policy that wins differs (in the VM, vtime cut rt-app's wakeup p99 78 % and made pgbench's p99
# against postgres 50x worse; the learner offered the one's winner to the other, unsearched).
VERSION = 3
C = profile_pb2
_CLASSES = (
    ("latency", C.WORKLOAD_CLASS_LATENCY_SENSITIVE),
    ("interactive", C.WORKLOAD_CLASS_INTERACTIVE),
    ("batch", C.WORKLOAD_CLASS_BATCH),
    ("background", C.WORKLOAD_CLASS_BACKGROUND),
)
DIMENSIONS = (
    "host_cpu_share",
    *(f"cpu_fraction_{name}" for name, _ in _CLASSES),
    "batch_demand_per_cpu",
    "latency_wakeups_log",
    "latency_p99_log",
    "latency_groups",
    "batch_groups",
    "cpu_pressure",
    "active_threads_per_cpu_log",
    "latency_serving",
)


def _squash(x: float) -> float:
    return x / (1.0 + x)


def _log_scaled(x: float, decades: float) -> float:
    return min(1.0, math.log10(1.0 + max(0.0, x)) / decades)


def _serving_share(latency: list[profile_pb2.WorkloadGroup]) -> float:
    """Of the latency groups' CPU, the share of those that serve a socket or call a local server."""
    total = sum(g.features.cpu_seconds for g in latency)
    serving = sum(g.features.cpu_seconds for g in latency if g.features.serves or g.features.client_of)
    return serving / total if total else 0.0


def compute(groups: list[profile_pb2.WorkloadGroup], host_cpu_share: float, num_cpus: int,
            cpu_stall_share: float) -> profile_pb2.WorkloadSignature:
    by_class = {cls: [g for g in groups if g.classification.workload_class == cls] for _, cls in _CLASSES}
    total_cpu = sum(g.features.cpu_seconds for g in groups)
    latency, batch = by_class[C.WORKLOAD_CLASS_LATENCY_SENSITIVE], by_class[C.WORKLOAD_CLASS_BATCH]
    values = [
        min(1.0, host_cpu_share),
        *((sum(g.features.cpu_seconds for g in by_class[cls]) / total_cpu if total_cpu else 0.0)
          for _, cls in _CLASSES),
        _squash(sum(g.features.demand for g in batch) / max(num_cpus, 1)),
        _log_scaled(sum(g.features.wakeups_per_s for g in latency), 6),
        _log_scaled(max((g.features.runq_latency.p99_us for g in latency), default=0.0), 6),
        min(len(latency), 8) / 8,
        min(len(batch), 8) / 8,
        min(1.0, max(0.0, cpu_stall_share)),
        _log_scaled(sum(g.features.active_threads for g in groups) / max(num_cpus, 1), 3),
        _serving_share(latency),
    ]
    return profile_pb2.WorkloadSignature(version=VERSION, dimensions=DIMENSIONS, values=[round(v, 4) for v in values])

