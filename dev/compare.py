"""
The reference experiment's comparison table: runs ./train_bert for each strategy with the
default recipe (full, frozen, lora; early stopping on validation F1, best checkpoint, test)
and prints strategy, trainable parameters, epochs, train runtime and the test metrics.

    make compare                                       # the whole experiment (long on a CPU)
    python dev/compare.py --extra "-e 1 -x 20"         # a quick look: 20 steps each

Each run's full output goes to <out>/c_<strategy>.log (tail -f it to follow along).
"""
import argparse
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from parity import result_cells, run_c  # noqa: E402


def main():
    p = argparse.ArgumentParser(description="run the three strategies and print the comparison table")
    p.add_argument("--model-bin", default="data/model.bin")
    p.add_argument("--data", default="data")
    p.add_argument("--strategies", default="full,frozen,lora")
    p.add_argument("--epochs", type=int, default=0, help="max epochs (0: train_bert's default, 50)")
    p.add_argument("--extra", default="", help="more train_bert flags, e.g. \"-x 20\"")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--train-bert", default="./train_bert")
    p.add_argument("--out", default="out/compare")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for strategy in args.strategies.split(","):
        r = run_c(args, strategy, shlex.split(args.extra))
        print(f"{strategy}: {r['epochs']} epochs, {r['runtime']:.0f} s, test F1 {r['f1']:.4f}", flush=True)
        rows.append(r)
    print(f"\n| strategy | trainable params | epochs | train runtime (s) | test acc | precision | recall | F1 (weighted) | loss |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['strategy']} | {result_cells(r)}")


if __name__ == "__main__":
    main()
