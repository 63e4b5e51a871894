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
from dataclasses import dataclass, field
from pathlib import Path

BTF_MAGIC = 0xEB9F
SHT_NOBITS = 8
SHF_ALLOC = 0x2
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


@dataclass(frozen=True)
class Member:
    name: str
    type_id: int


@dataclass(frozen=True)
class BtfType:
    kind: int
    name: str
    size_or_type: int  # the size for INT, STRUCT, UNION, ENUM, DATASEC; the referred type otherwise
    members: tuple[Member, ...] = ()
    array: tuple[int, int] | None = None  # (element type, number of elements)
    entries: tuple[tuple[int, int, int], ...] = ()  # DATASEC: (var type, offset, size)


@dataclass
class Btf:
    """The types of a .BTF section, by id (0 is void)."""

    types: list[BtfType] = field(default_factory=list)
    strings: bytes = b""

    def string(self, offset: int) -> str:
        return self.strings[offset:self.strings.index(b"\0", offset)].decode()

    def resolved(self, type_id: int) -> tuple[int, BtfType | None]:
        """The type behind typedefs and qualifiers (None for void)."""
        while type_id and self.types[type_id].kind in _QUALIFIERS:
            type_id = self.types[type_id].size_or_type
        return type_id, self.types[type_id] if type_id else None

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
        return [access for type_id, spec in core_field_relocations(ext.data, self.btf)
                if (access := self._access(type_id, spec)) is not None]

    def _access(self, type_id: int, spec: str) -> FieldAccess | None:
        """Walk an access string ("0:12:3": index into the base pointer, then member or array
        indices) from `type_id` to a named path."""
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
        _, target = self.btf.pointee(last_type)
        target_name = target.name if target is not None and target.kind in (STRUCT, UNION) else ""
        return FieldAccess(tuple(path), target_name)


def read_sections(data: bytes) -> dict[str, Section]:
    """Section name -> Section of a little-endian ELF64 file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ObjectError("not a little-endian ELF64 file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_offset = headers[shstrndx][4]
    sections = {}
    for name_off, sh_type, flags, _, offset, size, *_ in headers:
        start = names_offset + name_off
        name = data[start:data.index(b"\0", start)].decode()
        body = b"" if sh_type == SHT_NOBITS else data[offset:offset + size]
        sections[name] = Section(name, size, bool(flags & SHF_ALLOC), body)
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
        members = tuple(Member(btf.string(n), t) for n, t, _ in _triples(data, offset, vlen))
        return BtfType(kind, name, size_or_type, members=members), offset + 12 * vlen
    if kind == ARRAY:
        element, _, count = struct.unpack_from("<III", data, offset)
        return BtfType(kind, name, size_or_type, array=(element, count)), offset + 12
    if kind == DATASEC:
        entries = tuple(_triples(data, offset, vlen))
        return BtfType(kind, name, size_or_type, entries=entries), offset + 12 * vlen
    # Only the length of the rest matters for these kinds.
    extra = {INT: 4, VAR: 4, DECL_TAG: 4, ENUM: 8 * vlen, FUNC_PROTO: 8 * vlen, ENUM64: 12 * vlen}.get(kind, 0)
    return BtfType(kind, name, size_or_type), offset + extra


def _triples(data: bytes, offset: int, count: int):
    """`count` records of three u32 (struct members, DATASEC entries)."""
    return struct.iter_unpack("<III", data[offset:offset + 12 * count])


def core_field_relocations(ext: bytes, btf: Btf) -> list[tuple[int, str]]:
    """(base type id, access string) of the field relocations in a .BTF.ext section."""
    magic, _, _, hdr_len = struct.unpack_from("<HBBI", ext, 0)
    if magic != BTF_MAGIC:
        raise ObjectError("the .BTF.ext section has no BTF magic")
    if hdr_len < 32:  # an old header without CO-RE relocations
        return []
    core_off, core_len = struct.unpack_from("<II", ext, 24)
    start = hdr_len + core_off
    if core_len == 0:
        return []
    record_size, offset, end = struct.unpack_from("<I", ext, start)[0], start + 4, start + core_len
    relocations = []
    while offset < end:
        _, count = struct.unpack_from("<II", ext, offset)
        offset += 8
        for i in range(count):
            _, type_id, access_off, kind = struct.unpack_from("<IIII", ext, offset + i * record_size)
            if kind in _FIELD_ACCESS_KINDS:
                relocations.append((type_id, btf.string(access_off)))
        offset += count * record_size
    return relocations
