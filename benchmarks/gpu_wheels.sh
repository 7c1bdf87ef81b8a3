#!/usr/bin/env bash
# Downloads the wheels that a GPU machine with Python and torch but no network needs for
# benchmarks/gpu.sh (optuna and its database layer, plotly, the store drivers, the test runner).
# Run it from the repository root on a machine that reaches PyPI, then copy the folder to the GPU
# machine beside the checkout; gpu.sh installs it into .site (both folders are git-ignored):
#   benchmarks/gpu_wheels.sh [.whl] [more packages ...]
# PY_VERSION is the GPU machine's Python (default 3.12); the wheels are for Linux x86-64.
set -euo pipefail
dest=${1:-.whl}; shift || true
platforms=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
           manylinux1_x86_64)
packages=(optuna sqlalchemy alembic colorlog Mako greenlet plotly optuna-dashboard bottle psycopg
          psycopg-binary cmaes av hickle filelock pytest pluggy iniconfig tabulate "$@")
mkdir -p "$dest"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "${PY_VERSION:-3.12}" \
  --implementation cp "${platforms[@]/#/--platform=}" -d "$dest" "${packages[@]}"
du -sh "$dest"
