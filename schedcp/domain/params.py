"""Policy parameters between their three forms: the wire's ParamValue, Python values (what the
metadata's ranges check), and the text of `NAME=VALUE` (the CLI's --param, the loader's
--param, the learner's parameter keys)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from schedcp.runtime.errors import InvalidArgument
from schedcp.v1 import common_pb2

if TYPE_CHECKING:
    from schedcp.domain.policies import PolicyMetadata


def parse(item: str) -> tuple[str, common_pb2.ParamValue]:
    """`NAME=VALUE` as a name and a ParamValue: an integer, true/false, or else a string."""
    name, sep, text = item.partition("=")
    if not sep or not name:
        raise InvalidArgument(f"a parameter is NAME=VALUE, got {item!r}")
    value = common_pb2.ParamValue()
    if text.lstrip("-").isdigit():
        value.int_value = int(text)
    elif text in ("true", "false"):
        value.bool_value = text == "true"
    else:
        value.string_value = text
    return name, value


def python(value: common_pb2.ParamValue) -> object:
    """The value a ParamValue holds (None when it holds none)."""
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def text(value: common_pb2.ParamValue) -> str:
    """The value as `NAME=VALUE` writes it (booleans as true/false)."""
    held = python(value)
    if isinstance(held, bool):
        return "true" if held else "false"
    return "" if held is None else str(held)


def pythons(parameters: Mapping[str, common_pb2.ParamValue]) -> dict[str, object]:
    return {name: python(value) for name, value in parameters.items()}


def of(held: object) -> common_pb2.ParamValue:
    """A Python value (bool, int, float or str) as a ParamValue."""
    if isinstance(held, bool):
        return common_pb2.ParamValue(bool_value=held)
    if isinstance(held, int):
        return common_pb2.ParamValue(int_value=held)
    if isinstance(held, float):
        return common_pb2.ParamValue(float_value=held)
    return common_pb2.ParamValue(string_value=str(held))


def key(parameters: Mapping[str, common_pb2.ParamValue]) -> str:
    """A stable text form of a parameter map's tunables, `slice_us=3000,wakeup_preempt=true`: how
    the learner keys outcomes and anti-patterns, and how the planner finds them among its
    candidates. Strings are left out: they name groups, set from each workload's goal
    (latency_boost's boost_comm), so the same tuning on another service is the same point."""
    held = tunable_values(parameters)
    return ",".join(f"{name}={text(held[name])}" for name in sorted(held))


def tunable_values(parameters: Mapping[str, common_pb2.ParamValue]) -> dict[str, common_pb2.ParamValue]:
    """The parameters `key` counts (all but strings)."""
    return {name: value for name, value in parameters.items() if value.WhichOneof("value") != "string_value"}


def tunables(parameters: Mapping[str, common_pb2.ParamValue]) -> dict[str, object]:
    """The parameters `key` counts, as Python values."""
    return {name: python(value) for name, value in tunable_values(parameters).items()}


def variants(meta: PolicyMetadata, points: int = 1) -> list[dict[str, object]]:
    """Other points of a policy's parameter space than its defaults: each bool flipped, each int
    parameter moved alone to `points` values spread over its range (geometrically when it spans
    over two orders of magnitude; none for 0). Strings name groups: the goal sets them, not a search."""
    found: list[dict[str, object]] = []
    for p in meta.parameters:
        if p.type == "bool":
            values: list[object] = [not p.default]
        elif p.type == "int":
            values = _spread(p.min, p.max, points)
        else:
            continue
        found += [{p.name: v} for v in dict.fromkeys(values) if v != p.default]
    return found


def _spread(low: int, high: int, points: int) -> list[int]:
    if low > 0 and high / low > 100:
        return [round(low * (high / low) ** (i / (points + 1))) for i in range(1, points + 1)]
    return [round(low + (high - low) * i / (points + 1)) for i in range(1, points + 1)]


def within(parameters: Mapping[str, common_pb2.ParamValue], parameters_key: str) -> bool:
    """Whether every tunable of `parameters` has its value in a parameter key (`key`; others may be
    there too). Strings are not in keys: they name groups, which differ from workload to workload."""
    held = set(parameters_key.split(",")) if parameters_key else set()
    return all(f"{name}={text(parameters[name])}" in held for name in tunables(parameters))
