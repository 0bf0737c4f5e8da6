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
    names = train["label_names"]
# the test report names the classes as the CSV did, and the checkpoint carries the names
    assert all(f"\n{name} " in r.stdout for name in names), r.stdout[-1500:]
    ckpt = str(out / "checkpoint_best.bin")
    h = np.fromfile(ckpt, dtype="<i4", count=prepro.HEADER_INTS)
    assert prepro.header_label_names(h, prepro.MODEL_LABEL_BYTES, len(names), ckpt) == names
    if pairs:
        classify_pairs(exe, ckpt, data, names)


def classify_pairs(exe, ckpt, data, names):
    """classify mode on pairs (-t a -T b, and stdin lines a<TAB>b) against Hugging Face's
    BertForSequenceClassification on the same weights, given token_type_ids"""
    import torch
    from transformers import BertTokenizerFast
    from transformers.models.bert.tokenization_bert import load_vocab
    rows = emotion_rows(260)[240:]
    pairs = [(a[0], b[0]) for a, b in zip(rows[0::2], rows[1::2])]
    vocab = os.path.join(data, "vocab.txt") if os.path.exists(os.path.join(data, "vocab.txt")) \
        else os.path.join(REPO, "data", "vocab.txt")
    lines = "".join(f"{a}\t{b}\n" for a, b in pairs)
    r = run(exe, ["-C", ckpt, "-t", "-", "-T", "-", "-y", "1", "-v", vocab], input=lines)
    out = r.stdout.splitlines()
    assert len(out) == 2 * len(pairs), r.stdout + r.stderr
    got = np.array([[float(x) for x in l.split()[1:]] for l in out[1::2]])
    labels = [l.split(" | ")[0] for l in out[0::2]]
    one = run(exe, ["-C", ckpt, "-t", pairs[0][0], "-T", pairs[0][1], "-y", "1", "-v", vocab])
    assert one.stdout.splitlines()[1] == out[1], "a pair alone prints what it does in a batch"
#Hugging Face on the checkpoint's weights: the same layout as a model file, slots 14..19 cleared
    plain = os.path.join(os.path.dirname(ckpt), "plain.bin")
    h = np.fromfile(ckpt, dtype="<i4", count=prepro.HEADER_INTS)
    h[14:20] = 0
    with open(plain, "wb") as f:
        f.write(h.tobytes())
        f.write(np.fromfile(ckpt, dtype="<u1", offset=prepro.HEADER_INTS * 4).tobytes())
    model = prepro.model_from_bin(plain).eval()
    tok = BertTokenizerFast(vocab=load_vocab(vocab), do_lower_case=True)
    P = prepro.read_model(plain)[0]["P"]
    with torch.no_grad():
        want = np.stack([model(**tok(a, b, truncation=True, max_length=P, return_tensors="pt"))
                         .logits[0].double().numpy() for a, b in pairs])
    print("max |C - torch| logits on pairs", np.abs(got - want).max())
    assert np.abs(got - want).max() <= 1e-5
    assert labels == [names[i] for i in want.argmax(1)]
#a stdin line without its tab is an error naming the line, not a single text in disguise
    bad = run(exe, ["-C", ckpt, "-t", "-", "-T", "-", "-v", vocab], input=lines + "no tab here\n",
              check=False)
    assert bad.returncode != 0 and f"stdin line {len(pairs) + 1} has no tab" in bad.stderr


def test_splits_must_fit_the_model(tmp_path):
    """splits from one prepro run and a model file from another are refused before training, by
    label names (a model that names none) and by token types (pairs into a one-type model)"""
    exe = os.environ.get("TRAIN_BERT", os.path.join(REPO, "train_bert"))
    if not os.path.exists(exe):
        pytest.skip(f"needs {exe} (make train_bert)")
    data = prepare(tmp_path, pairs=True)
    path = os.path.join(data, "model.bin")

    def variant(name, edit):  # the model file with its header edited
        h = np.fromfile(path, dtype="<i4", count=prepro.HEADER_INTS)
        edit(h)
        out = str(tmp_path / name)
        with open(out, "wb") as f:
            f.write(h.tobytes())
            f.write(np.fromfile(path, dtype="<u1", offset=prepro.HEADER_INTS * 4).tobytes())
        return out

    def unnamed(h):
        h[prepro.MODEL_LABEL_BYTES] = 0
        h[prepro.H_LABEL_NAMES:] = 0

    r = run(exe, ["-m", variant("unnamed.bin", unnamed), "-d", data, "-o", str(tmp_path / "o1"),
                  "-e", "1"], check=False)
    assert r.returncode != 0 and "emotion_train.bin has label names and model" in r.stderr, r.stderr
#the same label count, but the model names its labels otherwise

    def swapped(h):
        text = h[prepro.H_LABEL_NAMES:].tobytes()
        other = text.replace(b"different\0same\0", b"same\0different\0", 1)
        assert other != text
        h[prepro.H_LABEL_NAMES:] = np.frombuffer(other, dtype="<i4")

    r = run(exe, ["-m", variant("swapped.bin", swapped), "-d", data, "-o", str(tmp_path / "o2"),
                  "-e", "1"], check=False)
    assert r.returncode != 0 and "names label 0 'different'" in r.stderr, r.stderr
