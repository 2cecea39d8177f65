# `make demo` and `make test` each work from a fresh clone, each building its own virtualenv:
# the demo's has only `.[local]` (no test tool), so it is quick to build; the tests' has `.[test]`.
# Both use one interpreter, PYTHON (3.10 or newer); `tox` runs the suite on the others.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_VENV ?= .venv-demo
# The package is installed (not editable) so the tests drive what users get from `pip install .`.
SOURCES := setup.py pyproject.toml README.md mkdocs.yml cloudchain/py.typed $(shell find cloudchain -name '*.py')

.PHONY: demo test lint docs bench clean

demo: $(DEMO_VENV)/.installed
	PATH="$(CURDIR)/$(DEMO_VENV)/bin:$$PATH" bash demo/demo.sh

# Two pytest workers a core: many end-to-end tests spend their time waiting on a subprocess or
# a deadline, and on 2 cores 4 workers run the suite in 270 s where 2 take 310 s.
WORKERS ?= $(shell echo $$(( $$(nproc) * 2 )))

test: lint
	$(BIN)/pytest -n $(WORKERS)

# The reference in docs/, built with MkDocs in strict mode: a broken link fails the build.
docs: $(VENV)/.installed
	$(BIN)/mkdocs build --strict

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# credstash is installed into the bench virtualenv only, never into .venv or the package.
BENCH_VENV ?= .venv-bench
# wrk (Debian's package) loads the agent; without it that one row is skipped.
bench: $(BENCH_VENV)/.installed
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || true
	$(BENCH_VENV)/bin/python bench/run.py
	$(BENCH_VENV)/bin/python bench/watch.py
	PATH=$(BENCH_VENV)/bin:$$PATH $(BENCH_VENV)/bin/python bench/due.py
	$(BENCH_VENV)/bin/python bench/rotation.py
	$(BENCH_VENV)/bin/python bench/migrate.py
	$(BENCH_VENV)/bin/python bench/tls.py

$(BENCH_VENV)/.installed: $(SOURCES)
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check '.[local,agent]' credstash
	touch $@

$(DEMO_VENV)/.installed: $(SOURCES)
	test -x $(DEMO_VENV)/bin/python || $(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install --quiet --disable-pip-version-check '.[local]'
	touch $@

$(VENV)/.installed: $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check '.[test]'
	touch $@

clean:
	rm -rf $(VENV) $(DEMO_VENV) $(BENCH_VENV) build site *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
