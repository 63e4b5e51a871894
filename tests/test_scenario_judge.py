"""The scenario bench's oracle: which arm counts as the best answer (bench/scenarios judge)."""

from bench.scenarios.__main__ import judge, tuned_pairs
from bench.scenarios.arms import Arm
from schedcp.v1 import policy_pb2


def _scenario(runs: dict) -> dict:
    arms = {name: {"parameters": {}, "median": sorted(r["p99_ms"] for r in measured)[len(measured) // 2],
                   "batch_ops_per_s": None} for name, measured in runs.items()}
    return {"name": "s", "primary": "p99_ms", "lower_is_better": True, "arms": arms, "runs": runs,
            "default": arms["default"]["median"], "schedcp": arms["schedcp"]["median"]}


def test_an_arm_that_serves_fewer_requests_is_not_the_oracle_whatever_its_p99():
    """ljf in the VM: a lower p99 by slowing the load generator, 10 % fewer requests per second.
    The oracle is then the best arm that served the default's load."""
    runs = {"default": [{"p99_ms": 700, "requests_per_s": 73}],
            "schedcp": [{"p99_ms": 650, "requests_per_s": 74}],
            "ljf": [{"p99_ms": 540, "requests_per_s": 65}],
            "batch": [{"p99_ms": 620, "requests_per_s": 72}]}
    judged = judge(_scenario(runs))
    assert judged["oracle_arm"] == "batch" and judged["oracle"] == 620
    assert judged["captured"] == (700 - 650) / (700 - 620)
    without_rates = {arm: [{"p99_ms": r[0]["p99_ms"]}] for arm, r in runs.items()}
    assert judge(_scenario(without_rates))["oracle_arm"] == "ljf"


def test_a_kept_parameter_point_is_confirmed_against_its_policys_defaults():
    """A search that kept a point other than its policy's defaults: the bench measures that
    point and the defaults again, alternating, and reports the point's gain over them."""
    point = Arm("batch_sched_idle(use_sched_idle=False)", policy_pb2.PolicyArtifact(name="batch_sched_idle"),
                {"use_sched_idle": False})
    defaults = Arm("batch_sched_idle", policy_pb2.PolicyArtifact(name="batch_sched_idle"))
    other = Arm("batch_idle_cgroup", policy_pb2.PolicyArtifact(name="batch_idle_cgroup"))
    arms = [Arm("default"), Arm("schedcp"), other, defaults, point]
    kept = {"kept": True, "policy": "batch_sched_idle", "parameters": {"use_sched_idle": False},
            "point": "batch_sched_idle(use_sched_idle=false)"}
    at_defaults = {**kept, "parameters": {}, "point": "batch_sched_idle"}
    rolled_back = {**kept, "kept": False}
    # Once per point, whichever cycles kept it; none for a cycle at the defaults or one that kept nothing.
    assert tuned_pairs(arms, [kept, at_defaults, rolled_back, kept]) == [(defaults, point)]
    # Strings name groups (latency_boost's boost_comm), not a point.
    assert tuned_pairs(arms, [{**at_defaults, "parameters": {"boost_comm": "nginx"}}]) == []

    runs = {"default": [{"p99_ms": 60}], "schedcp": [{"p99_ms": 13}], "batch_idle_cgroup": [{"p99_ms": 30}],
            "batch_sched_idle": [{"p99_ms": 16}], "batch_sched_idle(use_sched_idle=False)": [{"p99_ms": 13}]}
    s = _scenario(runs)
    s["tuning"] = [{"defaults": defaults.name, "point": point.name,
                    "runs": {defaults.name: [{"p99_ms": v} for v in (16, 18, 15)],
                             point.name: [{"p99_ms": v} for v in (12, 13, 14)]}}]
    tuning = judge(s)["tuning"][0]
    assert (tuning["tuned"], tuning["at_defaults"]) == (13, 16) and tuning["gain"] == (16 - 13) / 16
