"""The scenarios: real programs we did not write, each with its ground truth (which group is
which class, which objective is right) and its own measure of success.

A scenario is either *continuous* (servers and batch run throughout; a measurement is a window
of the load generator's own numbers) or *runs to completion* (a batch of jobs; a measurement is
one run, its makespan). `start` brings up what runs throughout; `warm` is what runs while
schedcp profiles the host (for a run-to-completion scenario, one more run of the same jobs);
`measure` is one measurement.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.scenarios import programs
from bench.scenarios.programs import Processes
from schedcp.runtime.config import load_settings
from schedcp.toolchain.build import LIBBPF_SHA256, LIBBPF_URL, _fetch

CPUS = os.cpu_count() or 1
BATCH_PER_CPU = 2
SETTLE_S = 2.0
# A response of this size gzipped at level 6 costs nginx a few ms of CPU: request work as the
# issue's service did it, not a 20 us static file.
PAGE_KIB = 64
# 16 clients pausing this long between requests keep the service at about one CPU alone.
WEB_THINK_MS = 40
# 64 clients pausing this long: about 1.7 CPUs of requests for more workers than CPUs.
OVERSUBSCRIBED_THINK_MS = 90
# pgbench's select-only transactions from 8 clients (2 threads) at this rate in all: about 0.65
# of a CPU for server and client together (0.42 at 4000/s, 0.85 at 8000/s on the 2-CPU test
# host), so that protected from the batch they fit with room to spare.
DB_LOAD = {"clients": 8, "threads": 2, "rate": 6000}
# 200,000 accounts (about 30 MB): initialised in about a second, within shared_buffers.
DB_SCALE = 2


@dataclass(frozen=True)
class Truth:
    """A group as the observer names it (process name) and what it really is."""

    comm: str
    label: str  # latency_sensitive | batch | background
    role: str  # service | client | batch | jobs | long (the long jobs of a batch)
    # A regex of the command line, for a part of a group that only its command line tells apart
    # (the long job among jobs of one program): what an oracle arm aims at, not a class to check.
    cmdline: str = ""


@dataclass
class Env:
    """What a scenario's steps share: its processes, a private directory, the window length, and
    how fast this machine runs the programs' work against the host the loads were sized on (an
    emulated VM's CPU is several times slower): `speed` for serving and messaging (paced loads,
    hackbench's loops), `compute_speed` for compiled CPU-bound jobs (xz's input). Loads scale
    with them, so that a slower machine is loaded alike rather than swamped."""

    tmp: Path
    seconds: float
    speed: float = 1.0
    compute_speed: float = 1.0
    procs: Processes = field(default_factory=Processes)
    state: dict = field(default_factory=dict)

    @property
    def page_speed(self) -> float:
        """The speed at serving a gzipped page, which is both: compression (compute) and the
        request's network and syscalls (system). Their geometric mean, 0.12 in the sandbox VM,
        where nginx's CPU per request measured 0.09-0.13 of this host's (22-25 ms against 2.1-3.3):
        paced by `speed` alone (0.06) the VM's nginx had half the load the scenario means, and
        its "over-subscribed" service used 0.8 of 2 CPUs."""
        return math.sqrt(self.speed * self.compute_speed)


class Batch:
    """CPU batch work a scenario's service runs beside: its truth, and what it gets done per
    second (`unit`), a guard that must hold."""

    truth: Truth
    unit: str

    def start(self, env: Env, procs: Processes, seconds: float, name: str) -> Callable[[], float]:
        """Start it in `procs` for `seconds`; the function returned waits for its end and gives
        its throughput."""
        raise NotImplementedError


class StressBatch(Batch):
    """stress-ng's CPU stressors: threads that never block."""

    truth = Truth("stress-ng-cpu", "batch", "batch")
    unit = "bogo-ops/s"

    def start(self, env: Env, procs: Processes, seconds: float, name: str) -> Callable[[], float]:
        report = env.tmp / f"{name}-stress.yaml"
        report.unlink(missing_ok=True)
        stress = programs.start_stress(procs, BATCH_PER_CPU * CPUS, seconds, report)

        def throughput() -> float:
            stress.wait(timeout=seconds + 60)
            return programs.stress_ops_per_s(report)

        return throughput


class PigzBatch(Batch):
    """pigz compressing a file again and again: worker threads handing each other blocks of
    milliseconds of work, blocking about as often as they are preempted."""

    truth = Truth("pigz", "batch", "batch")
    unit = "CPU s/s compressing"

    def start(self, env: Env, procs: Processes, seconds: float, name: str) -> Callable[[], float]:
        # About half a second of one CPU a run on the test host: the last run's overshoot is small.
        data = compressible(env, "pigz-input", 10)
        loop = programs.Loop(procs, f"pigz -p {BATCH_PER_CPU * CPUS} -6 -c {data}", seconds)
        return lambda: loop.cpu_per_s(timeout_s=60)


class BuildBatch(Batch):
    """A parallel build again and again: compilers that live a fraction of a second each, more
    of them than CPUs, started by make (a batch of jobs whose processes come and go)."""

    truth = Truth("cc1", "batch", "batch")
    unit = "CPU s/s compiling"

    def start(self, env: Env, procs: Processes, seconds: float, name: str) -> Callable[[], float]:
        objdir = env.tmp / f"{name}-obj"
        loop = programs.Loop(procs, f"rm -rf {objdir} && {' '.join(libbpf_build(env, objdir))}", seconds,
                             cwd=libbpf_source(env))
        # A build started near the deadline runs on past it: up to one whole build more.
        return lambda: loop.cpu_per_s(timeout_s=300)


@dataclass
class Scenario:
    name: str
    summary: str
    objective: str  # tail_latency | throughput | makespan | none
    truth: tuple[Truth, ...]
    primary: str
    lower_is_better: bool = True
    continuous: bool = True
    # The batch it runs beside, whose throughput is a guard that must hold (its truth is part of
    # `truth`).
    batch: Batch | None = None

    @property
    def beside_batch(self) -> bool:
        return self.batch is not None

    def start(self, env: Env) -> None:
        """Bring up what runs throughout (servers, batch)."""

    def warm(self, env: Env, procs: Processes) -> None:
        """Start, in `procs`, the load that runs while schedcp observes (the batch beside it is
        the suite's to start); the suite stops them after the decision cycle."""

    def measure(self, env: Env) -> dict:
        raise NotImplementedError

    def groups(self, role: str) -> list[str]:
        return [t.comm for t in self.truth if t.role == role]


class WebBesideBatch(Scenario):
    def __init__(self) -> None:
        super().__init__(
            "web_batch", f"nginx ({PAGE_KIB} KiB gzipped per request, 16 paced wrk clients) beside CPU batch",
            "tail_latency",
            (Truth("nginx", "latency_sensitive", "service"), Truth("wrk", "latency_sensitive", "client"),
             STRESS.truth),
            primary="p99_ms", batch=STRESS)

    def start(self, env: Env) -> None:
        env.state["nginx"] = programs.start_nginx(env.procs, env.tmp / "nginx", workers=CPUS, page_kib=PAGE_KIB)

    def warm(self, env: Env, procs: Processes) -> None:
        programs.start_wrk(procs, env.state["nginx"].url, connections=16, threads=2,
                           think_ms=WEB_THINK_MS / env.page_speed, script_dir=env.tmp)

    def measure(self, env: Env) -> dict:
        return _beside_batch(env, self.batch, lambda: programs.wrk(env.state["nginx"].url, env.seconds, connections=16,
                                                       threads=2, think_ms=WEB_THINK_MS / env.page_speed,
                                                       script_dir=env.tmp))


class WebOversubscribed(Scenario):
    def __init__(self) -> None:
        super().__init__(
            "web_oversubscribed", f"nginx ({PAGE_KIB} KiB gzipped per request) with {4 * CPUS} workers and 64 "
            f"paced wrk connections on {CPUS} CPUs, alone",
            "tail_latency",
            (Truth("nginx", "latency_sensitive", "service"), Truth("wrk", "latency_sensitive", "client")),
            primary="p99_ms")

    def start(self, env: Env) -> None:
        env.state["nginx"] = programs.start_nginx(env.procs, env.tmp / "nginx", workers=4 * CPUS, page_kib=PAGE_KIB)

    def warm(self, env: Env, procs: Processes) -> None:
        programs.start_wrk(procs, env.state["nginx"].url, connections=64, threads=2,
                           think_ms=OVERSUBSCRIBED_THINK_MS / env.page_speed, script_dir=env.tmp)

    def measure(self, env: Env) -> dict:
        return programs.wrk(env.state["nginx"].url, env.seconds, connections=64, threads=2,
                            think_ms=OVERSUBSCRIBED_THINK_MS / env.page_speed, script_dir=env.tmp)


class KeyValueBesideBatch(Scenario):
    def __init__(self, name: str, batch: Batch, what: str) -> None:
        super().__init__(
            name, f"redis-server driven by redis-benchmark (GET/SET, 16 clients) beside {what}", "tail_latency",
            (Truth("redis-server", "latency_sensitive", "service"),
             Truth("redis-benchmark", "latency_sensitive", "client"), batch.truth),
            primary="p99_ms", batch=batch)

    def start(self, env: Env) -> None:
        env.state["port"] = programs.start_redis(env.procs, env.tmp / "redis")

    def warm(self, env: Env, procs: Processes) -> None:
        procs.start("redis-benchmark", "-p", str(env.state["port"]), "-n", "100000000", "-c", "16", "-t",
                        "get,set", "-q", "-l")

    def measure(self, env: Env) -> dict:
        return _beside_batch(env, self.batch, lambda: programs.redis_benchmark(env.state["port"], requests=int(
            20000 * env.speed * env.seconds), clients=16))


class DatabaseBesideBatch(Scenario):
    def __init__(self) -> None:
        super().__init__(
            "db_batch", f"PostgreSQL driven by pgbench (select-only, {DB_LOAD['clients']} clients paced at "
            f"{DB_LOAD['rate']} transactions/s) beside CPU batch",
            "tail_latency",
            # postgres is every server process by name: the postmaster (which holds the listening
            # socket), a backend per client and the background workers.
            (Truth("postgres", "latency_sensitive", "service"), Truth("pgbench", "latency_sensitive", "client"),
             STRESS.truth),
            primary="p99_ms", batch=STRESS)

    def start(self, env: Env) -> None:
        env.state["postgres"] = programs.start_postgres(env.procs, env.tmp / "postgres", scale=DB_SCALE)

    def warm(self, env: Env, procs: Processes) -> None:
        programs.start_pgbench(procs, env.state["postgres"], **_db_load(env))

    def measure(self, env: Env) -> dict:
        return _beside_batch(env, self.batch, lambda: programs.pgbench(env.state["postgres"], env.seconds,
                                                           log_dir=env.tmp / "pgbench-log", **_db_load(env)))


class ParallelBuild(Scenario):
    def __init__(self) -> None:
        super().__init__(
            # One build is a fixed amount of work: finishing it sooner is doing compile work faster
            # (throughput), or, when one compile is far longer than the others, starting it first
            # (makespan). Either goal is right.
            "build", f"make -j{4 * CPUS} of libbpf 1.5's sources (the sandbox's own download)",
            "throughput or makespan",
            # gcc (the driver, waiting for its children) and as (milliseconds per file) are there
            # too briefly or too idly to label: every process of the build is in the jobs group.
            (Truth("make", "background", "jobs"), Truth("cc1", "batch", "jobs")),
            primary="makespan_s", continuous=False)

    def warm(self, env: Env, procs: Processes) -> None:
        procs.start("sh", "-c", " && ".join(f"rm -rf {env.tmp / 'warm'} && {' '.join(libbpf_build(env, 'warm'))}"
                                                for _ in range(20)), cwd=libbpf_source(env))

    def measure(self, env: Env) -> dict:
        src = libbpf_source(env)
        shutil.rmtree(env.tmp / "obj", ignore_errors=True)
        return programs.run_jobs(env.procs, [libbpf_build(env, "obj")], cwd=src)


class LongTail(Scenario):
    """One long job and many short ones of the same program, started together (SchedCP's case)."""

    def __init__(self) -> None:
        super().__init__(
            "long_tail", f"one long xz job and {4 * CPUS} short ones started together", "makespan",
            (Truth("xz", "batch", "jobs"), Truth("xz", "batch", "long", cmdline=r"/data/long$")),
            primary="makespan_s", continuous=False)

    def _jobs(self, env: Env) -> list[list[str]]:
        # About 10 s of CPU for the long job, 1 s for each short one: the bound is the long job.
        long, short = compressible(env, "long", 40), compressible(env, "short", 4)
        return [["xz", "-6", "-T1", "-c", "-k", str(long)], *[["xz", "-6", "-T1", "-c", "-k", str(short)]] * (4 * CPUS)]

    def warm(self, env: Env, procs: Processes) -> None:
        jobs = " ".join(" ".join(j) + " >/dev/null &" for j in self._jobs(env))
        # Until stopped: a decision cycle whose canary alternates runs for a minute or more, and
        # a batch that ran out meanwhile would read as the policy losing CPU.
        procs.start("sh", "-c", f"while :; do {jobs} wait; done")

    def measure(self, env: Env) -> dict:
        result = programs.run_jobs(env.procs, self._jobs(env))
        # The bound no schedule can beat: the long job alone, or all the work spread evenly.
        cpu = result["cpu_s"]
        return {**result, "bound_s": max(cpu[0], sum(cpu) / CPUS)}


class Messaging(Scenario):
    def __init__(self) -> None:
        super().__init__(
            "hackbench", "hackbench: 4 groups of 20 senders and 20 receivers over sockets", "throughput",
            # Its processes sleep and wake for short work (the class says what threads do); the
            # objective, throughput, comes from what the group is: many processes started together.
            (Truth("hackbench", "latency_sensitive", "jobs"),), primary="time_s", continuous=False)

    def warm(self, env: Env, procs: Processes) -> None:
        procs.start("sh", "-c", f"while :; do hackbench -g 4 -l {_hackbench_loops(env)} -P; done")

    def measure(self, env: Env) -> dict:
        return programs.hackbench(groups=4, loops=_hackbench_loops(env))


class PeriodicBesideBatch(Scenario):
    """rt-app periodic tasks, bursts 50 us to 5 ms: latency-class ground truth beside batch."""

    def __init__(self) -> None:
        super().__init__(
            "rtapp_batch", "rt-app periodic tasks (50 us to 5 ms of work every 2-20 ms) beside CPU batch",
            "tail_latency",
            (Truth("rt-app", "latency_sensitive", "service"), STRESS.truth),
            primary="wakeup_p99_us", batch=STRESS)

    def start(self, env: Env) -> None:
        env.state["ns_per_loop"] = programs.rtapp_calibrate(env.tmp)

    def warm(self, env: Env, procs: Processes) -> None:
        procs.start("rt-app", str(_rtapp_config(env, 600, "warm")))

    def measure(self, env: Env) -> dict:
        def run() -> dict:
            config = _rtapp_config(env, env.seconds, "run")
            programs.run_jobs(env.procs, [["rt-app", str(config)]], cwd=env.tmp)
            return programs.rtapp_latency(env.tmp / "rtapp-run")

        return _beside_batch(env, self.batch, run)


class Quiet(Scenario):
    """A lightly loaded host: the right answer is to change nothing."""

    def __init__(self) -> None:
        super().__init__(
            "quiet", "redis-server at a light request rate, nothing else", "none",
            (Truth("redis-server", "latency_sensitive", "service"),
             Truth("redis-benchmark", "latency_sensitive", "client")), primary="p99_ms")

    def start(self, env: Env) -> None:
        env.state["port"] = programs.start_redis(env.procs, env.tmp / "redis")

    def warm(self, env: Env, procs: Processes) -> None:
        procs.start("redis-benchmark", "-p", str(env.state["port"]), "-n", "100000000", "-c", "2", "-t", "get",
                        "-q", "-l")

    def measure(self, env: Env) -> dict:
        return programs.redis_benchmark(env.state["port"], requests=int(4000 * env.speed * env.seconds), clients=2,
                                        tests="get")


def _db_load(env: Env) -> dict:
    return {**DB_LOAD, "rate": DB_LOAD["rate"] * env.speed}


def _hackbench_loops(env: Env) -> int:
    return max(100, round(2000 * env.speed))


def _beside_batch(env: Env, batch: Batch, load) -> dict:
    """The batch for the window, then `load`; the batch's throughput comes with the result. With
    `env.state["alone"]` set, the load alone (the floor a protected service can reach)."""
    if env.state.get("alone"):
        return load()
    throughput = batch.start(env, env.procs, env.seconds + SETTLE_S + 2, "measure")
    time.sleep(SETTLE_S)  # the executor finds the new batch processes (it rescans every second)
    result = load()
    return {**result, "batch_ops_per_s": throughput()}


def libbpf_source(env: Env) -> Path:
    """libbpf 1.5's sources (the sandbox's own download, from its cache), unpacked once."""
    src = env.tmp / "libbpf"
    if not src.exists():
        cache = load_settings().cache_dir / "sandbox" / "downloads"
        tarball = _fetch(LIBBPF_URL, LIBBPF_SHA256, cache / Path(LIBBPF_URL).name)
        with tarfile.open(tarball) as tar:
            tar.extractall(src, filter="data")
    return next(src.glob("libbpf-*")) / "src"


def libbpf_build(env: Env, objdir: str | Path) -> list[str]:
    """A parallel build of libbpf's static library into `objdir` (under the scenario's directory)."""
    return ["make", "-s", f"-j{4 * CPUS}", "BUILD_STATIC_ONLY=1", f"OBJDIR={env.tmp / objdir}"]


def compressible(env: Env, name: str, repeats: int) -> Path:
    """A file of text that compresses well but not trivially (xz at -6, pigz do real work on it),
    `repeats` units of about 0.9 MB (fewer on a slower machine: `env.compute_speed`), made once."""
    path = env.tmp / "data" / name
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        block = b"".join(f"{i} {i * 2654435761 % 4294967296:x} ".encode()
                         for i in range(int(60000 * env.compute_speed)))
        path.write_bytes(block * repeats)
    return path


def _rtapp_config(env: Env, seconds: float, name: str) -> Path:
    """Four periodic tasks: (run us, period us) from 50 us / 2 ms to 5 ms / 20 ms."""
    tasks = {f"rt{i}": {"loop": -1, "run": run, "timer": {"ref": f"t{i}", "period": period}}
             for i, (run, period) in enumerate(((50, 2000), (300, 4000), (1000, 10000), (5000, 20000)))}
    logdir = env.tmp / f"rtapp-{name}"
    shutil.rmtree(logdir, ignore_errors=True)
    logdir.mkdir(parents=True)
    config = {"tasks": tasks, "global": {"duration": int(seconds), "default_policy": "SCHED_OTHER",
                                         "calibration": env.state["ns_per_loop"], "logdir": str(logdir),
                                         "log_basename": "rt", "lock_pages": False}}
    path = env.tmp / f"rtapp-{name}.json"
    path.write_text(json.dumps(config))
    return path


STRESS, PIGZ, BUILD = StressBatch(), PigzBatch(), BuildBatch()
SCENARIOS = {s.name: s for s in (
    WebBesideBatch(), WebOversubscribed(), KeyValueBesideBatch("kv_batch", STRESS, "CPU batch"),
    # The same service beside a batch whose threads block as often as they are preempted: added
    # after pigz, tried on a host outside the suite, read as latency-sensitive (decision 40).
    KeyValueBesideBatch("kv_pigz", PIGZ, f"pigz -p {BATCH_PER_CPU * CPUS} compressing"),
    # Beside a build: the batch's processes live a fraction of a second each.
    KeyValueBesideBatch("kv_build", BUILD, f"make -j{4 * CPUS} of libbpf, again and again"),
    DatabaseBesideBatch(), ParallelBuild(), LongTail(), Messaging(), PeriodicBesideBatch(), Quiet())}
