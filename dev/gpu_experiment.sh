#!/usr/bin/env bash
# The reference experiment on the lent GPU machine, on real weights: all-MiniLM-L6-v2 rounded to bf16
# (dev/pack_bf16.py) and expanded to an ordinary float32 model file there, so that train_bertcu and the
# Hugging Face Trainer (PEFT for LoRA) start from the very same weights. The default recipe on both
# sides (batch 32, early stopping on validation F1, the best checkpoint, then test), and one table:
# epochs, train runtime, test accuracy and weighted F1 per side and strategy.
#
# Carry gpu_carry (make gpu-carry), as for dev/gpu_check.sh. Then, with a timeout that leaves a margin:
#     bash dev/gpu_experiment.sh [ours|trainer|all]    (default all: ours first, then the Trainer, full first)
# Resumable within one lease (the machine keeps /tmp while warm): a second call goes on where the first
# stopped (train_bert -R 1 from its state; the Trainer from its epoch checkpoint) and skips what finished.
# GPU_EXPERIMENT_SECONDS (default 540) bounds the call; the table is printed and written to $OUT either way.
set -u
cd "$(dirname "$0")/.." || exit 1
START=$(date +%s)
LIMIT=${GPU_EXPERIMENT_SECONDS:-540}
WHAT=${1:-all}
WORK=/tmp/gpu_experiment
RESULTS=${OUT:-out/gpu_experiment}
STRATEGIES=${STRATEGIES:-full,lora,frozen}
mkdir -p "$WORK" "$RESULTS" data
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
cp -n gpu_carry/data/* data/ 2>/dev/null
left() { echo $((LIMIT - ($(date +%s) - START) - 20)); } # 20 s kept for the table

[ -f "$WORK/minilm.bin" ] || python3 dev/pack_bf16.py expand data/minilm_bf16.bin "$WORK/minilm.bin" || exit 1
if [ ! -x train_bertcu ]; then
    nvcc -O3 -std=c++17 -arch="${ARCH:-sm_90}" -isystem gpu_carry -Xcompiler -Wall,-Wextra,-fopenmp -DOMP train_bert.cu \
        -o train_bertcu -lcublas -lm || exit 1
fi
if [ "$WHAT" = ours ] || [ "$WHAT" = all ]; then
    timeout "$(left)" python3 dev/compare.py --model-bin "$WORK/minilm.bin" --train-bert ./train_bertcu \
        --out "$WORK/ours" --strategies "$STRATEGIES" --save-every 250 | tee -a "$WORK/ours.log"
fi
if { [ "$WHAT" = trainer ] || [ "$WHAT" = all ]; } && [ "$(left)" -gt 60 ]; then
    timeout "$(left)" python3 dev/parity.py --sides trainer --epochs 50 --strategies "$STRATEGIES" \
        --model-bin "$WORK/minilm.bin" --out "$WORK/trainer" 2>&1 | grep -vE "it/s\]|s/it\]" | tee -a "$WORK/trainer.log"
fi

python3 - "$WORK" "$STRATEGIES" <<'PYEOF' | tee "$RESULTS/gpu_experiment.txt"
import json, os, sys
sys.path.insert(0, "dev")
from compare import parse_summary
work, strategies = sys.argv[1], sys.argv[2].split(",")
try:
    import torch
    card = torch.cuda.get_device_name(0)
except Exception:
    card = "?"
print(f"all-MiniLM-L6-v2 (bf16-rounded weights), default recipe, batch 32, on {card}")
print("| strategy | who | epochs (best) | train runtime (s) | test acc | F1 (weighted) |")
print("|---|---|---|---|---|---|")
for s in strategies:
    ours = parse_summary(os.path.join(work, "ours", f"c_{s}.log"))
    path = os.path.join(work, "trainer", f"trainer_{s}.json")
    hf = json.load(open(path)) if os.path.exists(path) else None
    for who, r in (("train_bertcu", ours), ("Trainer", hf)):
        if r is None:
            print(f"| {s} | {who} | not finished | | | |")
        else:
            print(f"| {s} | {who} | {r['epochs']} ({r.get('best_epoch', '?')}) | {r['runtime']:.0f} | {r['acc']:.4f} | {r['f1']:.4f} |")
PYEOF
