"""What a compiled BPF object says about itself: its sections, the maps it declares and the
kernel struct fields it touches, read from the ELF file, its BTF and its .BTF.ext.

Read here in Python (no pyelftools): Debian's bpftool and llvm-objdump show the BTF types but
neither prints the CO-RE relocation records of .BTF.ext, which are what names the kernel fields
a program reads. The formats are the kernel's (Documentation/bpf/btf.rst, include/uapi/linux/
btf.h, libbpf's libbpf_internal.h for .BTF.ext); only little-endian ELF64 (x86_64 and BPF
targets) is read.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BTF_MAGIC = 0xEB9F
SHT_NOBITS = 8
SHF_ALLOC = 0x2
STT_FUNC = 2
LD_IMM64 = 0x18  # the one instruction two slots long
MAX_DEPTH = 64  # typedef chains and nested members; the kernel's own BTF needs under 20
# BTF kinds (include/uapi/linux/btf.h).
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
_QUALIFIERS = {TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG}
# CO-RE relocation kinds that locate a field (enum bpf_core_relo_kind 0-5). FIELD_EXISTS (2)
# only asks whether the kernel has the field, so it is not an access.
_FIELD_ACCESS_KINDS = {0, 1, 3, 4, 5}


class ObjectError(ValueError):
    """The file is not a BPF object this module can read."""


@dataclass(frozen=True)
class Section:
    name: str
    size: int
    allocated: bool
    data: bytes
    index: int = 0


@dataclass(frozen=True)
class Member:
    name: str
    type_id: int
    offset_bits: int = 0  # a struct member's offset (a bitfield's packed size is left out)


@dataclass(frozen=True)
class BtfType:
    kind: int
    name: str
    size_or_type: int  # the size for INT, STRUCT, UNION, ENUM, DATASEC; the referred type otherwise
    members: tuple[Member, ...] = ()
    array: tuple[int, int] | None = None  # (element type, number of elements)
    entries: tuple[tuple[int, int, int], ...] = ()  # DATASEC: (var type, offset, size)
    params: tuple[Member, ...] = ()  # FUNC_PROTO: the parameters (size_or_type is the return type)


@dataclass
class Btf:
    """The types of a .BTF section, by id (0 is void)."""

    types: list[BtfType] = field(default_factory=list)
    strings: bytes = b""

    def string(self, offset: int) -> str:
        return self.strings[offset:self.strings.index(b"\0", offset)].decode()

    def resolved(self, type_id: int) -> tuple[int, BtfType | None]:
        """The type behind typedefs and qualifiers (None for void)."""
        for _ in range(MAX_DEPTH):
            if not (type_id and self.types[type_id].kind in _QUALIFIERS):
                return type_id, self.types[type_id] if type_id else None
            type_id = self.types[type_id].size_or_type
        raise ObjectError(f"BTF type {type_id}: typedefs and qualifiers {MAX_DEPTH} deep (a cycle?)")

    def size_of(self, type_id: int) -> int:
        _, btf_type = self.resolved(type_id)
        if btf_type is None:
            return 0
        if btf_type.kind == PTR:
            return 8
        if btf_type.kind == ARRAY:
            element, count = btf_type.array
            return self.size_of(element) * count
        return btf_type.size_or_type

    @staticmethod
    def struct_name(btf_type: BtfType | None) -> str:
        """A struct's or union's name, also when only declared (a pointer to `struct cred` the
        program never looks into); "" for anything else."""
        return btf_type.name if btf_type is not None and btf_type.kind in (STRUCT, UNION, FWD) else ""

    def member_at(self, type_id: int, byte_offset: int) -> tuple[tuple[str, ...], int]:
        """(member path, its type id) of the innermost member of struct `type_id` that holds
        `byte_offset`; the path is empty when no member does (padding, past the end)."""
        path: list[str] = []
        type_id, current = self.resolved(type_id)
        for depth in range(MAX_DEPTH + 1):
            if current is None or current.kind not in (STRUCT, UNION):
                break
            if depth == MAX_DEPTH:
                raise ObjectError(f"BTF struct {current.name}: members nested {MAX_DEPTH} deep (a cycle?)")
            holder = next((m for m in current.members
                           if m.offset_bits // 8 <= byte_offset < m.offset_bits // 8 + max(self.size_of(m.type_id), 1)),
                          None)
            if holder is None:
                break
            if holder.name:
                path.append(holder.name)
            byte_offset -= holder.offset_bits // 8
            type_id, current = self.resolved(holder.type_id)
        return tuple(path), type_id

    def pointee(self, type_id: int) -> tuple[int, BtfType | None]:
        """What a pointer type points to (resolved), or (0, None) when it is not a pointer."""
        _, btf_type = self.resolved(type_id)
        if btf_type is None or btf_type.kind != PTR:
            return 0, None
        return self.resolved(btf_type.size_or_type)


@dataclass(frozen=True)
class MapDef:
    """A map declared in the `.maps` section (libbpf's BTF-defined maps)."""

    name: str
    map_type: int
    max_entries: int
    key_size: int
    value_size: int
    flags: int


@dataclass(frozen=True)
class FieldAccess:
    """A kernel struct field the program locates through a CO-RE relocation: `path` starts with
    the struct's name (task_struct, scx, dsq_vtime); `target` is the struct the field points to,
    when it is a pointer to one (cred for task_struct.real_cred)."""

    path: tuple[str, ...]
    target: str = ""

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class Symbol:
    name: str
    section: str  # "" for an undefined symbol (a kfunc or another extern)
    value: int
    is_function: bool


@dataclass(frozen=True)
class Instruction:
    """One BPF instruction; `slot` is its place in 8-byte slots (a 64-bit load takes two)."""

    slot: int
    code: int
    dst: int
    src: int
    off: int
    imm: int  # both halves for a 64-bit immediate load

    @property
    def byte_offset(self) -> int:
        return self.slot * 8


@dataclass
class BpfObject:
    sections: dict[str, Section]
    btf: Btf

    @classmethod
    def read(cls, path: Path) -> BpfObject:
        sections = read_sections(path.read_bytes())
        if ".BTF" not in sections:
            raise ObjectError(f"{path.name} has no .BTF section (compile with -g)")
        return cls(sections, parse_btf(sections[".BTF"].data))

    def maps(self) -> list[MapDef]:
        datasec = next((t for t in self.btf.types if t.kind == DATASEC and t.name == ".maps"), None)
        return [self._map_def(var_id) for var_id, _, _ in datasec.entries] if datasec else []

    def _map_def(self, var_id: int) -> MapDef:
        var = self.btf.types[var_id]
        _, definition = self.btf.resolved(var.size_or_type)
        values = {"type": 0, "max_entries": 0, "key_size": 0, "value_size": 0, "map_flags": 0}
        for member in definition.members if definition else ():
            if member.name in ("key", "value"):  # __type(key, T): a pointer to T
                values[f"{member.name}_size"] = self.btf.size_of(self.btf.pointee(member.type_id)[0])
            elif member.name in values:  # __uint(name, N): a pointer to an array of N ints
                _, array = self.btf.pointee(member.type_id)
                values[member.name] = array.array[1] if array is not None and array.array else 0
        return MapDef(var.name, values["type"], values["max_entries"], values["key_size"], values["value_size"],
                      values["map_flags"])

    def field_accesses(self) -> list[FieldAccess]:
        """Every struct field the program locates by CO-RE relocation, in the order recorded."""
        ext = self.sections.get(".BTF.ext")
        if ext is None:
            return []
        return [access for relocation in core_relocations(ext.data, self.btf) if relocation.locates_field
                and (access := self.access(relocation.type_id, relocation.access)) is not None]

    def symbols(self) -> list[Symbol]:
        """The ELF symbol table (sections by name; undefined symbols have section "")."""
        table, names = self.sections.get(".symtab"), self.sections.get(".strtab")
        if table is None or names is None:
            return []
        by_index = {section.index: section.name for section in self.sections.values()}
        symbols = []
        for name_off, info, _, shndx, value, _ in struct.iter_unpack("<IBBHQQ", table.data):
            name = names.data[name_off:names.data.index(b"\0", name_off)].decode()
            symbols.append(Symbol(name, by_index.get(shndx, "") if shndx else "", value, info & 0xF == STT_FUNC))
        return symbols

    def relocations(self, section: str) -> dict[int, Symbol]:
        """Byte offset in `section` -> the symbol its relocation refers to."""
        table = self.sections.get(f".rel{section}")
        if table is None:
            return {}
        symbols = self.symbols()
        return {offset: symbols[info >> 32] for offset, info in struct.iter_unpack("<QQ", table.data)}

    def instructions(self, section: str) -> list[Instruction]:
        data = self.sections[section].data
        if len(data) % 8:
            raise ObjectError(f"section {section} is not whole instructions ({len(data)} bytes)")
        instructions, slot = [], 0
        while slot * 8 < len(data):
            code, regs, off, imm = struct.unpack_from("<BBhi", data, slot * 8)
            if code == LD_IMM64:
                imm = (imm & 0xFFFFFFFF) | (struct.unpack_from("<i", data, slot * 8 + 12)[0] << 32)
            instructions.append(Instruction(slot, code, regs & 0xF, regs >> 4, off, imm))
            slot += 2 if code == LD_IMM64 else 1
        return instructions

    def access(self, type_id: int, spec: str) -> FieldAccess | None:
        """The field a CO-RE access string ("0:12:3": index into the base pointer, then member or
        array indices) locates from `type_id`, as a named path."""
        located = self.locate(type_id, spec)
        return located[0] if located else None

    def locate(self, type_id: int, spec: str) -> tuple[FieldAccess, int] | None:
        """(the field, its type id) for a CO-RE access string; None when the base is no struct."""
        type_id, current = self.btf.resolved(type_id)
        if current is None or current.kind not in (STRUCT, UNION):
            return None
        path, last_type = [current.name or "(anonymous)"], type_id
        for index in (int(i) for i in spec.split(":")[1:]):
            if current is None:
                break
            if current.kind in (STRUCT, UNION):
                member = current.members[index]
                if member.name:  # members of anonymous unions read as the outer struct's
                    path.append(member.name)
                last_type = member.type_id
            elif current.kind == ARRAY:
                last_type = current.array[0]
            else:
                break
            _, current = self.btf.resolved(last_type)
        return FieldAccess(tuple(path), self.btf.struct_name(self.btf.pointee(last_type)[1])), last_type


def read_sections(data: bytes) -> dict[str, Section]:
    """Section name -> Section of a little-endian ELF64 file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ObjectError("not a little-endian ELF64 file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_offset = headers[shstrndx][4]
    sections = {}
    for index, (name_off, sh_type, flags, _, offset, size, *_) in enumerate(headers):
        start = names_offset + name_off
        name = data[start:data.index(b"\0", start)].decode()
        body = b"" if sh_type == SHT_NOBITS else data[offset:offset + size]
        sections[name] = Section(name, size, bool(flags & SHF_ALLOC), body, index)
    return sections


def parse_btf(data: bytes) -> Btf:
    magic, _, _, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII", data, 0)
    if magic != BTF_MAGIC:
        raise ObjectError("the .BTF section has no BTF magic")
    btf = Btf([BtfType(0, "", 0)], data[hdr_len + str_off:hdr_len + str_off + str_len])
    offset, end = hdr_len + type_off, hdr_len + type_off + type_len
    while offset < end:
        btf_type, offset = _parse_type(data, offset, btf)
        btf.types.append(btf_type)
    return btf


def _parse_type(data: bytes, offset: int, btf: Btf) -> tuple[BtfType, int]:
    name_off, info, size_or_type = struct.unpack_from("<III", data, offset)
    kind, vlen, offset = (info >> 24) & 0x1F, info & 0xFFFF, offset + 12
    name = btf.string(name_off)
    if kind in (STRUCT, UNION):
        bitfields = bool(info >> 31)  # kind_flag: the offset's top 8 bits are a bitfield's size
        members = tuple(Member(btf.string(n), t, o & 0xFFFFFF if bitfields else o)
                        for n, t, o in _triples(data, offset, vlen))
        return BtfType(kind, name, size_or_type, members=members), offset + 12 * vlen
    if kind == FUNC_PROTO:
        params = tuple(Member(btf.string(n), t) for n, t in struct.iter_unpack("<II", data[offset:offset + 8 * vlen]))
        return BtfType(kind, name, size_or_type, params=params), offset + 8 * vlen
    if kind == ARRAY:
        element, _, count = struct.unpack_from("<III", data, offset)
        return BtfType(kind, name, size_or_type, array=(element, count)), offset + 12
    if kind == DATASEC:
        entries = tuple(_triples(data, offset, vlen))
        return BtfType(kind, name, size_or_type, entries=entries), offset + 12 * vlen
    # Only the length of the rest matters for these kinds.
    extra = {INT: 4, VAR: 4, DECL_TAG: 4, ENUM: 8 * vlen, ENUM64: 12 * vlen}.get(kind, 0)
    return BtfType(kind, name, size_or_type), offset + extra


def _triples(data: bytes, offset: int, count: int):
    """`count` records of three u32 (struct members, DATASEC entries)."""
    return struct.iter_unpack("<III", data[offset:offset + 12 * count])


@dataclass(frozen=True)
class CoreRelocation:
    """A CO-RE relocation record: the instruction (`section`, byte offset `insn_off`) whose
    immediate or offset the loader rewrites for the running kernel, and what it locates."""

    section: str
    insn_off: int
    type_id: int
    access: str  # "0:12:3": index into the base pointer, then member or array indices
    kind: int  # enum bpf_core_relo_kind; 0 is a field's byte offset

    @property
    def locates_field(self) -> bool:
        return self.kind in _FIELD_ACCESS_KINDS


def core_relocations(ext: bytes, btf: Btf) -> list[CoreRelocation]:
    """Every CO-RE relocation record of a .BTF.ext section, in the order recorded."""
    return [CoreRelocation(section, insn_off, type_id, btf.string(access_off), kind)
            for section, (insn_off, type_id, access_off, kind) in _ext_records(ext, btf, 24)]


def line_numbers(ext: bytes, btf: Btf) -> dict[tuple[str, int], int]:
    """(section, instruction byte offset) -> source line, from the .BTF.ext line info."""
    return {(section, insn_off): line_col >> 10
            for section, (insn_off, _, _, line_col) in _ext_records(ext, btf, 16)}


def _ext_records(ext: bytes, btf: Btf, header_field: int) -> Iterator[tuple[str, tuple[int, int, int, int]]]:
    """(section name, first four u32 of each record) of one .BTF.ext subsection: line info
    (its offset and length at byte 16 of the header) or CO-RE relocations (at byte 24)."""
    magic, _, _, hdr_len = struct.unpack_from("<HBBI", ext, 0)
    if magic != BTF_MAGIC:
        raise ObjectError("the .BTF.ext section has no BTF magic")
    if hdr_len < header_field + 8:  # an old header without this subsection
        return
    sub_off, sub_len = struct.unpack_from("<II", ext, header_field)
    if sub_len == 0:
        return
    start = hdr_len + sub_off
    record_size, offset, end = struct.unpack_from("<I", ext, start)[0], start + 4, start + sub_len
    while offset < end:
        name_off, count = struct.unpack_from("<II", ext, offset)
        offset += 8
        section = btf.string(name_off)
        for i in range(count):
            yield section, struct.unpack_from("<IIII", ext, offset + i * record_size)
        offset += count * record_size
