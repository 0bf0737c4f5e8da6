"""
Benchmark: one training step (forward, backward, clip, AdamW) of train_bert.c against PyTorch
on the same batch (the first B examples of a split), the same model file and the same thread
count, side by side in one run. Prints the median of the repeats and the ratio C / PyTorch.

    make bench                    # MiniLM and random-init bert-base shapes, batch 16, full
    python dev/bench_step.py --model data/model.bin --strategy full --repeats 10

Not a test: the numbers depend on the machine; name it when you quote them.
"""
import argparse
import os
import platform
import re
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import prepro_emotion as prepro  # noqa: E402


def torch_step_ms(model_path, split_path, strategy, B, repeats, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(42)
    net = prepro.model_from_bin(model_path, dropout=0.1)
    if strategy == "lora":
        from peft import LoraConfig, TaskType, get_peft_model
        net = get_peft_model(net, LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=32, lora_dropout=0.1,
                                             target_modules=["query", "key", "value"]))
    elif strategy == "frozen":
        for name, p in net.named_parameters():
            p.requires_grad = name.startswith("classifier")
    net.train()
    split = prepro.read_split(split_path)
    lengths = split["lengths"][:B]
    T = int(lengths.max())
    ids = np.zeros((B, T), np.int64)
    for b in range(B):
        start = int(split["lengths"][:b].sum())
        ids[b, :lengths[b]] = split["ids"][start:start + lengths[b]]
    ids = torch.from_numpy(ids)
    mask = (torch.arange(T)[None, :] < torch.from_numpy(lengths.astype(np.int64))[:, None]).long()
    labels = torch.from_numpy(split["labels"][:B].astype(np.int64))
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    times = []
    for r in range(repeats + 2):  # two warm-up steps
        t0 = time.perf_counter()
        out = net(input_ids=ids, attention_mask=mask, labels=labels)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if r >= 2:
            times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times)), T


def main():
    p = argparse.ArgumentParser(description="C vs PyTorch training-step benchmark")
    p.add_argument("--model", action="append", help="model file(s); default data/model.bin")
    p.add_argument("--split", default="data/emotion_train.bin")
    p.add_argument("--strategy", default="full", choices=["full", "frozen", "lora"])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--bench-bin", default="dev/bench_step")
    args = p.parse_args()
    models = args.model or ["data/model.bin"]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; threads {args.threads}; "
          f"torch {torch.__version__}")
    rows = []
    for m in models:
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        out = subprocess.run([args.bench_bin, m, args.split, args.strategy, str(args.batch), str(args.repeats)],
                             env=env, check=True, capture_output=True, text=True).stdout
        print(out.strip())
        c_ms = float(re.search(r"median ([0-9.]+) ms", out).group(1))
        name = prepro.read_model(m)[0]["name"]
        t_ms, T = torch_step_ms(m, args.split, args.strategy, args.batch, args.repeats, args.threads)
        print(f"PyTorch step | {name} | {args.strategy} | B {args.batch} T {T} | threads {args.threads} | median {t_ms:.1f} ms")
        rows.append((name, T, c_ms, t_ms))
    print(f"\n| model | strategy | B x T | C ms | PyTorch ms | C / PyTorch |")
    print(f"|---|---|---|---|---|---|")
    for name, T, c_ms, t_ms in rows:
        print(f"| {name} | {args.strategy} | {args.batch} x {T} | {c_ms:.1f} | {t_ms:.1f} | {c_ms / t_ms:.2f} |")


if __name__ == "__main__":
    main()
