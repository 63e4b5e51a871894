"""The scenario bench's oracle: which arm counts as the best answer (bench/scenarios judge)."""

from bench.scenarios.__main__ import judge


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
