"""Policy parameters between their three forms: the wire's ParamValue, Python values (what the
metadata's ranges check), and the text of `NAME=VALUE` (the CLI's --param, the loader's
--param, the learner's parameter keys)."""

from __future__ import annotations

from collections.abc import Mapping

from schedcp.runtime.errors import InvalidArgument
from schedcp.v1 import common_pb2


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
    """A stable text form of a parameter map, the learner's key: `slice_us=3000,wakeup_preempt=true`."""
    return ",".join(f"{k}={text(parameters[k])}" for k in sorted(parameters))


def within(parameters: Mapping[str, common_pb2.ParamValue], parameters_key: str) -> bool:
    """Whether every one of `parameters` has its value in a parameter key (others may be there too:
    the planner adds the groups a policy applies to)."""
    held = set(parameters_key.split(",")) if parameters_key else set()
    return all(f"{k}={text(v)}" in held for k, v in parameters.items())
