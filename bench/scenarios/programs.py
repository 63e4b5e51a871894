"""The real programs of the scenario suite (Debian packages, installed by scripts/bench_setup.sh):
started in process groups of their own with private configurations on free ports, measured by
their own load generators or by their wall time, and killed with their children.

They stay in the bench's session: a session of their own would get an autogroup of its own,
which by itself shields one program from another and hides what a policy does. (PostgreSQL's
server processes are the exception we cannot change: see start_postgres.)
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from schedcp.runtime.net import free_port


class Processes:
    """Processes a scenario starts; `stop` kills each one's process group."""

    # How long a program asked to shut down cleanly gets before its group is killed.
    GRACEFUL_S = 10.0

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.graceful: dict[int, int] = {}

    def start(self, *argv: str, cwd: Path | None = None, stdout=subprocess.DEVNULL,
              user: pwd.struct_passwd | None = None, stop_signal: int | None = None) -> subprocess.Popen:
        """`user`: run as that user (postgres refuses root). `stop_signal`: what asks the program
        to shut down cleanly, sent before its group is killed."""
        proc = subprocess.Popen(argv, cwd=cwd, stdout=stdout, stderr=subprocess.DEVNULL, process_group=0,
                                **as_user(user))
        self.procs.append(proc)
        if stop_signal is not None:
            self.graceful[proc.pid] = stop_signal
        return proc

    def stop(self) -> None:
        # A clean shutdown first where a program has one. postgres's children are in sessions
        # of their own (each calls setsid), out of reach of killpg; the postmaster ends them and
        # removes its System V shared memory segment as it exits. Killed, it would leave that
        # segment behind on the host, and its children running until they notice it is gone.
        for proc in self.procs:
            sig = self.graceful.get(proc.pid)
            if sig is not None and proc.poll() is None:
                proc.send_signal(sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=self.GRACEFUL_S)
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.procs.clear()
        self.graceful.clear()


def as_user(user: pwd.struct_passwd | None) -> dict:
    """subprocess arguments that run a program as `user` (its own group, none of ours), or as us."""
    return {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


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


# ---- PostgreSQL and pgbench ----------------------------------------------------------------

# The cluster's superuser, trusted on loopback: the cluster is private and lives for one run.
PG_USER = "bench"
# A CPU-bound database, as the suite needs: durability off (fsync, synchronous commit, full-page
# writes) so that transactions wait for the CPU and the client, never for the disk, and
# shared_buffers small but holding pgbench's whole data set. Clients connect over a unix socket,
# as libpq does by default (a new user's `pgbench`), in the cluster's own directory (Debian's,
# /var/run/postgresql, is the system cluster's); no TCP. Dynamic shared memory in files in the
# data directory rather than /dev/shm: nothing is left outside the scenario's temp dir.
PG_SETTINGS = {"listen_addresses": "", "fsync": "off",
               "synchronous_commit": "off", "full_page_writes": "off", "shared_buffers": "64MB",
               "max_connections": "32", "dynamic_shared_memory_type": "mmap"}


@dataclass
class Postgres:
    port: int
    socket_dir: Path

    @property
    def connection(self) -> list[str]:
        """libpq client options (pgbench, pg_isready) for this cluster: its unix socket."""
        return ["-h", str(self.socket_dir), "-p", str(self.port), "-U", PG_USER]


@functools.cache
def pg_bin(name: str) -> str:
    """A PostgreSQL program. Debian keeps the server's per major version, off PATH (/usr/bin has
    wrappers that look for a system cluster): the newest version's, else PATH's."""
    versions = sorted((d for d in Path("/usr/lib/postgresql").glob("*/bin") if d.parent.name.isdigit()),
                      key=lambda d: int(d.parent.name))
    for path in [*(str(d / name) for d in reversed(versions)), shutil.which(name)]:
        if path and os.access(path, os.X_OK):
            return path
    raise RuntimeError(f"no PostgreSQL {name}: install postgresql (scripts/bench_setup.sh)")


def pg_server_user() -> pwd.struct_passwd | None:
    """Who runs the cluster: postgres refuses to run as root, so as root the `postgres` user the
    Debian package creates; otherwise the bench's own user."""
    if os.getuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("postgres refuses root and this host has no postgres user: install postgresql "
                           "(scripts/bench_setup.sh)") from None


def hand_over(path: Path, user: pwd.struct_passwd) -> None:
    """Give `path` to `user`, and let them reach it: the directories above it that the bench
    made in the temp dir (the suite's own is private, mode 0700) get search permission for
    others, not read (their names are random). Nothing outside the temp dir is changed."""
    tmp = Path(tempfile.gettempdir()).resolve()
    for parent in path.resolve().parents:
        if parent == tmp or tmp not in parent.parents:
            break
        parent.chmod(parent.stat().st_mode | stat.S_IXOTH)
    os.chown(path, user.pw_uid, user.pw_gid)


def start_postgres(procs: Processes, root: Path, scale: int) -> Postgres:
    """A cluster of our own, initdb'd into `root`, listening on a unix socket there, with pgbench's
    tables at `scale` (100,000 accounts each). Stopped by `procs.stop` (a fast shutdown).

    The postmaster stays in the bench's session, but every process it forks (a backend per
    client, the checkpointer, the WAL writer...) calls setsid: with kernel.sched_autogroup_enabled
    each gets an autogroup of its own, as it would under systemd. pgbench stays in ours."""
    user = pg_server_user()
    root.mkdir(parents=True)
    if user is not None:
        hand_over(root, user)
    data = root / "data"
    subprocess.run([pg_bin("initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust", "--locale=C", "-E", "UTF8",
                    "--no-sync"], cwd=root, capture_output=True, check=True, timeout=120, process_group=0,
                   **as_user(user))
    port = free_port()  # (names the socket: .s.PGSQL.<port>)
    options = [f"-c{name}={value}" for name, value in
               {**PG_SETTINGS, "port": port, "unix_socket_directories": root}.items()]
    # SIGINT is postgres's fast shutdown: sessions ended, the shared memory removed.
    proc = procs.start(pg_bin("postgres"), "-D", str(data), *options, cwd=root, user=user,
                       stop_signal=signal.SIGINT)
    server = Postgres(port, root)
    wait_accepting(server, proc)
    subprocess.run([pg_bin("pgbench"), "-i", "-q", "-s", str(scale), *server.connection, "postgres"],
                   capture_output=True, check=True, timeout=300, process_group=0)
    return server


def wait_accepting(server: Postgres, proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """Until the cluster accepts sessions: it listens before its startup has finished, and
    refuses sessions until then."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"postgres exited ({proc.returncode}) before accepting sessions")
        if subprocess.run([pg_bin("pg_isready"), "-q", *server.connection], timeout=10).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"postgres does not accept sessions on {server.port} after {timeout_s:g} s")


def pgbench_load(clients: int, threads: int, rate: float) -> list[str]:
    """pgbench's select-only transactions (lookups by key: CPU work and no lock waits, which no
    scheduler shortens), started on a Poisson schedule at `rate` per second in all: an open load
    rather than a closed loop that would make the server CPU bound by construction. No vacuum
    first (select-only changes nothing)."""
    return ["-n", "-S", "-c", str(clients), "-j", str(threads), "--rate", f"{rate:g}"]


def start_pgbench(procs: Processes, server: Postgres, clients: int, threads: int, rate: float) -> subprocess.Popen:
    """pgbench running in the background (for as long as a decision cycle observes)."""
    return procs.start(pg_bin("pgbench"), *pgbench_load(clients, threads, rate), "-T", "900", *server.connection,
                       "postgres")


def pgbench(server: Postgres, seconds: float, clients: int, threads: int, rate: float, log_dir: Path) -> dict:
    """A paced pgbench run: p50/p99 latency (ms) from every transaction's line in its log (with
    --rate, measured from the transaction's scheduled start, so a late start counts) and
    transactions/s."""
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    argv = [pg_bin("pgbench"), *pgbench_load(clients, threads, rate), "-T", str(max(1, round(seconds))), "--log",
            f"--log-prefix={log_dir / 'tx'}", *server.connection, "postgres"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True,
                         process_group=0).stdout
    # One log per thread; a line: client, transaction, latency (us), script, epoch s, us, lag (us).
    latencies = sorted(int(line.split()[2]) / 1000 for log in log_dir.iterdir()
                       for line in log.read_text().splitlines())
    if not latencies:
        raise RuntimeError(f"pgbench logged no transactions in {log_dir}")
    tps = float(re.search(r"^tps = ([\d.]+) \(without initial connection time\)", out, re.M).group(1))
    return {"p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99), "tps": tps}


# ---- CPU batch -----------------------------------------------------------------------------


def start_stress(procs: Processes, workers: int, seconds: float, report: Path) -> subprocess.Popen:
    """stress-ng CPU workers for `seconds`; `stress_ops_per_s(report)` once it has ended."""
    return procs.start("stress-ng", "--cpu", str(workers), "--timeout", f"{seconds:.0f}s", "--metrics-brief",
                       "--yaml", str(report))


class Loop:
    """A command run again and again until a deadline, by a shell: a batch of one program whose
    work per second is the CPU it used (it must not spin while it waits, as pigz does not)."""

    def __init__(self, procs: Processes, command: str, seconds: float, cwd: Path | None = None) -> None:
        """`command`: a shell command (its output is discarded)."""
        self.started = time.monotonic()
        self.proc = procs.start("sh", "-c", f'end=$(( $(date +%s) + {math.ceil(seconds)} )); '
                                            f'while [ "$(date +%s)" -lt "$end" ]; do {command}; done >/dev/null',
                                cwd=cwd)

    def cpu_per_s(self, timeout_s: float) -> float:
        """Once the loop has ended: CPU seconds per second of its wall time, its runs' included
        (the shell waited for each: wait4 counts them)."""
        deadline = time.monotonic() + timeout_s
        while not (reaped := os.wait4(self.proc.pid, os.WNOHANG))[0]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the batch loop (pid {self.proc.pid}) still runs after {timeout_s:g} s")
            time.sleep(0.05)
        _, status, usage = reaped
        self.proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait
        return (usage.ru_utime + usage.ru_stime) / (time.monotonic() - self.started)


def stress_ops_per_s(report: Path) -> float:
    """The stressors' bogo-ops per second (wall clock), from the report's metrics section alone:
    stress-ng 0.19.02 (Debian trixie) writes a misindented line into the build-info section
    before it, which makes the whole document invalid YAML."""
    text = report.read_text()
    metrics = yaml.safe_load(text[text.index("\nmetrics:"):])["metrics"]
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
    return {"wakeup_p50_us": percentile(wakeups, 0.5), "wakeup_p99_us": percentile(wakeups, 0.99),
            "overrun_share": overruns / periods}


def percentile(ordered: list[float], q: float) -> float:
    """The `q` quantile of sorted values (nearest rank below)."""
    return ordered[int(q * (len(ordered) - 1))]
