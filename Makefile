# Two entry points, each complete on its own on a fresh clone:
#   make demo   set up .venv, then run the quick-start study (offline Moving MNIST, SQLite store)
#   make test   set up .venv, then run the test suite (the README's test command)
# A second run reuses what is installed and starts at once.
#
# TORCH picks the PyTorch build (a bare `pip install torch` pulls a multi-GB CUDA build on Linux):
#   make demo                                      the CPU build torch==2.13.0
#   make demo TORCH="torch --index-url https://download.pytorch.org/whl/cu126"   a CUDA build
# PYTHON picks the interpreter that creates .venv (3.10 or newer); TEST_PROCESSES how many
# processes share the tests (pytest-xdist, a test file per process at a time).

PYTHON ?= python3
TEST_PROCESSES ?= 2
TORCH ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hpo-installed
REPLAY_STAMP := $(VENV)/.replay-installed

.PHONY: demo test setup replay-deps

demo: $(STAMP)
	@echo "[4/4] the quick-start study (about 10 minutes on 2 CPU cores)"
	$(BIN)/hpo run --arch autoencoder --data mmnist --trials 20 --budget small

test: $(STAMP) $(REPLAY_STAMP)
	@echo "[4/4] the tests"
	$(BIN)/python -m pytest -q -n $(TEST_PROCESSES) --dist loadfile

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

# What benchmarks/replay.py (and its test) needs beyond the package: not a dependency of hpo
# (benchmarks/requirements-replay.txt says why two of them go in without their requirements).
replay-deps: $(REPLAY_STAMP)

$(REPLAY_STAMP): $(STAMP) benchmarks/requirements-replay.txt
	@echo "[3/4] the replay benchmark's outside optimizers (syne-tune, dehb)"
	@$(BIN)/python -m pip install -q -r benchmarks/requirements-replay.txt || { echo "error: \
	pip could not install benchmarks/requirements-replay.txt; read pip's message above"; exit 1; }
	@$(BIN)/python -m pip install -q --no-deps syne-tune==0.16.0 dehb==0.1.2 || { echo "error: \
	pip could not install syne-tune and dehb; read pip's message above"; exit 1; }
	@touch $(REPLAY_STAMP)
