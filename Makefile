# Two commands for a fresh machine with Python 3.11:  make demo  and  make test.
# Both create .venv when it is missing and install everything into it. torch is installed first as the
# pinned CPU build (torch==2.13.0) unless the environment already has a torch: an unpinned torch would
# pull gigabytes of CUDA packages.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.delpyro-installed
TORCH_PIN ?= torch==2.13.0

.PHONY: setup demo test lab lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) -m delpyro demo --out runs/demo

test: setup
	$(PY) -m pytest

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

lint: setup
	$(VENV)/bin/ruff check delpyro tests bench
	$(VENV)/bin/ruff format --check delpyro tests bench

clean:
	rm -rf runs .pytest_cache .ruff_cache
