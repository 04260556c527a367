# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create (or reuse) .venv and install the pinned dependencies, torch first.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 MPLBACKEND=Agg
ROOT_FLAG := $(shell [ "$$(id -u)" = "0" ] && echo --allow-root)

CHROMIUM := /usr/bin/chromium
CHROMIUM_HINT := apt-get update && apt-get install -y --no-install-recommends \
	chromium chromium-driver

.PHONY: setup demo demo-pretrain test browser-test bench lab clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m pip check
	$(PY) -c "import importlib.util as u; assert u.find_spec('torchvision') is None, 'torchvision breaks transformers on CPU torch: pip uninstall torchvision'"
	touch $(STAMP)

demo: $(STAMP)
	$(OFFLINE) $(PY) -m lib.pipeline --preset demo

# Rebuilds the demo's shipped pretrained start in assets/demo_start/qwen (docs/demo.md; about 4
# minutes on 2 cores): a vocabulary tokenizer, a contrastive tower stage, then the image stage,
# with a manifest of its held-out accuracies. make demo starts from it.
demo-pretrain: $(STAMP)
	$(OFFLINE) $(PY) -m lib.demo_pretrain build --out assets/demo_start/qwen

# pytest exits 5 when it collects no tests; that is not a failure of the suite.
test: $(STAMP)
	$(OFFLINE) $(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

# Notebook 02's ipywidgets player in JupyterLab, driven in headless Debian Chromium by playwright
# (tests/browser; `make test` leaves it out). Installs Chromium (apt) and requirements-browser.txt
# when missing, and fails, never skips, when it cannot. Screenshots: outputs/browser/.
browser-test: $(STAMP)
	@if [ ! -x $(CHROMIUM) ]; then \
	  echo "browser-test: $(CHROMIUM) is missing; installing Debian's chromium"; \
	  SUDO=$$([ "$$(id -u)" = "0" ] || echo sudo); \
	  $$SUDO apt-get update -q && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	    chromium chromium-driver fonts-dejavu-core; \
	fi; \
	if [ ! -x $(CHROMIUM) ]; then \
	  echo "browser-test: FAILED: could not install Chromium. Install it with:"; \
	  echo "  sudo sh -c '$(CHROMIUM_HINT)'   (as root: $(CHROMIUM_HINT))"; \
	  exit 1; \
	fi
	$(PY) -m pip install -q -r requirements-browser.txt
	$(OFFLINE) $(PY) -m pytest -q tests/browser

bench: $(STAMP)
	@for f in benchmarks/*.py; do echo "== $$f"; $(OFFLINE) $(PY) $$f || exit 1; done

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(ROOT_FLAG)

clean:
	rm -rf outputs/data outputs/0* outputs/browser .pytest_cache
