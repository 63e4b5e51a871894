"""Log2 latency histograms, shaped like the BPF program's (runqlat.bpf.c), and their percentiles."""

from __future__ import annotations

import math

from schedcp.v1 import common_pb2

SLOTS = 40  # must match SLOTS in runqlat.bpf.c


def slot_bounds_ns(slot: int) -> tuple[float, float]:
    """[lower, upper) of a slot: slot s >= 1 holds [2^(s-1), 2^s) ns; slot 0 holds 0."""
    if slot == 0:
        return 0.0, 1.0
    return float(2 ** (slot - 1)), float(2 ** slot)


def slot_of(value_ns: float) -> int:
    if value_ns < 1:
        return 0
    return min(SLOTS - 1, int(math.log2(value_ns)) + 1)


class Histogram:
    """Counts per log2 slot (sparse: most threads touch a few slots) plus the exact sum, so
    the mean stays exact."""

    __slots__ = ("counts", "total_ns")

    def __init__(self, counts: dict[int, int] | None = None, total_ns: float = 0.0) -> None:
        self.counts = counts if counts is not None else {}
        self.total_ns = float(total_ns)

    @property
    def samples(self) -> int:
        return sum(self.counts.values())

    def add(self, value_ns: float, weight: int = 1) -> None:
        """Record `weight` samples of `value_ns`."""
        if weight <= 0:
            return
        slot = slot_of(value_ns)
        self.counts[slot] = self.counts.get(slot, 0) + weight
        self.total_ns += value_ns * weight

    def merge(self, other: Histogram) -> None:
        counts = self.counts
        for slot, count in other.counts.items():
            counts[slot] = counts.get(slot, 0) + count
        self.total_ns += other.total_ns

    def percentile_ns(self, q: float) -> float:
        """The q-quantile (0..1), interpolated linearly inside its slot."""
        total = self.samples
        if total == 0:
            return 0.0
        rank = q * total
        seen = 0
        for slot, count in sorted(self.counts.items()):
            if count and seen + count >= rank:
                lower, upper = slot_bounds_ns(slot)
                return lower + (upper - lower) * max(0.0, rank - seen) / count
            seen += count
        return slot_bounds_ns(self.highest_slot())[1]

    def highest_slot(self) -> int:
        return max((i for i, c in self.counts.items() if c), default=0)

    def to_stats(self, source: str, with_buckets: bool = True) -> common_pb2.LatencyStats:
        """LatencyStats in microseconds. `max_us` is the upper bound of the highest non-empty
        slot: a log2 histogram knows the maximum only to within a factor of two."""
        total = self.samples
        if total == 0:
            return common_pb2.LatencyStats(source=source)
        buckets = [
            common_pb2.HistogramBucket(lower_us=lo / 1000, upper_us=hi / 1000, count=count)
            for slot, count in sorted(self.counts.items()) if count
            for lo, hi in [slot_bounds_ns(slot)]
        ] if with_buckets else []
        return common_pb2.LatencyStats(
            samples=total,
            mean_us=self.total_ns / total / 1000,
            p50_us=self.percentile_ns(0.50) / 1000,
            p90_us=self.percentile_ns(0.90) / 1000,
            p99_us=self.percentile_ns(0.99) / 1000,
            p999_us=self.percentile_ns(0.999) / 1000,
            max_us=slot_bounds_ns(self.highest_slot())[1] / 1000,
            histogram=buckets,
            source=source,
        )

