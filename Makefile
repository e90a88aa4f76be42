# Two commands for a fresh machine with Python 3.11:  make demo  and  make test.
# Both create .venv when it is missing and install everything into it. torch is installed first as the
# pinned CPU build (torch==2.13.0) unless the environment already has a torch: an unpinned torch would
# pull gigabytes of CUDA packages.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.delpyro-installed
TORCH_PIN ?= torch==2.13.0

BROWSER_STAMP := $(VENV)/.delpyro-browser-installed
# JupyterLab's own settings for this environment: the news prompt answered (no news, no update checks),
# so the lab opens on the notebooks rather than on a question
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json

.PHONY: setup demo test test-browser lab notebooks lint clean

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

$(BROWSER_STAMP): pyproject.toml | $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,browser]" && touch $@ \
		|| echo "test-browser: could not install playwright; the browser test will skip"

# JupyterLab driven in a real Chromium by Playwright (tests/browser). Debian's chromium is installed with
# apt-get where that works (as root, or with passwordless sudo); without a chromium the target skips.
test-browser: setup $(BROWSER_STAMP) $(LAB_SETTINGS)
	@if ! command -v chromium >/dev/null 2>&1 && [ -z "$$DELPYRO_CHROMIUM" ] && command -v apt-get >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then as_root=""; elif sudo -n true 2>/dev/null; then as_root="sudo -n"; else as_root=no; fi; \
		if [ "$$as_root" != no ]; then \
			echo "test-browser: installing Debian's chromium with apt-get"; \
			$$as_root apt-get update -qq >/dev/null && \
			$$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || true; \
		fi; \
	fi; \
	if ! command -v chromium >/dev/null 2>&1 && [ -z "$$DELPYRO_CHROMIUM" ]; then \
		echo "test-browser: skipped: no chromium, and apt-get is missing or unusable here (needs root or passwordless sudo)"; \
		exit 0; \
	fi; \
	$(PY) -m pytest -m browser tests/browser

$(LAB_SETTINGS): Makefile | $(STAMP)
	mkdir -p $(dir $@)
	printf '%s\n' '{"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}}' > $@

lab: setup $(LAB_SETTINGS)
	$(VENV)/bin/jupyter lab notebooks/

# full runs of the walkthroughs, saved with their outputs (cell execution metadata stripped)
notebooks: setup
	$(PY) notebooks/execute.py notebooks/*.ipynb

lint: setup
	$(VENV)/bin/ruff check delpyro tests bench
	$(VENV)/bin/ruff format --check delpyro tests bench

clean:
	rm -rf runs .pytest_cache .ruff_cache
