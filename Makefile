# schedcp entry points. Every target bootstraps what it needs on a fresh machine.
#   make run    start the local stack, show it healthy, stop it
#   make test   lint, then run the test suite
#   make protos regenerate schedcp/v1 from protos/ (commit the result)
#   make lint   ruff

VENV      := .venv
PY        := $(VENV)/bin/python
SCHEDCP   := $(VENV)/bin/schedcp
STAMP     := $(VENV)/.installed
# `make run` keeps its stack's state inside the checkout, not in the user's state dir.
RUN_ENV   := SCHEDCP_DATA_DIR=$(CURDIR)/.schedcp

.PHONY: install run test protos lint clean

install: $(STAMP)

$(STAMP): pyproject.toml scripts/bootstrap.sh
	VENV=$(VENV) scripts/bootstrap.sh
	touch $@

run: $(STAMP)
	$(RUN_ENV) $(SCHEDCP) up --detach
	@$(RUN_ENV) $(SCHEDCP) hosts; rc=$$?; $(RUN_ENV) $(SCHEDCP) down; exit $$rc

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

protos: $(STAMP)
	$(PY) scripts/gen_protos.py

lint: $(STAMP)
	$(VENV)/bin/ruff check schedcp services tests scripts

clean:
	rm -rf $(VENV) .schedcp .pytest_cache .ruff_cache *.egg-info
