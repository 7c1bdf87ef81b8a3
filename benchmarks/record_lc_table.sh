#!/usr/bin/env bash
# Records (or continues) the learning-curve table benchmarks/tables/autoencoder-mmnist-small.csv
# with hpo's own `hpo run`, and exports it to that file every EXPORT_EVERY seconds and at the end.
#
#   bash benchmarks/record_lc_table.sh            # in the background: nohup ... &
#   STORE=/path/lc.db bash benchmarks/record_lc_table.sh
#
# On a machine without the store the committed table is imported first (configuration i is point i
# of one Sobol sequence, so the recording continues where the file ends; rows that were running
# when it was exported train again). Main study to MAIN_FIRST, the two seed-noise studies to NOISE
# each, then the main study to MAIN_TRIALS. Each run is a plain `hpo run`: kill this script and
# start it again, and the study continues.
set -uo pipefail
cd "$(dirname "$0")/.."
STORE=${STORE:-$PWD/benchmarks/tables/lc.db}
HPO=${HPO:-hpo}
PY=${PYTHON:-python}
MAIN_FIRST=${MAIN_FIRST:-128}
NOISE=${NOISE:-32}
MAIN_TRIALS=${MAIN_TRIALS:-256}
EXPORT_EVERY=${EXPORT_EVERY:-900}
TABLE=benchmarks/tables/autoencoder-mmnist-small.csv
MAIN=lc-autoencoder-mmnist-small
URL="sqlite:///$STORE"
FLAGS=(--arch autoencoder --data mmnist --budget small --epochs 8 --sampler sobol --pruner none
       --scheduler fifo --record-test --workers 2 --heartbeat 60 --quiet --storage "$URL")
COMMAND="hpo run ${FLAGS[*]:0:19} --study $MAIN --trials $MAIN_TRIALS (the noise studies: \
--study $MAIN-seed100000 --seed 100000 and --study $MAIN-seed200000 --seed 200000, \
--trials $NOISE each)"

export_table() {
  "$PY" benchmarks/lc_table.py export --storage "$URL" --out "$TABLE" --recorded-with "$COMMAND" \
    --studies "$MAIN,$MAIN-seed100000,$MAIN-seed200000" > /dev/null \
    || echo "warning: the export failed; the store $STORE keeps everything" >&2
}

if [ ! -f "$STORE" ] && [ -f "$TABLE" ]; then
  "$PY" benchmarks/lc_table.py import --table "$TABLE" --storage "$URL" || exit 1
fi
(while sleep "$EXPORT_EVERY"; do export_table; done) &
EXPORTER=$!
trap 'kill $EXPORTER 2> /dev/null; export_table' EXIT
"$HPO" run "${FLAGS[@]}" --study "$MAIN" --trials "$MAIN_FIRST" || exit 1
"$HPO" run "${FLAGS[@]}" --study "$MAIN-seed100000" --seed 100000 --trials "$NOISE" || exit 1
"$HPO" run "${FLAGS[@]}" --study "$MAIN-seed200000" --seed 200000 --trials "$NOISE" || exit 1
"$HPO" run "${FLAGS[@]}" --study "$MAIN" --trials "$MAIN_TRIALS"
