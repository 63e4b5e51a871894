"""Reproducible pieces of the sandbox micro-VM, built once into the cache directory.

- a kernel with sched_ext, from schedcp/toolchain/kernels.toml (pinned by version and sha256; the .deb
  is kept and never fetched again), with its vmlinux.h and the digest of its BTF;
- libbpf 1.5 built static from Debian's source (bookworm's 1.1 cannot load .struct_ops.link);
- the loader (static for the VM; the host build links libbpf statically and glibc dynamically);
- the test probes (static C programs);
- compiled policies: clang -target bpf against a kernel's vmlinux.h.

Every step checks its inputs first and fails with a sentence that says what is missing and
how to fix it (BuildError).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
import tomllib
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from schedcp import DATA
from schedcp.domain.policies import LIBRARY
from schedcp.runtime.config import default_cache_dir

HERE = Path(__file__).resolve().parent
POLICIES = LIBRARY / "sched_ext"
LOADER_SRC = DATA / "loader" / "schedcp-loader.c"
PROBES_SRC = HERE / "probes"
LIBBPF_VERSION = "1.5.0"
LIBBPF_URL = f"http://deb.debian.org/debian/pool/main/libb/libbpf/libbpf_{LIBBPF_VERSION}.orig.tar.gz"
LIBBPF_SHA256 = "53492aff6dd47e4da04ef5e672d753b9743848bdb38e9d90eafbe190b7983c44"
# -fno-crash-diagnostics: a candidate that crashes clang must not leave its preprocessed
# source (and every header it pulled in) in /tmp.
BPF_CFLAGS = ["-g", "-O2", "-target", "bpf", "-mcpu=v3", "-D__TARGET_ARCH_x86", "-Wall", "-Wno-unused-function",
              "-fno-crash-diagnostics"]
FIX_TOOLS = "run `make install` (it installs Debian's qemu-system-x86, clang, llvm, bpftool, busybox-static, " \
            "libelf-dev, libzstd-dev, zstd)"


class BuildError(Exception):
    """A sandbox piece could not be built; the message says what and how to fix it."""


@dataclass(frozen=True)
class KernelEntry:
    release: str
    package: str
    version: str
    url: str
    sha256: str
    btf_sha256: str
    default: bool = False


@dataclass(frozen=True)
class Kernel:
    """A catalogue kernel, ready to boot and to compile against."""

    entry: KernelEntry
    vmlinuz: Path
    vmlinux_h: Path
    btf_sha256: str

    @property
    def release(self) -> str:
        return self.entry.release


def catalogue() -> list[KernelEntry]:
    data = tomllib.loads((HERE / "kernels.toml").read_text())
    return [KernelEntry(**k) for k in data["kernel"]]


def find_kernel(release: str | None = None, btf_sha256: str | None = None) -> KernelEntry:
    """The catalogue entry for a kernel release or BTF digest (the default one when neither)."""
    for entry in catalogue():
        if (release and entry.release == release) or (btf_sha256 and entry.btf_sha256 == btf_sha256) \
                or (not release and not btf_sha256 and entry.default):
            return entry
    known = ", ".join(e.release for e in catalogue())
    raise BuildError(f"no sandbox kernel for release={release!r} btf={btf_sha256!r}; the catalogue has {known} "
                     "(add one to schedcp/toolchain/kernels.toml)")


def require_tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if not path:
        raise BuildError(f"{name} not found: {FIX_TOOLS}")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run(argv: list[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise BuildError(f"{what} failed ({' '.join(argv[:2])}...): {(result.stderr or result.stdout).strip()[-2000:]}")


def _fetch(url: str, sha256: str, dest: Path) -> Path:
    """Download once; a cached file with the right digest is never fetched again."""
    if dest.exists() and _sha256(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=120) as response, part.open("wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as exc:
        part.unlink(missing_ok=True)
        if getattr(exc, "errno", None) == errno.ENOSPC:
            raise BuildError(f"no space left in {dest.parent} while downloading {url}: free some space or set "
                             "SCHEDCP_CACHE_DIR to a larger disk") from exc
        raise BuildError(f"could not download {url}: {exc}") from exc
    actual = _sha256(part)
    if actual != sha256:
        part.unlink()
        raise BuildError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {actual}; the archive "
                         "changed or the download was corrupted: retry, or pin the new file in "
                         "schedcp/toolchain/kernels.toml")
    part.rename(dest)
    return dest


class Toolchain:
    """Builds (once) and finds every sandbox piece under `cache_dir/sandbox`."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.root = Path(cache_dir or default_cache_dir()) / "sandbox"

    # --- kernel -------------------------------------------------------------------------
    def kernel(self, entry: KernelEntry | None = None) -> Kernel:
        entry = entry or find_kernel()
        home = self.root / "kernels" / entry.release
        vmlinuz, header, digest_file = home / "vmlinuz", home / "vmlinux.h", home / "btf.sha256"
        stale = digest_file.exists() and entry.btf_sha256 and digest_file.read_text().strip() != entry.btf_sha256
        if stale or not (vmlinuz.exists() and header.exists() and digest_file.exists()):
            self._unpack_kernel(entry, home)
        return Kernel(entry, vmlinuz, header, digest_file.read_text().strip())

    def _unpack_kernel(self, entry: KernelEntry, home: Path) -> None:
        deb = _fetch(entry.url, entry.sha256, home / Path(entry.url).name)
        for tool in ("dpkg-deb", "zstd", "bpftool", "objcopy"):
            require_tool(tool)
        with tempfile.TemporaryDirectory(dir=home) as tmp:
            tmp_path = Path(tmp)
            _run(["dpkg-deb", "-x", str(deb), tmp], "unpacking the kernel package")
            shutil.copy(tmp_path / "boot" / f"vmlinuz-{entry.release}", home / "vmlinuz")
            vmlinux = tmp_path / "vmlinux"
            _extract_vmlinux(home / "vmlinuz", vmlinux)
            header = subprocess.run(["bpftool", "btf", "dump", "file", str(vmlinux), "format", "c"],
                                    capture_output=True, check=False)
            if header.returncode != 0:
                raise BuildError(f"bpftool could not read the kernel's BTF: {header.stderr.decode()[-500:]}")
            (home / "vmlinux.h").write_bytes(header.stdout)
            _run(["objcopy", "-O", "binary", "--only-section=.BTF", str(vmlinux), str(tmp_path / "btf")],
                 "extracting .BTF")
            digest = _sha256(tmp_path / "btf")
        if entry.btf_sha256 and digest != entry.btf_sha256:
            raise BuildError(f"kernel {entry.release}: BTF digest {digest} differs from the catalogue's "
                             f"{entry.btf_sha256}")
        (home / "btf.sha256").write_text(digest + "\n")

    # --- libbpf, loader, probes ---------------------------------------------------------
    def libbpf(self) -> Path:
        """Prefix with include/ and lib64/libbpf.a of libbpf 1.5."""
        prefix = self.root / f"libbpf-{LIBBPF_VERSION}"
        if (prefix / "usr" / "lib64" / "libbpf.a").exists():
            return prefix / "usr"
        require_tool("make")
        tarball = _fetch(LIBBPF_URL, LIBBPF_SHA256, self.root / "downloads" / Path(LIBBPF_URL).name)
        with tempfile.TemporaryDirectory(dir=self.root) as tmp:
            with tarfile.open(tarball) as tar:
                tar.extractall(tmp, filter="data")
            src = Path(tmp) / f"libbpf-{LIBBPF_VERSION}" / "src"
            _run(["make", "-s", f"-j{os.cpu_count() or 1}", "BUILD_STATIC_ONLY=1", f"OBJDIR={tmp}/obj",
                  f"DESTDIR={prefix}", "PREFIX=/usr", "install"], "building libbpf", cwd=src)
        return prefix / "usr"

    def loader(self, static: bool = True) -> Path:
        out = self.root / "bin" / ("schedcp-loader" if static else "schedcp-loader-host")
        prefix = self.libbpf()
        # The loader mirrors struct schedcp_exit from common.bpf.h, and links libbpf.
        if _fresh(out, LOADER_SRC, POLICIES / "common.bpf.h", prefix / "lib64" / "libbpf.a"):
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        libs = [str(prefix / "lib64" / "libbpf.a"), "-lelf", "-lz", "-lzstd"]
        _run([require_tool("gcc"), "-O2", "-Wall", *(["-static"] if static else []), f"-I{prefix / 'include'}",
              str(LOADER_SRC), "-o", str(out), *libs], "building the loader")
        return out

    def probes(self) -> dict[str, Path]:
        out = {}
        for src in sorted(PROBES_SRC.glob("*.c")):
            binary = self.root / "bin" / f"probe-{src.stem}"
            if not _fresh(binary, src):
                binary.parent.mkdir(parents=True, exist_ok=True)
                _run([require_tool("gcc"), "-O2", "-Wall", "-static", "-pthread", str(src), "-o", str(binary)],
                     f"building probe {src.name}")
            out[src.stem] = binary
        return out

    # --- policies -----------------------------------------------------------------------
    def clang_args(self, kernel: Kernel) -> list[str]:
        """Flags and include directories for compiling a policy against `kernel`."""
        return [*BPF_CFLAGS, *(f"-I{d}" for d in self.include_dirs(kernel))]

    def include_dirs(self, kernel: Kernel) -> list[Path]:
        """Where a policy's headers may come from: vmlinux.h, libbpf's headers, policies/sched_ext."""
        return [kernel.vmlinux_h.parent, self.libbpf() / "include", POLICIES]

    def compile_policy(self, source: Path, kernel: Kernel, out_dir: Path | None = None) -> Path:
        """Compile a sched_ext policy against `kernel`'s BTF; BuildError carries clang's errors."""
        out_dir = out_dir or self.root / "objs" / kernel.release
        out = out_dir / (source.name.removesuffix(".bpf.c") + ".bpf.o")
        out.parent.mkdir(parents=True, exist_ok=True)
        _run([require_tool("clang"), *self.clang_args(kernel), "-c", str(source), "-o", str(out)],
             f"compiling {source.name}")
        # Keep BTF (the kernel needs it for struct_ops), drop DWARF.
        _run([require_tool("llvm-strip"), "-g", str(out)], f"stripping {out.name}")
        return out


def _fresh(output: Path, *sources: Path) -> bool:
    return output.exists() and all(output.stat().st_mtime >= source.stat().st_mtime for source in sources)


def _extract_vmlinux(bzimage: Path, out: Path) -> None:
    """The ELF vmlinux inside a zstd-compressed bzImage (setup header: payload_offset at
    0x248, payload_length at 0x24c; the payload ends with 4 bytes of uncompressed size)."""
    data = bzimage.read_bytes()
    setup_sects = data[0x1F1] or 4
    offset, length = struct.unpack_from("<II", data, 0x248)
    start = (setup_sects + 1) * 512 + offset
    payload = data[start:start + length]
    if payload[:4] != b"\x28\xb5\x2f\xfd":
        raise BuildError(f"{bzimage} is not zstd-compressed (magic {payload[:4].hex()}); only zstd kernels are handled")
    compressed = out.with_suffix(".zst")
    compressed.write_bytes(payload[:-4])
    _run(["zstd", "-d", "-q", "-f", "--long=31", str(compressed), "-o", str(out)], "decompressing vmlinux")
    compressed.unlink()
