# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
export PATH := $(HOME)/.cargo/bin:$(PATH)
export PREFECT_SERVER_ANALYTICS_ENABLED := false

STAMP := $(VENV)/.installed

.PHONY: demo drill test test-fast lint bench serve system-packages clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

system-packages:
	@scripts/ensure-system-packages.sh

demo: $(STAMP) system-packages
	$(VENV)/bin/actor-rollback demo

# A rehearsal (#28) on a new sample workspace: the Phase 1 rollback on a sandbox copy, timed; nothing real touched.
drill: $(STAMP) system-packages
	@dir=$$(mktemp -d /tmp/actor-rollback-drill-XXXXXX) && \
	$(VENV)/bin/python -c "import sys; from actor_rollback.deployments.sample import create_sample_workspace as c; c(sys.argv[1])" $$dir && \
	$(VENV)/bin/actor-rollback drill 1 --repo $$dir/actor-framework --skip benchmarks

test: $(STAMP) system-packages
	$(VENV)/bin/pytest

# The edit loop: the domain, the config, the statistics and the parsers — no server, no cargo, no git remote
# (the modules marked `pytestmark = pytest.mark.fast`).
test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -m "fast and not cargo"

lint: $(STAMP)
	$(VENV)/bin/ruff check actor_rollback runbook tasks flows deployments tests bench

bench: $(STAMP) system-packages
	@for script in bench/[!_]*.py; do echo "== $$script"; $(VENV)/bin/python "$$script" || exit 1; done

serve: $(STAMP) system-packages
	scripts/serve-local.sh $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
