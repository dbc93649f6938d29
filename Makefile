# mammo-synth-study: `make study` runs the whole study on the built-in phantom data,
# `make test` runs the tests. Both create and fill the virtual environment first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# CPU wheel available on this machine's disk. A GPU user installs a CUDA torch into .venv first
# (`python3 -m venv .venv && .venv/bin/pip install torch --index-url ...`); it is then kept.
# (e.g. TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu" for a CPU-only build
# on machines where plain PyPI would bring the CUDA one).
TORCH_SPEC ?= torch==2.13.0
# empty: "default" for a whole run; a partial rerun (ARGS="--from 03", "--stale") keeps the recorded one
PROFILE ?=
NAME ?= $(or $(PROFILE),default)
# extra runner arguments, e.g. ARGS="-p source_kind=mias -p source_path=/data/mini-mias",
# ARGS="--from 03" (rerun from stage 03 with the recorded settings), ARGS="--stale"
ARGS ?=
READER_HOST ?= 127.0.0.1
READER_PORT ?= 8866

.PHONY: study test install browser reader-app report verify benchmark lint clean-runs

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# Debian's Chromium for the real-browser test of the rating page (Playwright drives it;
# a browser download by Playwright itself does not work offline).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not found and not root: the browser test will be skipped"; fi; }

# the whole study into runs/$(NAME); it ends by writing runs/$(NAME)/report/index.html
study: $(STAMP)
	$(PY) -m mammo_lib.study.runner $(if $(PROFILE),--profile $(PROFILE)) --name $(NAME) $(ARGS)

# (re)write the report of an existing run: runs/$(NAME)/report/index.html
report: $(STAMP)
	$(PY) -m mammo_lib.study.report runs/$(NAME)

# rerun runs/$(NAME) with its recorded parameters into runs/$(NAME)-verify and list every file
# whose bytes differ (expected: none); the result goes into the run's report
verify: $(STAMP)
	$(PY) -m mammo_lib.study.verify runs/$(NAME)

test: $(STAMP) browser
	$(PY) -m pytest

reader-app: $(STAMP)
	$(PY) -m mammo_lib.reader_study.rating_app serve --run-dir runs/$(NAME) --host $(READER_HOST) --port $(READER_PORT)

benchmark: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean-runs:
	rm -rf runs/
