"""The real programs of the scenario suite (Debian packages, installed by scripts/bench_setup.sh):
started in process groups of their own with private configurations on free ports, measured by
their own load generators or by their wall time, and killed with their children.

They stay in the bench's session: a session of their own would get an autogroup of its own,
which by itself shields one program from another and hides what a policy does.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from schedcp.runtime.net import free_port


class Processes:
    """Processes a scenario starts; `stop` kills each one's process group."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, *argv: str, cwd: Path | None = None, stdout=subprocess.DEVNULL) -> subprocess.Popen:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=stdout, stderr=subprocess.DEVNULL, process_group=0)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.procs.clear()


def wait_listening(port: int, proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited ({proc.returncode}) before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args[0]} is not listening on {port} after {timeout_s:g} s")


# ---- nginx and wrk -------------------------------------------------------------------------

# reuseport: the kernel spreads connections over the workers (without it one worker can take
# them all and be CPU bound while the others sleep). Workers run as the bench's own user (as
# root, nginx would switch them to `nobody`, who cannot read the bench's private directory).
NGINX_CONF = """daemon off;
user {user};
master_process on;
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  default_type text/plain;
  client_body_temp_path {root}/tmp/body; proxy_temp_path {root}/tmp/proxy;
  fastcgi_temp_path {root}/tmp/fastcgi; uwsgi_temp_path {root}/tmp/uwsgi; scgi_temp_path {root}/tmp/scgi;
  server {{ listen 127.0.0.1:{port} reuseport; root {root}/www;
            gzip {gzip}; gzip_comp_level 6; gzip_types text/plain; }}
}}
"""
# Per request, wrk's connection waits this long before its next one: a paced client population
# rather than a closed loop that would make the server CPU bound by construction.
WRK_THINK = "function delay()\n  return {think_ms}\nend\n"


@dataclass
class Nginx:
    port: int
    url: str


def start_nginx(procs: Processes, root: Path, workers: int, page_kib: int = 64, gzip: bool = True) -> Nginx:
    """nginx serving one text page (gzip-compressed per request: real CPU work per request)."""
    (root / "www").mkdir(parents=True, exist_ok=True)
    (root / "tmp").mkdir(exist_ok=True)
    words = Path("/usr/share/dict/words")
    text = words.read_text() if words.exists() else " ".join(f"word{i} {i * 7919 % 10007}" for i in range(20000))
    (root / "www" / "page.txt").write_text((text * (1 + page_kib * 1024 // max(1, len(text))))[: page_kib * 1024])
    port = free_port()
    (root / "nginx.conf").write_text(NGINX_CONF.format(workers=workers, root=root, port=port,
                                                       user=pwd.getpwuid(os.getuid()).pw_name,
                                                       gzip="on" if gzip else "off"))
    proc = procs.start("nginx", "-p", str(root), "-c", str(root / "nginx.conf"))
    wait_listening(port, proc)
    return Nginx(port, f"http://127.0.0.1:{port}/page.txt")


def wrk(url: str, seconds: float, connections: int, threads: int, think_ms: float, script_dir: Path) -> dict:
    """A wrk run: p50/p99 latency (ms) and requests/s. Compressed responses (Accept-Encoding)."""
    script = script_dir / "think.lua"
    script.write_text(WRK_THINK.format(think_ms=think_ms))
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script),
            "-H", "Accept-Encoding: gzip", url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True,
                         process_group=0).stdout
    return parse_wrk(out)


def start_wrk(procs: Processes, url: str, connections: int, threads: int, think_ms: float,
              script_dir: Path) -> subprocess.Popen:
    """wrk running in the background (for as long as a decision cycle observes)."""
    script = script_dir / "think-warm.lua"
    script.write_text(WRK_THINK.format(think_ms=think_ms))
    return procs.start("wrk", f"-t{threads}", f"-c{connections}", "-d900s", "-s", str(script),
                       "-H", "Accept-Encoding: gzip", url)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(text: str) -> dict:
    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.M).groups()
        return float(value) * _UNITS[unit]

    rps = float(re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M).group(1))
    return {"p50_ms": ms("50%"), "p99_ms": ms("99%"), "requests_per_s": rps}


# ---- redis ---------------------------------------------------------------------------------


def start_redis(procs: Processes, root: Path) -> int:
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = procs.start("redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                       "--appendonly", "no", "--dir", str(root), "--protected-mode", "no")
    wait_listening(port, proc)
    return port


def redis_benchmark(port: int, requests: int, clients: int, tests: str = "get,set") -> dict:
    """redis-benchmark's own latency percentiles (ms) and requests/s, averaged over its tests."""
    argv = ["redis-benchmark", "-p", str(port), "-n", str(requests), "-c", str(clients), "-t", tests, "--csv",
            "-d", "256", "-r", "100000"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=True, process_group=0).stdout
    return parse_redis_csv(out)


def parse_redis_csv(text: str) -> dict:
    rows = [line.replace('"', "").split(",") for line in text.strip().splitlines()]
    header, data = rows[0], rows[1:]
    column = {name: i for i, name in enumerate(header)}

    def mean(name: str) -> float:
        return sum(float(r[column[name]]) for r in data) / len(data)

    return {"p50_ms": mean("p50_latency_ms"), "p99_ms": mean("p99_latency_ms"), "requests_per_s": mean("rps")}


# ---- CPU batch -----------------------------------------------------------------------------


def start_stress(procs: Processes, workers: int, seconds: float, report: Path) -> subprocess.Popen:
    """stress-ng CPU workers for `seconds`; `stress_ops_per_s(report)` once it has ended."""
    return procs.start("stress-ng", "--cpu", str(workers), "--timeout", f"{seconds:.0f}s", "--metrics-brief",
                       "--yaml", str(report))


def stress_ops_per_s(report: Path) -> float:
    metrics = yaml.safe_load(report.read_text())["metrics"]
    return sum(m["bogo-ops-per-second-real-time"] for m in metrics)


# ---- jobs that run to completion -----------------------------------------------------------


def run_jobs(procs: Processes, jobs: list[list[str]], cwd: Path | None = None,
             timeout_s: float = 900) -> dict:
    """Start every job at once; the makespan (s), each job's wall time (s) and CPU time (s,
    itself and its waited-for children, from wait4)."""
    started = time.monotonic()
    running = {procs.start(*argv, cwd=cwd).pid: i for i, argv in enumerate(jobs)}
    pids = list(running)
    walls: dict[int, float] = {}
    cpus: dict[int, float] = {}
    while running:
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"{len(running)} job(s) still running after {timeout_s:g} s")
        for pid in list(running):
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                index = running.pop(pid)
                walls[index] = time.monotonic() - started
                cpus[index] = usage.ru_utime + usage.ru_stime
                if os.waitstatus_to_exitcode(status) != 0:
                    raise RuntimeError(f"{' '.join(jobs[index])} failed ({os.waitstatus_to_exitcode(status)})")
        time.sleep(0.005)
    # Reaped here: Processes.stop must not wait for them again.
    reaped = set(pids)
    procs.procs[:] = [p for p in procs.procs if p.pid not in reaped]
    order = range(len(jobs))
    return {"makespan_s": max(walls.values()), "job_s": [walls[i] for i in order], "cpu_s": [cpus[i] for i in order]}


def hackbench(groups: int, loops: int, threads: bool = False) -> dict:
    """hackbench's own time (s) for `loops` messages per sender; messages per second."""
    argv = ["hackbench", "-g", str(groups), "-l", str(loops), *(["-T"] if threads else ["-P"])]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=True, process_group=0).stdout
    seconds = float(re.search(r"^Time:\s+([\d.]+)", out, re.M).group(1))
    messages = groups * 20 * 20 * loops  # 20 senders and 20 receivers per group
    return {"time_s": seconds, "messages_per_s": messages / seconds}


def copy_tree_once(source: Path, target: Path) -> Path:
    if not target.exists():
        shutil.copytree(source, target)
    return target


# ---- rt-app ------------------------------------------------------------------------------


def rtapp_calibrate(tmp: Path) -> int:
    """rt-app's ns per loop on this CPU, measured once on a quiet host so that a run event does
    the same work whatever runs beside it later."""
    config = tmp / "rtapp-calibrate.json"
    config.write_text('{"tasks": {"c": {"loop": 1, "run": 1000}}, "global": {"duration": 1, '
                      '"calibration": "CPU0", "log_size": "disable", "lock_pages": false}}')
    out = subprocess.run(["rt-app", str(config)], capture_output=True, text=True, timeout=60, process_group=0,
                         cwd=tmp)  # it writes a log beside itself
    return int(re.search(r"pLoad = (\d+)ns", out.stdout + out.stderr).group(1))


def rtapp_latency(logdir: Path) -> dict:
    """Wakeup latency after each period's timer (us, all tasks) and the share of periods whose
    work overran the period (negative slack)."""
    wakeups, periods, overruns = [], 0, 0
    for log in logdir.glob("*.log"):
        for line in log.read_text().splitlines():
            if line.startswith("#") or not line.strip():
                continue
            fields = line.split()
            wakeups.append(float(fields[10]))
            periods += 1
            overruns += float(fields[7]) < 0
    if not wakeups:
        raise RuntimeError(f"rt-app left no log lines in {logdir}")
    wakeups.sort()
    return {"wakeup_p50_us": wakeups[len(wakeups) // 2], "wakeup_p99_us": wakeups[int(0.99 * (len(wakeups) - 1))],
            "overrun_share": overruns / periods}
