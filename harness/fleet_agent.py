"""The supervisor inside a fleet host VM (harness/fleet.py ships it as /etc/schedcp/agent.py).

It starts the VM's workload and its schedcp observer and executor, each with its own
settings, and takes commands from the machine outside on one TCP port (reached through a
loopback-only forward), one JSON object a line, answered by one JSON object a line:

  {"cmd": "state"}                          sched_ext state and ops, the services' pids
  {"cmd": "workload"}                       start the workload (once the services are up:
                                            under emulation they start twice as fast alone)
  {"cmd": "kill", "role": R, "signal": 9}   signal a service, as a crash would
  {"cmd": "start", "role": R}               start a service again
  {"cmd": "log", "role": R, "lines": 40}    the end of a service's log (or a workload's:
                                            R is workload-0, workload-1, ...)
  {"cmd": "top", "seconds": 5}              the processes that used the most CPU meanwhile
  {"cmd": "poweroff"}                       stop everything (services get SIGTERM) and exit

Standard library only: it runs with the guest's Python before anything else is known to work.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

LOG_DIR = Path("/var/log/schedcp")
SCHED_EXT = Path("/sys/kernel/sched_ext")
STOP_GRACE_S = 15


class Supervisor:
    """The VM's workload and services, by the configuration the host wrote."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.procs: dict[str, subprocess.Popen] = {}
        LOG_DIR.mkdir(parents=True, exist_ok=True)

    def start_workload(self) -> dict:
        for index, argv in enumerate(self.config["workload"]):
            name = f"workload-{index}"
            if name not in self.procs:
                self.procs[name] = self._spawn(name, argv, os.environ.copy())
        return {name: proc.pid for name, proc in self.procs.items() if name.startswith("workload")}

    def start(self, role: str) -> int:
        proc = self.procs.get(role)
        if proc is not None and proc.poll() is None:
            return proc.pid
        env = {**os.environ, **self.config["env"], **self.config["roles"][role]}
        self.procs[role] = self._spawn(role, [sys.executable, "-m", f"services.{role}"], env)
        return self.procs[role].pid

    @staticmethod
    def _spawn(name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(LOG_DIR / f"{name}.log", "ab")  # noqa: SIM115 (the child keeps it)
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)

    def kill(self, role: str, signum: int) -> dict:
        proc = self.procs.get(role)
        if proc is None or proc.poll() is not None:
            return {"error": f"{role} is not running"}
        proc.send_signal(signum)
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            return {"error": f"{role} (pid {proc.pid}) still runs {STOP_GRACE_S} s after signal {signum}"}
        return {"pid": proc.pid, "status": proc.returncode}

    def state(self) -> dict:
        return {
            "state": _read(SCHED_EXT / "state") or "unsupported",
            "ops": _read(SCHED_EXT / "root" / "ops"),
            "enable_seq": _read(SCHED_EXT / "enable_seq"),
            "services": {role: (proc.pid if proc.poll() is None else None) for role, proc in self.procs.items()},
            # Schedulers' loaders; the observer's (`--trace`, holding its probes) is not one.
            "loaders": [pid for pid in _pids_named("schedcp-loader")
                        if "--trace" not in _read(Path(f"/proc/{pid}/cmdline")).split("\0")],
        }

    def log(self, role: str, lines: int) -> dict:
        path = LOG_DIR / f"{role}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return {"log": "\n".join(text.splitlines()[-lines:])}

    def stop_all(self) -> None:
        """Services first (the executor puts the host back), then the workload."""
        ordered = sorted(self.procs.items(), key=lambda item: item[0].startswith("workload"))
        for _, proc in ordered:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _pids_named(comm: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _read(entry / "comm") == comm[:15]:
            pids.append(int(entry.name))
    return pids


def _cpu_ticks() -> dict[int, int]:
    """utime + stime of every process, by pid."""
    ticks = {}
    for entry in Path("/proc").iterdir():
        stat = _read(entry / "stat") if entry.name.isdigit() else ""
        if stat:
            fields = stat[stat.rindex(")") + 2:].split()
            ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
    return ticks


def _label(pid: int) -> str:
    argv = _read(Path(f"/proc/{pid}/cmdline")).replace("\0", " ").strip()
    return f"{pid} {argv or _read(Path(f'/proc/{pid}/comm'))}"[:80]


def top(seconds: float, count: int = 8) -> list[tuple[str, float]]:
    """The processes that used the most CPU over `seconds`, in % of one CPU."""
    hz = os.sysconf("SC_CLK_TCK")
    before = _cpu_ticks()
    time.sleep(seconds)
    used = {pid: ticks - before[pid] for pid, ticks in _cpu_ticks().items() if pid in before}
    ranked = sorted(used.items(), key=lambda item: -item[1])[:count]
    return [(_label(pid), round(100 * ticks / hz / seconds, 1)) for pid, ticks in ranked]


def answer(supervisor: Supervisor, request: dict) -> dict:
    cmd, role = request.get("cmd"), request.get("role", "")
    if role and role not in supervisor.config["roles"] and not (cmd == "log" and role.startswith("workload-")):
        return {"error": f"unknown role {role!r}"}
    if cmd == "poweroff":
        supervisor.stop_all()
        return {"stopped": True}
    if cmd == "state":
        return supervisor.state()
    if cmd == "workload":
        return supervisor.start_workload()
    if cmd == "kill":
        return supervisor.kill(role, int(request.get("signal", signal.SIGKILL)))
    if cmd == "start":
        return {"pid": supervisor.start(role)}
    if cmd == "top":
        return {"top": top(float(request.get("seconds", 5)))}
    if cmd == "log":
        return supervisor.log(role, int(request.get("lines", 40)))
    return {"error": f"unknown command {cmd!r}"}


def serve(supervisor: Supervisor, port: int) -> None:
    server = socket.create_server(("0.0.0.0", port))
    print(f"@@agent listening on {port}", flush=True)
    while True:
        conn, _ = server.accept()
        with conn, conn.makefile("rw") as stream:
            for line in stream:
                answered = reply(supervisor, line)
                stream.write(json.dumps(answered) + "\n")
                stream.flush()
                if answered.get("stopped"):
                    return


def reply(supervisor: Supervisor, line: str) -> dict:
    """The answer to one request line; a request that fails is an error answer, and the agent
    serves on (it is the drills' only way into the VM)."""
    try:
        request = json.loads(line)
        if not isinstance(request, dict):
            raise ValueError("a request is a JSON object")
        return answer(supervisor, request)
    except Exception as exc:  # any failure is the caller's to read
        return {"error": f"{type(exc).__name__}: {exc}"}


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    supervisor = Supervisor(config)
    started = time.monotonic()
    for role in config["roles"]:
        supervisor.start(role)
    print(f"@@agent started {', '.join(config['roles'])} in {time.monotonic() - started:.1f} s", flush=True)
    serve(supervisor, int(config["agent_port"]))


if __name__ == "__main__":
    main()
