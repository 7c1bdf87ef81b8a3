# Two entry points, each complete on its own on a fresh clone:
#   make demo   set up .venv, then run the quick-start study (offline Moving MNIST, SQLite store)
#   make test   set up .venv, then run the test suite (the README's test command)
# A second run reuses what is installed and starts at once.
#
# TORCH picks the PyTorch build (a bare `pip install torch` pulls a multi-GB CUDA build on Linux):
#   make demo                                      the CPU build torch==2.13.0
#   make demo TORCH="torch --index-url https://download.pytorch.org/whl/cu126"   a CUDA build
# PYTHON picks the interpreter that creates .venv (3.10 or newer).

PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hpo-installed

.PHONY: demo test setup

demo: $(STAMP)
	@echo "[4/4] the quick-start study (about 10 minutes on 2 CPU cores)"
	$(BIN)/hpo run --arch autoencoder --data mmnist --trials 20 --budget small

test: $(STAMP)
	@echo "[4/4] the tests"
	$(BIN)/python -m pytest -q

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@echo "[1/4] virtual environment $(VENV)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "error: step 1 failed: \
	'$(PYTHON) -m venv' did not work; install Python 3.10+ with venv (Debian: apt-get install \
	python3-venv) or pass PYTHON=/path/to/python3"; exit 1; }
	@$(BIN)/python -m pip install -q --upgrade pip || { echo "error: step 1 failed: pip could \
	not upgrade itself; check the network or a proxy (PIP_INDEX_URL)"; exit 1; }
	@echo "[2/4] PyTorch: $(TORCH)"
	@$(BIN)/python -m pip install -q $(TORCH) || { echo "error: step 2 failed: pip could not \
	install '$(TORCH)'; pick the build for your platform with TORCH=... (see the Makefile's \
	head and https://pytorch.org/get-started/)"; exit 1; }
	@echo "[3/4] hpo-vidpred with its test extra"
	@$(BIN)/python -m pip install -q -e ".[test]" || { echo "error: step 3 failed: pip could \
	not install the package; read pip's message above, then run make again"; exit 1; }
	@touch $(STAMP)
