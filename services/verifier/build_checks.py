"""Checks around compilation that the source-level rules cannot be trusted with: a hostile
candidate can hide a call or an include from a regex (macros, token pasting, line
continuations, comment tricks), but not from the preprocessor or from the object file.

Before compiling: the preprocessor's own list of files the candidate pulls in must hold only
the allowed headers (an `#include` of the verifier's signing key, through a macro, would
otherwise put it into compiler diagnostics), and the candidate's own lines, macros expanded,
may not contain inline assembly (`.incbin` can pull in any file too). Nothing the
preprocessor prints is returned: only which rule failed and the offending path.

After compiling: every helper the object calls (by number) and every kfunc it imports (its
undefined symbols) must be on the allow-list of the static rules; its maps and global data must
fit the kernel memory budget (footprint, SCX015); the kernel fields it touches must be on the
allow-list of scheduling state (kernel_reads, SCX016), also those it reads by raw offset
(raw_reads, SCX016).
"""

from __future__ import annotations

import functools
import re
import struct
import subprocess
from pathlib import Path

from schedcp.toolchain.bpf_object import BpfObject, ObjectError
from schedcp.toolchain.build import Kernel, Toolchain, require_tool
from schedcp.v1 import verdict_pb2
from services.verifier import footprint, kernel_reads, raw_reads
from services.verifier.static_analysis import ALLOWED_HELPERS, ALLOWED_KFUNCS, POLICY_HEADERS, finding

ERROR = verdict_pb2.SEVERITY_ERROR
_LINE_MARKER = re.compile(r'^# (\d+) "([^"]*)"')
_ASM = re.compile(r"\b(asm|__asm__|__asm)\b")
_HELPER_DEF = re.compile(r"\(\s*\*\s*const\s+(\w+)\s*\)\s*\([^;]*=\s*\(void \*\)\s*(\d+);")
# A call instruction: opcode 0x85, then the register byte (src_reg in the high nibble): 0 is a
# helper (by number), 1 a BPF-to-BPF call or a kfunc (relocated).
_CALL = re.compile(r"^\s*\w+:\s+85 ([0-9a-f]{2}) (?:[0-9a-f]{2}\s){6}\s*call (-?\d+)\s*$")
TIMEOUT_S = 60


def source_findings(candidate: Path, kernel: Kernel, toolchain: Toolchain) -> list[verdict_pb2.Finding]:
    """Preprocess the candidate: foreign includes, and inline assembly in its own lines."""
    deps_file = candidate.with_suffix(".d")
    result = subprocess.run([require_tool("clang"), *toolchain.clang_args(kernel), "-E", "-MD", "-MF", str(deps_file),
                             str(candidate), "-o", "-"], capture_output=True, text=True, timeout=TIMEOUT_S)
    if result.returncode != 0:
        missing = re.findall(r"fatal error: '([^']+)' file not found", result.stderr)
        what = f"header {missing[0]!r} was not found" if missing else "the preprocessor failed"
        return [finding("SCX002", ERROR, 0, f"{what}; only the allowed headers can be included")]
    findings = [finding("SCX002", ERROR, 0, f"{path} is included but is not an allowed header",
                         f"include only {', '.join(POLICY_HEADERS)}, vmlinux.h and libbpf's bpf/*.h")
                for path in _foreign(_dependencies(deps_file), candidate, kernel, toolchain)]
    for line, text in _own_lines(result.stdout, candidate):
        if _ASM.search(text):
            findings.append(finding("SCX014", ERROR, line, "inline assembly is not allowed",
                                     "write the scheduler in C; assembly escapes every check"))
    return findings


def object_findings(obj: Path, toolchain: Toolchain, budget: footprint.Budget) -> list[verdict_pb2.Finding]:
    """Helpers called by number and kfuncs imported by the compiled object, against the allow-list;
    its kernel memory against the budget; the kernel fields it touches against theirs."""
    allowed_ids = {number for number, name in helper_names(toolchain.libbpf() / "include").items()
                   if name in ALLOWED_HELPERS}
    names = helper_names(toolchain.libbpf() / "include")
    findings = []
    for number in sorted(_helper_calls(obj) - allowed_ids):
        findings.append(finding("SCX004", ERROR, 0, f"the compiled program calls helper #{number} "
                                 f"({names.get(number, 'unknown')}), which is not on the allow-list"))
    for symbol in sorted(_imports(obj) - ALLOWED_KFUNCS):
        findings.append(finding("SCX004", ERROR, 0, f"the compiled program imports {symbol!r}, which is not an allowed "
                                              "kfunc"))
    return findings + _footprint_and_reads(obj, budget)


def _footprint_and_reads(obj: Path, budget: footprint.Budget) -> list[verdict_pb2.Finding]:
    """SCX015 and SCX016; an object they cannot read (a candidate's own data put into its BTF
    sections, say) is refused, since its memory and reads cannot be judged."""
    try:
        parsed = BpfObject.read(obj)
        return footprint.findings(parsed, budget) + kernel_reads.findings(parsed) + raw_reads.findings(parsed)
    except (ObjectError, struct.error, IndexError, KeyError, ValueError, RecursionError) as exc:
        return [finding("SCX015", ERROR, 0, f"the compiled object's maps, sections and kernel reads cannot be "
                        f"read ({exc}), so its kernel memory and what it reads cannot be judged",
                        "do not put data into the .BTF, .BTF.ext or .maps sections yourself")]


@functools.cache
def helper_names(include_dir: Path) -> dict[int, str]:
    """Helper number -> name, from libbpf's bpf_helper_defs.h."""
    text = (include_dir / "bpf" / "bpf_helper_defs.h").read_text()
    return {int(number): name for name, number in _HELPER_DEF.findall(text)}


def _dependencies(deps_file: Path) -> list[Path]:
    text = deps_file.read_text().replace("\\\n", " ")
    _, _, files = text.partition(":")
    return [Path(f) for f in files.split()]


def _foreign(deps: list[Path], candidate: Path, kernel: Kernel, toolchain: Toolchain) -> list[str]:
    libbpf = (toolchain.libbpf() / "include" / "bpf").resolve()
    policies = toolchain.include_dirs(kernel)[-1].resolve()
    allowed_files = {candidate.resolve(), kernel.vmlinux_h.resolve(), *(policies / h for h in POLICY_HEADERS)}
    resource = _clang_headers()
    foreign = []
    for dep in deps:
        path = dep.resolve()
        if path in allowed_files or path.parent == libbpf or path.is_relative_to(resource):
            continue
        foreign.append(str(dep))
    return foreign


@functools.cache
def _clang_headers() -> Path:
    """clang's own headers (stddef.h...), allowed like libbpf's; asked once per process."""
    return Path(subprocess.run([require_tool("clang"), "-print-resource-dir"], capture_output=True, text=True,
                               timeout=TIMEOUT_S).stdout.strip(), "include").resolve()


def _own_lines(preprocessed: str, candidate: Path):
    """(line, text) of the preprocessed output that came from the candidate itself."""
    current, line = "", 0
    for text in preprocessed.splitlines():
        marker = _LINE_MARKER.match(text)
        if marker:
            line, current = int(marker.group(1)), marker.group(2)
            continue
        if Path(current).name == candidate.name:
            yield line, text
        line += 1


def _helper_calls(obj: Path) -> set[int]:
    """Numbers of the helpers called (call instructions whose source register is 0)."""
    dump = subprocess.run([require_tool("llvm-objdump"), "-d", str(obj)], capture_output=True, text=True,
                          timeout=TIMEOUT_S).stdout
    return {int(m.group(2)) for line in dump.splitlines() if (m := _CALL.match(line)) and m.group(1)[0] == "0"}


def _imports(obj: Path) -> set[str]:
    table = subprocess.run([require_tool("llvm-readelf"), "-s", "-W", str(obj)], capture_output=True, text=True,
                           timeout=TIMEOUT_S).stdout
    names = set()
    for line in table.splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[6] == "UND" and fields[7:]:
            names.add(fields[7])
    return names
