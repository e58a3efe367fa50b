#!/usr/bin/env bash
# Run the whole MNIST-1D table: 8 experiments x the given seeds, 2 at a time,
# one CPU thread each, into OUT/<exp>/seed<N>.
#   bash papers/mnist1d/reproduce.sh logs/mnist1d 0 1 2 3 4
set -euo pipefail
out=$1; shift
seeds=("$@")
py=${PYTHON:-python}
jobs=${JOBS:-2}
for exp in cnn gru mlp logreg cnn_shuffled gru_shuffled mlp_shuffled logreg_shuffled; do
  for s in "${seeds[@]}"; do
    [ -e "$out/$exp/seed$s/events.jsonl" ] || echo "$exp $s"
  done
done | xargs -P "$jobs" -L 1 sh -c \
  'OMP_NUM_THREADS=1 '"$py"' -m repro.train --paper mnist1d --exp "$0" --seed "$1" --out '"$out"'/"$0"/seed"$1" > /dev/null 2>'"$out"'/"$0"-seed"$1".err && rm -f '"$out"'/"$0"-seed"$1".err && echo "done $0 seed $1"'
