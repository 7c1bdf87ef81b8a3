#!/usr/bin/env bash
# The one script for a GPU machine (H100/H200), most valuable first, each step time-boxed so
# that one slow step cannot eat the rest; at most about 9 minutes on one H200.
#
#   GPU_DRY_RUN=1 OUT=/tmp/gpu-dry bash benchmarks/gpu.sh   # first, here on the CPU: every step at
#                                                           # smoke sizes, the hpo commands'
#                                                           # flags parsed (a test runs this)
#   OUT=out bash benchmarks/gpu.sh                          # on the GPU machine
#
# A GPU machine with Python and torch but no network needs the other wheels in .whl beside the
# checkout: benchmarks/gpu_wheels.sh downloads them on a machine that reaches PyPI. They are
# installed into .site. Everything is written to a work folder and packed into
# $OUT/gpu-results.tar.gz, so that $OUT holds three files to bring back; $OUT/summary.json holds
# the headline figures and $OUT/steps.tsv each step's exit code and seconds.
set -uo pipefail
OUT=${OUT:-gpu-out}
DRY=${GPU_DRY_RUN:-0}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
if [ -d .whl ] && ls .whl/*.whl > /dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target .site .whl/*.whl \
    > "$WORK/wheels.log" 2>&1 || echo "warning: installing the wheels failed" >&2
  export PYTHONPATH=$PWD:$PWD/.site
fi
export PYTHONPATH=${PYTHONPATH:-$PWD} PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
export HPO_STORAGE="sqlite:///$WORK/gpu.db" HPO_MODELS_DIR="$WORK/models"
# `hpo` as a command (not a shell function: `timeout` runs commands), this checkout's own
mkdir -p "$WORK/bin"
printf '#!/bin/sh\nexec "%s" -m hpo_vidpred.cli "$@"\n' "$PY" > "$WORK/bin/hpo"
chmod +x "$WORK/bin/hpo"
export PATH="$WORK/bin:$PATH"

if [ "$DRY" = 1 ]; then  # every step at smoke sizes on the CPU: the script itself is under test
  DEV=cpu; DEVICES=cpu
  SIZE=(--height 16 --width 16 --n-in 2 --n-out 2); BATCH=2; STEPS=1
  BENCH_SUBSET=(--arch autoencoder --cell convlstm)
  COMPILE=(--arch autoencoder --cell convlstm --variants fp32)
  STEP_SUBSET=(--arch autoencoder --cell convlstm --size 16 --n-in 2 --n-out 2)
  WORKERS=(--device cpu --workers 1 --trials 2 --size 16 --n-in 2 --n-out 2 --epochs 1
           --steps 2 --batch 2 --val-size 4)
  TESTS=(tests/test_train.py)  # the gpu tests' file: the suite collects the rest anyway
  BUDGET=smoke; TRIALS=2; SEEDS=1; TRIAL_SECONDS=60
  # The `hpo` commands (bench, run, compare, report) are checked for their shape only: every
  # subcommand and flag parsed by the real command line (a typo fails the step) without training
  # what the suite's own tests of those commands train. The benchmark scripts run for real.
  SHAPE=(--help)
else
  DEV=cuda; DEVICES=0
  SIZE=(); BATCH=16; STEPS=5
  BENCH_SUBSET=(--variants auto,fp32,bf16,channels_last,bf16+channels_last)
  COMPILE=(--arch autoencoder --cell convlstm --variants compile,cudagraphs,bf16+compile)
  STEP_SUBSET=(--size 64 --n-in 10 --n-out 10)
  WORKERS=(--device cuda:0 --workers 1,2,4,8 --trials 8 --size 64 --n-in 10 --n-out 10
           --epochs 2 --steps 25 --batch 16 --val-size 64)
  TESTS=(tests)
  BUDGET=medium; TRIALS=16; SEEDS=2; TRIAL_SECONDS=100
  SHAPE=()
fi

printf 'step\trc\tseconds\tlimit\n' > "$OUT/steps.tsv"
step() {  # step NAME LIMIT_SECONDS COMMAND...: stdout -> NAME.json, stderr -> NAME.err
  local name=$1 limit=$2 start=$SECONDS rc; shift 2
  echo "== $name (at most $limit s): $*" >&2
  timeout --kill-after=10 "$limit" "$@" > "$WORK/$name.json" 2> "$WORK/$name.err"; rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" "$limit" >> "$OUT/steps.tsv"
  echo "   rc=$rc, $((SECONDS - start)) s" >&2
}

step env 20 "$PY" -c "
import json, os, platform, subprocess, torch
gpu = torch.cuda.is_available()
smi = subprocess.run(['nvidia-smi', '--query-gpu=name,driver_version,memory.total',
                      '--format=csv,noheader'], capture_output=True, text=True) if gpu else None
print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, 'python':
    platform.python_version(), 'gpu': torch.cuda.get_device_name() if gpu else None,
    'nvidia_smi': smi.stdout.strip() if smi else None, 'cpus': os.cpu_count(),
    'bf16': gpu and torch.cuda.is_bf16_supported()}))"
step tests 45 "$PY" -m pytest -q -m gpu -p no:cacheprovider -o addopts="" "${TESTS[@]}"
step bench 90 hpo bench --device "$DEV" --batch "$BATCH" --steps "$STEPS" "${SIZE[@]}" \
  "${BENCH_SUBSET[@]}" --json "${SHAPE[@]}"
step bench_compile 60 hpo bench --device "$DEV" --batch "$BATCH" --steps "$STEPS" "${SIZE[@]}" \
  "${COMPILE[@]}" --json "${SHAPE[@]}"
step step_speed 45 "$PY" benchmarks/step_speed.py --device "$DEV" --batch "$BATCH" \
  --steps "$STEPS" "${STEP_SUBSET[@]}" --json
step workers 70 "$PY" benchmarks/workers_per_device.py "${WORKERS[@]}" --json
BEST=$("$PY" -c "
import json, sys
try: rows = json.load(open('$WORK/workers.json'))
except Exception: rows = []
print(max(rows, key=lambda r: r['trials_per_hour'])['workers'] if rows else 2)")
# A real short study: Moving MNIST with two digits at the dataset's frames, the autoencoder's
# search space (patch included), the measured best worker count; no trial starts after the timeout.
step study $((TRIAL_SECONDS + 20)) hpo run --arch autoencoder --data mmnist --budget "$BUDGET" \
  --trials "$TRIALS" --workers "$BEST" --devices "$DEVICES" --timeout "$TRIAL_SECONDS" --quiet --json \
  "${SHAPE[@]}"
CELL=$("$PY" -c "
import json
try: print(json.load(open('$WORK/study.json'))['best']['cell'] or 'convlstm')
except Exception: print('convlstm')")
step compare 70 hpo compare --arch autoencoder --data mmnist --cells "$CELL" --seeds "$SEEDS" \
  --device "$DEV" --quiet --json "${SHAPE[@]}"
step report 30 hpo report --out "$WORK/report" "${SHAPE[@]}"

"$PY" - "$WORK" "$OUT" "$BEST" <<'EOF' > "$OUT/summary.json"
import json, sys
from pathlib import Path
work, out, best = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
def load(name):
    try:
        return json.loads((work / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
steps = [dict(zip(("step", "rc", "seconds", "limit"), line.split("\t")))
         for line in (out / "steps.tsv").read_text().splitlines()[1:]]
summary = {"env": load("env"), "steps": steps, "best_workers": best}
if (rows := load("bench")) is not None:
    summary["ms_per_step"] = {f"{r['arch']}/{r['cell']}/{r['variant']}": r["ms_step"] for r in rows}
if (rows := load("step_speed")) is not None:
    summary["speedup_vs_reference"] = {f"{r['arch']}/{r['cell']}": r["speedup"] for r in rows}
if (rows := load("workers")) is not None:
    summary["workers"] = {r["workers"]: {"trials_per_hour": r["trials_per_hour"], "speedup":
                          r["speedup"], "peak_gpu_mb_per_worker": r.get("peak_gpu_mb_per_worker")}
                          for r in rows}
if (study := load("study")) is not None:
    summary["study"] = {k: study.get(k) for k in ("trials", "best", "baselines", "seconds")}
if (compare := load("compare")) is not None:
    summary["compare"] = {k: compare.get(k) for k in ("rows", "baselines")}
print(json.dumps(summary, indent=1))
EOF
cp "$OUT/steps.tsv" "$WORK/steps.tsv"
tar -czf "$OUT/gpu-results.tar.gz" -C "$WORK" --exclude models . 2> /dev/null
rm -rf "$WORK"
awk -F'\t' 'NR > 1 && $2 != 0 {bad = 1} END {exit bad}' "$OUT/steps.tsv"
