"""The policy library's metadata: one TOML file beside each policy, validated here.

policies/sched_ext/<name>.toml describes <name>.bpf.c (its parameters are the program's
`const volatile` globals, set by the loader at load time); policies/native/<name>.toml
describes a template of EEVDF/cgroup settings for hosts without sched_ext. The learner seeds
the repository from these files; the planner tunes parameters within their ranges, and offers a
sched_ext policy only to hosts at least at its `min_kernel`, which the loader checks against the
kfuncs the program calls (schedcp/domain/kernels.py).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schedcp import DATA
from schedcp.domain import kernels
from schedcp.v1 import goal_pb2, policy_pb2

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
    # The oldest Linux release that runs the policy, major.minor[.patch]; for sched_ext at least
    # the release of the newest kfunc it calls (checked by `load`).
    min_kernel: str = Field(default="", pattern=r"^(\d+\.\d+(\.\d+)?)?$")
    # The sched_ext kfuncs the program calls (checked by `load` against the source).
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
    # into rules), and which of the goal's groups they apply to: its guarded batch groups ("batch"),
    # the latency groups it protects ("latency"), or its target groups whatever the objective ("target").
    settings: list[str] = []
    group: Literal["", "batch", "latency", "target"] = ""

    @model_validator(mode="after")
    def _kind_fields(self) -> PolicyMetadata:
        if self.kind == "sched_ext" and not self.ops_name:
            raise ValueError("a sched_ext policy needs ops_name")
        if self.kind == "native" and not (self.settings and self.group):
            raise ValueError("a native policy needs settings and the group they apply to (batch, latency or target)")
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
    """The parameters must be the program's `const volatile` globals, the ops name its own, the
    kfuncs the ones it calls, and min_kernel no older than the newest of them."""
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
    calls = kfunc_calls(source)
    if calls != set(meta.requires.kfuncs):
        raise LibraryError(f"{source}: calls the kfuncs {sorted(calls)}, the metadata lists "
                           f"{sorted(meta.requires.kfuncs)}")
    if unknown := sorted(calls - kernels.KFUNC_SINCE.keys()):
        raise LibraryError(f"{source}: no release known for {unknown}: add the release each arrived in to "
                           "schedcp/domain/kernels.py (KFUNC_SINCE)")
    needed = kernels.required_by(calls)
    if not kernels.at_least(meta.requires.min_kernel, kernels.text(needed)):
        newest = sorted(k for k in calls if kernels.KFUNC_SINCE[k] == needed)
        raise LibraryError(f"{source}: min_kernel {meta.requires.min_kernel or 'unset'} is older than "
                           f"{kernels.text(needed)}, where {', '.join(newest)} arrived")


_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)
_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_DECLARATION = re.compile(r"\bextern\b[^;]*;")
_CALL = re.compile(r"\b(scx_bpf_\w+)\s*\(")


def library_headers(text: str, directory: Path) -> list[Path]:
    """The library headers (`*.bpf.h` files of `directory`, by plain name) that a program's
    `text` includes, directly or through another one, in the order they are reached."""
    found: list[Path] = []
    pending = [text]
    while pending:
        for name in _INCLUDE.findall(_COMMENT.sub(" ", pending.pop(0))):
            if not re.fullmatch(r"\w+\.bpf\.h", name):
                continue
            path = directory / name
            if path.is_file() and path not in found:
                found.append(path)
                pending.append(path.read_text())
    return found


def kfunc_calls(source: Path) -> set[str]:
    """The sched_ext kfuncs a library program calls, in its own text or in the library headers
    it includes (vtime_sched.bpf.h holds the callbacks of vtime and batch); the declarations in
    common.bpf.h are not calls."""
    texts = [source.read_text(), *(h.read_text() for h in library_headers(source.read_text(), source.parent))]
    code = _DECLARATION.sub(" ", _COMMENT.sub(" ", "\n".join(texts)))
    return set(_CALL.findall(code))


def library(root: Path = LIBRARY) -> list[PolicyMetadata]:
    """Every policy in the library, sched_ext first, by name."""
    return [load(p) for kind in ("sched_ext", "native") for p in sorted((root / kind).glob("*.toml"))]


def source_of(meta: PolicyMetadata, root: Path = LIBRARY) -> Path:
    return root / "sched_ext" / f"{meta.name}.bpf.c"


def sched_ext_program(meta: PolicyMetadata, root: Path = LIBRARY) -> policy_pb2.SchedExtProgram:
    """A sched_ext library policy as the program an artifact carries: its source, ops name and
    the goals it claims (which the verifier holds it to)."""
    return policy_pb2.SchedExtProgram(source=source_of(meta, root).read_text(), ops_name=meta.ops_name,
                                      goals=meta.goals)
