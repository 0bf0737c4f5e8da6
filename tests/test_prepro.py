"""
Tests for prepro_emotion.py: the splits it writes (row and label counts, token
ids equal to the Hugging Face tokenizer's), the model file (equal to the
checkpoint, tensor for tensor), the readers' checks, and atomic writes; then
datasets of your own (CSV, TSV, JSON Lines; single texts and pairs) and every
kind of bad input file.

Uses the offline data in ../shared/data (relative to the repo root) and writes
only into pytest's tmp dirs. Run: python -m pytest -q tests/test_prepro.py
"""

import os
import shutil
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import prepro_emotion as prepro  # noqa: E402

DATA_DIR = os.path.join(REPO, "..", "shared", "data", "emotion")
BERT_DIR = os.path.join(REPO, "..", "shared", "data", "bert-base-uncased")

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(DATA_DIR, "train.txt")),
                                reason=f"offline emotion data not found in {DATA_DIR}")

LABEL_COUNTS = {  # sadness joy love anger fear surprise, from ../shared/data/emotion/README.md
    "train": [4666, 5362, 1304, 2159, 1937, 572],
    "validation": [550, 704, 178, 275, 212, 81],
    "test": [581, 695, 159, 275, 224, 66],
}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """splits + a random tiny model, written once for the module"""
    d = str(tmp_path_factory.mktemp("tiny"))
    prepro.main(["--data-dir", DATA_DIR, "--random-init", "tiny", "--out-dir", d])
    return d


@pytest.fixture(scope="module")
def minilm_bin(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("minilm"))
    path = os.path.join(d, "minilm.bin")
    prepro.main(["--model", "minilm", "--no-splits", "--out-dir", d, "--model-out", path])
    return path


def raw_split(split):
    """(texts, labels) straight from the text file, independently of prepro"""
    texts, labels = [], []
    with open(os.path.join(DATA_DIR, split + ".txt"), encoding="utf-8") as f:
        for line in f:
            text, label = line.rstrip("\n").rsplit(";", 1)
            texts.append(text)
            labels.append(prepro.LABELS.index(label))
    return texts, labels


# -----------------------------------------------------------------------------
# splits

@pytest.mark.parametrize("split", prepro.SPLITS)
def test_rows_and_label_counts(tiny_dir, split):
    s = prepro.read_split(os.path.join(tiny_dir, f"emotion_{split}.bin"))
    assert s["N"] == prepro.EXPECTED_ROWS[split] == {"train": 16000, "validation": 2000, "test": 2000}[split]
    assert np.bincount(s["labels"], minlength=6).tolist() == LABEL_COUNTS[split]
    assert s["NC"] == 6 and s["V"] == 30522 and s["max_len"] == 512
    assert s["T_max"] == s["lengths"].max()


@pytest.mark.parametrize("split", prepro.SPLITS)
def test_ids_are_the_hf_tokenizers(tiny_dir, split):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(prepro.minilm_dir())  # the same uncased bert-base vocabulary
    texts, labels = raw_split(split)
    want = tok(texts, truncation=True, max_length=512)["input_ids"]
    s = prepro.read_split(os.path.join(tiny_dir, f"emotion_{split}.bin"))
    offsets = np.concatenate([[0], np.cumsum(s["lengths"])])
    got = [s["ids"][offsets[i]:offsets[i + 1]].tolist() for i in range(s["N"])]
    assert got == want
    assert s["labels"].tolist() == labels
    assert all(x[0] == 101 and x[-1] == 102 for x in got)  # [CLS] ... [SEP]


def test_first_train_example(tiny_dir):
    s = prepro.read_split(os.path.join(tiny_dir, "emotion_train.bin"))
    vocab = open(os.path.join(tiny_dir, "vocab.txt")).read().split("\n")
    words = [vocab[i] for i in s["ids"][:s["lengths"][0]]]
    assert words == ["[CLS]", "i", "didn", "##t", "feel", "humiliated", "[SEP]"]
    assert s["labels"][0] == 0


def test_vocab_txt(tiny_dir):
    with open(os.path.join(tiny_dir, "vocab.txt"), "rb") as f, open(os.path.join(BERT_DIR, "vocab.txt"), "rb") as g:
        assert f.read() == g.read()


def test_truncation(tmp_path):
    prepro.main(["--data-dir", DATA_DIR, "--random-init", "tiny", "--max-len", "16", "--out-dir", str(tmp_path),
                 "--model-out", str(tmp_path / "m.bin")])
    s = prepro.read_split(str(tmp_path / "emotion_test.bin"))
    assert s["T_max"] == 16 and s["max_len"] == 16
    long_ = np.flatnonzero(s["lengths"] == 16)
    offsets = np.concatenate([[0], np.cumsum(s["lengths"])])
    assert all(s["ids"][offsets[i + 1] - 1] == 102 for i in long_)  # truncated, but still ends in [SEP]


def test_bad_data_dir_is_rejected(tmp_path):
    for split in prepro.SPLITS:
        shutil.copy(os.path.join(DATA_DIR, split + ".txt"), tmp_path / (split + ".txt"))
    os.rename(tmp_path / "validation.txt", tmp_path / "val.txt")  # the alternative name works too
    with open(tmp_path / "train.txt") as f:
        lines = f.readlines()
    with open(tmp_path / "train.txt", "w") as f:
        f.writelines(lines[:-1])
    with pytest.raises(SystemExit) as e:
        prepro.main(["--data-dir", str(tmp_path), "--random-init", "tiny", "--out-dir", str(tmp_path / "out")])
    assert "train.txt" in str(e.value) and "15999" in str(e.value) and "16000" in str(e.value)
    with open(tmp_path / "train.txt", "w") as f:
        f.writelines(lines[:-1] + ["i feel odd;boredom\n"])
    with pytest.raises(SystemExit) as e:
        prepro.main(["--data-dir", str(tmp_path), "--random-init", "tiny", "--out-dir", str(tmp_path / "out")])
    assert "train.txt:16000" in str(e.value) and "boredom" in str(e.value)
    assert not os.path.exists(tmp_path / "out")  # nothing written


# -----------------------------------------------------------------------------
# model

def test_minilm_model_equals_checkpoint(minilm_bin):
    import torch
    from safetensors.numpy import load_file
    ckpt = load_file(os.path.join(prepro.minilm_dir(), "model.safetensors"))
    cfg, params = prepro.read_model(minilm_bin)
    assert (cfg["V"], cfg["P"], cfg["TV"], cfg["C"], cfg["L"], cfg["NH"], cfg["FF"], cfg["NC"]) == \
        (30522, 512, 2, 384, 6, 12, 1536, 6)
    assert cfg["name"] == "minilm" and cfg["lower"] and cfg["pad_id"] == 0 and cfg["act"] == 1
    assert cfg["eps"] == np.float32(1e-12)
    L, C = cfg["L"], cfg["C"]
    want = {
        "wte": ckpt["embeddings.word_embeddings.weight"],
        "wpe": ckpt["embeddings.position_embeddings.weight"],
        "wtt": ckpt["embeddings.token_type_embeddings.weight"],
        "embln_w": ckpt["embeddings.LayerNorm.weight"], "embln_b": ckpt["embeddings.LayerNorm.bias"],
        "poolw": ckpt["pooler.dense.weight"], "poolb": ckpt["pooler.dense.bias"],
    }
    for l in range(L):
        pre = f"encoder.layer.{l}."
        for i, p in enumerate(("query", "key", "value")):
            assert np.array_equal(params["qkvw"][l, i * C:(i + 1) * C], ckpt[pre + f"attention.self.{p}.weight"])
            assert np.array_equal(params["qkvb"][l, i * C:(i + 1) * C], ckpt[pre + f"attention.self.{p}.bias"])
        for name, hf in prepro.LAYER_TENSORS.items():
            assert np.array_equal(params[name][l], ckpt[pre + hf]), (name, l)
    for name, t in want.items():
        assert np.array_equal(params[name], t), name
    # the fresh classifier: normal(0, 0.02) from torch.manual_seed(42), zero bias
    torch.manual_seed(42)
    assert np.array_equal(params["clsw"], torch.empty(6, C).normal_(0.0, 0.02).numpy())
    assert not params["clsb"].any()


def test_model_from_bin_roundtrip(tiny_dir):
    cfg, params = prepro.read_model(os.path.join(tiny_dir, "model.bin"))
    assert cfg["name"] == "random:tiny"
    assert (cfg["C"], cfg["L"], cfg["NH"], cfg["FF"], cfg["V"], cfg["P"], cfg["TV"]) == (64, 2, 4, 128, 30522, 512, 2)
    model = prepro.model_from_bin(os.path.join(tiny_dir, "model.bin"))
    assert model.config.hidden_dropout_prob == 0 and model.config.attention_probs_dropout_prob == 0
    sd = {n: p.detach().numpy() for n, p in model.named_parameters()}
    back = prepro.hf_to_table(sd, cfg)
    for name, _ in prepro.model_table(cfg):
        assert np.array_equal(back[name], params[name]), name


def test_random_init_is_deterministic(tiny_dir, tmp_path):
    path = str(tmp_path / "again.bin")
    prepro.main(["--random-init", "tiny", "--no-splits", "--out-dir", str(tmp_path), "--model-out", path])
    with open(path, "rb") as f, open(os.path.join(tiny_dir, "model.bin"), "rb") as g:
        assert f.read() == g.read()
    assert sorted(os.listdir(tmp_path)) == ["again.bin"]  # --no-splits: no vocab, no splits


# -----------------------------------------------------------------------------
# readers reject bad files, and say which file and how to fix it

def corrupt(src, dst, offset=None, value=None, truncate=None):
    shutil.copy(src, dst)
    with open(dst, "r+b") as f:
        if truncate is not None:
            f.truncate(truncate)
        if offset is not None:
            f.seek(offset)
            f.write(np.array([value], dtype="<i4").tobytes())
    return str(dst)


def expect_rejected(reader, path, *words):
    with pytest.raises(ValueError) as e:
        reader(path)
    msg = str(e.value)
    assert path in msg and "re-run `python prepro_emotion.py`" in msg
    for w in words:
        assert w in msg, (w, msg)


def test_split_reader_rejects(tiny_dir, tmp_path):
    src = os.path.join(tiny_dir, "emotion_validation.bin")
    s = prepro.read_split(src)
    size = os.path.getsize(src)
    N, hdr = s["N"], prepro.HEADER_INTS * 4
    r = prepro.read_split
    expect_rejected(r, corrupt(src, tmp_path / "a.bin", truncate=size - 4), "bad file size", "truncated")
    expect_rejected(r, corrupt(src, tmp_path / "b.bin", truncate=100), "too short")
    expect_rejected(r, corrupt(src, tmp_path / "c.bin", 0, 20261127), "bad magic", "20261127", "20261128")
    expect_rejected(r, corrupt(src, tmp_path / "d.bin", 4, 3), "bad version", "got 3, want 1..2")
    expect_rejected(r, corrupt(src, tmp_path / "e.bin", hdr + 8 * N + 40, 30522), "id 30522", "V = 30522")
    expect_rejected(r, corrupt(src, tmp_path / "f.bin", hdr + 8 * N + 40, -1), "id -1")
    expect_rejected(r, corrupt(src, tmp_path / "g.bin", hdr + 4 * N + 12, 6), "example 3", "label 6")
    expect_rejected(r, corrupt(src, tmp_path / "h.bin", hdr + 4 * 5, s["T_max"] + 1), "example 5", "T_max")
    expect_rejected(r, corrupt(src, tmp_path / "i.bin", 4 * 6, s["ntok"] + 1), "bad file size")


def test_model_reader_rejects(tiny_dir, tmp_path):
    src = os.path.join(tiny_dir, "model.bin")
    size = os.path.getsize(src)
    r = prepro.read_model
    expect_rejected(r, corrupt(src, tmp_path / "a.bin", truncate=size - 4), "bad file size", "truncated")
    expect_rejected(r, corrupt(src, tmp_path / "b.bin", 0, 1234), "bad magic", "got 1234, want 20261127")
    expect_rejected(r, corrupt(src, tmp_path / "c.bin", 4, 7), "bad version", "got 7, want 1")
    expect_rejected(r, corrupt(src, tmp_path / "d.bin", 4 * 6, 3), "bad file size")  # L changed
    expect_rejected(r, corrupt(src, tmp_path / "e.bin", 4 * 11, 2), "activation")
    expect_rejected(r, corrupt(src, tmp_path / "f.bin", 4 * 14, 1), "checkpoint")
    expect_rejected(prepro.read_split, src, "bad magic")  # a model is not a split


# -----------------------------------------------------------------------------
# atomic writes

def test_no_temp_files_left(tiny_dir):
    assert sorted(os.listdir(tiny_dir)) == ["emotion_test.bin", "emotion_train.bin", "emotion_validation.bin",
                                            "model.bin", "vocab.txt"]


def test_failed_write_keeps_old_file(tmp_path):
    path = str(tmp_path / "x.bin")
    prepro.write_atomic(path, [b"old"])

    def chunks():
        yield b"new, half written"
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        prepro.write_atomic(path, chunks())
    assert open(path, "rb").read() == b"old"
    assert os.listdir(tmp_path) == ["x.bin"]


# -----------------------------------------------------------------------------
# your own dataset: CSV, TSV, JSON Lines; single texts and sentence pairs

def emotion_rows(n, split="train"):
    texts, labels = raw_split(split)
    return [(texts[i], prepro.LABELS[labels[i]]) for i in range(n)]


def write_csv(path, header, rows, delimiter=","):
    import csv
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def own(tmp_path, *args):
    out = tmp_path / "out"
    prepro.main(list(args) + ["--random-init", "tiny", "--out-dir", str(out)])
    splits = {s: prepro.read_split(str(out / f"emotion_{s}.bin")) for s in prepro.SPLITS}
    return splits, str(out)


def hf_tok():
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(prepro.minilm_dir())


def examples(s):
    off = np.concatenate([[0], np.cumsum(s["lengths"])])
    return ([s["ids"][off[i]:off[i + 1]].tolist() for i in range(s["N"])],
            [s["types"][off[i]:off[i + 1]].tolist() for i in range(s["N"])])


def test_emotion_splits_stay_version_1(tiny_dir):
    path = os.path.join(tiny_dir, "emotion_test.bin")
    h = np.fromfile(path, dtype="<i4", count=prepro.HEADER_INTS)
    assert h[prepro.H_VERSION] == 1 and not h[prepro.SPLIT_LABEL_BYTES:].any()
    cfg, _ = prepro.read_model(os.path.join(tiny_dir, "model.bin"))
    assert cfg["label_names"] is None
    assert not prepro.read_split(os.path.join(tiny_dir, "emotion_test.bin"))["types"].any()


def test_pairs_from_three_csv_files(tmp_path):
    """[CLS] a [SEP] b [SEP], types 1 on b, truncated longest first: the HF tokenizer's ids"""
    rows = emotion_rows(120)
    files = []
    for k, split in enumerate(prepro.SPLITS):
        part = rows[k * 40:(k + 1) * 40]
        pairs = [(a[0], b[0], "same" if a[1] == b[1] else "different")
                 for a, b in zip(part[0::2], part[1::2])]
        files.append(write_csv(tmp_path / f"{split}.csv", ["s1", "s2", "y"], pairs))
    got, out = own(tmp_path, "--csv", *files, "--text-col", "s1", "--text-pair-col", "s2",
                   "--label-col", "y", "--max-len", "24")
    tok = hf_tok()
    for split, path in zip(prepro.SPLITS, files):
        table, _ = prepro.read_table(path, "csv")
        a = [r["s1"] for _, r in table]
        b = [r["s2"] for _, r in table]
        want = tok(a, b, truncation=True, max_length=24)
        ids, types = examples(got[split])
        assert ids == want["input_ids"] and types == want["token_type_ids"]
        assert any(len(x) == 24 for x in ids)  # some were truncated
        assert got[split]["label_names"] == ["different", "same"] and got[split]["NC"] == 2
        assert got[split]["labels"].tolist() == [int(r["y"] == "same") for _, r in table]
    cfg, params = prepro.read_model(os.path.join(out, "model.bin"))
    assert cfg["NC"] == 2 and cfg["label_names"] == ["different", "same"]
    assert params["clsw"].shape == (2, 64)


def test_one_file_with_a_split_column_tsv(tmp_path):
    rows = emotion_rows(60)
    table = [(t, y, ["train", "dev", "test"][i % 3]) for i, (t, y) in enumerate(rows)]
    path = write_csv(tmp_path / "all.tsv", ["text", "label", "part"], table, delimiter="\t")
    got, _ = own(tmp_path, "--tsv", path, "--split-col", "part")
    tok = hf_tok()
    for k, split in enumerate(prepro.SPLITS):
        texts = [t for i, (t, _) in enumerate(rows) if i % 3 == k]
        ids, types = examples(got[split])
        assert ids == tok(texts, truncation=True, max_length=512)["input_ids"]
        assert not any(map(any, types))
    names = sorted({y for _, y in rows})
    assert got["train"]["label_names"] == names  # string labels: sorted


def test_fractions_and_integer_labels_jsonl(tmp_path):
    import json
    rows = emotion_rows(100)
    path = tmp_path / "d.jsonl"
    with open(path, "w") as f:
        for t, y in rows:
            f.write(json.dumps({"sentence": t, "y": 10 if y == "joy" else 2}) + "\n")
    got, _ = own(tmp_path, "--jsonl", str(path), "--text-col", "sentence", "--label-col", "y",
                 "--val-fraction", "0.2", "--test-fraction", "0.1")
    assert [got[s]["N"] for s in prepro.SPLITS] == [70, 20, 10]
    assert got["train"]["label_names"] == ["2", "10"]  # integers: by value
    again, _ = own(tmp_path / "again", "--jsonl", str(path), "--text-col", "sentence",
                   "--label-col", "y", "--val-fraction", "0.2", "--test-fraction", "0.1")
    for s in prepro.SPLITS:  # a fixed seed: the same draw
        assert np.array_equal(got[s]["ids"], again[s]["ids"])
    # every row is in exactly one split
    tok = hf_tok()
    want = tok([t for t, _ in rows], truncation=True, max_length=512)["input_ids"]
    want = sorted(map(tuple, want))
    assert sorted(tuple(x) for s in prepro.SPLITS for x in examples(got[s])[0]) == want


def bad_input(tmp_path, name, content, *args, words=()):
    """prepro refuses the file with one message naming the file and the words; nothing is written"""
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    out = tmp_path / "out"
    fmt = name.rsplit(".", 1)[1]
    with pytest.raises(SystemExit) as e:
        prepro.main([f"--{fmt}", str(path)] + list(args)
                    + ["--random-init", "tiny", "--out-dir", str(out)])
    msg = str(e.value)
    assert str(path) in msg, msg
    for w in words:
        assert w in msg, (w, msg)
    assert not out.exists()
    return msg


GOOD = "text,label\n" + "".join(f"text number {i},{'ab'[i % 2]}\n" for i in range(40))


def test_bad_input_files(tmp_path):
    bad_input(tmp_path, "a.csv", GOOD, "--label-col", "y",
              words=["no label column 'y'", "text, label"])
    bad_input(tmp_path, "b.csv", GOOD + "  ,a\n", words=["line 42", "column 'text'", "empty text"])
    bad_input(tmp_path, "c.csv", GOOD + "one,two,a\n",
              words=["line 42", "3 fields", "header has 2"])
    bad_input(tmp_path, "d.csv", GOOD + '"say "hi" now",a\n', words=["line 42", "bad CSV"])
    bad_input(tmp_path, "e.csv", GOOD + '"unclosed,a\n', words=["line 42", "bad CSV"])
    bad_input(tmp_path, "f.csv", GOOD.encode() + b"caf\xe9 au lait,a\n",
              words=["line 42", "not UTF-8", "0xe9"])
    bad_input(tmp_path, "g.csv", GOOD.replace(",b", ",a"),
              words=["only one label", "'a'", "column 'label'"])
    bad_input(tmp_path, "h.jsonl", '{"text": "x", "label": 1}\n{"text": "y"}\n',
              words=["line 2", "no label column"])
    bad_input(tmp_path, "i.jsonl", '{"text": "x", "label": 1}\n{"text": "y", "label": 2.5}\n',
              words=["line 2", "2.5"])
    bad_input(tmp_path, "j.jsonl", '{"text": "x", "label": 1}\n{"text": "y", \n',
              words=["line 2", "not JSON"])
    split = GOOD.replace("\n", ",train\n").replace("label,train", "label,part") + "odd one,c,test\n"
    bad_input(tmp_path, "k.csv", split, "--split-col", "part",
              words=["line 42", "label 'c' is not in the training split", "a, b"])
    bad_input(tmp_path, "l.csv", GOOD, "--text-pair-col", "second",
              words=["no text-pair column 'second'"])
    long_names = "text,label\n" + "".join(f"t {i},{'x' * 30}{i}\n" for i in range(30))
    bad_input(tmp_path, "m.csv", long_names, words=["label names take", "640"])


def test_bad_label_in_validation_file(tmp_path):
    rows = [(f"t {i}", "ab"[i % 2]) for i in range(20)]
    train = write_csv(tmp_path / "train.csv", ["text", "label"], rows)
    val = write_csv(tmp_path / "val.csv", ["text", "label"], [("fine", "a"), ("odd", "z")])
    with pytest.raises(SystemExit) as e:
        prepro.main(["--csv", train, val, "--random-init", "tiny", "--out-dir",
                     str(tmp_path / "out")])
    assert f"{val}: line 3: column 'label': label 'z' is not in the training split" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_hf_dataset_path_offline(tmp_path, monkeypatch):
    """--hf-dataset through a stand-in for datasets.load_dataset (the hub is not reachable here): a
    ClassLabel keeps its order, and a test split without labels (-1, as GLUE's) comes from train"""
    import datasets
    rows = emotion_rows(80)
    names = ["not_equivalent", "equivalent"]
    feats = datasets.Features({"s1": datasets.Value("string"), "s2": datasets.Value("string"),
                               "label": datasets.ClassLabel(names=names)})

    def part(rs, labelled=True):
        return datasets.Dataset.from_dict(
            {"s1": [a for a, _ in rs], "s2": [a[::-1] for a, _ in rs],
             "label": [int(y == "joy") if labelled else -1 for _, y in rs]}, features=feats)

    ds = datasets.DatasetDict(train=part(rows[:60]), validation=part(rows[60:70]),
                              test=part(rows[70:], labelled=False))
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None: ds)
    got, _ = own(tmp_path, "--hf-dataset", "glue", "--hf-config", "mrpc", "--text-col", "s1",
                 "--text-pair-col", "s2", "--test-fraction", "0.2")
    assert got["train"]["label_names"] == names
    assert [got[s]["N"] for s in prepro.SPLITS] == [48, 10, 12]
    assert got["validation"]["labels"].tolist() == [int(y == "joy") for _, y in rows[60:70]]
    assert got["train"]["types"].max() == 1


def test_tokenizer_reference_hub_texts_equal_the_files(monkeypatch):
    """make test on a machine without ../shared: dev/tokenizer_reference.py --data-from-hub reads
    dair-ai/emotion through datasets (a stand-in here, from the offline files as the hub serves them:
    text and label id) and must give the cases the files give, in the same order"""
    import datasets
    sys.path.insert(0, os.path.join(REPO, "dev"))
    import tokenizer_reference as tokref

    def split(name):
        texts, labels = raw_split(name)
        return datasets.Dataset.from_dict({"text": texts, "label": labels})

    ds = datasets.DatasetDict({s: split(s) for s in prepro.SPLITS})
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None: ds)
    want = [t for s in prepro.SPLITS for t in raw_split(s)[0]]
    assert len(want) == 20000
    assert tokref.emotion_texts(DATA_DIR) == want
    assert tokref.emotion_texts(None) == want
