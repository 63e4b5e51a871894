"""The observer's probes without BCC: runqlat.bpf.c compiled ahead of time (CO-RE) and loaded
by schedcp-loader, for hosts that have no compiler or no kernel headers (the fleet's guests).

One source serves both ways: BCC compiles runqlat.bpf.c as it is; here its BCC-only spellings
are rewritten to what runqlat_libbpf.h defines, and clang compiles it against a kernel's
vmlinux.h. The tracepoint structs carry CO-RE relocations, so the object loads on any kernel
with BTF whose tracepoints have those fields.

`python -m services.observer.prebuilt OUT` writes the object (clang, libbpf and the sandbox
kernel's vmlinux.h from the toolchain).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from schedcp.toolchain.build import BPF_CFLAGS, BuildError, Kernel, Toolchain, _run, require_tool
from services.observer.bpf_maps import BpfUnavailable, take_fd

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "runqlat.bpf.c"
PRELUDE = HERE / "runqlat_libbpf.h"
# The maps the reader needs, by name.
STATS_MAP = "stats"
ATTACH_TIMEOUT_S = 30.0

# BCC's string map kinds become tokens the prelude can paste; its map method calls become
# macros taking the map's address.
_TABLE_KIND = re.compile(r'\bBPF_TABLE\("(\w+)"')
_METHOD = re.compile(r"\b(\w+)\.(lookup_or_try_init|lookup|update|delete)\(")


def libbpf_source(bcc_source: str) -> str:
    """runqlat.bpf.c (BCC's dialect) as plain C for clang, with runqlat_libbpf.h first."""
    text = _TABLE_KIND.sub(r"BPF_TABLE(\1", bcc_source)
    text = _METHOD.sub(r"map_\2(&\1, ", text)
    return f'#include "{PRELUDE.name}"\n{text}'


def compile_object(out: Path, toolchain: Toolchain | None = None, kernel: Kernel | None = None) -> Path:
    """Compile the probes into `out` (BuildError with clang's message if that fails)."""
    toolchain = toolchain or Toolchain()
    kernel = kernel or toolchain.kernel()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="schedcp-runqlat-") as tmp:
        source = Path(tmp) / "runqlat.libbpf.c"
        source.write_text(libbpf_source(SOURCE.read_text()))
        includes = [f"-I{d}" for d in (HERE, kernel.vmlinux_h.parent, toolchain.libbpf() / "include")]
        # The same bytes from the same source wherever it is built (the host image is keyed by them).
        reproducible = f"-fdebug-prefix-map={tmp}=."
        _run([require_tool("clang"), *BPF_CFLAGS, reproducible, *includes, "-c", str(source), "-o", str(out)],
             "compiling the observer's probes")
    _run([require_tool("llvm-strip"), "-g", str(out)], f"stripping {out.name}")
    return out


class LoadedProbes:
    """The probes held by a schedcp-loader child (`--trace`): the loader attaches every program
    and reports its maps' descriptors, which are copied into this process (pidfd_getfd), so the
    counters are read here exactly as BCC's. `close()` ends the loader, which detaches them; the
    loader also ends if this process dies (PR_SET_PDEATHSIG)."""

    def __init__(self, obj: Path, loader: Path) -> None:
        if not obj.is_file():
            raise BpfUnavailable(f"the prebuilt probes {obj} do not exist")
        if not os.access(loader, os.X_OK):
            raise BpfUnavailable(f"the loader {loader} is not an executable file")
        self._process = subprocess.Popen([str(loader), str(obj), "--trace"], stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True)
        try:
            event = self._first_event()
            if event.get("event") != "attached":
                raise BpfUnavailable(f"the loader could not attach {obj.name}: {event.get('error', event)}"
                                     + (f" ({event['log'][-300:]})" if event.get("log") else ""))
            fd = event.get("maps", {}).get(STATS_MAP)
            if not isinstance(fd, int):
                raise BpfUnavailable(f"{obj.name} has no map named {STATS_MAP}")
            self.map_fd = take_fd(self._process.pid, fd)
            self.description = f"the prebuilt {obj} through {loader}"
        except BaseException:
            self._stop()
            raise

    def _first_event(self) -> dict:
        """The loader's first line, within ATTACH_TIMEOUT_S (a stuck load must not hang start-up)."""
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self._process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(ATTACH_TIMEOUT_S)
        if not line or not line[0]:
            self._stop()
            stderr = self._process.stderr.read()[-300:] if self._process.poll() is not None else ""
            raise BpfUnavailable(f"the loader gave no answer attaching the probes{': ' + stderr if stderr else ''}")
        try:
            return json.loads(line[0])
        except ValueError as exc:
            raise BpfUnavailable(f"the loader's answer is not JSON: {line[0][:200]!r}") from exc

    def _stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def close(self) -> None:
        os.close(self.map_fd)
        self._stop()


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m services.observer.prebuilt OUT.bpf.o", file=sys.stderr)
        return 2
    try:
        print(compile_object(Path(argv[0])))
    except BuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
