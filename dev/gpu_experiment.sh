#!/usr/bin/env bash
# The reference experiment on the lent GPU machine, on real weights: all-MiniLM-L6-v2 rounded to bf16
# (dev/pack_bf16.py) and expanded to an ordinary float32 model file there, so that train_bertcu and the
# Hugging Face Trainer (PEFT for LoRA) start from the very same weights. The default recipe on both
# sides (batch 32, early stopping on validation F1, the best checkpoint, then test), and one table:
# epochs, train runtime, test accuracy and weighted F1 per side and strategy.
#
# The work of a second lending (the first goes to dev/gpu_check.sh): one call of at most 10 minutes,
#   here, first:  make gpu-carry && bash dev/gpu_experiment.sh --dry-run
#   device run, carry ["gpu_carry"], timeout_s 600:  bash dev/gpu_experiment.sh [ours|trainer|all]
# with this plan (GPU_EXPERIMENT_SECONDS, default 560, bounds the whole call; 20 s are kept for the table):
#   build           60 s  make train_bertcu (sm_90) through the Makefile, with the carried stb_ds
#   model           15 s  MiniLM expanded from the carried bf16 file
#   ours           ~240 s dev/compare.py: train_bertcu, full then lora then frozen, each to its early stop
#   trainer        rest   dev/parity.py --sides trainer: the Hugging Face Trainer, the same strategies
# Resumable within one lease (the machine keeps build/ while warm): a second call goes on where the first
# stopped (train_bert -R 1 from its state; the Trainer from its epoch checkpoint) and skips what finished.
# The dry run (make test-all) builds and links through make, expands the model, checks the Python modules these
# stages import against the lent machine's list, and prints the plan; it touches no device.
set -u
cd "$(dirname "$0")/.." || exit 1
. dev/gpu_lib.sh
START=$(date +%s)
LIMIT=${GPU_EXPERIMENT_SECONDS:-560}
WHAT=${1:-all}
WORK=build/gpu_experiment
RESULTS=${OUT:-out/gpu_experiment}
STRATEGIES=${STRATEGIES:-full,lora,frozen}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MAKE_BIN STB
declare -a ROWS=()
if [ "$WHAT" = --dry-run ]; then
    WORK=build/gpu_experiment_dry
    rm -rf "$WORK"; mkdir -p "$WORK/logs"
    echo "gpu_experiment --dry-run: everything up to the first device call, here"
    if ! command -v nvcc >/dev/null; then echo "✗ nvcc not found: the dry run needs it to build; skipped"; exit 0; fi
    stage build 600 gpu_build train_bertcu
    stage model 60 python3 dev/pack_bf16.py expand gpu_carry/data/minilm_bf16.bin "$WORK/minilm.bin"
    stage python 60 check_python dev/compare.py dev/parity.py dev/bench_trainer.py dev/pack_bf16.py prepro_emotion.py
    tail -n 12 "$WORK/logs/python.log" | sed 's/^/    /'
    if grep -qv " ok " "$WORK/done"; then echo "gpu_experiment --dry-run FAILED"; exit 1; fi
    echo "gpu_experiment --dry-run: ready; on the lent machine the first device stage is ours (dev/compare.py)"
    exit 0
fi
mkdir -p "$WORK/logs" "$RESULTS"
left() { echo $((LIMIT - ($(date +%s) - START) - 20)); } # 20 s kept for the table

stage build 60 gpu_build train_bertcu || exit 1
[ -f "$WORK/minilm.bin" ] || stage model 15 python3 dev/pack_bf16.py expand gpu_carry/data/minilm_bf16.bin \
    "$WORK/minilm.bin" || exit 1
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
