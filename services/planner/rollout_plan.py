"""What a rollout request means before anything runs: which hosts its selector picks, how they
split into classes, and how many of each class every wave reaches. Everything here is checked
at StartRollout, so a mistake is an INVALID_ARGUMENT that says what to write instead."""

from __future__ import annotations

import fnmatch
import itertools
import math
from collections import defaultdict
from dataclasses import dataclass

from schedcp.domain import hostclass
from schedcp.runtime.errors import InvalidArgument
from schedcp.v1 import host_pb2

DEFAULT_WAVES = ("1", "5%", "25%", "100%")
MAX_WAVES = 20
# Selector terms: what each key compares, on a host's registration.
KEYS = {
    "host": lambda h: h.host_id,
    "class": lambda h: hostclass.of(h.facts),
    "workload": lambda h: h.workload_cluster,
    "kernel": lambda h: h.facts.kernel_release,
    "arch": lambda h: h.facts.arch,
    "cpus": lambda h: str(h.facts.cpu.logical_cpus),
    "sched_ext": lambda h: "yes" if "sched_ext" in h.facts.backends else "no",
}


@dataclass(frozen=True)
class Wave:
    """How far one wave goes in each class: a number of hosts, or a share of the class."""

    count: int = 0
    share: float = 0.0

    def reach(self, total: int) -> int:
        return min(total, self.count) if self.count else math.ceil(self.share * total)


def waves(texts: list[str]) -> list[Wave]:
    """`["1", "5%", "25%", "100%"]` as waves; empty: DEFAULT_WAVES."""
    texts = list(texts) or list(DEFAULT_WAVES)
    if len(texts) > MAX_WAVES:
        raise InvalidArgument(f"{len(texts)} waves are more than the {MAX_WAVES} a rollout may have")
    parsed = [_wave(text.strip()) for text in texts]
    for before, after in itertools.pairwise(parsed):
        if before.share and after.count:
            raise InvalidArgument(f"waves {', '.join(texts)}: host counts come before shares (1, 10, 25%, 100%)")
        if after.count <= before.count if after.count else after.share <= before.share:
            raise InvalidArgument(f"waves must grow: {', '.join(texts)} (each reaches more hosts than the one before)")
    if parsed[-1].share != 1.0:
        raise InvalidArgument(f"the last wave must be 100% (every selected host of each class), got {texts[-1]!r}")
    return parsed


def _wave(text: str) -> Wave:
    what = (f"{text!r} is not a wave: a number of hosts (10) or a share of each class (25%), "
            "the last 100%")
    number = text.removesuffix("%")
    try:
        value = float(number) if text.endswith("%") else int(number)
    except ValueError:
        raise InvalidArgument(what) from None
    if text.endswith("%"):
        if not 0 < value <= 100:
            raise InvalidArgument(f"{what}; a share is above 0% and at most 100%")
        return Wave(share=value / 100)
    if value < 1:
        raise InvalidArgument(f"{what}; a wave reaches at least 1 host")
    return Wave(count=value)


def reaches(plan: list[Wave], total: int) -> list[int]:
    """Cumulative hosts of a class of `total` after each wave, waves that add nobody left out."""
    out: list[int] = []
    for wave in plan:
        reach = max(wave.reach(total), out[-1] if out else 0)
        if reach and (not out or reach > out[-1]):
            out.append(reach)
    return out


def selector(text: str) -> list[tuple[str, str]]:
    """`sched_ext=yes,cpus=8` as (key, pattern) terms; "all" selects every host."""
    text = text.strip()
    if not text:
        raise InvalidArgument(f"a selector is required: 'all', or terms like {_example()}")
    if text == "all":
        return []
    terms = []
    for term in text.split(","):
        key, sep, pattern = term.strip().partition("=")
        if not sep or not pattern or key not in KEYS:
            raise InvalidArgument(f"{term.strip()!r} is not a selector term: KEY=PATTERN with KEY one of "
                                  f"{', '.join(KEYS)} (patterns may use * and ?), e.g. {_example()}")
        terms.append((key, pattern))
    return terms


def _example() -> str:
    return "'sched_ext=yes,cpus=8' or 'class=x86_64-8cpu-*'"


def selects(terms: list[tuple[str, str]], host: host_pb2.HostRegistration) -> bool:
    return all(fnmatch.fnmatchcase(KEYS[key](host), pattern) for key, pattern in terms)


def classes(hosts: list[host_pb2.HostRegistration]) -> dict[tuple[str, str], list[str]]:
    """Host ids by (host class, workload cluster), each list in host id order (the waves' order)."""
    by_class: dict[tuple[str, str], list[str]] = defaultdict(list)
    for host in sorted(hosts, key=lambda h: h.host_id):
        by_class[(hostclass.of(host.facts), host.workload_cluster)].append(host.host_id)
    return dict(sorted(by_class.items()))
