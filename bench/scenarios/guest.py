"""The scenario suite's worker inside a sched_ext VM (bench/scenarios/vm.py ships the bench
package into the VM and the fleet agent starts this as the VM's workload): it runs one
scenario's programs at a time for the suite on the host, one JSON request a line on a TCP port,
one JSON answer a line:

  {"cmd": "work"}                                   {"seconds": {"system": S, "compute": C}}
  {"cmd": "open", "scenario": S, "seconds": W, "speed": {"system": X, "compute": Y}}
                                                    a scenario to run (the last one stopped)
  {"cmd": "start"} / {"cmd": "warm", "with_batch": B} / {"cmd": "cool"} / {"cmd": "stop"}
  {"cmd": "measure", "alone": B}                    {"result": {...}}

Usage: python -m bench.scenarios.guest PORT
"""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import time
import traceback
import zlib
from pathlib import Path

from bench.scenarios.suite import SCENARIOS
from bench.scenarios.workload import LocalWorkload


def fixed_work_s() -> dict[str, float]:
    """Seconds this machine takes for two fixed pieces of work, to scale loads sized on the host
    to an emulated CPU: `system`, interpreter work, the closest stand-in found for what servers
    and messaging do (in the VM it ran 12-20x slower and nginx's requests, gzip plus syscalls and
    the network stack, 14-17x); `compute`, zlib compression, for compiled CPU-bound jobs alone
    (4.5x: emulation costs most in the kernel's work, which compression does not do)."""
    return {"system": _interpreter_s(), "compute": _compression_s()}


def _interpreter_s() -> float:
    started = time.perf_counter()
    total = 0
    for i in range(3_000_000):
        total += i * i % 7
    return time.perf_counter() - started


def _compression_s() -> float:
    text = b"".join(f"{i} {i * 2654435761 % 4294967296:x} ".encode() for i in range(50_000))
    started = time.perf_counter()
    for _ in range(4):
        zlib.compress(text, 6)
    return time.perf_counter() - started


class Worker:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.workload: LocalWorkload | None = None

    def answer(self, request: dict) -> dict:
        cmd = request.get("cmd")
        if cmd == "work":
            return {"seconds": fixed_work_s()}
        if cmd == "open":
            if self.workload is not None:
                self.workload.stop()
            name = request["scenario"]
            if name not in SCENARIOS:
                return {"error": f"unknown scenario {name!r} (of {', '.join(SCENARIOS)})"}
            self.workload = LocalWorkload(name, self.root / name, float(request["seconds"]),
                                          **request.get("speed", {}))
            return {}
        if self.workload is None:
            return {"error": f"{cmd!r} before any scenario was opened"}
        if cmd == "start":
            self.workload.start()
        elif cmd == "warm":
            self.workload.warm(bool(request.get("with_batch")))
        elif cmd == "cool":
            self.workload.cool()
        elif cmd == "measure":
            return {"result": self.workload.measure(bool(request.get("alone")))}
        elif cmd == "stop":
            self.workload.stop()
        else:
            return {"error": f"unknown command {cmd!r}"}
        return {}


def serve(worker: Worker, port: int) -> None:
    server = socket.create_server(("0.0.0.0", port))
    print(f"scenario worker listening on {port}", flush=True)
    while True:
        conn, _ = server.accept()
        with conn, conn.makefile("rw") as stream:
            for line in stream:
                try:
                    answered = worker.answer(json.loads(line))
                except Exception as exc:  # the suite on the host reads it and stops the scenario
                    traceback.print_exc()
                    answered = {"error": f"{type(exc).__name__}: {exc}"}
                stream.write(json.dumps(answered) + "\n")
                stream.flush()


def main() -> None:
    serve(Worker(Path(tempfile.mkdtemp(prefix="scenarios-"))), int(sys.argv[1]))


if __name__ == "__main__":
    main()
