"""The fleet host image (issue 10, first part): the sandbox's pinned sched_ext kernel booting a
small Debian trixie root filesystem that holds Python, schedcp installed from its wheel, the
static loader with the observer's probes compiled for it (services/observer/prebuilt.py),
rt-tests and stress-ng, as a qemu micro-VM with user-mode networking. Inside,
the guest reaches the host's loopback as 10.0.2.2; the host reaches the guest's ports through
forwards on 127.0.0.1.

Built in two cached layers under `cache_dir/hostimage/`:
- `base-<key>/`: the root filesystem from mmdebstrap (suite and packages in the key; ~30 s,
  needs root for the chroot), trimmed of documentation;
- `image-<key>.cpio.gz`: the base plus a virtualenv with the project's wheel and its
  dependencies (downloaded for the guest's Python), the virtio-net modules of the kernel
  package, the loader, the probes and /init (the key covers each of them, the kernel and init).
A VM boots the image with a second, small initramfs appended that carries its own
configuration (/etc/schedcp/host.env and /etc/schedcp/start.sh, run by /init).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from schedcp.toolchain import initramfs, runner
from schedcp.toolchain.build import BuildError, Kernel, Toolchain, _run, require_tool
from services.observer import prebuilt

ROOT = Path(__file__).resolve().parent.parent
HOST_INIT = Path(__file__).resolve().parent / "host_init.sh"
SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv", "rt-tests", "stress-ng", "kmod", "iproute2", "procps", "ca-certificates")
# The guest's Python, for the wheels pip downloads on the host (trixie ships 3.13).
GUEST_PYTHON = "3.13"
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
# virtio-net and what it needs, in load order (the cloud kernel builds them as modules).
NET_MODULES = ("kernel/net/core/failover.ko.xz", "kernel/drivers/net/net_failover.ko.xz",
               "kernel/drivers/net/virtio_net.ko.xz")
TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt",
        "var/lib/apt/lists")


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


class HostImage:
    """Builds (once) and finds the host image for a catalogue kernel. A variant (`name`) adds
    Debian packages to the root filesystem and PyPI requirements to the virtualenv (the scenario
    suite's image carries the programs it runs); each variant is cached apart."""

    def __init__(self, toolchain: Toolchain | None = None, name: str = "image", packages: tuple[str, ...] = (),
                 requirements: tuple[str, ...] = ()) -> None:
        self.toolchain = toolchain or Toolchain()
        self.root = self.toolchain.root.parent / "hostimage"
        self.name = name
        self.packages = (*PACKAGES, *packages)
        self.requirements = requirements

    def base(self) -> Path:
        """The trimmed root filesystem (a directory), built by mmdebstrap once."""
        home = self.root / f"base-{_digest(SUITE, MIRROR, *self.packages)}"
        if (home / "etc" / "os-release").exists():
            return home
        if os.geteuid() != 0:
            raise BuildError("building the host image's root filesystem needs root (mmdebstrap, chroot)")
        require_tool("mmdebstrap")
        partial = home.with_name(home.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        _run(["mmdebstrap", "--quiet", "--mode=root", "--variant=minbase", f"--include={','.join(self.packages)}",
              SUITE, str(partial), MIRROR], "building the host root filesystem (mmdebstrap)")
        for path in TRIM:
            shutil.rmtree(partial / path, ignore_errors=True)
        partial.rename(home)
        return home

    def image(self, kernel: Kernel) -> Path:
        """The host image (gzipped cpio) for this kernel, built when its inputs changed."""
        with tempfile.TemporaryDirectory(prefix="schedcp-wheel-") as tmp:
            wheel = self._project_wheel(Path(tmp))
            loader = self.toolchain.loader(static=True)
            probes = prebuilt.compile_object(Path(tmp) / "runqlat.bpf.o", self.toolchain, kernel)
            key = _digest(wheel.read_bytes(), loader.read_bytes(), probes.read_bytes(), kernel.entry.release,
                          HOST_INIT.read_bytes(), self.base().name, *self.requirements)
            out = self.root / f"{self.name}-{key}.cpio.gz"
            if out.exists():
                return out
            with tempfile.TemporaryDirectory(prefix="schedcp-hostimage-", dir=self.root) as work:
                tree = Path(work) / "root"
                _run(["cp", "-a", str(self.base()), str(tree)], "copying the base root filesystem")
                self._install_project(tree, wheel, Path(tmp), self.requirements)
                self._install_modules(tree, kernel)
                shutil.copy(loader, tree / "usr" / "local" / "bin" / "schedcp-loader")
                (tree / "usr" / "local" / "lib" / "schedcp").mkdir(parents=True, exist_ok=True)
                shutil.copy(probes, tree / "usr" / "local" / "lib" / "schedcp" / "runqlat.bpf.o")
                shutil.copy(HOST_INIT, tree / "init")
                (tree / "init").chmod(0o755)
                partial = out.with_name(out.name + ".partial")
                partial.write_bytes(initramfs.tree(tree))
                partial.rename(out)
            for old in self.root.glob(f"{self.name}-*.cpio.gz"):
                if old != out:
                    old.unlink()
            return out

    @staticmethod
    def _project_wheel(tmp: Path) -> Path:
        """The project's wheel, byte for byte the same for the same sources (fixed zip times), so
        that the image's key changes only when what goes into it does."""
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp), str(ROOT)],
             "building the project's wheel", env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"})
        return next(tmp.glob("schedcp-*.whl"))

    @staticmethod
    def _install_project(tree: Path, wheel: Path, tmp: Path, requirements: tuple[str, ...]) -> None:
        """A virtualenv in /opt/schedcp with the wheel, its dependencies and `requirements`,
        fetched on the host for the guest's Python (the chroot has no index of its own)."""
        wheels = tree / "tmp" / "wheels"
        wheels.mkdir(parents=True)
        shutil.copy(wheel, wheels)
        platforms = [arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)]
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--python-version",
              GUEST_PYTHON, *platforms, "--dest", str(wheels), str(wheel), *requirements],
             "downloading the guest's wheels")
        _run(["chroot", str(tree), "sh", "-c", "python3 -m venv /opt/schedcp && /opt/schedcp/bin/pip install "
              f"--quiet --no-index --find-links /tmp/wheels schedcp {' '.join(requirements)}"],
             "installing schedcp in the host image")
        shutil.rmtree(wheels)

    @staticmethod
    def _install_modules(tree: Path, kernel: Kernel) -> None:
        deb = next(kernel.vmlinuz.parent.glob("linux-image-*.deb"))
        with tempfile.TemporaryDirectory() as unpacked:
            _run(["dpkg-deb", "-x", str(deb), unpacked], "unpacking the kernel package")
            source = Path(unpacked) / "usr" / "lib" / "modules" / kernel.entry.release
            target = tree / "usr" / "lib" / "modules" / kernel.entry.release
            for module in NET_MODULES:
                (target / module).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source / module, target / module)
            for meta in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
                if (source / meta).exists():
                    shutil.copy(source / meta, target / meta)
        subprocess.run(["chroot", str(tree), "depmod", kernel.entry.release], check=True, capture_output=True)


class HostVm:
    """One fleet host VM: boots the image with its own configuration (`files`: path in the VM
    -> content, e.g. etc/schedcp/start.sh) and these TCP forwards from the host's loopback
    (host port -> guest port); the console goes to `console`. Powered off on exit."""

    def __init__(self, kernel: Kernel, image: Path, files: dict[str, bytes], forwards: dict[int, int],
                 console: Path, memory_mb: int = 2048) -> None:
        self._argv_parts = (kernel, image, files, forwards, memory_mb)
        self.console = console
        self._proc: subprocess.Popen | None = None
        self._initrd: Path | None = None

    def __enter__(self) -> HostVm:
        kernel, image, files, forwards, memory_mb = self._argv_parts
        self._initrd = self.console.with_suffix(".initrd.gz")
        with open(self._initrd, "wb") as out, open(image, "rb") as base:
            shutil.copyfileobj(base, out)
            out.write(initramfs.overlay(files))
        netdev = ",".join(["user,id=net0", *(f"hostfwd=tcp:127.0.0.1:{h}-:{g}" for h, g in forwards.items())])
        accel = runner.accelerator(kernel) or "tcg,thread=single"
        argv = [runner.QEMU, "-accel", accel, "-cpu", "max", "-smp", "2", "-m", str(memory_mb), "-nographic",
                "-no-reboot", "-nodefaults", "-serial", "stdio", "-netdev", netdev,
                "-device", "virtio-net-pci,netdev=net0", "-kernel", str(kernel.vmlinuz), "-initrd",
                str(self._initrd), "-append", runner.KERNEL_CMDLINE]
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.console.open("wb"),
                                      stderr=subprocess.STDOUT)
        return self

    def wait(self, timeout_s: float) -> int | None:
        """The qemu exit status once the VM powered off, or None while it still runs."""
        try:
            return self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def __exit__(self, *exc: object) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._initrd:
            self._initrd.unlink(missing_ok=True)
