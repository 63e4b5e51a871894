"""A profile in words, at three levels of detail, so an LLM is given only what it needs.

summary:  a few sentences, the host and the groups that matter;
detailed: one line per group with its features and class;
full:     everything, with classification reasons, scheduling settings, pids and histograms.
"""

from __future__ import annotations

from schedcp.v1 import host_pb2, profile_pb2

C = profile_pb2
CLASS_NAMES = {
    C.WORKLOAD_CLASS_UNSPECIFIED: "unclassified",
    C.WORKLOAD_CLASS_LATENCY_SENSITIVE: "latency-sensitive",
    C.WORKLOAD_CLASS_INTERACTIVE: "interactive",
    C.WORKLOAD_CLASS_BATCH: "batch",
    C.WORKLOAD_CLASS_BACKGROUND: "background",
}
_SCX = {host_pb2.SCHED_EXT_STATE_UNSUPPORTED: "no sched_ext", host_pb2.SCHED_EXT_STATE_DISABLED: "sched_ext idle"}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _us(x: float) -> str:
    if x >= 1000:
        return f"{x / 1000:.2f} ms"
    return f"{x:.0f} us" if x >= 10 or x == 0 else f"{x:.1f} us"


def _host(profile: profile_pb2.WorkloadProfile) -> str:
    facts = profile.host
    scx = _SCX.get(facts.sched_ext.state, f"sched_ext running {facts.sched_ext.ops_name or '?'}")
    cgroup = (f"cgroup v{facts.cgroup.cpu_controller_version} cpu controller" if facts.cgroup.cpu_controller_version
              else "no cpu cgroup controller")
    return (f"Host {facts.host_id} (Linux {facts.kernel_release}, {facts.cpu.logical_cpus} CPUs, {scx}, {cgroup}): "
            f"{_pct(profile.host_cpu_share)} of CPU busy over {profile.window.ToTimedelta().total_seconds():.1f} s, "
            f"CPU pressure {profile.cpu_pressure.some_avg10:.1f}% (some, avg10).")


def _group_line(g: profile_pb2.WorkloadGroup) -> str:
    f = g.features
    return (f"'{g.name}' {CLASS_NAMES[g.classification.workload_class]} "
            f"({g.classification.confidence:.2f}): {f.active_threads}/{f.threads} threads active, "
            f"CPU {_pct(f.cpu_share)}, demand {f.demand:.2f} CPUs, {f.wakeups_per_s:.0f} wakeups/s, "
            f"voluntary {_pct(f.voluntary_ratio)}, burst {_us(f.mean_burst_us)}, "
            f"run-queue wait p50 {_us(f.runq_latency.p50_us)} p99 {_us(f.runq_latency.p99_us)}")


def summary(profile: profile_pb2.WorkloadProfile) -> str:
    parts = [_host(profile)]
    for cls in (C.WORKLOAD_CLASS_LATENCY_SENSITIVE, C.WORKLOAD_CLASS_BATCH, C.WORKLOAD_CLASS_INTERACTIVE):
        members = [g for g in profile.groups if g.classification.workload_class == cls]
        if not members:
            continue
        named = ", ".join(
            f"'{g.name}' ({_pct(g.features.cpu_share)} CPU, run-queue p99 {_us(g.features.runq_latency.p99_us)})"
            for g in members[:4])
        more = f" and {len(members) - 4} more" if len(members) > 4 else ""
        parts.append(f"{CLASS_NAMES[cls].capitalize()}: {named}{more}.")
    quiet = sum(1 for g in profile.groups if g.classification.workload_class == C.WORKLOAD_CLASS_BACKGROUND)
    if quiet:
        parts.append(f"{quiet} background group(s).")
    return " ".join(parts)


def detailed(profile: profile_pb2.WorkloadProfile) -> str:
    lines = [_host(profile), f"Groups by {_grouping(profile)}, busiest first:"]
    lines += [f"- {_group_line(g)}" for g in profile.groups]
    if profile.kernel_cpu_share:
        lines.append(f"Kernel threads (not grouped): CPU {_pct(profile.kernel_cpu_share)}.")
    return "\n".join(lines)


def full(profile: profile_pb2.WorkloadProfile) -> str:
    lines = [_host(profile), f"Sampler: {profile.sampler}" + (f" ({profile.sampler_note})" if profile.sampler_note
                                                               else ""),
             f"Groups by {_grouping(profile)}:"]
    for g in profile.groups:
        s, lat = g.settings, g.features.runq_latency
        histogram = ", ".join(f"[{_us(b.lower_us)}, {_us(b.upper_us)}): {b.count}" for b in lat.histogram)
        pids = ", ".join(str(p) for p in g.pids[:16]) + (" ..." if len(g.pids) > 16 else "")
        lines += [
            f"- {_group_line(g)}",
            f"  id {g.group_id}; pids {pids}; cgroup {g.cgroup or '(mixed)'}",
            f"  why {CLASS_NAMES[g.classification.workload_class]}: {g.classification.reason}",
            f"  runs as {s.policy} nice {s.nice} slice {_us(s.slice_us)}; run-queue wait "
            f"mean {_us(lat.mean_us)} p90 {_us(lat.p90_us)} p99.9 {_us(lat.p999_us)} over {lat.samples} runs "
            f"({lat.source})",
            f"  wait histogram: {histogram or 'no samples'}",
            *(f"  long job {j.cmdline!r} (pid {j.pid}): {j.evidence}" for j in g.long_jobs),
        ]
    lines.append(f"Kernel threads: CPU {_pct(profile.kernel_cpu_share)}.")
    dims = ", ".join(f"{d}={v:g}" for d, v in zip(profile.signature.dimensions, profile.signature.values, strict=True))
    lines.append(f"Signature v{profile.signature.version}: {dims}")
    return "\n".join(lines)


def _grouping(profile: profile_pb2.WorkloadProfile) -> str:
    return {C.GROUPING_KIND_PROCESS: "process", C.GROUPING_KIND_CGROUP: "cgroup"}.get(profile.grouping, "process name")


RENDERERS = {C.DETAIL_LEVEL_SUMMARY: summary, C.DETAIL_LEVEL_DETAILED: detailed, C.DETAIL_LEVEL_FULL: full}


def texts(profile: profile_pb2.WorkloadProfile, level: int) -> list[profile_pb2.ProfileText]:
    """The requested level and every lower one (SUMMARY when unspecified)."""
    level = level or C.DETAIL_LEVEL_SUMMARY
    return [profile_pb2.ProfileText(level=lvl, text=render(profile))
            for lvl, render in RENDERERS.items() if lvl <= level]
