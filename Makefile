# Roofline Workbench — set-up, notebooks, headless report and tests.
#   make lab      set up .venv, build data/, open JupyterLab on notebooks/
#   make report   the headless main job: profile the default model, write reports/
#   make test     set up, then run the whole test suite (notebooks included)
#   make bench    the side-by-side benchmarks in bench/ (installs the compare extra)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
MODEL  := data/mobilenet_v2.onnx
CHROMIUM := /usr/bin/chromium
PYTEST_ARGS ?=

.PHONY: setup lab report test bench data clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel
	$(PIP) install -e '.[test,distributed]'
	touch $@

setup: $(VENV)/.installed

$(MODEL): $(VENV)/.installed engine/models.py
	rm -f $@
	$(PY) -c "from engine.models import write_default_model; write_default_model('$@')"

data: $(MODEL)

lab: data
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

report: data
	$(PY) -m workbench.cli report --model $(MODEL) --out reports

# tests/test_browser.py drives Debian's Chromium (never a browser Playwright downloads):
# installed here only when it is missing; CI runs as root. Without root it only says so
# (the browser test then skips locally; with CI set it fails).
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium \
	  || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }; \
	else \
	  echo "$(CHROMIUM) is missing: sudo apt-get install chromium (the browser test needs it)" >&2; \
	fi

test: data $(CHROMIUM)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: data
	$(PIP) install -e '.[test,compare]'
	$(PY) bench/latency.py

clean:
	rm -rf $(VENV) reports artifacts .pytest_cache
