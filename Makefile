# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
export PATH := $(HOME)/.cargo/bin:$(PATH)
export PREFECT_SERVER_ANALYTICS_ENABLED := false

STAMP := $(VENV)/.installed

.PHONY: demo test bench serve system-packages clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

system-packages:
	@scripts/ensure-system-packages.sh

demo: $(STAMP) system-packages
	$(VENV)/bin/actor-rollback demo

test: $(STAMP) system-packages
	$(VENV)/bin/pytest

bench: $(STAMP) system-packages
	@for script in bench/[!_]*.py; do echo "== $$script"; $(VENV)/bin/python "$$script" || exit 1; done

serve: $(STAMP) system-packages
	scripts/serve-local.sh $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
