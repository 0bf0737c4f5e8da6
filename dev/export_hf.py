"""
Export a train_bert checkpoint to Hugging Face.

    python dev/export_hf.py out/checkpoint_best.bin out/hf [--vocab data/vocab.txt]

A full or frozen checkpoint becomes a BertForSequenceClassification directory
(config.json with id2label/label2id, model.safetensors, the tokenizer files), loadable with
AutoModelForSequenceClassification.from_pretrained(OUTDIR) and AutoTokenizer.from_pretrained(OUTDIR).

A LoRA checkpoint becomes a PEFT adapter directory (adapter_config.json, adapter_model.safetensors;
the trained classifier is saved as modules_to_save, as PEFT does for SEQ_CLS) plus OUTDIR/base,
the base model it refers to (base weights and tokenizer), so:
    base = AutoModelForSequenceClassification.from_pretrained("OUTDIR/base")
    model = PeftModel.from_pretrained(base, "OUTDIR")
The adapter's base_model_name_or_path is the absolute path of OUTDIR/base.

With --merge, a LoRA checkpoint becomes a plain BertForSequenceClassification instead: each
adapted projection W gets W + (alpha / r) B A (computed in float64, stored as float32), which is
PEFT's merge_and_unload; the merged model's logits equal the adapter model's to within 1e-5.

Checkpoint layout: docs/formats.md ("Checkpoint": a model file with MODEL_KIND 1, then the LoRA tensors).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from prepro_emotion import (H_MAGIC, H_VERSION, HEADER_INTS, LABELS, MODEL_KIND, MODEL_KIND_CHECKPOINT,  # noqa: E402
                            MODEL_MAGIC, MODEL_NAME, MODEL_NAME_INTS, MODEL_VERSION, config_from_header,
                            num_parameters, split_tensors, table_to_hf)


def read_checkpoint(path):
    """(cfg, params table dict, lora dict or None) of a checkpoint written by train_bert"""
    h = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if len(h) < HEADER_INTS or h[H_MAGIC] != MODEL_MAGIC or h[H_VERSION] != MODEL_VERSION:
        sys.exit(f"Error: {path} is not a model file of version {MODEL_VERSION}")
    if h[MODEL_KIND] != MODEL_KIND_CHECKPOINT:
        sys.exit(f"Error: {path} has header kind {h[MODEL_KIND]}: not a train_bert checkpoint\n"
                 "---> HINT: pass out/checkpoint_best.bin (or _last)")
    cfg = config_from_header(h)
    if cfg["strategy"] == "?":
        sys.exit(f"Error: {path} has an unknown strategy in its header")
    cfg["name"] = h[MODEL_NAME:MODEL_NAME + MODEL_NAME_INTS].tobytes().split(b"\0", 1)[0].decode("ascii", "replace")
    nlora = 2 * cfg["L"] * 3 * cfg["r"] * cfg["C"] if cfg["strategy"] == "lora" else 0
    want = (HEADER_INTS + num_parameters(cfg) + nlora) * 4
    if os.path.getsize(path) != want:
        sys.exit(f"Error: {path} has {os.path.getsize(path)} bytes, its header says {want}")
    data = np.fromfile(path, dtype="<f4", offset=HEADER_INTS * 4)
    params, off = split_tensors(data, cfg)
    lora = None
    if nlora:
        L, r, C = cfg["L"], cfg["r"], cfg["C"]
        lora = dict(a=data[off:off + nlora // 2].reshape(L, 3, r, C), b=data[off + nlora // 2:].reshape(L, 3, C, r))
    return cfg, params, lora


def hf_model(cfg, params):
    import torch
    from transformers import BertConfig, BertForSequenceClassification
    labels = LABELS if cfg["NC"] == len(LABELS) else [f"LABEL_{i}" for i in range(cfg["NC"])]
    config = BertConfig(vocab_size=cfg["V"], max_position_embeddings=cfg["P"], type_vocab_size=cfg["TV"],
                        hidden_size=cfg["C"], num_hidden_layers=cfg["L"], num_attention_heads=cfg["NH"],
                        intermediate_size=cfg["FF"], layer_norm_eps=cfg["eps"], hidden_act="gelu",
                        pad_token_id=cfg["pad_id"], num_labels=cfg["NC"],
                        id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)},
                        architectures=["BertForSequenceClassification"])
    model = BertForSequenceClassification(config).float().eval()
    sd = {k: torch.from_numpy(np.array(v)) for k, v in table_to_hf(params, cfg).items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    buffers = {n for n, _ in model.named_buffers()}
    assert not [k for k in missing if k not in buffers] and not unexpected, (missing, unexpected)
    return model


def save_tokenizer(cfg, vocab, outdir):
    from transformers import BertTokenizerFast
    from transformers.models.bert.tokenization_bert import load_vocab
    v = load_vocab(vocab)
    if len(v) != cfg["V"]:
        sys.exit(f"Error: {vocab} has {len(v)} tokens, the model has V {cfg['V']}\n---> HINT: pass the model's vocab with --vocab")
    # vocab=, not vocab_file=: transformers 5 ignores vocab_file here and builds a 5-token vocab
    tok = BertTokenizerFast(vocab=v, do_lower_case=cfg["lower"], model_max_length=cfg["P"])
    assert len(tok) == cfg["V"], f"tokenizer has {len(tok)} tokens, want {cfg['V']}"
    tok.save_pretrained(outdir)


def merge_lora(cfg, params, lora):
    """the parameter table with the adapters folded in: qkvw[l, j] += (alpha / r) B[l, j] @ A[l, j]"""
    C, scale = cfg["C"], cfg["alpha"] / cfg["r"]
    qkvw = np.array(params["qkvw"], dtype=np.float64)  # (L, 3C, C)
    for l in range(cfg["L"]):
        for j in range(3):  # query, key, value
            qkvw[l, j * C:(j + 1) * C, :] += scale * (lora["b"][l, j].astype(np.float64) @ lora["a"][l, j].astype(np.float64))
    merged = dict(params)
    merged["qkvw"] = qkvw.astype(np.float32)
    return merged


def export(ckpt, outdir, vocab, merge=False):
    import torch
    cfg, params, lora = read_checkpoint(ckpt)
    os.makedirs(outdir, exist_ok=True)
    if lora is not None and merge:
        params, lora = merge_lora(cfg, params, lora), None
        cfg = dict(cfg, merged=True)
    model = hf_model(cfg, params)
    if lora is None:
        model.save_pretrained(outdir, safe_serialization=True)
        save_tokenizer(cfg, vocab, outdir)
        return cfg
    from peft import LoraConfig, TaskType, get_peft_model
    base_dir = os.path.abspath(os.path.join(outdir, "base"))
    model.save_pretrained(base_dir, safe_serialization=True)
    save_tokenizer(cfg, vocab, base_dir)
    lcfg = LoraConfig(task_type=TaskType.SEQ_CLS, r=cfg["r"], lora_alpha=cfg["alpha"], lora_dropout=0.1,
                      target_modules=["query", "key", "value"], base_model_name_or_path=base_dir)
    peft_model = get_peft_model(model, lcfg)
    with torch.no_grad():
        for l in range(cfg["L"]):
            att = peft_model.base_model.model.bert.encoder.layer[l].attention.self
            for j, p in enumerate(("query", "key", "value")):
                m = getattr(att, p)
                m.lora_A["default"].weight.copy_(torch.from_numpy(np.array(lora["a"][l, j])))
                m.lora_B["default"].weight.copy_(torch.from_numpy(np.array(lora["b"][l, j])))
        # the trained classifier: PEFT's modules_to_save copy of it
        cls = peft_model.base_model.model.classifier.modules_to_save["default"]
        cls.weight.copy_(torch.from_numpy(np.array(params["clsw"])))
        cls.bias.copy_(torch.from_numpy(np.array(params["clsb"])))
    peft_model.save_pretrained(outdir, safe_serialization=True)
    save_tokenizer(cfg, vocab, outdir)
    return cfg


def main(argv=None):
    p = argparse.ArgumentParser(description="train_bert checkpoint -> Hugging Face model (full/frozen) or PEFT adapter (lora)")
    p.add_argument("checkpoint")
    p.add_argument("outdir")
    p.add_argument("--vocab", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "vocab.txt"))
    p.add_argument("--merge", action="store_true", help="LoRA: fold the adapters into the weights, a plain model")
    args = p.parse_args(argv)
    cfg = export(args.checkpoint, args.outdir, args.vocab, args.merge)
    if cfg.get("merged"):
        kind = "BertForSequenceClassification with the LoRA adapters merged"
    elif cfg["strategy"] == "lora":
        kind = "PEFT LoRA adapter (base model in base/)"
    else:
        kind = "BertForSequenceClassification"
    print(f"wrote {args.outdir}: {kind}, {cfg['name']} {cfg['strategy']}, epoch {cfg['epoch']}, step {cfg['step']}")


if __name__ == "__main__":
    main()
