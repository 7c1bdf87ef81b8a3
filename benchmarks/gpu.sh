#!/usr/bin/env bash
# The GPU checks as one script, for a CUDA machine that has torch but not the rest (the device
# machines of this project). Prepare the wheels here first, on a machine that reaches PyPI:
#   ../shared/gpu/prepare-wheels.sh .whl optuna-dashboard bottle psycopg psycopg-binary cmaes av hickle \
#       filelock pytest pluggy iniconfig
# then run this from the repository root on the GPU machine; JSON goes to $OUT (default ./gpu-out).
# Prepared on a CPU-only machine: not yet run on a GPU.
set -uo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target .site .whl/*.whl
  export PYTHONPATH=$PWD:$PWD/.site
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
hpo() { python3 -m hpo_vidpred.cli "$@"; }
step() { local name=$1; shift; local s=$SECONDS; echo "== $name: $*" | tee -a "$OUT/log.txt"
         "$@" > "$OUT/$name.json" 2> "$OUT/$name.err"; echo "   rc=$? $((SECONDS - s)) s" | tee -a "$OUT/log.txt"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" 2>&1
python3 -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())" >> "$OUT/gpu.csv"
step tests python3 -m pytest -q -m gpu -p no:cacheprovider
step bench hpo bench --device cuda --batch 16 --steps 20 --json
step step_speed python3 benchmarks/step_speed.py --device cuda --batch 16 --steps 20 --json
step workers python3 benchmarks/workers_per_device.py --device cuda:0 --size 64 --n-in 10 --n-out 10 \
    --epochs 2 --steps 100 --batch 16 --val-size 64 --trials 32 --json
echo done | tee -a "$OUT/log.txt"
