#!/usr/bin/env bash
# The GPU check: one command for the lent GPU machine (one H100 or H200, CUDA 13, compute-sanitizer,
# Python with torch, transformers, peft; no internet, and no ../shared).
#
# Carry one ignored folder, gpu_carry (48 MB; `make gpu-carry` fills it here): the emotion splits,
# vocab.txt, MiniLM packed as bf16 (dev/pack_bf16.py), and stb_ds.h (that machine has no libstb-dev).
# Run, from the repository root, with a timeout that leaves time for a second try:
#     bash dev/gpu_check.sh            (GPU_CHECK_SECONDS, default 360, is the whole run's deadline)
# It builds with nvcc directly (no make needed there).
#
# Everything else is made on the spot from those files: the tiny random-init model and its
# PyTorch reference states, MiniLM (expanded from bf16, dev/pack_bf16.py) and its states, a random-
# init bert-base model for timing. Work happens under /tmp/gpu_check; $OUT (or out/gpu_check) gets
# exactly two files: gpu_check.log (every stage's full output) and gpu_check_summary.txt (the table).
# Stages, in order of value; each has a time cap, and a stage past the deadline is skipped (said so):
#   build, test_bertcu, compute-sanitizer memcheck and racecheck on test_bertcu (tiny model),
#   the dev/cuda kernel checks, a 200-step bert-base run, then the benchmark against the Trainer.
set -u
cd "$(dirname "$0")/.." || exit 1
START=$(date +%s)
LIMIT=${GPU_CHECK_SECONDS:-360}
RESULTS=${OUT:-out/gpu_check}
WORK=/tmp/gpu_check
mkdir -p "$RESULTS" "$WORK/logs" data
cp -n gpu_carry/data/* data/ 2>/dev/null
PY=${PYTHON:-python3}
BENCH_STEPS=${BENCH_STEPS:-60}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WORK PY
declare -a ROWS=()

left() { echo $((LIMIT - ($(date +%s) - START))); }
row() { ROWS+=("$(printf '%-28s %s' "$1" "$2")"); echo "[gpu_check] $1: $2"; }

# stage NAME MAX_SECONDS command...: runs under a timeout bounded by the deadline, logs to $WORK/logs/NAME.log
stage() {
    local name=$1 max=$2; shift 2
    local rem; rem=$(left)
    if [ "$rem" -le 10 ]; then row "$name" "SKIPPED (deadline)"; return 124; fi
    [ "$max" -gt "$rem" ] && max=$rem
    local t0; t0=$(date +%s)
    if declare -F "$1" >/dev/null; then # a function of this script: timeout needs a program, so a bash of its own
        timeout "$max" bash -c "$(declare -f "$1"); \"\$@\"" _ "$@" >"$WORK/logs/$name.log" 2>&1
    else
        timeout "$max" "$@" >"$WORK/logs/$name.log" 2>&1
    fi
    local rc=$?
    local dt=$(( $(date +%s) - t0 ))
    if [ $rc -eq 0 ]; then row "$name" "ok (${dt}s)"
    elif [ $rc -eq 124 ]; then row "$name" "TIMEOUT after ${max}s"
    else row "$name" "FAILED rc=$rc (${dt}s): $(tail -n 1 "$WORK/logs/$name.log" | cut -c1-90)"; fi
    return $rc
}

# ---------------------------------------------------------------------------
# build: the trainer, its test, the debug test for the sanitizers, the kernel notebooks (in parallel)

ARCH=${ARCH:-sm_90}
NVFLAGS="-O3 -std=c++17 -arch=$ARCH -isystem gpu_carry -Xcompiler -Wall,-Wextra,-fopenmp -DOMP"
KERNELS="layernorm attention gelu adamw crossentropy global_norm embedding bias"
export ARCH NVFLAGS KERNELS
build() {
    nvcc $NVFLAGS train_bert.cu -o train_bertcu -lcublas -lm &
    nvcc $NVFLAGS test_bert.cu -o test_bertcu -lcublas -lm &
    nvcc $NVFLAGS -DCUDA_DEBUG -lineinfo test_bert.cu -o test_bertcu_debug -lcublas -lm &
    nvcc $NVFLAGS dev/bench_gpu.cu -o dev/bench_gpu -lcublas -lm &
    for k in $KERNELS; do nvcc $NVFLAGS -I. "dev/cuda/$k.cu" -o "dev/cuda/$k" -lcublas -lm & done
    local rc=0
    for job in $(jobs -p); do wait "$job" || rc=1; done
    return $rc
}
stage build 240 build
nvidia-smi > "$WORK/logs/nvidia_smi.log" 2>&1
CARD=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1)
row card "${CARD:-unknown}"

# ---------------------------------------------------------------------------
# data: a bert-base-uncased config dir (random-init shapes), the models, the reference states

export BERT_DIR=$WORK/bert-base-uncased
mkdir -p "$BERT_DIR" && cp data/vocab.txt "$BERT_DIR/" 2>/dev/null
cat >"$BERT_DIR/config.json" <<'JSON'
{"architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
 "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
 "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": 12,
 "num_hidden_layers": 12, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": 30522}
JSON
make_data() {
    set -e
    $PY prepro_emotion.py --random-init tiny --no-splits --vocab-dir "$BERT_DIR" --model-out data/ref_tiny_model.bin
    $PY dev/reference.py --model-bin data/ref_tiny_model.bin --name tiny --data data
    if [ -f data/minilm_bf16.bin ]; then
        $PY dev/pack_bf16.py expand data/minilm_bf16.bin data/ref_minilm_model.bin
        $PY dev/reference.py --model-bin data/ref_minilm_model.bin --name minilm --data data
    else
        echo "no data/minilm_bf16.bin: the MiniLM states are skipped (make gpu-carry, and carry it)"
    fi
    $PY prepro_emotion.py --random-init bert-base --no-splits --vocab-dir "$BERT_DIR" --model-out "$WORK/bench_bert_base.bin"
}
stage data 150 make_data

# ---------------------------------------------------------------------------
# correctness: test_bertcu, the sanitizers, the kernel notebooks

stage test_bertcu 180 ./test_bertcu data
row test_bertcu_result "$(tail -n 1 "$WORK/logs/test_bertcu.log" 2>/dev/null)"
stage memcheck 150 compute-sanitizer --tool memcheck --error-exitcode 99 ./test_bertcu_debug data tiny
row memcheck_result "$(grep -E 'ERROR SUMMARY' "$WORK/logs/memcheck.log" | tail -n 1)"
stage racecheck 150 compute-sanitizer --tool racecheck --error-exitcode 99 ./test_bertcu_debug data tiny
row racecheck_result "$(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$WORK/logs/racecheck.log" | tail -n 1)"
kernels() { # every version of every notebook (dev/cuda/Makefile's check)
    local rc=0
    for kv in "layernorm 1 1" "layernorm 2 1" "layernorm 3 2" "attention 1" "attention 2" "attention 3" "gelu 1" "gelu 2" "adamw 1" "adamw 2" \
              "adamw 3" "crossentropy 1" "crossentropy 2" "global_norm 1" "global_norm 2" "embedding 1" "embedding 2" \
              "bias 1" "bias 2" "matmul 1" "matmul 2"; do
        set -- $kv
        echo "---- dev/cuda/$kv"
        "dev/cuda/$1" "${@:2}" || rc=1
    done
    return $rc
}
stage kernels 90 kernels
grep -E "^(\S+ on |    \S+ +rel err|  block)" "$WORK/logs/kernels.log" 2>/dev/null | head -n 60 > "$WORK/kernels_brief.txt"

# ---------------------------------------------------------------------------
# a real run: random-init bert-base, 200 steps, then evaluation, checkpoints and the test report

stage train_200_steps 120 ./train_bertcu -m "$WORK/bench_bert_base.bin" -s full -x 200 -e 1 -f 50 -O 1 -o "$WORK/train_full"
row train_200_summary "$(grep -E '^summary' "$WORK/logs/train_200_steps.log" | cut -c1-120)"

# ---------------------------------------------------------------------------
# benchmark: ours (dev/bench_gpu.cu: each strategy, precision and kernel set) and the Trainer, bert-base, batch 32

stage bench_ours 150 ./dev/bench_gpu "$WORK/bench_bert_base.bin" data "$BENCH_STEPS" 32
stage trainer_bench 150 $PY dev/bench_trainer.py --model-bin "$WORK/bench_bert_base.bin" --data data --batch 32 \
    --steps "$BENCH_STEPS" --warmup 10 --out "$WORK"

# ---------------------------------------------------------------------------
# the summary table, then one log with everything

summary() {
    echo "================ gpu_check: $(date -u +%Y-%m-%dT%H:%MZ), $(( $(date +%s) - START )) s ================"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "---------------- kernel checks (dev/cuda) ----------------"
    cat "$WORK/kernels_brief.txt" 2>/dev/null
    echo
    $PY - "$WORK" <<'PYEOF'
import json, os, sys
work = sys.argv[1]
def bench(name):
    out = {}
    p = os.path.join(work, "logs", name)
    if os.path.exists(p):
        for line in open(p):
            if line.startswith("BENCH "):
                r = json.loads(line[6:])
                out[(r["strategy"], r["precision"], r.get("kernels", 0))] = r
    return out
ours, hf = bench("bench_ours.log"), bench("trainer_bench.log")
def cell(r, k, fmt):
    return "n/a" if r is None else "ERR" if "error" in r else fmt.format(r[k])
print("---------------- benchmark: random-init bert-base, batch 32, emotion ----------------")
print("epoch s = 500 steps at the mean step time + one validation pass; K = our kernel set (-K)")
print("memory: ours = device memory in use (cudaMemGetInfo, with the CUDA context); Trainer = torch max_memory_allocated")
print(f"{'strategy':8} {'prec':5} {'K':>2} | {'ours step/s':>11} {'HF step/s':>10} {'ratio':>6} | {'ours epoch s':>12} "
      f"{'HF epoch s':>10} | {'ours MiB':>9} {'HF MiB':>8}")
for s in ("full", "frozen", "lora"):
    for c in ("fp32", "bf16"):
        h = hf.get((s, c, 0))
        for k in (1, 2, 3):
            o = ours.get((s, c, k))
            ratio = "n/a"
            if o and h and "error" not in h:
                ratio = f"{o['steps_per_s'] / h['steps_per_s']:.2f}"
            print(f"{s:8} {c:5} {k:>2} | {cell(o, 'steps_per_s', '{:.2f}'):>11} {cell(h, 'steps_per_s', '{:.2f}'):>10} "
                  f"{ratio:>6} | {cell(o, 'epoch_s', '{:.2f}'):>12} {cell(h, 'epoch_s', '{:.2f}'):>10} | "
                  f"{cell(o, 'mem_mib', '{:.0f}'):>9} {cell(h, 'peak_mib', '{:.0f}'):>8}")
PYEOF
}
summary > "$RESULTS/gpu_check_summary.txt" 2>&1
for f in "$WORK"/logs/*.log; do echo "======== $(basename "$f")"; cat "$f"; done > "$RESULTS/gpu_check.log"
cat "$RESULTS/gpu_check_summary.txt"
