#!/bin/bash
# Submit an hpo study as a Slurm job array (docs/deploy.md): creates the study once, then TASKS
# array tasks that run the same 'hpo run' command line, one GPU each (deploy/slurm/hpo-array.sbatch).
#
#   deploy/slurm/submit.sh TASKS [SBATCH OPTIONS ...] -- hpo run --arch A --data D --trials N [...]
#
#   export HPO_STORAGE=postgresql+psycopg://hpo@db.example/hpo   # password in ~/.pgpass
#   deploy/slurm/submit.sh 8 --partition gpu --time 24:00:00 -- \
#       hpo run --arch autoencoder --data kth --trials 200 --budget seed
#
# Step 1 runs 'hpo store prepare' with the same command: it creates the study (or checks that
# the existing one has the same spec) and counts its trials; a bad flag, another spec or an
# unreachable store is one line here and nothing is submitted, nor when the study has its N
# finished trials already. Step 2 is
#   sbatch --array=0-(TASKS-1) --output=LOGS/hpo-%A_%a.out [SBATCH OPTIONS] hpo-array.sbatch COMMAND
# Logs: one file per task in $HPO_SLURM_LOGS (default ./slurm-logs). HPO_SLURM_PREPARE=0 skips
# step 1. --trials N is the study's total over all tasks: resubmitting continues up to N.
set -euo pipefail
usage="usage: $0 TASKS [SBATCH OPTIONS ...] -- hpo run --arch A --data D --trials N [...]"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tasks=${1:-}
if [[ ! $tasks =~ ^[1-9][0-9]*$ ]]; then
  echo "error: TASKS must be a positive number of array tasks, got '${tasks}'; $usage" >&2
  exit 2
fi
shift
sbatch_args=()
while (($#)) && [[ $1 != -- ]]; do sbatch_args+=("$1"); shift; done
if (($# < 2)); then
  echo "error: no command after --; $usage" >&2
  exit 2
fi
shift
command=("$@")
run_at=-1
for i in "${!command[@]}"; do
  if [[ ${command[$i]} == run ]]; then run_at=$i; break; fi
done
if ((run_at < 0)); then
  echo "error: the command must be an 'hpo run' command line, got: ${command[*]}; $usage" >&2
  exit 2
fi
if [[ ${HPO_SLURM_PREPARE:-1} != 0 ]]; then
  prepared=$("${command[@]:0:run_at}" store prepare "${command[@]:run_at}")
  echo "$prepared"
  if [[ $prepared == *"will run nothing"* ]]; then
    echo "nothing submitted"
    exit 0
  fi
fi
logs=${HPO_SLURM_LOGS:-slurm-logs}
mkdir -p "$logs"
sbatch --array="0-$((tasks - 1))" --output="$logs/hpo-%A_%a.out" "${sbatch_args[@]}" \
  "$here/hpo-array.sbatch" "${command[@]}"
