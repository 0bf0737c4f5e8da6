"""
Writes data/ref_metrics.bin: fixed predictions and labels with scikit-learn's metrics for them,
which test_bert.c compares metrics_compute against.

    python dev/metrics_reference.py [--out data/ref_metrics.bin]

Format (little-endian): 256 int32 header [magic 20261132, version 1, number of cases], then per case:
N, NC (int32); preds int32[N]; labels int32[N]; accuracy, weighted precision, recall, F1 (float32[4]);
per-class precision[NC], recall[NC], F1[NC] (float32); confusion matrix int32[NC*NC] (rows: true).
All with average="weighted" / None and zero_division=0, as the Trainer notebook computes them.
"""
import argparse
import os
import sys

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from prepro_emotion import METRICS_MAGIC as MAGIC, METRICS_VERSION as VERSION  # noqa: E402

NC = 6


def cases(rng):
    # 1. noisy predictions on a validation-sized set with the emotion class balance
    labels = rng.choice(NC, size=2000, p=[0.275, 0.352, 0.089, 0.1375, 0.106, 0.0405])
    preds = np.where(rng.random(2000) < 0.7, labels, rng.integers(0, NC, 2000))
    yield preds, labels
    # 2. a class that is never predicted (surprise): its precision is 0/0 -> 0
    yield np.where(preds == 5, 1, preds), labels
    # 3. a class that never occurs but is predicted (love absent from the labels)
    labels3 = np.where(labels == 2, 0, labels)
    yield preds, labels3
    # 4. perfect predictions, and 5. a tiny batch where most classes are empty
    yield labels.copy(), labels
    yield np.array([0, 0, 1, 3]), np.array([0, 1, 1, 3])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--out", default="data/ref_metrics.bin")
    args = p.parse_args()
    rng = np.random.default_rng(42)
    chunks = []
    n = 0
    for preds, labels in cases(rng):
        preds, labels = preds.astype(np.int32), labels.astype(np.int32)
        acc = accuracy_score(labels, preds)
        pr, rc, f1, _ = precision_recall_fscore_support(labels, preds, average="weighted", zero_division=0, labels=range(NC))
        cp, cr, cf, _ = precision_recall_fscore_support(labels, preds, average=None, zero_division=0, labels=range(NC))
        cm = confusion_matrix(labels, preds, labels=range(NC))
        chunks += [np.array([len(preds), NC], np.int32), preds, labels, np.array([acc, pr, rc, f1], np.float32),
                   np.concatenate([cp, cr, cf]).astype(np.float32), cm.astype(np.int32).ravel()]
        print(f"case {n}: N {len(preds)} acc {acc:.4f} precision {pr:.4f} recall {rc:.4f} F1 {f1:.4f}")
        n += 1
    header = np.zeros(256, np.int32)
    header[:3] = [MAGIC, VERSION, n]
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        for c in chunks:
            f.write(c.tobytes())
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
