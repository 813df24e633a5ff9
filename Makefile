# tracebox developer tasks. Everything runs from the project's own .venv, which
# `make venv` creates and (re)installs on its own: a fresh machine needs only python3.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Lint only the folders that exist (some appear later in the project).
LINT_PATHS := $(wildcard src tests benchmarks examples)
# apt-get needs root; use sudo when we are not.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: venv demo ui test bench lint schema chromium wrk clean flink

# venv: create .venv if missing and install tracebox editable with the dev and hf
# extras; re-installs only when pyproject.toml is newer than the stamp file.
venv: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev,hf]'
	touch $@

# demo: run the end-to-end example.
demo: venv
	$(PY) examples/demo.py

# ui: serve `tracebox ui` over the last demo run (demo-run/) until Ctrl-C.
ui: venv
	$(PY) examples/demo.py --ui

# chromium: Debian's Chromium for the Playwright UI tests (installed only if missing;
# Playwright never downloads a browser here).
chromium:
	@if [ -x /usr/bin/chromium ]; then \
		echo "chromium: /usr/bin/chromium present"; \
	else \
		echo "chromium: installing Debian package chromium"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null && \
		/usr/bin/chromium --version; \
	fi

# test: the whole pytest suite (starts its own SeaweedFS; needs chromium for UI tests).
test: venv chromium
	$(PY) -m pytest -q --durations=10

# wrk: the HTTP load generator the proxy benchmark drives (Debian package, if missing).
wrk:
	@command -v wrk >/dev/null || { \
		echo "wrk: installing Debian package wrk"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk >/dev/null; }

# bench: speed/memory benchmarks; figures go to benchmarks/results/.
bench: venv wrk chromium
	$(PY) benchmarks/run.py

# flink: run the Flink SQL of `tracebox alerts flink-sql` on a real Flink engine and compare
# its firings with tracebox's own (benchmarks/flink_check.py). PyPI apache-flink (~840 MB,
# Java 17) goes into a separate .venv-flink, never into .venv; not part of `make test`.
FLINK_VENV := .venv-flink

flink: venv
	@[ -x $(FLINK_VENV)/bin/python ] || $(PYTHON) -m venv $(FLINK_VENV)
	@$(FLINK_VENV)/bin/python -c "import pyflink" 2>/dev/null || \
		$(FLINK_VENV)/bin/pip install --disable-pip-version-check -q apache-flink
	$(PY) benchmarks/flink_check.py --flink-python $(FLINK_VENV)/bin/python

# lint: ruff lint rules and formatting check (no changes made).
lint: venv
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

# schema: regenerate docs/trace-model.schema.json from tracebox/trace/model.py.
schema: venv
	$(PY) -c "import json; from tracebox.trace import json_schema; \
	open('docs/trace-model.schema.json', 'w').write(json.dumps(json_schema(), indent=2) + '\n')"

# clean: remove the venv, caches and build output.
clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -name '*.egg-info' -type d -prune -exec rm -rf {} +
