"""Rule SCX016, second half: kernel memory read by raw offset.

SCX016 judges the fields a program names through CO-RE records (kernel_reads.py). A read that
leaves no record escapes it: a struct of the candidate's own laid over a task pointer, or
`*(u64 *)((void *)p + 2504)`. The kernel's verifier allows both, so this pass follows the
kernel pointers through the compiled bytecode instead:

- where they come from: the callbacks' arguments (typed by the sched_ext_ops member each
  program fills), pointers loaded from kernel memory, and kfuncs returning one;
- where they go: register copies, constant offsets, stack spills, BPF-to-BPF calls;
- every load through one. A load with a CO-RE record was judged by the first half. A load
  inside the bytes a CO-RE record located (`&p->comm`, then `[i]`) reads that field. Any other
  load is mapped to the member at that offset of the pointer's struct (from the object's BTF)
  and judged by the same allow-list; when the struct or the offset is not known, the read is
  refused, since what it reads cannot be told.

Scalars are tracked as intervals (widened to the program's own constants, so a loop over
`p->comm` stays within its 16 bytes). The pass over-approximates which registers hold kernel
pointers; that is safe because the kernel's verifier never lets a scalar be dereferenced.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

from schedcp.toolchain.bpf_object import (
    DATASEC,
    FUNC,
    BpfObject,
    FieldAccess,
    Instruction,
    Symbol,
    core_relocations,
    line_numbers,
)
from schedcp.v1 import verdict_pb2
from services.verifier import kernel_reads
from services.verifier.static_analysis import ERROR, finding

# FRAME: a pointer into a calling function's stack, passed as an argument. MIXED: a pointer of
# several kinds on different paths (the kernel checks each path; here loads through it may give
# a kernel pointer and stores through it may reach the stack).
SCALAR, CTX, KERNEL, STACK, FRAME, MIXED, OTHER = "scalar", "ctx", "kernel", "stack", "frame", "mixed", "other"
INF = math.inf
U32_MAX = 2**32 - 1
S31_MAX = 2**31 - 1  # ranges are refined by a comparison only within 0..S31_MAX, where every reading agrees
S64 = 2**63
WIDEN_AFTER = 4  # joins at a loop's head before its intervals widen to the next constant
MAX_CALL_DEPTH = 8
MAX_SPAN = 4096  # bytes a load through a pointer of varying offset may reach, judged member by member
MAX_STEPS = 2_000_000  # instructions interpreted per object; the library takes a few thousand
# bpf_map_lookup_elem and bpf_task_storage_get return map memory, not kernel structs.
MAP_VALUE_HELPERS = {1, 156}
SIZES = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}
HINT = ("read kernel structs through their vmlinux.h types (p->field), which name the field: a scheduler may read "
        "the task's scheduling fields; see docs/verifier.md")


@dataclass(frozen=True)
class Value:
    """What a register or stack slot may hold. For pointers, lo..hi is the offset from the
    object's start; for scalars, the value's range. `window` is the byte range (from the
    object's start) a CO-RE record located: loads inside it read that field. For a scalar it is
    the relocated field offset's range, until it is added to a pointer."""

    kind: str
    lo: float = -INF
    hi: float = INF
    window: tuple[float, float] | None = None
    type_id: int = 0  # KERNEL: the struct it points to, when known; a scalar's window: the struct it is of
    origin: str = ""  # KERNEL: where the pointer came from, for the message

    @property
    def exact(self) -> bool:
        return self.lo == self.hi and not math.isinf(self.lo)


UNKNOWN = Value(SCALAR)


def const(value: int, window: tuple[float, float] | None = None, of: int = 0) -> Value:
    return Value(SCALAR, value, value, window, of)


def kernel(type_id: int, origin: str) -> Value:
    return Value(KERNEL, 0, 0, None, type_id, origin)


def join(a: Value, b: Value, thresholds: list[int] | None = None) -> Value:
    """The least value holding both; with `thresholds`, a range that grew widens to the next
    constant, so loops reach a fixed point."""
    if a == b:
        return a
    if a.kind != b.kind:
        if KERNEL in (a.kind, b.kind):
            pointer, other = (a, b) if a.kind == KERNEL else (b, a)
            if other.kind == SCALAR:  # NULL, or a value the kernel will not let be dereferenced
                return pointer
            return Value(KERNEL, origin=pointer.origin)
        if {a.kind, b.kind} == {SCALAR, OTHER}:
            return Value(OTHER)
        return Value(MIXED)
    lo, hi = min(a.lo, b.lo), max(a.hi, b.hi)
    if thresholds is not None:
        lo = a.lo if b.lo >= a.lo else max((t for t in thresholds if t <= b.lo), default=-INF)
        hi = a.hi if b.hi <= a.hi else min((t for t in thresholds if t >= b.hi), default=INF)
    same = a.type_id == b.type_id
    return Value(a.kind, lo, hi, a.window if a.window == b.window else None, a.type_id if same else 0,
                 a.origin if a.origin == b.origin else "a kernel pointer")


@dataclass(frozen=True)
class State:
    regs: tuple[Value, ...]
    stack: tuple[tuple[int, Value], ...] = ()  # 8-byte slots by offset from r10
    outer: Value = UNKNOWN  # what the calling functions' stacks may hold (loads through FRAME)
    unset: Value = UNKNOWN  # what a slot this function never stored to may hold (a callee's out-parameter)

    def with_reg(self, reg: int, value: Value) -> State:
        regs = list(self.regs)
        regs[reg] = value
        return replace(self, regs=tuple(regs))

    def slot(self, offset: int) -> Value:
        return dict(self.stack).get(offset, self.unset)

    def anything_stored(self, value: Value) -> State:
        """After a store somewhere in this stack or a caller's (through a pointer of unknown
        offset, or by a callee): every slot, the unset ones and the callers' may hold `value`."""
        weak = self.with_slot(0, value, weak=True)
        return replace(weak, outer=join(self.outer, value), unset=join(self.unset, value))

    def with_slot(self, offset: int, value: Value | None, weak: bool = False) -> State:
        slots = dict(self.stack)
        if weak:
            slots = {o: join(v, value or UNKNOWN) for o, v in slots.items()}
        elif value is None:
            slots.pop(offset, None)
        else:
            slots[offset] = value
        return replace(self, stack=tuple(sorted(slots.items())))

    def joined(self, other: State, thresholds: list[int] | None) -> State:
        regs = tuple(join(a, b, thresholds) for a, b in zip(self.regs, other.regs, strict=True))
        mine, theirs = dict(self.stack), dict(other.stack)
        slots = {o: join(mine.get(o, self.unset), theirs.get(o, other.unset), thresholds)
                 for o in mine.keys() | theirs.keys()}
        return State(regs, tuple(sorted(slots.items())), join(self.outer, other.outer), join(self.unset, other.unset))


class TooLarge(Exception):
    """The object needs more steps than MAX_STEPS: its reads cannot be judged."""


@dataclass(frozen=True)
class RawRead:
    section: str
    line: int
    message: str


class Program:
    """The analysis of one object: each struct_ops program from its entry, callees as called."""

    def __init__(self, obj: BpfObject):
        self.obj = obj
        ext = obj.sections.get(".BTF.ext")
        relocations = core_relocations(ext.data, obj.btf) if ext else []
        self.core = {(r.section, r.insn_off): r for r in relocations if r.locates_field}
        self.lines = line_numbers(ext.data, obj.btf) if ext else {}
        self.code: dict[str, dict[int, Instruction]] = {}
        self.relocs: dict[str, dict[int, Symbol]] = {}
        self.thresholds: dict[str, list[int]] = {}
        self.found: dict[tuple[str, int], RawRead] = {}
        self.summaries: dict[tuple, Value] = {}
        self.steps = 0

    def instructions(self, section: str) -> dict[int, Instruction]:
        if section not in self.code:
            self.code[section] = {i.slot: i for i in self.obj.instructions(section)}
            self.relocs[section] = self.obj.relocations(section)
            constants = {0, 1} | {i.imm + d for i in self.code[section].values() for d in (-1, 0, 1)}
            self.thresholds[section] = sorted(constants)
        return self.code[section]

    def run(self) -> list[RawRead]:
        btf = self.obj.btf
        for name, section, start, params in callbacks(self.obj):
            args = tuple(btf.pointee(t)[0] if btf.struct_name(btf.pointee(t)[1]) else 0 for t in params)
            entry = State((UNKNOWN, Value(CTX, 0, 0), *[UNKNOWN] * 8, Value(STACK, 0, 0)))
            self.function(section, start, entry, depth=0, callback=(name, args))
        return [self.found[key] for key in sorted(self.found)]

    def function(self, section: str, start: int, entry: State, depth: int,
                 callback: tuple[str, tuple[int, ...]] | None = None) -> Value:
        """Follow one function from `start`; what it returns (r0 joined over its exits)."""
        code = self.instructions(section)
        states, visits, work, returned = {start: entry}, {start: 1}, [start], None
        while work:
            slot = work.pop()
            self.steps += 1
            if self.steps > MAX_STEPS:
                raise TooLarge
            for target, state in self.step(section, code[slot], states[slot], depth, callback):
                if state is None:  # an exit
                    returned = target if returned is None else join(returned, target)
                    continue
                if target not in code:
                    continue
                if target in states:
                    visits[target] += 1
                    # Widened only where a loop comes back (a jump backwards), where it must end.
                    loops = target <= slot and visits[target] > WIDEN_AFTER
                    widened = self.thresholds[section] if loops else None
                    state = states[target].joined(state, widened)
                    if state == states[target]:
                        continue
                else:
                    visits[target] = 1
                states[target] = state
                work.append(target)
        return returned or UNKNOWN

    def step(self, section: str, insn: Instruction, state: State, depth: int,
             callback: tuple[str, tuple[int, ...]] | None) -> Iterator[tuple]:
        """(next slot, state) for each successor; (r0, None) at an exit."""
        cls, following = insn.code & 0x07, insn.slot + (2 if insn.code == 0x18 else 1)
        if cls in (0x05, 0x06):
            yield from self.jump(section, insn, state, depth, cls == 0x06)
            return
        if cls == 0x00:  # the 64-bit immediate: a map or global's address when relocated
            relocated = insn.byte_offset in self.relocs[section] or insn.src != 0
            state = state.with_reg(insn.dst, Value(OTHER, 0, 0) if relocated else const(insn.imm))
        elif cls == 0x01:
            state = self.load(section, insn, state, callback)
        elif cls in (0x02, 0x03):
            state = store(insn, state)
        elif cls in (0x04, 0x07):
            state = state.with_reg(insn.dst, self.alu(section, insn, state, cls == 0x07))
        yield following, state

    def load(self, section: str, insn: Instruction, state: State,
             callback: tuple[str, tuple[int, ...]] | None) -> State:
        size, base = SIZES[insn.code & 0x18], state.regs[insn.src]
        result = UNKNOWN
        if base.kind == CTX and size == 8 and base.exact:
            index = int(base.lo + insn.off) // 8
            args = callback[1] if callback else ()
            type_id = args[index] if 0 <= index < len(args) else 0
            result = kernel(type_id, f"argument {index} of {callback[0]}" if callback else "a callback argument")
        elif base.kind == FRAME and size == 8:
            result = state.outer
        elif base.kind == STACK and size == 8:
            if base.exact:
                result = state.slot(int(base.lo) + insn.off)
            else:
                result = functools.reduce(join, (v for _, v in state.stack), state.unset)
        elif base.kind == MIXED and size == 8:
            result = kernel(0, "a pointer of several kinds")
        elif base.kind == KERNEL:
            result = self.kernel_load(section, insn, base, size)
        return state.with_reg(insn.dst, result)

    def kernel_load(self, section: str, insn: Instruction, base: Value, size: int) -> Value:
        """Judge one load through a kernel pointer; what it loads (a pointer, when the member
        is one to a struct). Through a pointer of known struct, every member the bytes it may
        read touch is judged, CO-RE record or not (a record names the field of its own base
        type, and a pointer moved off its struct's start would make it name another one); an
        offset that is not bounded is refused."""
        start, end = base.lo + insn.off, base.hi + insn.off + size
        relocation = self.core.get((section, insn.byte_offset))
        if base.type_id:
            if math.isinf(start) or math.isinf(end) or end - start > MAX_SPAN:
                self.judge(section, insn, base, None, None)
                return self.unknown_pointer(base, size)
            members = self.members(base.type_id, int(start), int(end - start))
            named = self.obj.access(relocation.type_id, relocation.access) if relocation else None
            struct = self.obj.btf.types[base.type_id].name
            if not (base.exact and named is not None and named.path == (struct, *members[0][0])):
                for member in members:  # else the record names what is read: judged by its half
                    if not self.allowed_member(base, member):
                        self.judge(section, insn, base, member, int(start) if base.exact else None, named)
            return self.loaded(base, members[0], size) if base.exact else self.unknown_pointer(base, size)
        inside = base.window is not None and base.window[0] <= start and end <= base.window[1]
        if not ((relocation is not None and base.exact) or inside):
            self.judge(section, insn, base, None, int(start) if base.exact else None)
        return self.unknown_pointer(base, size)

    @staticmethod
    def unknown_pointer(base: Value, size: int) -> Value:
        return kernel(0, f"a pointer loaded through {base.origin}") if size == 8 else UNKNOWN

    def members(self, type_id: int, start: int, size: int) -> list[tuple[tuple[str, ...], int]]:
        """The members of struct `type_id` the bytes start..start+size touch, first one first."""
        found: list[tuple[tuple[str, ...], int]] = []
        for offset in range(start, start + size):
            member = self.obj.btf.member_at(type_id, offset)
            if member not in found:
                found.append(member)
        return found

    def allowed_member(self, base: Value, member: tuple[tuple[str, ...], int]) -> bool:
        if not member[0]:
            return False
        target = self.obj.btf.struct_name(self.obj.btf.pointee(member[1])[1])
        return kernel_reads.allowed(FieldAccess((self.obj.btf.types[base.type_id].name, *member[0]), target))

    def loaded(self, base: Value, member: tuple[tuple[str, ...], int], size: int) -> Value:
        if size != 8:
            return UNKNOWN
        if not member[0]:
            return kernel(0, f"a pointer loaded through {base.origin}")
        target_id, target = self.obj.btf.pointee(member[1])
        struct = self.obj.btf.types[base.type_id].name
        return kernel(target_id if self.obj.btf.struct_name(target) else 0,
                      f"loaded from {struct}.{'.'.join(member[0])}")

    def judge(self, section: str, insn: Instruction, base: Value, member: tuple[tuple[str, ...], int] | None,
              offset: int | None, named: FieldAccess | None = None) -> None:
        """The finding for a read that is refused (of `member` when known), once per instruction;
        `named`: the field its CO-RE record names instead, when it has one."""
        struct = self.obj.btf.types[base.type_id].name if base.type_id else ""
        at = f"{struct}+{offset}" if offset is not None else f"{struct} at an offset that varies"
        if named is not None:
            at += f", its CO-RE record naming {named.dotted}"
        if member is not None and member[0]:
            target = self.obj.btf.struct_name(self.obj.btf.pointee(member[1])[1])
            access = FieldAccess((struct, *member[0]), target)
            what = f"{access.dotted} by raw offset ({at}, {base.origin}): {kernel_reads.reason(access)}"
        elif struct:
            why = kernel_reads.REASONS.get(struct, f"no {struct} field a scheduler may read is known to be there")
            what = f"{at} by raw offset ({base.origin}): {why}"
        else:
            where = f"{offset} bytes into" if offset is not None else "at an offset that varies in"
            what = f"kernel memory {where} {base.origin} by raw offset: which struct and field it reads cannot be told"
        line = self.line_of(section, insn.slot)
        self.found.setdefault((section, insn.slot), RawRead(section, line, f"reads {what}"))

    def line_of(self, section: str, slot: int) -> int:
        """The source line of an instruction: the nearest line record at or before it."""
        lines = [(off, line) for (s, off), line in self.lines.items() if s == section and off <= slot * 8 and line]
        return max(lines)[1] if lines else 0

    def alu(self, section: str, insn: Instruction, state: State, wide: bool) -> Value:
        op, dst = insn.code & 0xF0, state.regs[insn.dst]
        src = state.regs[insn.src] if insn.code & 8 else const(insn.imm, *self.field_window(section, insn))
        if op == 0xB0:  # mov (with an offset: sign-extending)
            return UNKNOWN if insn.off else src if wide else narrow(src)
        if not wide:
            return narrow(arithmetic(op, narrow(dst), narrow(src)))
        if op in (0x00, 0x10):
            return add(dst, src, op == 0x10)
        return arithmetic(op, dst, src)

    def field_window(self, section: str, insn: Instruction) -> tuple[tuple[float, float] | None, int]:
        """For an immediate a CO-RE record relocates as a field's byte offset: that field's bytes,
        and the struct they are of ((None, 0) for any other immediate)."""
        relocation = self.core.get((section, insn.byte_offset))
        if relocation is None or relocation.kind != 0:
            return None, 0
        located = self.obj.locate(relocation.type_id, relocation.access)
        size = self.obj.btf.size_of(located[1]) if located else 0
        return (insn.imm, insn.imm + max(size, 1)), self.obj.btf.resolved(relocation.type_id)[0]

    def jump(self, section: str, insn: Instruction, state: State, depth: int, narrow32: bool) -> Iterator[tuple]:
        op, following = insn.code & 0xF0, insn.slot + 1
        if op == 0x90:  # exit
            yield state.regs[0], None
        elif op == 0x80:
            yield following, self.call(section, insn, state, depth)
        elif op == 0x00:  # ja (the 32-bit class's takes its offset from imm)
            yield following + (insn.imm if narrow32 else insn.off), state
        else:
            taken, fallen = refine(op, state, insn)
            if taken is not None:
                yield following + insn.off, taken
            if fallen is not None:
                yield following, fallen

    def call(self, section: str, insn: Instruction, state: State, depth: int) -> State:
        after = state
        for reg in range(1, 6):
            after = after.with_reg(reg, UNKNOWN)
        if insn.src == 0:  # a helper by number
            return after.with_reg(0, Value(OTHER, 0, 0) if insn.imm in MAP_VALUE_HELPERS else UNKNOWN)
        symbol = self.relocs[section].get(insn.byte_offset)
        if symbol is not None and not symbol.section:  # a kfunc
            return after.with_reg(0, self.kfunc_result(symbol.name))
        if insn.src != 1 or depth >= MAX_CALL_DEPTH:
            return after.with_reg(0, UNKNOWN)
        target_section = symbol.section if symbol else section
        target = (symbol.value // 8 if symbol else insn.slot) + insn.imm + 1
        args = tuple(Value(FRAME) if v.kind == STACK else v for v in state.regs[1:6])
        outer = functools.reduce(join, (v for _, v in state.stack), state.outer)
        entry = State((UNKNOWN, *args, *[UNKNOWN] * 4, Value(STACK, 0, 0)), (), outer)
        key = (target_section, target, entry.regs, outer)
        if key not in self.summaries:
            self.summaries[key] = UNKNOWN  # recursion is refused by the kernel; this only ends it
            self.summaries[key] = self.function(target_section, target, entry, depth + 1)
        if any(v.kind in (STACK, FRAME, MIXED) for v in state.regs[1:6]):
            # The callee may store a kernel pointer through a pointer to this frame or a caller's.
            after = after.anything_stored(Value(KERNEL, origin="a kernel pointer a function stored"))
        return after.with_reg(0, self.summaries[key])

    def kfunc_result(self, name: str) -> Value:
        btf = self.obj.btf
        func = next((t for t in btf.types if t.name == name and t.kind == FUNC), None)
        if func is None:
            return UNKNOWN
        _, proto = btf.resolved(func.size_or_type)
        target_id, target = btf.pointee(proto.size_or_type) if proto else (0, None)
        if not btf.struct_name(target):
            return UNKNOWN
        return kernel(target_id, f"what {name} returned")


def store(insn: Instruction, state: State) -> State:
    """Stores into this frame's stack are tracked by slot; elsewhere they change nothing here."""
    base, size = state.regs[insn.dst], SIZES[insn.code & 0x18]
    if insn.code & 0xE0 == 0xC0:  # atomic: a fetch writes the old value back to a register
        if insn.imm & 0x01:
            state = state.with_reg(0 if insn.imm == 0xF1 else insn.src, UNKNOWN)
        value = None
    else:
        value = state.regs[insn.src] if insn.code & 0x07 == 0x03 and size == 8 else UNKNOWN
    if base.kind == FRAME:  # into a caller's stack: what that stack may hold grows
        return replace(state, outer=join(state.outer, value or UNKNOWN))
    if base.kind == MIXED or (base.kind == STACK and not base.exact):
        return state.anything_stored(value or UNKNOWN)
    if base.kind != STACK:
        return state
    offset = int(base.lo) + insn.off
    if size == 8 and offset % 8 == 0:
        return state.with_slot(offset, value)
    return state.with_slot(offset - offset % 8, UNKNOWN)


def add(dst: Value, src: Value, subtract: bool) -> Value:
    """Pointer arithmetic keeps the pointer (and a located field's bytes); scalars add ranges."""
    if dst.kind == SCALAR and src.kind != SCALAR and not subtract:
        dst, src = src, dst
    if dst.kind != SCALAR and src.kind == SCALAR:
        lo, hi = (dst.lo - src.hi, dst.hi - src.lo) if subtract else (dst.lo + src.lo, dst.hi + src.hi)
        window = dst.window
        # A field's bytes only on the struct the CO-RE record is of (unknown: taken on trust).
        if src.window is not None and not subtract and dst.exact and dst.type_id in (0, src.type_id):
            window = (dst.lo + src.window[0], dst.lo + src.window[1])
        return bounded(Value(dst.kind, lo, hi, window, dst.type_id, dst.origin))
    if dst.kind == SCALAR and src.kind == SCALAR:
        if subtract:
            return bounded(Value(SCALAR, dst.lo - src.hi, dst.hi - src.lo))
        return bounded(Value(SCALAR, dst.lo + src.lo, dst.hi + src.hi))
    return UNKNOWN


def bounded(value: Value) -> Value:
    """A range past what 64 bits hold wraps in the machine: then it is any value (a pointer's
    offset included: the kernel refuses to dereference it)."""
    if value.lo >= -S64 and value.hi < S64:
        return value
    return Value(value.kind, window=None, type_id=value.type_id, origin=value.origin)


def arithmetic(op: int, dst: Value, src: Value) -> Value:
    """The other ALU operations, on ranges where they stay small and exact; anything done to a
    pointer but adding makes a scalar the kernel will not dereference."""
    if dst.kind != SCALAR or src.kind != SCALAR:
        return UNKNOWN
    k = src.lo if src.exact else None
    natural = dst.lo >= 0
    if op in (0x00, 0x10):
        return add(dst, src, op == 0x10)
    if op == 0x50 and k is not None and k >= 0:  # and
        return Value(SCALAR, 0, min(dst.hi, k) if natural else k)
    if op == 0x90 and k is not None and k > 0 and natural:  # mod
        return Value(SCALAR, 0, min(dst.hi, k - 1))
    if op == 0x70 and k is not None and natural:  # rsh
        return Value(SCALAR, int(dst.lo) >> int(k), dst.hi if math.isinf(dst.hi) else int(dst.hi) >> int(k))
    if op == 0x30 and k is not None and k > 0 and natural:  # div
        return Value(SCALAR, dst.lo // k, dst.hi if math.isinf(dst.hi) else dst.hi // k)
    if op in (0x20, 0x60) and k is not None and k >= 0 and natural and not math.isinf(dst.hi):  # mul, lsh
        factor = k if op == 0x20 else 2 ** (int(k) & 63)
        return Value(SCALAR, dst.lo * factor, dst.hi * factor) if dst.hi * factor < S64 else UNKNOWN
    return UNKNOWN


def narrow(value: Value) -> Value:
    """A 32-bit result: a small natural range survives, anything else is any u32."""
    if value.kind == SCALAR and value.lo >= 0 and value.hi <= U32_MAX:
        return value
    return Value(SCALAR, 0, U32_MAX)


def refine(op: int, state: State, insn: Instruction) -> tuple[State | None, State | None]:
    """The states on the taken and fallen-through edges of a conditional jump, with the
    compared register's range narrowed when it is compared with a constant (None: that edge
    cannot be taken)."""
    reg = state.regs[insn.dst]
    other = state.regs[insn.src] if insn.code & 0x08 else const(insn.imm)
    # Only ranges and constants within 0..2^31-1, where signed and unsigned, 32- and 64-bit
    # comparisons all read alike (a sign-extended immediate against a u32 range would not).
    small = (reg.kind == other.kind == SCALAR and other.exact and reg.lo >= 0 and reg.hi <= S31_MAX
             and 0 <= other.lo <= S31_MAX)
    if not small or op not in BOUNDS:
        return state, state
    taken, fallen = BOUNDS[op]
    k = other.lo
    return _narrowed(state, insn.dst, reg, *taken(reg, k)), _narrowed(state, insn.dst, reg, *fallen(reg, k))


def _narrowed(state: State, dst: int, reg: Value, lo: float, hi: float) -> State | None:
    if lo > hi:
        return None
    return state.with_reg(dst, Value(SCALAR, lo, hi, reg.window))


def _not_equal(reg: Value, k: float) -> tuple[float, float]:
    return (reg.lo + (reg.lo == k), reg.hi - (reg.hi == k))


_GT = (lambda r, k: (max(r.lo, k + 1), r.hi), lambda r, k: (r.lo, min(r.hi, k)))
_GE = (lambda r, k: (max(r.lo, k), r.hi), lambda r, k: (r.lo, min(r.hi, k - 1)))
_LT = (lambda r, k: (r.lo, min(r.hi, k - 1)), lambda r, k: (max(r.lo, k), r.hi))
_LE = (lambda r, k: (r.lo, min(r.hi, k)), lambda r, k: (max(r.lo, k + 1), r.hi))
# jump op -> (range on the taken edge, range on the fallen-through edge)
BOUNDS = {
    0x10: (lambda r, k: (max(r.lo, k), min(r.hi, k)), _not_equal),  # jeq
    0x50: (_not_equal, lambda r, k: (max(r.lo, k), min(r.hi, k))),  # jne
    0x20: _GT, 0x30: _GE, 0xA0: _LT, 0xB0: _LE,  # unsigned
    0x60: _GT, 0x70: _GE, 0xC0: _LT, 0xD0: _LE,  # signed
}


def callbacks(obj: BpfObject) -> list[tuple[str, str, int, tuple[int, ...]]]:
    """(program, its section, its first slot, its parameters' type ids) for each program the
    object's struct_ops maps refer to, and any other in a struct_ops section (libbpf loads a
    `?struct_ops/` one its map refers to): the parameters of the sched_ext_ops member it fills,
    () when none is found."""
    params_of: dict[str, tuple[int, ...]] = {}
    btf = obj.btf
    for datasec in (t for t in btf.types if t.kind == DATASEC and t.name.startswith(".struct_ops")):
        relocations = obj.relocations(datasec.name)
        for var_id, var_offset, var_size in datasec.entries:
            _, ops = btf.resolved(btf.types[var_id].size_or_type)
            for offset, symbol in relocations.items():
                if ops is None or not var_offset <= offset < var_offset + var_size:
                    continue
                member = next((m for m in ops.members if m.offset_bits // 8 == offset - var_offset), None)
                _, proto = btf.pointee(member.type_id) if member else (0, None)
                params_of[symbol.name] = tuple(p.type_id for p in proto.params) if proto else ()
    return [(s.name, s.section, s.value // 8, params_of.get(s.name, ())) for s in obj.symbols()
            if s.is_function and s.section and (s.name in params_of or s.section.lstrip("?").startswith("struct_ops"))]


def findings(obj: BpfObject) -> list[verdict_pb2.Finding]:
    """SCX016 for each load of kernel memory by raw offset that is not an allowed field."""
    try:
        reads = Program(obj).run()
    except TooLarge:
        return [finding("SCX016", ERROR, 0, f"the program takes over {MAX_STEPS:,} steps to follow its kernel "
                        "pointers, so what it reads cannot be judged", "make the program smaller")]
    return [finding("SCX016", ERROR, read.line, read.message, HINT) for read in reads]
