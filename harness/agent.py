"""A sandbox VM that stays up and takes commands: a host-side program starts and stops loaders
inside it and reads sched_ext's state, as it would on a real sched_ext host (agent.sh runs in
the VM; the commands travel over its second serial port, a unix socket here).

Used by the executor's sched_ext tests: this machine's kernel has no sched_ext, the VM's has.
"""

from __future__ import annotations

import base64
import contextlib
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from schedcp.toolchain import initramfs, runner
from schedcp.toolchain.build import BuildError, Kernel, Toolchain

AGENT = Path(__file__).resolve().parent / "agent.sh"
CHUNK = 3000  # base64 characters per line sent


class AgentVm:
    """Boot on enter, power off on exit. `lines(name)` are the lines the VM sent for `name`."""

    def __init__(self, kernel: Kernel, toolchain: Toolchain, boot_timeout_s: float = 120.0) -> None:
        self.kernel = kernel
        self._toolchain = toolchain
        self._boot_timeout_s = boot_timeout_s
        self._queues: dict[str, queue.Queue[str]] = {}
        self._lock = threading.Lock()
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None

    def __enter__(self) -> AgentVm:
        if not shutil.which(runner.QEMU):
            raise BuildError(f"{runner.QEMU} not found: run `make install`")
        self._tmp = tempfile.TemporaryDirectory(prefix="schedcp-agent-")
        tmp = Path(self._tmp.name)
        files = {"bin/schedcp-loader": self._toolchain.loader(static=True).read_bytes(),
                 "plan.sh": AGENT.read_bytes()}
        (tmp / "initrd.gz").write_bytes(initramfs.build(files))
        sock_path = tmp / "agent.sock"
        accel = runner.accelerator(self.kernel) or "tcg,thread=single"
        argv = [runner.QEMU, "-accel", accel, *runner.QEMU_ARGS, "-serial", f"unix:{sock_path},server=on,wait=off",
                "-kernel", str(self.kernel.vmlinuz), "-initrd", str(tmp / "initrd.gz"),
                "-append", runner.KERNEL_CMDLINE]
        self.console = tmp / "console.log"
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.console.open("wb"),
                                      stderr=subprocess.STDOUT)
        self._sock = self._connect(sock_path)
        threading.Thread(target=self._read, daemon=True, name="agent-vm-reader").start()
        ready = self.expect("ready", lambda line: True, self._boot_timeout_s)
        if ready is None:
            self.__exit__(None, None, None)
            raise BuildError(f"the agent VM did not come up; console:\n{self.console_tail()}")
        return self

    def __exit__(self, *exc) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self.send("quit")
        if self._proc is not None:
            try:
                self._proc.wait(20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._sock is not None:
            self._sock.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def console_tail(self, chars: int = 3000) -> str:
        return self.console.read_bytes().decode(errors="replace")[-chars:]

    def send(self, line: str) -> None:
        self._sock.sendall(line.encode() + b"\n")

    def put(self, name: str, data: bytes) -> None:
        """Copy a file into the VM's /tmp."""
        encoded = base64.b64encode(data).decode()
        for start in range(0, len(encoded), CHUNK):
            self.send(f"chunk {name} {encoded[start:start + CHUNK]}")
        self.send(f"decode {name}")
        if self.expect(name, lambda line: line == "decoded", 60) is None:
            raise BuildError(f"copying {name} into the VM failed; console:\n{self.console_tail()}")

    def state(self) -> tuple[str, str]:
        """(sched_ext state, ops name) inside the VM."""
        self.send("state")
        line = self.expect("state", lambda line: True, 30) or ""
        state, _, ops = line.partition(" ")
        return state, ops

    def expect(self, name: str, accept, timeout_s: float) -> str | None:
        """The next line for `name` that `accept`s, or None after the timeout."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue(name).get(timeout=left)
            except queue.Empty:
                return None
            if accept(line):
                return line
        return None

    def _queue(self, name: str) -> queue.Queue[str]:
        with self._lock:
            return self._queues.setdefault(name, queue.Queue())

    def _connect(self, path: Path) -> socket.socket:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BuildError(f"qemu exited at start; console:\n{self.console_tail()}")
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(str(path))
                return sock
            except OSError:
                sock.close()
                time.sleep(0.1)
        raise BuildError("could not connect to the agent VM's serial port")

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            buffer += data
            *lines, buffer = buffer.replace(b"\r", b"").split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                if line.startswith("@"):
                    name, _, rest = line[1:].partition(" ")
                    self._queue(name).put(rest)
