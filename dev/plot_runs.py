"""
Plots runs of train_bert from their log.tsv files: training and validation loss, and validation
weighted F1, per epoch, one line per run (named by its output directory), as one PNG.

    python dev/plot_runs.py out/compare/c_full out/compare/c_frozen out/compare/c_lora --out runs.png

Needs matplotlib (requirements.txt; used only here).
"""
import argparse
import csv
import os

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def read_log(path):
    """the validation rows of a log.tsv as lists: epoch, train_loss, loss, f1"""
    rows = {"epoch": [], "train_loss": [], "loss": [], "f1": []}
    with open(path) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            if r["split"] != "validation":
                continue
            for k in rows:
                rows[k].append(float(r[k]))
    if not rows["epoch"]:
        raise SystemExit(f"Error: {path} has no validation rows (is it a train_bert log.tsv?)")
    return rows


def main():
    p = argparse.ArgumentParser(description="plot train_bert runs (log.tsv) per epoch")
    p.add_argument("runs", nargs="+", help="output directories (or log.tsv files) of train_bert runs")
    p.add_argument("--out", default="runs.png")
    args = p.parse_args()
    fig, (ax_loss, ax_f1) = plt.subplots(1, 2, figsize=(11, 4))
    for run in args.runs:
        path = os.path.join(run, "log.tsv") if os.path.isdir(run) else run
        name = os.path.basename(os.path.dirname(os.path.abspath(path)))
        r = read_log(path)
        line, = ax_loss.plot(r["epoch"], r["loss"], marker="o", label=f"{name} validation")
        ax_loss.plot(r["epoch"], r["train_loss"], marker=".", linestyle="--", color=line.get_color(), label=f"{name} train")
        ax_f1.plot(r["epoch"], r["f1"], marker="o", label=name)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_f1.set(xlabel="epoch", ylabel="weighted F1", title="validation F1")
    for ax in (ax_loss, ax_f1):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = args.out + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
