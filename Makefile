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
PYTEST_ARGS ?=

.PHONY: setup lab report test bench data clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel
	$(PIP) install -e '.[test,distributed]'
	touch $@

setup: $(VENV)/.installed

$(MODEL): $(VENV)/.installed engine/models.py
	$(PY) -m engine.models $(MODEL)

data: $(MODEL)

lab: data
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

report: data
	$(PY) -m workbench.cli report --model $(MODEL) --out reports

test: data
	$(PY) -m pytest $(PYTEST_ARGS)

bench: data
	$(PIP) install -e '.[test,compare]'
	$(PY) bench/latency.py

clean:
	rm -rf $(VENV) reports artifacts .pytest_cache
