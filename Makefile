# `make test` works on a fresh machine: it creates (or reuses) .venv, installs the project, runs pytest.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export BENTOML_DO_NOT_TRACK := true
export SEGSVC_SHARED ?= $(abspath ../shared)

.PHONY: venv test test-fast serve docs bench clean

venv: $(STAMP)

# torch/torchvision pinned first so pip takes the builds on this machine's disk, not a fresh download.
# The serving packages at the versions the bento pins (service/requirements.txt), so the tests run those.
$(STAMP): pyproject.toml service/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -c service/requirements.txt -e '.[dev]'
	touch $(STAMP)

test: venv
	$(BIN)/python -m pytest -q

test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow"

serve: venv
	$(BIN)/bentoml serve --port $${PORT:-3000}

# The docs site (mkdocs.yml, docs/) with live reload on http://127.0.0.1:8000 (PORT=8001 make docs to move it).
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:$${PORT:-8000}

bench: venv
	$(BIN)/python benchmarks/bench.py

clean:
	rm -rf $(VENV) lightning_logs build *.egg-info
