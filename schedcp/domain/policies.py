"""The policy library's metadata: one TOML file beside each policy, validated here.

policies/sched_ext/<name>.toml describes <name>.bpf.c (its parameters are the program's
`const volatile` globals, set by the loader at load time); policies/native/<name>.toml
describes a template of EEVDF/cgroup settings for hosts without sched_ext. The learner seeds
the repository from these files; the planner tunes parameters within their ranges.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schedcp import DATA
from schedcp.v1 import goal_pb2

LIBRARY = DATA / "policies"
_NAME = r"^[a-z][a-z0-9_]{0,47}$"
GoalWord = Literal["latency", "throughput", "makespan", "fairness"]
# How a policy's metadata names the objectives it serves. "fairness" only describes a policy:
# no goal asks for it (there is no fairness objective).
GOAL_WORDS: dict[int, GoalWord] = {
    goal_pb2.OBJECTIVE_TAIL_LATENCY: "latency", goal_pb2.OBJECTIVE_THROUGHPUT: "throughput",
    goal_pb2.OBJECTIVE_MAKESPAN: "makespan"}


class Parameter(BaseModel):
    """A tunable of a policy, with the range the planner may choose from."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z_][a-z0-9_]*$")
    type: Literal["int", "bool", "string"]
    default: int | bool | str
    min: int | None = None
    max: int | None = None
    unit: str = ""
    description: str

    @model_validator(mode="after")
    def _default_fits(self) -> Parameter:
        if self.type == "int":
            if isinstance(self.default, bool) or not isinstance(self.default, int):
                raise ValueError(f"{self.name}: default must be an integer")
            if self.min is None or self.max is None or not self.min <= self.default <= self.max:
                raise ValueError(
                    f"{self.name}: needs min <= default <= max, got {self.min}, {self.default}, {self.max}")
        elif self.type == "bool" and not isinstance(self.default, bool):
            raise ValueError(f"{self.name}: default must be true or false")
        elif self.type == "string" and not isinstance(self.default, str):
            raise ValueError(f"{self.name}: default must be a string")
        return self


class Requirements(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sched_ext: bool
    min_kernel: str = ""
    kfuncs: list[str] = []
    cgroup: Literal["any", "v1", "v2"] = "any"


class PolicyMetadata(BaseModel):
    """What a library policy is for, how it works, and what can be tuned."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME)
    kind: Literal["sched_ext", "native"]
    description: str
    algorithm: str
    use_cases: list[str] = Field(min_length=1)
    goals: list[GoalWord] = Field(min_length=1)
    parameters: list[Parameter] = []
    requires: Requirements
    limitations: list[str] = []
    # sched_ext: the name the kernel shows in /sys/kernel/sched_ext/root/ops.
    ops_name: str = ""
    # native: the settings the executor applies, in words (schedcp/domain/native_policies.py turns them
    # into rules), and which of the goal's groups they apply to.
    settings: list[str] = []
    group: Literal["", "batch", "latency"] = ""

    @model_validator(mode="after")
    def _kind_fields(self) -> PolicyMetadata:
        if self.kind == "sched_ext" and not self.ops_name:
            raise ValueError("a sched_ext policy needs ops_name")
        if self.kind == "native" and not (self.settings and self.group):
            raise ValueError("a native policy needs settings and the group they apply to (batch or latency)")
        names = [p.name for p in self.parameters]
        if len(names) != len(set(names)):
            raise ValueError(f"duplicate parameter names in {names}")
        return self

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)


class LibraryError(Exception):
    """A library file is invalid; the message names the file and the problem."""


def load(path: Path) -> PolicyMetadata:
    try:
        meta = PolicyMetadata.model_validate(tomllib.loads(path.read_text()))
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise LibraryError(f"{path}: {exc}") from exc
    if meta.name != path.stem:
        raise LibraryError(f"{path}: name {meta.name!r} must match the file name")
    if meta.kind == "sched_ext":
        _check_source(path.with_name(f"{meta.name}.bpf.c"), meta)
    return meta


def _check_source(source: Path, meta: PolicyMetadata) -> None:
    """The parameters must be the program's `const volatile` globals, and the ops name its own."""
    if not source.exists():
        raise LibraryError(f"{source} is missing (named by {meta.name}.toml)")
    text = source.read_text()
    declared = set(re.findall(r"const volatile [\w ]+?\b(\w+)\s*(?:\[\w*\])?\s*=", text))
    listed = {p.name for p in meta.parameters}
    if declared != listed:
        raise LibraryError(f"{source}: parameters in the code {sorted(declared)} differ from the metadata "
                           f"{sorted(listed)}")
    if f'.name = "{meta.ops_name}"' not in text:
        raise LibraryError(f"{source}: ops name {meta.ops_name!r} not found")


def library(root: Path = LIBRARY) -> list[PolicyMetadata]:
    """Every policy in the library, sched_ext first, by name."""
    return [load(p) for kind in ("sched_ext", "native") for p in sorted((root / kind).glob("*.toml"))]


def source_of(meta: PolicyMetadata, root: Path = LIBRARY) -> Path:
    return root / "sched_ext" / f"{meta.name}.bpf.c"
