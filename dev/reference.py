"""
Writes the PyTorch reference states that test_bert.c checks train_bert.c against
(format: README.md, "File formats", "Reference state").

For one model file it builds a Hugging Face BertForSequenceClassification
(fp32, eager attention, all dropout 0), takes a fixed batch of real emotion
training examples, and records the logits, the mean cross-entropy loss, every
parameter's gradient and the losses of 10 AdamW steps on that batch, for each
strategy: full (everything trains), frozen (only the classifier trains) and
lora (PEFT adapters on query / key / value, plus the classifier).

    python dev/reference.py --model-bin data/ref_tiny_model.bin --name tiny --data data
    python dev/reference.py --model-bin data/ref_minilm_model.bin --name minilm --data data

writes data/ref_<name>_{full,frozen,lora,full_pairs}.bin; for --name tiny also
ref_tiny_full_b1.bin (one example), ref_tiny_full_pad.bin (the longest
training example with the three shortest: maximal padding) and
ref_tiny_lora_pairs.bin. A pairs batch joins training examples two by two into
sentence pairs, [CLS] a [SEP] b [SEP] with token type 1 on b, as the tokenizer
encodes a pair that needs no truncation. For tiny it also writes
ref_tiny_pairs_split.bin, 32 such pairs as a split of version 2 (token types,
label names) for test_bert's loader checks.

Not a training script: CPU, one batch, deterministic.
"""

import argparse
import os
import sys
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import prepro_emotion as prepro  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)  # transformers deprecations PEFT triggers

STRATEGIES = {name: i for i, name in enumerate(prepro.STRATEGIES)}
LR, BETAS, EPS, WEIGHT_DECAY, MAX_NORM = 5e-5, (0.9, 0.999), 1e-8, 0.0, 1.0
NSTEPS, TOTAL_STEPS, WARMUP = 10, 20, 0  # the schedule runs to 20 so its decay shows in 10 steps
LORA_R, LORA_ALPHA = 8, 32
LORA_B_SEED = 1234  # lora_B is set to normal(0, 0.02) from this seed (PEFT starts it at 0)


# -----------------------------------------------------------------------------
# batches

def pick_batch(split, which):
    """indices into the training split: 'default' = the first 4 examples of pairwise different
    lengths, 'b1' = the first example, 'pad' = the longest example and the three shortest"""
    lengths = split["lengths"]
    if which == "b1":
        return [0]
    if which == "pairs":
        return list(range(8))
    if which == "pad":
        order = np.argsort(lengths, kind="stable")
        return [int(order[-1])] + [int(i) for i in order[:3]]
    idx, seen = [], set()
    for i, n in enumerate(lengths):
        if int(n) not in seen:
            idx.append(i)
            seen.add(int(n))
        if len(idx) == 4:
            return idx
    raise SystemExit("reference: fewer than 4 distinct lengths in the training split")


def make_batch(split, idx, pad_id, pairs=False):
    """ids, types (B, T), lengths, labels and the attention mask of examples idx, or with pairs of
    the pairs (idx[0], idx[1]), (idx[2], idx[3]), ... (the label: the first one's)"""
    offsets = np.concatenate([[0], np.cumsum(split["lengths"])])
    seqs = [split["ids"][offsets[i]:offsets[i + 1]] for i in idx]
    types = [np.zeros(len(s), np.int32) for s in seqs]
    labels = np.array([split["labels"][i] for i in idx], dtype=np.int32)
    if pairs:  # b without its [CLS]
        seqs = [np.concatenate([a, b[1:]]) for a, b in zip(seqs[0::2], seqs[1::2])]
        types = [np.concatenate([ta, np.ones(len(tb) - 1, np.int32)])
                 for ta, tb in zip(types[0::2], types[1::2])]
        labels = labels[0::2]
    lengths = np.array([len(s) for s in seqs], dtype=np.int32)
    B, T = len(seqs), int(lengths.max())
    ids = np.full((B, T), pad_id, dtype=np.int32)
    tt = np.zeros((B, T), dtype=np.int32)
    for b in range(B):
        ids[b, :lengths[b]] = seqs[b]
        tt[b, :lengths[b]] = types[b]
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)
    return ids, tt, lengths, labels, mask


# -----------------------------------------------------------------------------
# one state

def lora_tensors(peft_model, L, grad):
    """(lora_a (L, 3, r, C), lora_b (L, 3, C, r)) of the PEFT model, values or gradients"""
    named = dict(peft_model.named_parameters())
    out = []
    for ab in ("A", "B"):
        per_layer = []
        for l in range(L):
            ts = []
            for p in ("query", "key", "value"):
                t = named[f"base_model.model.bert.encoder.layer.{l}.attention.self.{p}.lora_{ab}.default.weight"]
                ts.append(t.grad if grad else t)
            per_layer.append(torch.stack([t.detach() for t in ts]))  # stack copies
        out.append(torch.stack(per_layer).numpy().astype(np.float32))
    return out


def compute_state(model_bin, strategy, ids, types, lengths, labels, mask, seed):
    cfg, _ = prepro.read_model(model_bin)
    torch.manual_seed(seed)
    model = prepro.model_from_bin(model_bin, dropout=0.0, attn_implementation="eager")
    model.train()  # dropout is 0 anyway; train() is what fine-tuning runs in
    hf_params = dict(model.named_parameters())  # the same tensor objects stay in the model under PEFT
    nlora, lora_init, peft_model = 0, None, None

    if strategy == "frozen":
        for n, p in model.named_parameters():
            p.requires_grad_(not n.startswith("bert."))
        net = model
    elif strategy == "lora":
        from peft import LoraConfig, TaskType, get_peft_model
        lcfg = LoraConfig(task_type=TaskType.SEQ_CLS, r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0,
                          target_modules=["query", "key", "value"])
        torch.manual_seed(seed)  # lora_A's kaiming init draws from the global generator
        peft_model = get_peft_model(model, lcfg)
        gen = torch.Generator().manual_seed(LORA_B_SEED)
        with torch.no_grad():
            for l in range(cfg["L"]):
                for p in ("query", "key", "value"):
                    name = f"base_model.model.bert.encoder.layer.{l}.attention.self.{p}.lora_B.default.weight"
                    dict(peft_model.named_parameters())[name].normal_(0.0, 0.02, generator=gen)
        nlora = 2 * cfg["L"] * 3 * LORA_R * cfg["C"]
        trainable, total = peft_model.get_nb_trainable_parameters()
        want = nlora + cfg["NC"] * cfg["C"] + cfg["NC"]
        print("  PEFT: ", end="")
        peft_model.print_trainable_parameters()
        assert trainable == want, f"PEFT trains {trainable} parameters, want {want} (LoRA {nlora} + classifier)"
        lora_init = lora_tensors(peft_model, cfg["L"], grad=False)
        net = peft_model
    else:
        net = model

    trainable = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
    from transformers import get_linear_schedule_with_warmup
    sched = get_linear_schedule_with_warmup(opt, WARMUP, TOTAL_STEPS)

    x = torch.from_numpy(ids.astype(np.int64))
    am = torch.from_numpy(mask)
    tt = torch.from_numpy(types.astype(np.int64))
    y = torch.from_numpy(labels.astype(np.int64))
    losses, first = [], None
    for step in range(NSTEPS):
        opt.zero_grad(set_to_none=True)
        out = net(input_ids=x, attention_mask=am, token_type_ids=tt, labels=y)
        out.loss.backward()
        losses.append(out.loss.item())
        if step == 0:  # the state records the unclipped gradients of the first step
            first = dict(logits=out.logits.detach().numpy().astype(np.float32).copy(),
                         loss=np.float32(out.loss.item()),
                         grads=model_grads(net, hf_params, cfg, strategy),
                         lora_grads=lora_tensors(peft_model, cfg["L"], grad=True) if peft_model else None)
        torch.nn.utils.clip_grad_norm_(trainable, MAX_NORM)
        opt.step()
        sched.step()
    first["losses"] = np.array(losses, dtype=np.float32)
    first["lora_init"] = lora_init
    first["nlora"] = nlora
    first["cfg"] = cfg
    return first


def model_grads(net, hf_params, cfg, strategy):
    """gradient of every model parameter in table order, zeros where frozen"""
    sd = {}
    for n, p in hf_params.items():
        # copies: clip_grad_norm_ later scales the gradients in place
        sd[n] = p.grad.detach().clone().numpy() if p.grad is not None else np.zeros(tuple(p.shape), np.float32)
    if strategy == "lora":  # PEFT trains a copy of the classifier (modules_to_save)
        named = dict(net.named_parameters())
        for kind in ("weight", "bias"):
            t = named[f"base_model.model.classifier.modules_to_save.default.{kind}"]
            sd[f"classifier.{kind}"] = t.grad.detach().clone().numpy()
    return prepro.hf_to_table(sd, cfg)


# -----------------------------------------------------------------------------
# writing

def write_state(path, st, strategy, ids, types, lengths, labels):
    cfg, f = st["cfg"], prepro.float_bits
    B, T = ids.shape
    lora = strategy == "lora"
    P = prepro
    h = P.header_array({P.H_MAGIC: P.REF_MAGIC, P.H_VERSION: P.REF_VERSION, P.REF_B: B, P.REF_T: T, P.REF_NC: cfg["NC"],
                        P.REF_STRATEGY: STRATEGIES[strategy], P.REF_LORA_R: LORA_R if lora else 0,
                        P.REF_LORA_ALPHA: f(LORA_ALPHA if lora else 0.0), P.REF_NSTEPS: NSTEPS,
                        P.REF_NPARAMS: P.num_parameters(cfg), P.REF_NLORA: st["nlora"], P.REF_LR: f(LR),
                        P.REF_TOTAL_STEPS: TOTAL_STEPS, P.REF_WARMUP: WARMUP, P.REF_WEIGHT_DECAY: f(WEIGHT_DECAY),
                        P.REF_MAX_NORM: f(MAX_NORM)})
    chunks = [h] + [x.astype("<i4") for x in (ids, types, lengths, labels)]
    if lora:
        chunks += [t.astype("<f4") for t in st["lora_init"]]
    chunks += [st["logits"].astype("<f4"), np.array([st["loss"]], dtype="<f4")]
    chunks += [st["grads"][name].astype("<f4") for name, _ in prepro.model_table(cfg)]
    if lora:
        chunks += [t.astype("<f4") for t in st["lora_grads"]]
    chunks.append(st["losses"].astype("<f4"))
    prepro.write_atomic(path, chunks)
    # size check, as the C reader will do it
    nfloat = st["nlora"] * (2 if lora else 0) + B * cfg["NC"] + 1 + prepro.num_parameters(cfg) + NSTEPS
    want = (prepro.HEADER_INTS + 2 * B * T + 2 * B + nfloat) * 4
    assert os.path.getsize(path) == want, f"{path}: size {os.path.getsize(path)}, want {want}"


def write_pair_split(path, split, pad_id):
    """the first 64 training examples as 32 pairs, a split file with token types and label names"""
    ids, types, lengths, labels, _ = make_batch(split, list(range(64)), pad_id, pairs=True)
    real = np.arange(ids.shape[1])[None, :] < lengths[:, None]
    prepro.write_split(path, lengths, labels, ids[real], split["V"], split["max_len"], types[real],
                       prepro.LABELS)
    print(f"{path}: {len(lengths)} sentence pairs, version {prepro.SPLIT_VERSION}")


def main():
    p = argparse.ArgumentParser(description="write PyTorch reference states for test_bert.c")
    p.add_argument("--model-bin", required=True, help="model file written by prepro_emotion.py")
    p.add_argument("--name", required=True, help="model name used in the output file names (tiny, minilm)")
    p.add_argument("--data", default="data", help="dir with emotion_train.bin; states are written here")
    p.add_argument("--strategies", default="full,frozen,lora")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args()

    torch.set_num_threads(min(2, torch.get_num_threads()))
    split = prepro.read_split(os.path.join(args.data, "emotion_train.bin"))
    cfg, _ = prepro.read_model(args.model_bin)
    if split["V"] > cfg["V"]:
        raise SystemExit(f"reference: split vocabulary ({split['V']}) larger than the model's ({cfg['V']})")

    if args.name == "tiny":
        write_pair_split(os.path.join(args.data, "ref_tiny_pairs_split.bin"), split, cfg["pad_id"])
    jobs = [(s, "default") for s in args.strategies.split(",")] + [("full", "pairs")]
    if args.name == "tiny":
        jobs += [("full", "b1"), ("full", "pad"), ("lora", "pairs")]
    for strategy, which in jobs:
        if strategy not in STRATEGIES:
            raise SystemExit(f"reference: unknown strategy {strategy!r}")
        idx = pick_batch(split, which)
        ids, types, lengths, labels, mask = make_batch(split, idx, cfg["pad_id"], which == "pairs")
        tag = f"{args.name}_{strategy}" + ("" if which == "default" else "_" + which)
        path = os.path.join(args.data, f"ref_{tag}.bin")
        print(f"{tag}: train examples {idx}, lengths {lengths.tolist()}, labels {labels.tolist()}")
        st = compute_state(args.model_bin, strategy, ids, types, lengths, labels, mask, args.seed)
        write_state(path, st, strategy, ids, types, lengths, labels)
        gnorm = np.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in st["grads"].values())
                        + sum(float((g.astype(np.float64) ** 2).sum()) for g in (st["lora_grads"] or [])))
        print(f"  loss {st['loss']:.6f} | logits[0] {np.array2string(st['logits'][0], precision=5)} | "
              f"grad norm {gnorm:.6f} | losses {st['losses'][0]:.6f} .. {st['losses'][-1]:.6f} "
              f"| {path} ({os.path.getsize(path):,} bytes)")


if __name__ == "__main__":
    main()
