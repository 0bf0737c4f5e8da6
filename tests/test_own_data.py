"""
A dataset of your own, end to end: a small CSV made here from the emotion texts, once as single
texts (the emotion label) and once as the pair task "do these two tweets share an emotion?", through
prepro_emotion.py (--csv, a random-init tiny model) and a short ./train_bert run on its files.

No package on PyPI ships a text-classification set offline that fits here, so the files are shaped
as a user's would be. Run: python -m pytest -q tests/test_own_data.py
"""
import csv
import os

import numpy as np
import pytest

from conftest import REPO, run
import prepro_emotion as prepro

EMOTION = os.path.join(REPO, "..", "shared", "data", "emotion", "train.txt")

pytestmark = pytest.mark.skipif(not os.path.exists(EMOTION), reason=f"needs {EMOTION}")


def emotion_rows(n):
    with open(EMOTION, encoding="utf-8") as f:
        return [line.rstrip("\n").rsplit(";", 1) for _, line in zip(range(n), f)]


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def prepare(tmp_path, pairs):
    rows = emotion_rows(240)
    if pairs:
        table = [(a[0], b[0], "same" if a[1] == b[1] else "different")
                 for a, b in zip(rows[0::2], rows[1::2])]
        path = write_csv(tmp_path / "pairs.csv", ["tweet1", "tweet2", "share"], table)
        args = ["--csv", path, "--text-col", "tweet1", "--text-pair-col", "tweet2",
                "--label-col", "share"]
    else:
        path = write_csv(tmp_path / "single.csv", ["text", "emotion"], rows)
        args = ["--csv", path, "--label-col", "emotion"]
    out = tmp_path / "data"
    prepro.main(args + ["--random-init", "tiny", "--max-len", "64", "--out-dir", str(out)])
    return str(out)


@pytest.mark.parametrize("pairs", [False, True], ids=["single", "pairs"])
def test_fine_tune_own_csv(tmp_path, pairs):
    data = prepare(tmp_path, pairs)
    train = prepro.read_split(os.path.join(data, "emotion_train.bin"))
    cfg, _ = prepro.read_model(os.path.join(data, "model.bin"))
    assert cfg["label_names"] == train["label_names"] and cfg["NC"] == train["NC"]
    assert (train["types"].max() == 1) == pairs
    exe = os.environ.get("TRAIN_BERT", os.path.join(REPO, "train_bert"))
    if not os.path.exists(exe):
        pytest.skip(f"needs {exe} (make train_bert)")
    out = tmp_path / "out"
    r = run(exe, ["-m", os.path.join(data, "model.bin"), "-d", data, "-o", str(out), "-e", "2",
                  "-b", "16", "-l", "1e-3", "-P", "0"], check=False)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    rows = [line.split("\t") for line in open(out / "log.tsv").read().splitlines()]
    assert rows[0][:4] == ["split", "epoch", "step", "train_loss"]
    assert [r[0] for r in rows[1:]] == ["validation", "validation", "test"]
    assert all(np.isfinite(float(r[3])) for r in rows[1:3])
    assert os.path.getsize(out / "checkpoint_best.bin") > 0
