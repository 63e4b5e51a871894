"""Rule SCX015: the kernel memory a scheduler's maps and global data would take, against a budget.

The kernel verifier accepts a 1 GiB array as readily as a 1 KiB one, and the memory is taken
when the scheduler loads, on every host it is deployed to. So the compiled object's maps (their
BTF definitions: type, max_entries, key and value sizes) and global data sections (.bss,
.data, .rodata, custom .data.* sections, the ops struct) are sized here, before any VM boots.

The sizes are approximations of what the kernel allocates (kernel/bpf/arraymap.c, hashtab.c,
bpf_local_storage.c), close enough to tell kilobytes from gigabytes; they are computed for a
reference machine, because some grow with it: per-CPU maps with the CPUs, task storage with
the tasks that get a value. Program code is not counted (SCX001 bounds the source, the kernel
bounds the instructions).
"""

from __future__ import annotations

from dataclasses import dataclass

from schedcp.toolchain.bpf_object import BpfObject, MapDef
from schedcp.v1 import verdict_pb2
from services.verifier.static_analysis import ERROR, finding

MIB = 1 << 20
DEFAULT_BUDGET_MIB = 16.0
# The kernel's bookkeeping per hash element or storage value (htab_elem and its bucket,
# bpf_local_storage_elem): about 64 bytes on x86_64.
ENTRY_OVERHEAD = 64
PAGE = 4096
_DATA_PREFIXES = (".bss", ".data", ".rodata", ".struct_ops")
# enum bpf_map_type, by how the kernel lays the map out.
HASH_LIKE = {1: "hash", 7: "stack trace", 9: "LRU hash", 11: "LPM trie", 13: "hash of maps", 18: "sockhash",
             25: "devmap hash", 30: "bloom filter"}
PERCPU_HASH = {5: "per-CPU hash", 10: "LRU per-CPU hash"}
PERCPU_ARRAY = {6: "per-CPU array", 21: "per-CPU cgroup storage"}
LOCAL_STORAGE = {24: "socket storage", 28: "inode storage", 29: "task storage", 32: "cgroup storage"}
BYTE_BUFFERS = {27: "ring buffer", 31: "user ring buffer"}
ARENA = {33: "arena"}


@dataclass(frozen=True)
class Budget:
    """The budget and the reference machine it is judged on."""

    bytes: int = int(DEFAULT_BUDGET_MIB * MIB)
    cpus: int = 64
    tasks: int = 4096

    @classmethod
    def of_mib(cls, mib: float) -> Budget:
        return cls(bytes=int(mib * MIB))


DEFAULT_BUDGET = Budget()


@dataclass(frozen=True)
class Use:
    """One map or section: what it is, how its size was reckoned, the bytes."""

    what: str
    reckoning: str
    bytes: int

    def __str__(self) -> str:
        if not self.reckoning:
            return f"{self.what}: {human(self.bytes)}"
        return f"{self.what}: {self.reckoning} = {human(self.bytes)}"


def uses(obj: BpfObject, budget: Budget) -> list[Use]:
    """Every map and global data section of the object, largest first."""
    found = [map_use(m, budget) for m in obj.maps()]
    found += [Use(f"section {name}", "", s.size) for name, s in obj.sections.items()
              if s.allocated and name.startswith(_DATA_PREFIXES)]
    return sorted(found, key=lambda u: -u.bytes)


def map_use(m: MapDef, budget: Budget) -> Use:
    key, value, entries = _round8(m.key_size), _round8(m.value_size), m.max_entries
    if m.map_type in PERCPU_ARRAY:
        return Use(_label(m, PERCPU_ARRAY), f"{entries:,} entries x {value:,} B x {budget.cpus} CPUs",
                   entries * value * budget.cpus)
    if m.map_type in PERCPU_HASH:
        per_entry = ENTRY_OVERHEAD + key + value * budget.cpus
        return Use(_label(m, PERCPU_HASH), f"{entries:,} entries x ({key:,} B key + {value:,} B value x "
                   f"{budget.cpus} CPUs + ~{ENTRY_OVERHEAD} B)", entries * per_entry)
    if m.map_type in LOCAL_STORAGE:
        return Use(_label(m, LOCAL_STORAGE), f"one {value:,} B value (+ ~{ENTRY_OVERHEAD} B) for each of "
                   f"{budget.tasks:,} tasks", budget.tasks * (value + ENTRY_OVERHEAD))
    if m.map_type in BYTE_BUFFERS:
        return Use(_label(m, BYTE_BUFFERS), f"{entries:,} B", entries)
    if m.map_type in ARENA:
        return Use(_label(m, ARENA), f"{entries:,} pages x {PAGE:,} B", entries * PAGE)
    if m.map_type in HASH_LIKE:
        return Use(_label(m, HASH_LIKE), f"{entries:,} entries x ({key:,} B key + {value:,} B value + "
                   f"~{ENTRY_OVERHEAD} B)", entries * (key + value + ENTRY_OVERHEAD))
    # Arrays and everything else laid out as one slot per entry.
    kind = "array" if m.map_type == 2 else f"type {m.map_type}"
    slot = value if m.map_type == 2 else key + value
    return Use(f"map {m.name} ({kind})", f"{entries:,} entries x {slot:,} B", entries * slot)


def findings(obj: BpfObject, budget: Budget) -> list[verdict_pb2.Finding]:
    """SCX015 when the maps and global data together exceed the budget, naming the largest."""
    found = uses(obj, budget)
    total = sum(u.bytes for u in found)
    if total <= budget.bytes:
        return []
    biggest = [u for u in found if u.bytes][:4]
    more = f"; and {len(found) - len(biggest)} smaller" if len(found) > len(biggest) else ""
    return [finding("SCX015", ERROR, 0,
                    f"the maps and global data need about {human(total)} of kernel memory, over the budget of "
                    f"{human(budget.bytes)}: " + "; ".join(map(str, biggest)) + more,
                    f"shrink max_entries or the values; sizes are for a machine with {budget.cpus} CPUs and "
                    f"{budget.tasks:,} tasks (per-CPU maps and task storage grow with them)")]


def human(size: int) -> str:
    """1.0 GiB, 16 MiB, 288 KiB, 473 B: the unit a person would say."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", MIB), ("KiB", 1 << 10)):
        if size >= scale:
            amount = size / scale
            return f"{amount:.0f} {unit}" if amount == int(amount) else f"{amount:.1f} {unit}"
    return f"{size} B"


def _label(m: MapDef, kinds: dict[int, str]) -> str:
    return f"map {m.name} ({kinds[m.map_type]})"


def _round8(size: int) -> int:
    """The kernel keeps keys and values 8-byte aligned."""
    return (size + 7) // 8 * 8
