"""Canary measurement and judgement: the goal's metrics measured through the observer's Measure
before (baseline) and after (canary) a policy is applied, then keep or roll back. Over several
rounds (baseline, canary, baseline, canary, ...) each metric is judged on a 95 % interval
of its per-round ratios: keep, roll back, or inconclusive (the executor then adds rounds).

Metrics by name, each over the groups its MetricSpec names (several matchers: the worst for a
latency, the sum for CPU): runq_latency_{p50,p90,p99,p999,max}_us, response_{...}_us (wakeup to
the next block; BPF sampling only), cpu_share, cpu_seconds, wakeups_per_s, runq_wait_per_s (seconds
spent waiting to run per second, the groups' threads summed), usable_cpu_share, job_seconds (the
mean lifetime of the groups' processes that started and exited in the window: for jobs that
repeat, the time per job), longest_job_s (the longest job of the groups' that ran in the window
under one policy, a run in progress counted by its age: for a batch that repeats, its makespan),
longest_job_stretch (longest_job_s over the most CPU time one of those jobs got: the batch's
makespan in units of its longest job's work, which the machine's speed, moving between rounds,
does not change).
`cpu_share` is the
groups' share of the CPU that processes outside them left (idle time included): load that comes
and goes beside the canary moves the groups' raw share between windows, not this one, while CPU
a policy leaves idle still shows as lost. `usable_cpu_share` is the share of the CPU the groups
could have used that they got: their CPU over it plus the CPU that idled while they waited to run
(the observer tells that slice by slice), so 1 when no CPU idles while their work waits. Unlike
cpu_share it does not move with a finite batch's phases: one job left at the end of a batch uses
one CPU of many, and that is all it can use.
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass

from schedcp.domain import evidence, matchers
from schedcp.runtime import rpc
from schedcp.runtime.errors import InvalidArgument
from schedcp.v1 import common_pb2, deployment_pb2, goal_pb2, observer_pb2, observer_pb2_grpc

# A latency metric by name: which distribution of the measurement (run-queue wait, the waits
# that began with a wakeup, or response: wakeup to the next block) and which statistic of it.
LATENCY = {f"{field}_{stat}": (field, stat) for field in ("runq_latency", "wakeup_latency", "response")
           for stat in ("mean_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us")}
SUMMED = {"cpu_share", "cpu_seconds", "wakeups_per_s", "runq_wait_per_s"}
RATIOS = {"usable_cpu_share"}
MEANS = {"job_seconds"}
LONGEST = {"longest_job_s", "longest_job_stretch"}
MEASURABLE = [*LATENCY, *sorted(SUMMED | RATIOS | MEANS | LONGEST)]
MIN_WINDOW_S, MAX_WINDOW_S = 0.5, 600.0
FOREIGN_LOAD_TOLERANCE = 0.1  # of the host's CPU capacity
# The least CPU (share of the host) a window counts as left to the measured groups: a host all
# but filled by other processes must not turn a sliver of CPU into a large share.
MIN_LEFT_SHARE = 0.05
# A bound on the rounds of one canary: with MAX_WINDOW_S windows, hours already.
MAX_ROUNDS = 20

log = logging.getLogger(__name__)


def check_spec(spec: deployment_pb2.CanarySpec) -> None:
    """InvalidArgument for a canary the executor cannot run. No metrics: nothing to measure."""
    if not metrics_of(spec):
        return
    for name, window in (("baseline_window", spec.baseline_window), ("canary_window", spec.canary_window)):
        seconds = window.ToNanoseconds() / 1e9
        if not MIN_WINDOW_S <= seconds <= MAX_WINDOW_S:
            raise InvalidArgument(f"canary.{name} must be {MIN_WINDOW_S:g}..{MAX_WINDOW_S:g} s, got {seconds:g}")
    for metric in metrics_of(spec):
        if metric.name not in MEASURABLE:
            raise InvalidArgument(f"metric {metric.name!r} is not measurable here; use one of {', '.join(MEASURABLE)}")
        if not metric.groups:
            raise InvalidArgument(f"metric {metric.name} names no groups")
        matchers.compile_all(metric.groups)
    if spec.max_rounds and spec.max_rounds < spec.rounds:
        raise InvalidArgument(f"canary.max_rounds ({spec.max_rounds}) is fewer than its rounds ({spec.rounds})")
    if max_rounds(spec) > MAX_ROUNDS:
        raise InvalidArgument(f"a canary runs at most {MAX_ROUNDS} rounds, asked for up to {max_rounds(spec)}")
    if spec.HasField("success_metric") and spec.success_metric.direction == common_pb2.DIRECTION_UNSPECIFIED:
        raise InvalidArgument("the success metric needs a direction (lower or higher is better)")
    if spec.HasField("prior"):
        check_prior(spec)


def check_prior(spec: deployment_pb2.CanarySpec) -> None:
    prior = spec.prior
    if not spec.HasField("success_metric") or prior.metric != spec.success_metric:
        raise InvalidArgument("canary.prior must be evidence on the canary's own success metric (same name, groups "
                              "and direction)")
    if prior.rounds < 2 or not prior.improvement_low <= prior.improvement <= prior.improvement_high:
        raise InvalidArgument(f"canary.prior needs two rounds or more and an interval around its improvement, got "
                              f"{prior.rounds} round(s), {prior.improvement:g} in "
                              f"{prior.improvement_low:g}..{prior.improvement_high:g}")
    if not (math.isfinite(prior.degrees_of_freedom) and 0 <= prior.degrees_of_freedom <= max(prior.rounds - 1, 0)):
        raise InvalidArgument(f"canary.prior.degrees_of_freedom must be 0 (rounds - 1) or a pooled figure in "
                              f"0..{prior.rounds - 1}, got {prior.degrees_of_freedom:g}")
    if abs(prior.confidence - CONFIDENCE) > 1e-9:
        raise InvalidArgument(f"canary.prior's interval must be at confidence {CONFIDENCE}, got {prior.confidence:g}")


def max_rounds(spec: deployment_pb2.CanarySpec) -> int:
    """How many rounds an inconclusive canary may run in all: max_rounds, or twice rounds."""
    return spec.max_rounds or 2 * max(spec.rounds, 1)


def metrics_of(spec: deployment_pb2.CanarySpec) -> list[common_pb2.MetricSpec]:
    found = [spec.success_metric] if spec.HasField("success_metric") else []
    return found + [g.metric for g in spec.guards]


@dataclass
class Window:
    """A measurement window: every metric of the spec, and the CPU share (0..1 of the host) that
    processes outside the measured groups used meanwhile."""

    values: dict[str, float]
    foreign_cpu_share: float


async def measure(observer_addr: str, spec: deployment_pb2.CanarySpec, window_s: float) -> Window:
    """Every metric of the spec over one window: values by key(metric)."""
    metrics = metrics_of(spec)
    groups, seen = [], set()
    for metric in metrics:
        for matcher in metric.groups:
            if (wire := matcher.SerializeToString(deterministic=True)) not in seen:
                seen.add(wire)
                groups.append(matcher)
    request = observer_pb2.MeasureRequest(groups=groups)
    request.duration.FromNanoseconds(int(window_s * 1e9))
    async with rpc.shared(observer_addr, default_timeout_s=window_s + 30) as channel:
        response = await observer_pb2_grpc.ObserverServiceStub(channel).Measure(request)
    by_matcher = {g.matcher.SerializeToString(deterministic=True): g for g in response.groups}
    left = max(MIN_LEFT_SHARE, 1.0 - response.foreign_cpu_share - response.observer_cpu_share)
    values = {key(m): value_of(m, [by_matcher[g.SerializeToString(deterministic=True)] for g in m.groups], left)
              for m in metrics}
    # Every window in the log: a judgement read later needs the context the event text leaves out.
    log.info("measured %.1f s: %s; other processes %.1f %%, the observer %.1f %% of the CPU",
             response.measured.ToTimedelta().total_seconds(), ", ".join(f"{k} {v:.4g}" for k, v in values.items()),
             100 * response.foreign_cpu_share, 100 * response.observer_cpu_share)
    return Window(values, response.foreign_cpu_share)


def disturbed(baseline: Window, observed: Window) -> bool:
    """Other processes used notably more CPU during the canary than during the baseline: the
    comparison would judge them, not the policy (a demoted batch yields to anything)."""
    return observed.foreign_cpu_share - baseline.foreign_cpu_share > FOREIGN_LOAD_TOLERANCE


def key(metric: common_pb2.MetricSpec) -> str:
    return f"{metric.name}[{', '.join(matchers.describe(g) for g in metric.groups)}]"


class Unmeasured(Exception):
    """A window in which a metric's groups did nothing it could be read from (no run, no wait, no
    job that ended): the deployment fails and is reverted, with this reason."""


def value_of(metric: common_pb2.MetricSpec, measured: list[observer_pb2.GroupMeasurement],
             left: float = 1.0) -> float:
    """The metric over its groups' measurements; `left`: the share of the host's CPU that other
    processes left them, which cpu_share is relative to. Unmeasured for a latency of groups that
    neither ran nor waited in the window (gone, or asleep throughout), and for a response (wakeup
    to the next block) of groups that never blocked: its 0 would read as the best latency there
    is (a short-lived process once read "22681 -> 0 us, 100 % better")."""
    if metric.name in LATENCY:
        field, stat = LATENCY[metric.name]
        if not any(getattr(g, field).samples or (g.cpu_seconds and field == "runq_latency") for g in measured):
            raise Unmeasured(f"{key(metric)}: its groups did not run in the window (gone, or asleep "
                             "throughout)" + (", or ran without once blocking" if field == "response" else "")
                             + ", so there is no latency to compare")
        return max(getattr(getattr(g, field), stat) for g in measured)
    if metric.name == "usable_cpu_share":
        return usable_cpu_share(measured)
    if metric.name == "job_seconds":
        return job_seconds(measured)
    if metric.name == "longest_job_s":
        return longest_job_s(measured)
    if metric.name == "longest_job_stretch":
        return longest_job_stretch(measured)
    total = sum(getattr(g, metric.name) for g in measured)
    # At most all of it: under emulation the host's busy time (ticks) can fall short of what the
    # threads' own counters say they ran, which leaves "other processes" at 0 and the rest short.
    return min(1.0, total / left) if metric.name == "cpu_share" else total


def usable_cpu_share(measured: list[observer_pb2.GroupMeasurement]) -> float:
    """The groups' CPU over that plus the CPU that idled while they waited. Summed over several
    groups, idle time they waited through together counts once per group: lower, never higher,
    than the truth. Unmeasured when they neither ran nor waited while a CPU idled: nothing says
    what they could have used."""
    cpu = sum(g.cpu_seconds for g in measured)
    idled = sum(g.idle_while_waiting_s for g in measured)
    if cpu + idled <= 0:
        raise Unmeasured("usable_cpu_share: its groups did not run in the window")
    return cpu / (cpu + idled)


def job_seconds(measured: list[observer_pb2.GroupMeasurement]) -> float:
    """The mean lifetime of the groups' jobs that started and ended in the window. Unmeasured when
    none did: a window shorter than a job, or jobs that stopped repeating."""
    done = sum(g.jobs_done for g in measured)
    if not done:
        raise Unmeasured("job_seconds: none of its groups' processes both started and exited in the window "
                         "(a window shorter than a job, or jobs that stopped repeating)")
    return sum(g.jobs_done * g.job_seconds for g in measured) / done


def longest_job_s(measured: list[observer_pb2.GroupMeasurement]) -> float:
    """The longest job of the groups' that started in the window. Unmeasured when none did."""
    longest = max((g.longest_job_s for g in measured), default=0.0)
    if not longest:
        raise Unmeasured("longest_job_s: none of its groups' processes started in the window "
                         "(jobs that stopped repeating)")
    return longest


def longest_job_stretch(measured: list[observer_pb2.GroupMeasurement]) -> float:
    """The longest job of the groups' that started in the window over the most CPU time one of
    them got: 1 when the batch ended as soon as its largest job's work allowed. Not the longest
    job's own time over its CPU: favouring a long job makes a short one that waited the longest
    (favour_group on long_tail read 1.8 -> 6.3 so, while its makespan fell). Unmeasured when no
    job started, or none's CPU was seen."""
    work = max((g.largest_job_cpu_s for g in measured), default=0.0)
    if not work:
        raise Unmeasured("longest_job_stretch: none of its groups' processes started in the window, or their "
                         "CPU time was not seen")
    return longest_job_s(measured) / work


@dataclass
class Judgement:
    """keep, or roll back; `inconclusive` (never with keep) when rounds could not tell which, and
    more rounds might."""

    keep: bool
    reason: str
    success: deployment_pb2.MetricComparison | None
    guards: list[deployment_pb2.MetricComparison]
    inconclusive: bool = False


def judge(spec: deployment_pb2.CanarySpec, baseline: dict[str, float], observed: dict[str, float]) -> Judgement:
    """One round: keep when the success metric improved by at least min_improvement and every
    guard held, on the two values (nothing to estimate noise from)."""
    success = None
    problems = []
    if spec.HasField("success_metric"):
        success = compare(spec.success_metric, baseline, observed)
        success.satisfied = success.improvement >= spec.min_improvement
        success.rounds = 1
        if not success.satisfied:
            problems.append(f"{spec.success_metric.name} improved {100 * success.improvement:.0f} % "
                            f"({_number(success.baseline)} -> {_number(success.observed)}), less than the "
                            f"{100 * spec.min_improvement:.0f} % required")
    guards, held = [], []
    for guard in spec.guards:
        comparison = compare(guard.metric, baseline, observed)
        comparison.satisfied = guard_holds(guard, comparison.baseline, comparison.observed)
        comparison.rounds = 1
        guards.append(comparison)
        # The numbers either way: how close a kept canary came to its guard matters too.
        verdict = "held" if comparison.satisfied else "failed"
        told = (f"guard {guard.description or guard.metric.name} {verdict} "
                f"({_number(comparison.baseline)} -> {_number(comparison.observed)})")
        (held if comparison.satisfied else problems).append(told)
    if problems:
        return Judgement(False, "; ".join(problems), success, guards)
    detail = (f"{success.metric.name} {_number(success.baseline)} -> {_number(success.observed)} "
              f"({100 * success.improvement:.0f} % better)") if success else "no success metric"
    return Judgement(True, "; ".join([detail, *held]), success, guards)


# --- several rounds: paired ratios and their interval -----------------------------------------
# Each round pairs a canary window with the baseline measured just before it, so a phase of the
# workload or a busy host moves both; the per-round ratio (canary / baseline) cancels it. The
# rounds' log ratios give the geometric mean ratio (a round twice as good and one half as good
# cancel out) and a Student t interval of it (schedcp/domain/evidence.py): with 3-6 rounds a
# bootstrap or sign-based interval cannot reach such confidence (decisions.md 34). 95 %, not
# 90 %: an inconclusive canary is looked at again after each added round, and at 90 % a look each
# time kept a policy that changes nothing up to 10 % of the time in simulation; at 95 %, about
# 5 %. Whether an improvement is there at all, for keeping, is asked at SURE (97.5 %), stricter
# than the reported interval's for the same reason.
CONFIDENCE, SURE = evidence.CONFIDENCE, evidence.SURE


@dataclass(frozen=True)
class Interval:
    """A geometric mean of ratios and its CONFIDENCE interval."""

    point: float
    low: float
    high: float

    def scaled(self, factor: float) -> Interval:
        return Interval(self.point * factor, self.low * factor, self.high * factor)


def ratio_interval(pairs: list[tuple[float, float]], quantiles: tuple[float, ...] = evidence.T_QUANTILE) -> Interval:
    """The geometric mean of after/before over (before, after) pairs (two at least), with the t
    interval of the mean log ratio (CONFIDENCE; `quantiles` for another): exact when the log
    ratios are normal, and deterministic."""
    return Interval(*_estimate(pairs).ratio_interval(quantiles))


def _estimate(pairs: list[tuple[float, float]]) -> evidence.Estimate:
    return evidence.of_logs([evidence.log_ratio(before, after) for before, after in pairs])


def compare_rounds(metric: common_pb2.MetricSpec,
                   rounds: list[tuple[Window, Window]]) -> tuple[deployment_pb2.MetricComparison, Interval]:
    """The metric over the rounds: medians before and after, the improvement (from the geometric
    mean ratio) with its interval, and that ratio interval itself."""
    pairs = _pairs(metric, rounds)
    estimate = _estimate(pairs)
    return _reported(metric, pairs, estimate), Interval(*estimate.ratio_interval())


def _reported(metric: common_pb2.MetricSpec, pairs: list[tuple[float, float]],
              estimate: evidence.Estimate) -> deployment_pb2.MetricComparison:
    comparison = evidence.comparison(metric, estimate)
    comparison.baseline = statistics.median(b for b, _ in pairs)
    comparison.observed = statistics.median(o for _, o in pairs)
    return comparison


def _with_prior(current: evidence.Estimate, prior: deployment_pb2.MetricComparison | None) -> evidence.Estimate:
    """The rounds and a prior (earlier canaries' evidence) as one estimate, what a reuse is judged
    on (`current` itself when the prior says nothing: one round, clipped ends, none), the prior
    weighing at most as much as these rounds: with few rounds an estimate's spread is itself
    uncertain, and a prior whose rounds happened to agree must not outweigh what the host shows now."""
    earlier = evidence.of_comparison(prior) if prior is not None else None
    if earlier is None:
        return current
    weight = min(1.0, (earlier.se / max(current.se, 1e-9)) ** 2)
    return evidence.pooled([(current, 1.0), (earlier, weight)])


def surely_better(metric: common_pb2.MetricSpec, estimate: evidence.Estimate) -> bool:
    """Whether the estimate shows the metric better than before at all, at SURE confidence."""
    _, low, high = estimate.ratio_interval(evidence.T_SURE)
    return evidence.improvements(metric, low, high)[0] > 0


def _pairs(metric: common_pb2.MetricSpec, rounds: list[tuple[Window, Window]]) -> list[tuple[float, float]]:
    """The metric's (baseline, canary) value in each round."""
    k = key(metric)
    return [(b.values[k], o.values[k]) for b, o in rounds]


def guard_margin(guard: goal_pb2.GuardConstraint, rounds: list[tuple[Window, Window]], ratios: Interval) -> Interval:
    """The canary over the guard's bound (>= 1: held), per round, as an interval. A bound relative
    to the baseline reuses the metric's ratio interval, so what is reported and what is decided
    are the same numbers."""
    if guard.WhichOneof("bound") == "ratio_to_baseline":
        if guard.ratio_to_baseline <= 0:
            return Interval(math.inf, math.inf, math.inf)  # no floor at all
        return ratios.scaled(1 / guard.ratio_to_baseline)
    k = key(guard.metric)
    return ratio_interval([(guard.absolute, o.values[k]) for _, o in rounds])


def judge_rounds(spec: deployment_pb2.CanarySpec, rounds: list[tuple[Window, Window]]) -> Judgement:
    """Several rounds of (baseline, canary), each metric judged on its per-round ratios' interval.
    Rolled back when the success metric's improvement is clearly short of min_improvement (the
    whole interval below it) or a guard is clearly below its bound; kept when the improvement is
    enough (its estimate at least min_improvement) and surely there (the SURE interval above no
    change), and every guard clearly held; otherwise inconclusive, and more rounds may decide."""
    if len(rounds) == 1:
        return judge(spec, rounds[0][0].values, rounds[0][1].values)
    failed, unsure, fine = [], [], []
    success = None
    if spec.HasField("success_metric"):
        metric, prior = spec.success_metric, spec.prior if spec.HasField("prior") else None
        pairs = _pairs(metric, rounds)
        current = _estimate(pairs)
        decided = _with_prior(current, prior)
        # Decided on the evidence with the prior's; recorded as this canary's own numbers, which
        # the learner pools with the earlier ones later (recording the pooled ones would count
        # the earlier canaries again at every reuse).
        success = _reported(metric, pairs, current)
        basis = success if decided is current else evidence.comparison(metric, decided)
        success.prior_rounds = prior.rounds if basis is not success else 0
        success.satisfied = basis.satisfied = (basis.improvement >= spec.min_improvement
                                               and surely_better(metric, decided))
        told = _told_success(spec, basis, rounds, success)
        _sort(success.satisfied, basis.improvement_high < spec.min_improvement, told, fine, failed, unsure)
    guards = []
    for guard in spec.guards:
        comparison, ratios = compare_rounds(guard.metric, rounds)
        margin = guard_margin(guard, rounds, ratios)
        comparison.satisfied = margin.low >= 1
        guards.append(comparison)
        state = "held" if comparison.satisfied else "failed" if margin.high < 1 else "unsure"
        detail = _told_guard(guard, comparison, ratios, margin)
        told = f"guard {guard.description or guard.metric.name} {state} ({detail})"
        _sort(comparison.satisfied, margin.high < 1, told, fine, failed, unsure)
    if failed:
        return Judgement(False, "; ".join(failed + unsure + fine), success, guards)
    if unsure:
        return Judgement(False, "inconclusive: " + "; ".join(unsure + fine), success, guards, inconclusive=True)
    return Judgement(True, "; ".join(fine) or "no success metric", success, guards)


def _sort(clearly_good: bool, clearly_bad: bool, told: str, fine: list, failed: list, unsure: list) -> None:
    (fine if clearly_good else failed if clearly_bad else unsure).append(told)


def _told_success(spec: deployment_pb2.CanarySpec, c: deployment_pb2.MetricComparison,
                  rounds: list[tuple[Window, Window]], alone: deployment_pb2.MetricComparison) -> str:
    """E.g. "response_p99_us improved 23 % (95 % interval 12..31 %) over 3 rounds, ...": the
    estimate decided on (`c`: these rounds, or pooled with a prior) and its interval against the
    least improvement required (`c.satisfied`: kept on them), and the numbers behind it."""
    required = spec.min_improvement
    against = "at least" if c.satisfied else "less than" if c.improvement_high < required else "straddling"
    if c.satisfied and c.improvement_low < required:
        required_text = (f"{100 * required:.0f} % required by its estimate (and better than before at "
                         f"{100 * SURE:.1f} % confidence)")
    else:
        required_text = f"{100 * required:.0f} % required"
    per_round = ", ".join(f"{100 * compare(c.metric, b.values, o.values).improvement:+.0f} %" for b, o in rounds)
    over = f"over {len(rounds)} rounds"
    if c is not alone:
        low, high = 100 * alone.improvement_low, 100 * alone.improvement_high
        over += (f" and {spec.prior.rounds} rounds of earlier canaries on similar workloads (these rounds alone: "
                 f"{100 * alone.improvement:.0f} %, {low:.0f}..{high:.0f} %)")
    return (f"{c.metric.name} improved {100 * c.improvement:.0f} % ({100 * CONFIDENCE:.0f} % interval "
            f"{100 * c.improvement_low:.0f}..{100 * c.improvement_high:.0f} %) {over}, {against} the "
            f"{required_text} (medians {_number(alone.baseline)} -> {_number(alone.observed)}; per round "
            f"{per_round})")


def _told_guard(guard: goal_pb2.GuardConstraint, c: deployment_pb2.MetricComparison, ratios: Interval,
                margin: Interval) -> str:
    """The medians, and the interval the decision was made on next to the bound (as a ratio to the
    baseline, or in the metric's units for an absolute bound)."""
    medians = f"medians {_number(c.baseline)} -> {_number(c.observed)}; {100 * CONFIDENCE:.0f} % interval"
    if guard.WhichOneof("bound") == "ratio_to_baseline":
        return f"{medians} {ratios.low:.3g}..{ratios.high:.3g} of the baseline, bound {guard.ratio_to_baseline:.3g}"
    values = margin.scaled(guard.absolute)
    return f"{medians} {_number(values.low)}..{_number(values.high)}, bound {_number(guard.absolute)}"


def _number(value: float) -> str:
    """Microseconds whole, shares and rates to three figures (a CPU share of 0.98 is not "1")."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def compare(metric: common_pb2.MetricSpec, baseline: dict[str, float],
            observed: dict[str, float]) -> deployment_pb2.MetricComparison:
    before, after = baseline[key(metric)], observed[key(metric)]
    change = (before - after) if metric.direction == common_pb2.DIRECTION_LOWER_IS_BETTER else (after - before)
    improvement = change / before if before else 0.0
    return deployment_pb2.MetricComparison(metric=metric, baseline=before, observed=after, improvement=improvement)


def guard_holds(guard: goal_pb2.GuardConstraint, before: float, after: float) -> bool:
    """A guard is a floor (COMPARISON_AT_LEAST): the metric keeps at least its bound."""
    bound = guard.ratio_to_baseline * before if guard.WhichOneof("bound") == "ratio_to_baseline" else guard.absolute
    return after >= bound
