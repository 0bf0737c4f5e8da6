#!/usr/bin/env bash
# Data parallelism on one machine's CPU (issue 24): `mpirun -np 2` ranks of one OpenMP thread each
# against one process of two threads (and of one), the same global batch (-b 32), on MiniLM:
# ms per step (the mean of the step lines after the first two), then the gradient all-reduce alone
# (dev/bench_allreduce) on the trainable floats, so its share of a step. The validation and test
# splits are cut to 64 examples so that the runs are steps, not evaluation. A benchmark, not a
# test: on a shared machine run it more than once.
#
#     bash dev/bench_mpi.sh [STEPS]      (default 20; MODEL=path for another model file)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-20}
MODEL=${MODEL:-data/model.bin}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 # as root (CI, containers)
make -s train_bert train_bert_mpi dev/bench_allreduce 2>&1 | grep -v -e '^✓' -e '^✗' || true
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$tmp/data" <<'PY'
import os, sys
sys.path.insert(0, ".")
from prepro_emotion import read_split, write_split
d = sys.argv[1]
os.makedirs(d)
for name, n in (("train", None), ("validation", 64), ("test", 64)):
    s = read_split(f"data/emotion_{name}.bin")
    lengths = s["lengths"][:n]
    write_split(f"{d}/emotion_{name}.bin", lengths, s["labels"][:n], s["ids"][:int(lengths.sum())],
                s["V"], s["max_len"])
PY
flags=(-m "$MODEL" -d "$tmp/data" -b 32 -x "$STEPS" -f 1 -P 0 -e 1)
# the mean ms of the step lines after the first two (a step line's ms: since the line before)
mean_ms() { tr '\r' '\n' | grep -o 'step [0-9]*/.* ms' | awk -F'|' 'NR > 2 { split($NF, a, " ");
    s += a[1]; n++ } END { printf "%.1f", s / n }'; }
one=$(OMP_NUM_THREADS=2 ./train_bert "${flags[@]}" -o "$tmp/one" | mean_ms)
single=$(OMP_NUM_THREADS=1 ./train_bert "${flags[@]}" -o "$tmp/single" | mean_ms)
two=$(mpirun --oversubscribe -np 2 -x OMP_NUM_THREADS=1 ./train_bert_mpi "${flags[@]}" \
    -o "$tmp/two" | mean_ms)
ntrain=$(OMP_NUM_THREADS=1 ./train_bert "${flags[@]}" -x 1 -o "$tmp/n" | awk -F'|' \
    '/trainable parameters/ { gsub(/ /, "", $3); print $3 }')
load=$(cut -d' ' -f1-3 /proc/loadavg)
echo "model $MODEL, batch 32, $STEPS steps, $(nproc) cores, $(date -u +%F), load average $load"
per_s() { awk -v m="$1" 'BEGIN { printf "%.2f", 1000 / m }'; }
echo "1 process, 2 threads   | $one ms/step | $(per_s "$one") steps/s"
echo "1 process, 1 thread    | $single ms/step | $(per_s "$single") steps/s"
echo "2 ranks, 1 thread each | $two ms/step | $(per_s "$two") steps/s"
mpirun --oversubscribe -np 2 -x OMP_NUM_THREADS=1 ./dev/bench_allreduce "$ntrain" 10
