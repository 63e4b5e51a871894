"""The library's native policies as rules: a policy's metadata, its parameter values and the
goal's group matchers become the NativePolicy an artifact carries (what the verifier checks and
the executor applies). One small function per policy; the metadata's `settings` say the same in
words."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from schedcp.domain.policies import PolicyMetadata
from schedcp.runtime.errors import InvalidArgument
from schedcp.v1 import common_pb2, policy_pb2

Params = Mapping[str, object]


def _batch_idle_cgroup(p: Params) -> policy_pb2.NativeRule:
    if p["idle"]:
        return policy_pb2.NativeRule(cgroup_cpu_idle=True, description="batch group in a cgroup with cpu.idle = 1")
    return policy_pb2.NativeRule(cgroup_cpu_weight=int(p["weight"]),
                                 description=f"batch group in a cgroup with cpu.weight = {p['weight']}")


def _batch_sched_idle(p: Params) -> policy_pb2.NativeRule:
    if p["use_sched_idle"]:
        return policy_pb2.NativeRule(policy=policy_pb2.SCHED_POLICY_IDLE, description="batch group as SCHED_IDLE")
    return policy_pb2.NativeRule(nice=int(p["nice"]), description=f"batch group at nice {p['nice']}")


def _latency_slice(p: Params) -> policy_pb2.NativeRule:
    return policy_pb2.NativeRule(policy=policy_pb2.SCHED_POLICY_OTHER, slice_us=int(p["slice_us"]),
                                 nice=int(p["nice"]),
                                 description=f"latency group with a {p['slice_us']} us slice at nice {p['nice']}")


def _long_slice(p: Params) -> policy_pb2.NativeRule:
    batch = bool(p["use_sched_batch"])
    return policy_pb2.NativeRule(policy=policy_pb2.SCHED_POLICY_BATCH if batch else policy_pb2.SCHED_POLICY_OTHER,
                                 slice_us=int(p["slice_us"]),
                                 description=f"group as {'SCHED_BATCH' if batch else 'SCHED_OTHER'} with a "
                                             f"{p['slice_us']} us slice")


def _favour_group(p: Params) -> policy_pb2.NativeRule:
    return policy_pb2.NativeRule(policy=policy_pb2.SCHED_POLICY_OTHER, nice=int(p["nice"]),
                                 description=f"group at nice {p['nice']}")


RULES: dict[str, Callable[[Params], policy_pb2.NativeRule]] = {
    "batch_idle_cgroup": _batch_idle_cgroup,
    "batch_sched_idle": _batch_sched_idle,
    "latency_slice": _latency_slice,
    "long_slice": _long_slice,
    "favour_group": _favour_group,
}


def effective(meta: PolicyMetadata, params: Params, group: Sequence[common_pb2.GroupMatcher]) -> Params:
    """`params` without those the policy's rules ignore (batch_sched_idle's nice beside SCHED_IDLE):
    a point is what reaches the host, so a search does not measure one setting twice under two
    names, nor the learner credit a parameter that changed nothing."""
    wanted = build(meta, params, group)
    kept = dict(params)
    for name in params:
        without = {k: v for k, v in kept.items() if k != name}
        if build(meta, without, group) == wanted:
            kept = without
    return kept


def build(meta: PolicyMetadata, params: Params, group: Sequence[common_pb2.GroupMatcher]) -> policy_pb2.NativePolicy:
    """The policy for `group` (the goal's batch or latency matchers, as `meta.group` says), with
    `params` over the defaults. Unknown parameters or values outside their range: InvalidArgument."""
    if meta.kind != "native" or meta.name not in RULES:
        raise InvalidArgument(f"{meta.name} is not a library native policy")
    values = {p.name: p.default for p in meta.parameters}
    for name, value in params.items():
        try:
            spec = meta.parameter(name)
        except KeyError:
            raise InvalidArgument(f"{meta.name} has no parameter {name!r} (it has "
                                  f"{', '.join(p.name for p in meta.parameters)})") from None
        if spec.min is not None and spec.max is not None and not spec.min <= value <= spec.max:
            raise InvalidArgument(f"{meta.name}.{name} = {value} is outside {spec.min}..{spec.max}")
        values[name] = value
    rule = RULES[meta.name](values)
    rule.match.extend(group)
    return policy_pb2.NativePolicy(rules=[rule])
