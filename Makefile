# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
export PATH := $(HOME)/.cargo/bin:$(PATH)
export PREFECT_SERVER_ANALYTICS_ENABLED := false

STAMP := $(VENV)/.installed

.PHONY: demo drill test test-fast bench serve system-packages clean

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
	$(VENV)/bin/python -c "import sys; from deployments.sample import create_sample_workspace as c; c(sys.argv[1])" $$dir && \
	$(VENV)/bin/actor-rollback drill 1 --repo $$dir/actor-framework --skip benchmarks

test: $(STAMP) system-packages
	$(VENV)/bin/pytest

# The edit loop: the domain, the config, the statistics and the parsers — no server, no cargo, no git remote.
FAST_TESTS := tests/test_benchstats.py tests/test_config.py tests/test_severity.py tests/test_runbook_doc.py \
	tests/test_ci_workflow_edit.py tests/test_corpus.py tests/test_compare_benchmarks.py \
	tests/test_benchmark_instructions.py
test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -m "not cargo" $(FAST_TESTS)

bench: $(STAMP) system-packages
	@for script in bench/[!_]*.py; do echo "== $$script"; $(VENV)/bin/python "$$script" || exit 1; done

serve: $(STAMP) system-packages
	scripts/serve-local.sh $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
