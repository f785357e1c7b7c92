#!/usr/bin/env bash
# Regenerates the pool bank (issue 21) into DIR (default: ../pools beside the checkout), one pool
# after another at low priority. Every step is resumable: a re-run skips finished pools and
# continues a half-staged one. `python benchmarks/pools/pack.py DIR` then writes the committed copies.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=${1:-../pools}
PY=${PY:-.venv/bin/python}
CLI=${CLI:-.venv/bin/sungen-ray}  # may be a command with arguments (word-split on purpose)
mkdir -p "$DIR"

# five 1000-sample sst2 pools with the demo config (2 rounds x 500), seeds 1-5: only the generation
# stages run; reweight-0/select-0 sit between the rounds and take seconds
for s in 1 2 3 4 5; do
  nice -n 19 "$PY" -m jobs.sungen_pipeline --config jobs/configs/demo.yaml \
    --set seed=$s --set out="$DIR/demo-sst2-1000-s$s" --stop-after generate-1
done
# the larger pools behind the quality tables (README of earlier rounds, same commands)
nice -n 19 $CLI generate --task sst2 --num-samples 20000 --out "$DIR/sst2-20000" --replicas 2 --seed 0
nice -n 19 $CLI generate --task agnews --num-samples 10000 --out "$DIR/agnews-10000" --replicas 2 --seed 0
nice -n 19 $CLI generate --task dbpedia --num-samples 7000 --out "$DIR/dbpedia-7000" --replicas 2 --seed 0
nice -n 19 $CLI generate --task imdb --num-samples 6000 --out "$DIR/imdb-6000" --replicas 2 --seed 0
