# Roofline Workbench — set-up, notebooks, headless report and tests.
#   make lab      set up .venv, build data/ (the zoo's models), start JupyterLab on notebooks/ (127.0.0.1, as root
#                 too) and print the URL to open
#   make report   the headless main job: profile the default model, write reports/
#   make test     set up, then run the whole test suite (notebooks included), and the
#                 lane-width-dependent tests again with the other width forced
#   make bench    the side-by-side benchmarks in bench/ (installs the compare extra)
#   make deepsparse-venv  DeepSparse 1.8 in a venv of its own outside the repo, for bench/
#   make mca-tools  llvm-mca (Debian llvm) for bench/micro_tiles.py analyse; make test installs it

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
MODEL  := data/mobilenet_v2.onnx
CHROMIUM := /usr/bin/chromium
LLVM_MCA := /usr/bin/llvm-mca
# The project's JupyterLab settings, installed into the venv (a labconfig folder of its Jupyter
# config path): a double-click opens the jupytext .py notebooks as notebooks.
LAB_SETTINGS := $(VENV)/etc/jupyter/labconfig/default_setting_overrides.json
# `make lab`'s command (tests/test_lab.py runs it as root and as a normal user).
LAB_COMMAND := $(PY) lab/launch.py --notebook-dir notebooks
PYTEST_ARGS ?=

.PHONY: setup lab lab-settings report test bench data clean deepsparse-venv mca-tools

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel
	$(PIP) install -e '.[test,distributed]'
	touch $@

setup: $(VENV)/.installed $(LAB_SETTINGS)

$(LAB_SETTINGS): lab/default_setting_overrides.json $(VENV)/.installed
	mkdir -p $(dir $@)
	cp lab/default_setting_overrides.json $@

lab-settings: $(LAB_SETTINGS)

# The default model and every other network of engine.zoo's registry (synthetic weights,
# torchvision's topology, written as torch's exporter writes it): data/<name>.onnx.
ZOO_SOURCES := $(wildcard engine/zoo/*.py)
ZOO_MODELS := mobilenet_v3_small mobilenet_v3_large efficientnet_b0 resnet18 resnet50

$(MODEL): $(VENV)/.installed $(ZOO_SOURCES)
	rm -f $@
	$(PY) -c "from engine.zoo import write_default_model; write_default_model('$@')"

data/%.onnx: $(VENV)/.installed $(ZOO_SOURCES)
	rm -f $@
	$(PY) -m engine.zoo $* $@

data: $(MODEL) $(ZOO_MODELS:%=data/%.onnx)

lab: data $(LAB_SETTINGS)
	$(LAB_COMMAND)

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

# bench/micro_tiles.py's in-core analysis and tests/test_micro_tile_analysis.py run LLVM's
# machine-code analyser on the 1x1 micro-kernel built for other CPUs: Debian's llvm package.
$(LLVM_MCA):
	@if [ "$$(id -u)" = 0 ]; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y llvm \
	  || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y llvm; }; \
	else \
	  echo "$(LLVM_MCA) is missing: sudo apt-get install llvm (the micro-tile analysis needs it)" >&2; \
	fi

mca-tools: $(LLVM_MCA)

# The whole suite at this host's lane width, then the tests whose results depend on it
# (marker "lanes": kernels, packing, plans, bytes, fusion, engine vs ONNX Runtime) again
# with the other width forced, so an AVX2 host also tests 16-lane blocks and an AVX-512
# host 8-lane ones.
OTHER_LANES = $(PY) -c "from engine._numba_env import HOST_LANES; print(8 if HOST_LANES == 16 else 16)"

test: data $(LAB_SETTINGS) $(CHROMIUM) $(LLVM_MCA)
	$(PY) -m pytest $(PYTEST_ARGS)
	ROOFLINE_LANES=$$($(OTHER_LANES)) $(PY) -m pytest -m lanes $(PYTEST_ARGS)

bench: data
	$(PIP) install -e '.[test,compare]'
	$(PY) bench/latency.py

# DeepSparse 1.8 is end of life and pins numpy < 2 and onnx < 1.15, so it is never a project
# dependency: it gets a venv of its own beside the repo (python 3.8-3.11 wheels only), and
# bench/latency.py drives it with --deepsparse-python $(DEEPSPARSE_VENV)/bin/python. The
# check compares its logits with onnxruntime's on $(MODEL).
DEEPSPARSE_VENV ?= $(abspath $(CURDIR)/../deepsparse-venv)
DEEPSPARSE_BASE_PYTHON ?= python3.11

deepsparse-venv: $(MODEL)
	test -x $(DEEPSPARSE_VENV)/bin/python || $(DEEPSPARSE_BASE_PYTHON) -m venv $(DEEPSPARSE_VENV)
	$(DEEPSPARSE_VENV)/bin/python -m pip --disable-pip-version-check -q install deepsparse==1.8.0
	NM_DISABLE_ANALYTICS=1 $(DEEPSPARSE_VENV)/bin/python bench/deepsparse_worker.py $(MODEL) --check

clean:
	rm -rf $(VENV) reports artifacts .pytest_cache
