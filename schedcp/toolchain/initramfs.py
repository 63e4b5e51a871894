"""The micro-VM's initramfs, written directly as a gzipped newc cpio (no cpio tool needed).

The cloud kernel has no 9p and its virtio-blk is a module, so everything the VM needs (busybox,
the loader, probes, artifacts, the plan) travels in the initramfs, and results come back over
the serial console.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
from pathlib import Path

INIT = Path(__file__).resolve().parent / "init.sh"
BUSYBOX = Path("/bin/busybox")
_DIR, _FILE, _LINK, _CHR = 0o040755, 0o100755, 0o120777, 0o020600


class Cpio:
    """A newc archive being written."""

    def __init__(self) -> None:
        self._out = io.BytesIO()
        self._ino = 1
        self._dirs: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0),
               owner: tuple[int, int] = (0, 0)) -> None:
        encoded = os.fsencode(name)  # the size field counts bytes, not characters
        fields = [self._ino, mode, owner[0], owner[1], 2 if stat.S_ISDIR(mode) else 1, 0, len(data), 0, 0,
                  rdev[0], rdev[1], len(encoded) + 1, 0]
        self._ino += 1
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._out.write(header + encoded + b"\0")
        self._pad()
        self._out.write(data)
        self._pad()

    def _pad(self) -> None:
        self._out.write(b"\0" * (-self._out.tell() % 4))

    def directory(self, name: str) -> None:
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            path = "/".join(parts[:i])
            if path not in self._dirs:
                self._dirs.add(path)
                self._entry(path, _DIR)

    def file(self, name: str, data: bytes, mode: int = _FILE) -> None:
        name = name.strip("/")
        if "/" in name:
            self.directory(name.rsplit("/", 1)[0])
        self._entry(name, mode, data)

    def char_device(self, name: str, major: int, minor: int) -> None:
        self.directory(name.rsplit("/", 1)[0])
        self._entry(name.strip("/"), _CHR, rdev=(major, minor))

    def tree(self, root: Path) -> None:
        """Everything under `root` as it is on disk: modes and owners, symlinks as links, hard
        links as copies; device nodes are left out (the VM mounts devtmpfs)."""
        for path in sorted(root.rglob("*")):
            info = path.lstat()
            name = str(path.relative_to(root))
            owner = (info.st_uid, info.st_gid)
            if stat.S_ISDIR(info.st_mode):
                self._dirs.add(name)
                self._entry(name, info.st_mode, owner=owner)
            elif stat.S_ISLNK(info.st_mode):
                self._entry(name, info.st_mode, os.readlink(path).encode(), owner=owner)
            elif stat.S_ISREG(info.st_mode):
                self._entry(name, info.st_mode, path.read_bytes(), owner=owner)

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return gzip.compress(self._out.getvalue(), compresslevel=1)


def tree(root: Path) -> bytes:
    """A directory tree (a whole root filesystem) as a gzipped initramfs."""
    archive = Cpio()
    archive.tree(root)
    return archive.finish()


def overlay(files: dict[str, bytes]) -> bytes:
    """Files only (path -> content), to append to another initramfs: the kernel unpacks both."""
    archive = Cpio()
    for name, data in files.items():
        archive.file(name, data)
    return archive.finish()


def build(files: dict[str, bytes], busybox: Path = BUSYBOX) -> bytes:
    """An initramfs with /init, busybox, /dev/console (the kernel opens it before /init runs)
    and `files` (path in the VM -> content, all executable)."""
    if not busybox.exists():
        raise FileNotFoundError(f"{busybox} not found: run `make install` (Debian's busybox-static)")
    archive = Cpio()
    for name in ("proc", "sys", "tmp", "sys/fs/bpf", "art"):
        archive.directory(name)
    archive.char_device("dev/console", 5, 1)
    archive.file("init", INIT.read_bytes())
    archive.file("bin/busybox", busybox.read_bytes())
    archive.file("bin/sh", b"busybox", mode=_LINK)
    for name, data in files.items():
        archive.file(name, data)
    return archive.finish()
