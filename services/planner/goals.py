"""Goal inference, `rules` provider: deterministic, no key, from the profile's classes and what
its groups are (services that accept connections, batches of jobs started together).

- latency-sensitive work shares the host with batch work -> protect the latency groups' p99
  run-queue wait; the guard is the real trade-off: the service takes the CPU it needs and the
  batch the rest, so together they keep >= 90 % of the CPU they used (no CPU idles while work
  waits), not "the batch keeps what it had while it starved the service";
- latency-sensitive groups contending among themselves (more demand than CPUs, no batch to
  demote: an over-subscribed service) -> their p99 response (wakeup to the next block, with BPF
  sampling; else run-queue wait), guarding their CPU share;
- a batch of jobs (many processes of one program, started together or one after another), or
  batch groups, contending for the CPUs -> throughput: for jobs that repeat and that the
  observer saw end, the time per job (in windows a few jobs long); else CPU work done per
  second, or for jobs that sleep and wake for messages, wakeups per second;
- a batch of jobs some of which are far longer than the rest (the observer's long_jobs: the CPU
  their command lines used before, or inputs many times larger) -> makespan: run the long jobs
  first, the batch losing no CPU, judged on the batch's longest job per window when the observer
  knows how long one lasts (else on the long jobs' CPU share); without that evidence, throughput;
- otherwise nothing worth changing: a goal with no objective and the reason.

An operator's intent narrows it: a group named in it becomes the target, and "throughput",
"latency"/"p99" or "makespan" picks the objective (a makespan goal runs the named long jobs
first, or the observer's long jobs when none is named); "keep the batch" asks for the old guard
(the batch keeps 90 % of its own CPU share).
"""

from __future__ import annotations

import re

from google.protobuf import duration_pb2

from schedcp.v1 import common_pb2, goal_pb2, profile_pb2

MIN_CONFIDENCE = 0.5
LATENCY_MIN_IMPROVEMENT = 0.2
THROUGHPUT_MIN_IMPROVEMENT = 0.05
# A long job's CPU share in one window depends on where the batch is (beside the short jobs it
# gets its fair part, alone at the end a whole CPU), so two windows differ by tens of per cent
# whatever is deployed. More weight cannot give it less CPU; what the canary must catch is a
# batch losing CPU (the guard), and a share that did not rise at all.
MAKESPAN_MIN_IMPROVEMENT = 0.05
GUARD_RATIO = 0.9
# A local server's client blocking in fewer of its switches than this is a load generator
# (is_load_generator): redis-benchmark blocked in 25-54 % beside batch work; request workers,
# periodic tasks and clients that wait for each answer (wrk, pgbench) in 78-100 %.
LOAD_GENERATOR_VOLUNTARY = 0.6
# Demand (CPU + run-queue wait, in CPUs) above capacity by this factor is contention.
CONTENDED = 1.05
# A batch of jobs: this many processes of one program at least, all started within a few
# seconds of each other and recently, or new ones starting all the time. A service (it accepts
# connections) is never one.
JOB_MIN_PROCESSES = 3
JOB_START_SPREAD_S = 10.0
JOB_MAX_AGE_S = 120.0
JOB_SPAWNS_PER_S = 0.5
# Jobs the observer saw end judge throughput by their length when one lasts at most this long
# (a canary window holds JOBS_PER_WINDOW of them: 15 s jobs make 60 s windows, and a canary of up
# to 6 rounds and its re-measurements then lasts up to about 18 minutes).
MAX_JOB_S = 15.0
JOBS_PER_WINDOW = 4
# A makespan goal whose long jobs the observer has seen last a known time judges the longest job
# per window (the batch's makespan, when it repeats) in windows this many long jobs long: at least
# one whole run of the batch in each. Longer than JOBS_PER_WINDOW * MAX_JOB_S, the CPU share.
BATCHES_PER_WINDOW = 2.5
LATENCY = profile_pb2.WORKLOAD_CLASS_LATENCY_SENSITIVE
BATCH = profile_pb2.WORKLOAD_CLASS_BATCH
_OBJECTIVE_WORDS = ((goal_pb2.OBJECTIVE_THROUGHPUT, r"throughput|faster batch|more work"),
                    (goal_pb2.OBJECTIVE_MAKESPAN, r"makespan|finish(es)? (\w+ ){0,3}(sooner|faster|earlier)"),
                    (goal_pb2.OBJECTIVE_TAIL_LATENCY, r"latency|p99|tail|responsive"))
_KEEP_BATCH = r"keep(ing)? (the )?batch('s)?( (throughput|share|cpu( share)?))?"


def infer(profile: profile_pb2.WorkloadProfile, intent: str = "") -> goal_pb2.OptimizationGoal:
    jobs = [g for g in _confident(profile, LATENCY, BATCH) if is_job_batch(g)]
    latency = [g for g in _confident(profile, LATENCY) if g not in jobs]
    batch = [g for g in _confident(profile, BATCH) if g not in jobs]
    # A name as a whole word of the intent: "xz" is not named by "xz-long".
    named = [g for g in profile.groups
             if intent and re.search(rf"(?<![\w.-]){re.escape(g.name)}(?![\w-])", intent, re.I)]
    # "keep the batch's throughput" states a guard, not the objective.
    objective = _objective_in(re.sub(_KEEP_BATCH, "", intent, flags=re.I))
    if named and objective in (goal_pb2.OBJECTIVE_UNSPECIFIED, goal_pb2.OBJECTIVE_TAIL_LATENCY):
        latency = named
        batch, jobs = [g for g in batch if g not in named], [g for g in jobs if g not in named]
    elif named:
        latency, batch, jobs = [g for g in latency if g not in named], [], named
    wants_latency = objective in (goal_pb2.OBJECTIVE_UNSPECIFIED, goal_pb2.OBJECTIVE_TAIL_LATENCY)
    # Unasked, other work is demoted only when everything wants more CPU than there is: with a CPU
    # to spare, a woken service finds it idle (an operator who names the service decides otherwise).
    asked = bool(named) or objective != goal_pb2.OBJECTIVE_UNSPECIFIED
    if wants_latency and latency and (batch or jobs) and (asked or _contended(profile, latency + batch + jobs)):
        return protect_latency(latency, batch + jobs, intent)
    if wants_latency and latency and _contended(profile, latency):
        return oversubscribed(latency, profile, intent)
    work = jobs + batch
    if objective == goal_pb2.OBJECTIVE_MAKESPAN and named:
        return makespan(named, [g for g in _confident(profile, BATCH, LATENCY) if g not in named], intent)
    long = long_jobs(jobs)
    if objective in (goal_pb2.OBJECTIVE_UNSPECIFIED, goal_pb2.OBJECTIVE_MAKESPAN) and long \
            and _contended(profile, work):
        return makespan_of(long, work, profile, intent)
    if objective in (goal_pb2.OBJECTIVE_UNSPECIFIED, goal_pb2.OBJECTIVE_THROUGHPUT) and work \
            and _contended(profile, work):
        return throughput(work, profile, intent)
    return goal_pb2.OptimizationGoal(
        objective=goal_pb2.OBJECTIVE_UNSPECIFIED, provider="rules", intent=intent, confidence=1.0,
        rationale=_nothing_to_do(profile, latency, work, objective))


def is_job_batch(group: profile_pb2.WorkloadGroup) -> bool:
    """Many processes of one program started together (recently, within seconds of each other)
    or a steady stream of new ones: jobs that run to completion, not a service."""
    f = group.features
    if f.serves:
        return False
    together = (f.processes >= JOB_MIN_PROCESSES and f.start_spread_s <= JOB_START_SPREAD_S
                and f.median_age_s <= JOB_MAX_AGE_S)
    return together or f.spawns_per_s >= JOB_SPAWNS_PER_S


def protect_latency(latency: list, others: list, intent: str) -> goal_pb2.OptimizationGoal:
    """Protect the latency groups from the other work, judged on their p99 run-queue wait, or
    for periodic work on its p99 wait to run after a wakeup, or on the time they wait to run when
    a load generator on the host drives them (its requests' rate follows their latency, so their
    wakeups change with the policy: is_load_generator); guard the CPU they use together (or,
    when the intent asks, the other work's own share).

    Periodic work (no sign of requests: it serves no socket and calls no local server) starts
    late by its wait after the wakeup alone; a task with bursts of milliseconds is also preempted
    in the middle of them, and a policy that runs wakeups first (vtime) can lengthen those waits while it shortens
    the ones its deadlines see (in the VM, rt-app's own wakeup p99 68 % lower under vtime while
    the p99 of all its waits moved 11 %). A request, though, waits for every preemption of its
    work too: a server is judged on all its waits (postgres in the VM: SCHED_IDLE for the batch
    halved pgbench's p99 and moved the waits after wakeups 1 %). BPF tells the two kinds apart;
    procfs does not, so there every wait."""
    woken = all(not (g.features.serves or g.features.client_of) and g.features.wakeup_latency.samples
                for g in latency)
    distribution = "wakeup_latency" if woken else "runq_latency"
    worst = max(latency, key=lambda g: getattr(g.features, distribution).p99_us)
    worst_p99 = getattr(worst.features, distribution).p99_us
    cpus = sum(g.features.demand for g in others)
    keep_batch = bool(re.search(_KEEP_BATCH, intent, re.I))
    guard = _own_share_guard(others) if keep_batch else _shared_guard(latency, others)
    loaded = [g for g in latency if is_load_generator(g)]
    if loaded:
        waiting = sum(g.features.demand * g.features.wait_share for g in latency)
        metric = "runq_wait_per_s"
        aim = (f"cut the time {'it waits' if len(latency) == 1 else 'they wait'} to run ({1000 * waiting:.0f} ms per "
               f"second: {_names(loaded)} drive{'s' if len(loaded) == 1 else ''} them as fast as they answer)")
    else:
        metric = f"{distribution}_p99_us"
        wait = "wait to run after a wakeup" if woken else "run-queue wait"
        aim = f"protect {'its' if len(latency) == 1 else 'their'} p99 {wait}"
    goal = goal_pb2.OptimizationGoal(
        objective=goal_pb2.OBJECTIVE_TAIL_LATENCY, target_groups=[g.matcher for g in latency],
        success_metric=_metric(metric, latency, common_pb2.DIRECTION_LOWER_IS_BETTER),
        min_improvement=LATENCY_MIN_IMPROVEMENT, intent=intent, provider="rules",
        confidence=min(_confidence(g) for g in [*latency, *others]),
        rationale=(f"{_names(latency)} {_how(latency)} and wait to run (p99 {worst_p99:.0f} "
                   f"us for {worst.name}) behind {_names(others)}, which want {cpus:.1f} CPUs: {aim}; "
                   f"{guard.description}"))
    goal.guards.append(guard)
    return goal


def is_load_generator(group: profile_pb2.WorkloadGroup) -> bool:
    """A local server's client that is preempted more often than it blocks: it always has its
    next request ready, so the requests' rate follows how fast they are answered. Protected, it
    stops blocking and its few remaining waits make a worse p99, while its server handles more
    requests per wakeup (kv_build, SCHED_IDLE for the compilers: redis-benchmark's p99 wait
    125 -> 3475 us, redis-server's 130 -> 118 us, the seconds both waited per second 0.69 ->
    0.14, the requests' p99 7.2 -> 0.29 ms)."""
    return bool(group.features.client_of) and group.features.voluntary_ratio < LOAD_GENERATOR_VOLUNTARY


def oversubscribed(latency: list, profile: profile_pb2.WorkloadProfile, intent: str) -> goal_pb2.OptimizationGoal:
    """Latency groups that want more CPU than there is, with nothing to demote: their p99
    run-queue wait, without losing the CPU work they get done. When a server's clients run here
    too, the servers are the targets and the clients are left as they are: a policy that lets a
    server finish its requests in one go (a long slice, no wakeup preemption) would make a client
    given it wait for others in turn (web_oversubscribed: long_slice for nginx and wrk, wrk's
    request p99 17-40 ms; for nginx alone 11-14 ms; nothing 14-16 ms). The guard is the targets'
    CPU share."""
    demand = sum(g.features.demand for g in latency)
    clients = _their_clients(latency)
    targets = [g for g in latency if g not in clients]
    # The targets' share only: a group the guard names besides them is work a policy may demote
    # (synthesis.others), and a client loses requests only with its servers, which the guard sees.
    guard = _share_guard(targets, f"{_names(targets)} keep at least {GUARD_RATIO:.0%} of "
                                  f"{'its' if len(targets) == 1 else 'their'} CPU share (no work lost)")
    # Among peers a policy trades the wait to run for fewer preemptions in the middle of the work
    # (a long slice): only the time from wakeup to done sees both sides. Run-queue wait alone
    # would call a long slice worse while requests finish sooner.
    source = _response_source(targets, profile)
    if source == "procfs":
        # procfs gives each thread's mean response per window: their mean is exact, while a p99
        # of a few means snaps to the log2 histogram's slot bounds.
        metric, what = "response_mean_us", "mean response (wakeup to done)"
        worst = max(g.features.response.mean_us for g in targets)
    elif source == "bpf":
        metric, what = "response_p99_us", "p99 response (wakeup to done)"
        worst = max(targets, key=lambda g: g.features.response.p99_us).features.response.p99_us
    else:
        metric, what = "runq_latency_p99_us", "p99 run-queue wait"
        worst = max(g.features.runq_latency.p99_us for g in targets)
    one = len(clients) == 1
    left = (f" ({_names(clients)}, {'a client' if one else 'clients'} of {_names(targets)} on this host, left as "
            f"{'it is' if one else 'they are'}: a server that finishes its requests in one go would make "
            f"{'it' if one else 'them'} wait too)" if clients else "")
    return goal_pb2.OptimizationGoal(
        objective=goal_pb2.OBJECTIVE_TAIL_LATENCY, target_groups=[g.matcher for g in targets],
        success_metric=_metric(metric, targets, common_pb2.DIRECTION_LOWER_IS_BETTER),
        min_improvement=LATENCY_MIN_IMPROVEMENT, intent=intent, provider="rules",
        confidence=min(_confidence(g) for g in latency), guards=[guard],
        rationale=(f"{_names(latency)} {_how(latency)} and want {demand:.1f} CPUs of "
                   f"{profile.host.cpu.logical_cpus or '?'} with no batch to demote ({what} {worst:.0f} us): "
                   f"an over-subscribed service; lower {_names(targets)}'s {what}{left}, {guard.description}"))


def _response_source(targets: list, profile: profile_pb2.WorkloadProfile) -> str:
    """Which sampler's responses a canary will judge the targets by: the profile's (procfs and BPF
    both measure them; a server so starved that it never blocked in a 2 s profile, as nginx once
    did in the VM, still does over a canary's windows), or, for a profile that does not say, the
    one its targets' responses came from when they all have some; "" for none."""
    if profile.sampler in ("procfs", "bpf"):
        return profile.sampler
    if not all(g.features.response.samples for g in targets):
        return ""
    return "procfs" if any(g.features.response.source == "procfs" for g in targets) else "bpf"


def _their_clients(latency: list) -> list:
    """The groups among `latency` that only send the others requests: clients of one of them
    (client_of) that serve nobody themselves."""
    ids = {g.group_id for g in latency}
    return [g for g in latency if not g.features.serves and ids.intersection(g.features.client_of)]


def throughput(work: list, profile: profile_pb2.WorkloadProfile, intent: str) -> goal_pb2.OptimizationGoal:
    """More work per second for batch groups or a batch of jobs. Jobs that repeat and that the
    observer saw end: the time per job (with a fixed number in flight, more finish per second
    exactly when each ends sooner, whatever its work is: messages, bytes, compiles); otherwise CPU
    work, or for jobs that sleep and wake for messages, wakeups per second (which a longer slice
    lowers while more gets done: a wakeup then finds more messages waiting)."""
    demand = sum(g.features.demand for g in work)
    jobs = [g for g in work if is_job_batch(g)]
    kind = f"a batch of jobs ({_names(jobs)}: {_job_evidence(jobs[0])})" if jobs else "only batch work"
    timed = [g for g in jobs if 0 < g.features.job_seconds <= MAX_JOB_S]
    if timed:
        return _faster_jobs(timed, [g for g in work if g not in timed], kind, demand, profile, intent)
    messaging = all(g.classification.workload_class == LATENCY for g in work)
    metric = "wakeups_per_s" if messaging else "cpu_share"
    what = "messages handled (wakeups) per second" if messaging else "CPU work done per second"
    return goal_pb2.OptimizationGoal(
        objective=goal_pb2.OBJECTIVE_THROUGHPUT, target_groups=[g.matcher for g in work],
        success_metric=_metric(metric, work, common_pb2.DIRECTION_HIGHER_IS_BETTER),
        min_improvement=THROUGHPUT_MIN_IMPROVEMENT, intent=intent, provider="rules",
        confidence=min(_confidence(g) for g in work),
        rationale=(f"{kind} contends ({_names(work)} want {demand:.1f} CPUs of "
                   f"{profile.host.cpu.logical_cpus or '?'}): more {what}"))


def _faster_jobs(timed: list, others: list, kind: str, demand: float, profile: profile_pb2.WorkloadProfile,
                 intent: str) -> goal_pb2.OptimizationGoal:
    """Throughput judged on the time per job, in windows a few jobs long; other work beside the
    jobs keeps its CPU."""
    longest = max(g.features.job_seconds for g in timed)
    window = duration_pb2.Duration()
    window.FromMilliseconds(int(JOBS_PER_WINDOW * longest * 1000))
    guards = [_share_guard(others, f"{_names(others)} keep at least {GUARD_RATIO:.0%} of the CPU they used")] \
        if others else []
    return goal_pb2.OptimizationGoal(
        objective=goal_pb2.OBJECTIVE_THROUGHPUT, target_groups=[g.matcher for g in timed],
        success_metric=_metric("job_seconds", timed, common_pb2.DIRECTION_LOWER_IS_BETTER),
        min_improvement=THROUGHPUT_MIN_IMPROVEMENT, intent=intent, provider="rules", guards=guards,
        confidence=min(_confidence(g) for g in timed), min_window=window,
        rationale=(f"{kind} contends ({_names(timed)} want {demand:.1f} CPUs of "
                   f"{profile.host.cpu.logical_cpus or '?'}) and its jobs repeat, each lasting about "
                   f"{longest:.1f} s: more jobs done per second, so each job sooner"
                   + (f"; {guards[0].description}" if guards else "")))


def makespan(long_jobs: list, others: list, intent: str) -> goal_pb2.OptimizationGoal:
    """Finish a batch sooner by running its long jobs first: the long jobs' CPU share up, the
    batch as a whole losing none (the bound is max(longest job, work / CPUs))."""
    everyone = [*long_jobs, *[g for g in others if g not in long_jobs]]
    return _run_first(
        [g.matcher for g in long_jobs], everyone, min(_confidence(g) for g in long_jobs), intent,
        f"{_names(long_jobs)} {'is the long job' if len(long_jobs) == 1 else 'are the long jobs'}: run "
        f"{'it' if len(long_jobs) == 1 else 'them'} first so the batch ends when the longest work does")


def long_jobs(jobs: list) -> list:
    """The long jobs the observer found in batches of jobs, once per command line (a rerun of
    one is the same job)."""
    found = {}
    for group in jobs:
        for job in group.long_jobs:
            found.setdefault(job.matcher.cmdline_regex, job)
    return list(found.values())


def makespan_of(long: list, work: list, profile: profile_pb2.WorkloadProfile, intent: str) -> goal_pb2.OptimizationGoal:
    """Finish a batch of jobs sooner when some of its jobs are far longer than the rest (the
    observer's evidence: CPU their command lines used before, or their inputs): run those first,
    the batch as a whole losing no CPU. When the observer knows how long the long jobs last, the
    canary judges the batch's longest job (its makespan) in windows a couple of batches long."""
    shown = "; ".join(f"{j.cmdline!r}: {j.evidence}" for j in long[:3])
    why = (f"a batch of jobs ({_names(work)}) contends and {len(long)} of its jobs "
           f"{'is' if len(long) == 1 else 'are'} far longer than the others ({shown}): the batch ends "
           f"when {'it does' if len(long) == 1 else 'they do'}; run {'it' if len(long) == 1 else 'them'} first")
    goal = _run_first([j.matcher for j in long], work, min(_confidence(g) for g in work), intent, why)
    holders = [g for g in work if any(j in long for j in g.long_jobs)]
    seconds = max(j.seconds for j in long)
    if holders and min(j.seconds for j in long) > 0 and BATCHES_PER_WINDOW * seconds <= JOBS_PER_WINDOW * MAX_JOB_S:
        _judge_longest_job(goal, holders, seconds, stretch=profile.sampler == "bpf")
    return goal


def _judge_longest_job(goal: goal_pb2.OptimizationGoal, holders: list, seconds: float, stretch: bool) -> None:
    """Judge a makespan goal on its batch's longest job instead of the long jobs' CPU share, which
    depends on where a window falls in the batch (beside the short jobs a long one gets its fair
    part, alone at the end a whole CPU: rounds of one policy read +410 % and -18 %). On the
    batch's stretch (the longest job's time over the most CPU one job got: the makespan in units
    of the largest job's work) rather than a length: a length moves with the machine's speed (on
    this project's test host, a canary's rounds of favour_group read +30 % then -14 %, and one
    arm's makespans 15-22 s), the stretch only with how the jobs were scheduled. It needs each
    job's CPU at its exit, which BPF keeps and procfs loses (`stretch` False: the length)."""
    metric = "longest_job_stretch" if stretch else "longest_job_s"
    goal.success_metric.CopyFrom(_metric(metric, holders, common_pb2.DIRECTION_LOWER_IS_BETTER))
    goal.min_window.FromMilliseconds(int(BATCHES_PER_WINDOW * seconds * 1000))
    what = ("the stretch of the longest job (its time over the most CPU one job got)" if stretch
            else "the longest job")
    goal.rationale += (f"; judged on {what} of {_names(holders)} (a run lasts about {seconds:.1f} s), in windows "
                       f"{BATCHES_PER_WINDOW:g} runs long")


def _run_first(targets: list[common_pb2.GroupMatcher], batch: list, confidence: float, intent: str,
               why: str) -> goal_pb2.OptimizationGoal:
    """A makespan goal: the targets' CPU share up, the whole batch still getting the CPU it can
    use. Not "the CPU it used": a batch that ends is one long job on idle CPUs for a while, and
    which windows of a canary fall in that phase decided that guard (decisions.md 44)."""
    guard = _share_guard(batch, f"{_names(batch)} get at least {GUARD_RATIO:.0%} of the CPU they could use "
                                "(no CPU idles while their work waits)", metric="usable_cpu_share")
    return goal_pb2.OptimizationGoal(
        objective=goal_pb2.OBJECTIVE_MAKESPAN, target_groups=targets,
        success_metric=common_pb2.MetricSpec(name="cpu_share", groups=targets,
                                             direction=common_pb2.DIRECTION_HIGHER_IS_BETTER),
        min_improvement=MAKESPAN_MIN_IMPROVEMENT, intent=intent, provider="rules", guards=[guard],
        confidence=confidence, rationale=f"{why}; {guard.description}")


def _share_guard(groups: list, description: str, metric: str = "cpu_share") -> goal_pb2.GuardConstraint:
    """The groups' CPU share (summed; or `metric`, another share) keeps at least GUARD_RATIO of
    what it was before."""
    return goal_pb2.GuardConstraint(
        metric=_metric(metric, groups, common_pb2.DIRECTION_HIGHER_IS_BETTER),
        comparison=goal_pb2.COMPARISON_AT_LEAST, ratio_to_baseline=GUARD_RATIO, description=description)


def _shared_guard(latency: list, others: list) -> goal_pb2.GuardConstraint:
    return _share_guard([*latency, *others],
                        f"{_names(latency)} and {_names(others)} together keep at least {GUARD_RATIO:.0%} of the CPU "
                        "they used (the protected work takes what it needs, the rest goes to the others)")


def _own_share_guard(others: list) -> goal_pb2.GuardConstraint:
    return _share_guard(others, f"{_names(others)} keep at least {GUARD_RATIO:.0%} of their CPU share")


def _metric(name: str, groups: list, direction: int) -> common_pb2.MetricSpec:
    return common_pb2.MetricSpec(name=name, groups=[g.matcher for g in groups], direction=direction)


def _confident(profile: profile_pb2.WorkloadProfile, *classes: int) -> list:
    """The profile's groups of these classes, classified with enough confidence, in its order."""
    return [g for g in profile.groups
            if g.classification.workload_class in classes and g.classification.confidence >= MIN_CONFIDENCE]


def _confidence(group: profile_pb2.WorkloadGroup) -> float:
    return group.classification.confidence or 1.0  # named by the operator: their word


def _contended(profile: profile_pb2.WorkloadProfile, groups: list) -> bool:
    return sum(g.features.demand for g in groups) > max(1, profile.host.cpu.logical_cpus) * CONTENDED


def _how(groups: list) -> str:
    return "serve requests" if any(g.features.serves for g in groups) else "wake often for short work"


def _job_evidence(group: profile_pb2.WorkloadGroup) -> str:
    f = group.features
    if f.spawns_per_s >= JOB_SPAWNS_PER_S:
        return f"{f.spawns_per_s:.1f} new processes per second"
    return f"{f.processes} processes started within {f.start_spread_s:.0f} s of each other"


def _objective_in(intent: str) -> int:
    for objective, words in _OBJECTIVE_WORDS:
        if re.search(words, intent, re.I):
            return objective
    return goal_pb2.OBJECTIVE_UNSPECIFIED


def _names(groups: list) -> str:
    names = [g.name for g in groups]
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _nothing_to_do(profile, latency: list, work: list, objective: int) -> str:
    if objective == goal_pb2.OBJECTIVE_MAKESPAN:
        return ("makespan needs to know which jobs are long: no contended batch of jobs in the profile has jobs "
                "far longer than the others (by the CPU their command lines used before, or by their inputs); "
                "name the long job in the intent")
    if latency and not work:
        return (f"{_names(latency)} fit in the host's {profile.host.cpu.logical_cpus} CPUs with nothing to "
                "protect them from")
    if work:
        return (f"{_names(latency + work)} fit in the host's {profile.host.cpu.logical_cpus} CPUs: no contention to "
                "resolve")
    return "no latency-sensitive or batch group with confident classification: nothing to optimise"
