"""
Benchmark (`make bench`): the start of a real training epoch of train_bert.c beside what a user would run
instead, the Hugging Face Trainer, on the same model file, data, batch size and thread count, in one run.

Each side trains the first `--steps` steps (default 50) of its shuffled training order at batch 32 (two
untimed steps first), then runs one evaluation pass over the validation split. Seconds per epoch are
extrapolated: steps per epoch x the mean step, plus the evaluation. Three data paths:
  ours      dev/bench_epoch (train_bert.c): each batch padded to its longest, only the real tokens computed
  trainer   the Trainer with dynamic padding (each batch padded to its longest, as DataCollatorWithPadding)
  notebook  the reference notebook's own path: `padding=True` at tokenization, which pads every example to the
            longest of its 1,000-example `map` chunk, then the Trainer
for full, frozen and LoRA, on MiniLM (data/model.bin) and on bert-base shapes (random weights: the time of a
step does not depend on them). Prints ms a step, seconds an epoch, the ratios ours / trainer and ours /
notebook, GFLOP/s on the real tokens and as a share of the machine's peak (dev/bench_matmul's FMA loop, when
it is built), and the CPU.

    make bench                                          # everything, about an hour on 2 cores
    python dev/bench_epoch.py --models data/model.bin --strategies full --steps 10

A benchmark, not a test: the numbers depend on the machine and on what else runs on it.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
import prepro_emotion as prepro  # noqa: E402
from bench_trainer import Split, build_model, collate  # noqa: E402


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            if m:
                return m.group(1).strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def notebook_rows(split, pad_id, chunk=1000):
    """the notebook's tokenization: `padding=True` in a batched map pads each 1,000-example chunk to its longest"""
    rows = []
    for c in range(0, len(split.rows), chunk):
        part = split.rows[c:c + chunk]
        T = max(len(ids) for ids, _ in part)
        for ids, label in part:
            rows.append((ids + [pad_id] * (T - len(ids)), label, len(ids)))
    return rows


class NotebookSplit(torch.utils.data.Dataset):
    def __init__(self, split, pad_id):
        self.rows = notebook_rows(split, pad_id)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        ids, label, n = self.rows[i]
        return {"input_ids": ids, "attention_mask": [1] * n + [0] * (len(ids) - n), "labels": label}


def notebook_collate(rows):  # rows of one chunk share a length; a batch mixes chunks, so pad to its longest
    T = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros((len(rows), T), dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, :len(r["input_ids"])] = torch.tensor(r["input_ids"])
        mask[b, :len(r["attention_mask"])] = torch.tensor(r["attention_mask"])
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([r["labels"] for r in rows])}


def trainer_epoch(model_bin, strategy, train, val, collate_fn, args, out):
    """the Trainer's first `steps` steps after `warmup` untimed ones, and one evaluation pass"""
    from transformers import Trainer, TrainerCallback, TrainingArguments
    model = build_model(model_bin, strategy)
    tokens = {"real": 0, "padded": 0}

    def counting(rows):
        batch = collate_fn(rows)
        tokens["real"] += int(batch["attention_mask"].sum())
        tokens["padded"] += batch["input_ids"].numel()
        return batch

    class Clock(TrainerCallback):
        t0 = t1 = None
        real0 = padded0 = 0

        def on_step_end(self, a, state, control, **kw):
            if state.global_step == args.warmup:
                self.t0, self.real0, self.padded0 = time.perf_counter(), tokens["real"], tokens["padded"]
            if state.global_step == args.warmup + args.steps:
                self.t1 = time.perf_counter()
                self.real1, self.padded1 = tokens["real"], tokens["padded"]

    clock = Clock()
    targs = TrainingArguments(output_dir=os.path.join(out, "trainer_tmp"), per_device_train_batch_size=args.batch,
                              per_device_eval_batch_size=args.batch, max_steps=args.warmup + args.steps,
                              learning_rate=5e-5, lr_scheduler_type="linear", max_grad_norm=1.0, logging_strategy="no",
                              save_strategy="no", report_to=[], dataloader_num_workers=0, use_cpu=True,
                              remove_unused_columns=False, seed=42, disable_tqdm=True)
    trainer = Trainer(model=model, args=targs, train_dataset=train, data_collator=counting, callbacks=[clock])
    trainer.train()
    step_ms = (clock.t1 - clock.t0) * 1e3 / args.steps
    t = time.perf_counter()
    trainer.evaluate(eval_dataset=val)
    eval_s = time.perf_counter() - t
    steps_per_epoch = (len(train) + args.batch - 1) // args.batch
    # the real tokens the timed steps held (the counting collator ran once per batch drawn, in step order)
    return {"step_ms": step_ms, "eval_s": eval_s, "epoch_s": steps_per_epoch * step_ms / 1e3 + eval_s,
            "real_tokens": (clock.real1 - clock.real0) / args.steps,
            "padded_tokens": (clock.padded1 - clock.padded0) / args.steps}


def ours_epoch(model_bin, strategy, args, threads):
    exe = os.path.join(HERE, "bench_epoch")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    r = subprocess.run([exe, model_bin, args.data, strategy, str(args.steps), str(args.batch)], env=env,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{exe} failed ({r.returncode}): {r.stderr.strip()}")
    bench = next(json.loads(line[6:]) for line in r.stdout.splitlines() if line.startswith("BENCH "))
    layers = [line for line in r.stdout.splitlines() if line.startswith("LAYER")]
    return bench, layers


def fma_peak(threads):
    """the machine's fp32 FMA peak in GFLOP/s from dev/bench_matmul --peak, or None where it is not built"""
    exe = os.path.join(HERE, "bench_matmul")
    if not os.path.exists(exe):
        return None
    r = subprocess.run([exe, "--peak"], env=dict(os.environ, OMP_NUM_THREADS=str(threads)), capture_output=True,
                       text=True)
    m = re.search(r"([0-9.]+) all threads", r.stdout)
    return float(m.group(1)) if (r.returncode == 0 and m) else None


def main():
    p = argparse.ArgumentParser(description="train_bert.c against the Hugging Face Trainer over an epoch's start")
    p.add_argument("--models", default="data/model.bin,data/bench_bert_base.bin")
    p.add_argument("--data", default="data")
    p.add_argument("--strategies", default="full,frozen,lora")
    p.add_argument("--paths", default="trainer,notebook", help="the Python data paths to time beside ours")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--out", default="out")
    p.add_argument("--layers", action="store_true", help="print ours' per-layer table for every run")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    peak = fma_peak(args.threads)
    print(f"bench_epoch: {cpu_name()}, {os.cpu_count()} CPUs, {args.threads} threads both sides, batch {args.batch}, "
          f"{args.steps} steps + one validation pass; torch {torch.__version__}"
          + (f"; FMA peak {peak:.0f} GFLOP/s" if peak else "; FMA peak not measured (make dev/bench_matmul)"),
          flush=True)
    train = Split(os.path.join(args.data, "emotion_train.bin"))
    val = Split(os.path.join(args.data, "emotion_validation.bin"))
    table = []
    for model_bin in args.models.split(","):
        cfg, _ = prepro.read_model(model_bin)
        paths = {"trainer": (train, val, collate(cfg["pad_id"])),
                 "notebook": (NotebookSplit(train, cfg["pad_id"]), NotebookSplit(val, cfg["pad_id"]), notebook_collate)}
        for strategy in args.strategies.split(","):
            ours, layers = ours_epoch(model_bin, strategy, args, args.threads)
            ours.update(who="ours")
            print("BENCH " + json.dumps(ours), flush=True)
            if args.layers:
                print("\n".join(layers), flush=True)
            row = {"model": ours["model"], "strategy": strategy, "ours": ours}
            for name in args.paths.split(","):
                tr, va, fn = paths[name]
                r = trainer_epoch(model_bin, strategy, tr, va, fn, args, args.out)
                r.update(who=name, model=ours["model"], strategy=strategy, threads=args.threads)
                print("BENCH " + json.dumps(r), flush=True)
                row[name] = r
            table.append(row)
    print(f"\n{cpu_name()}, {args.threads} threads, batch {args.batch}: ms a step (first {args.steps} steps), "
          "s an epoch (extrapolated, + validation), ours / theirs")
    head = f"{'model':8} {'strategy':8} {'ours ms':>8} {'ours s/ep':>9} {'GFLOP/s':>8} {'% peak':>6}"
    for name in args.paths.split(","):
        head += f" {name + ' ms':>12} {name + ' s/ep':>14} {'ratio':>6}"
    print(head)
    for row in table:
        o = row["ours"]
        share = f"{100 * o['gflops'] / peak:6.1f}" if peak else f"{'-':>6}"
        line = (f"{row['model']:8} {row['strategy']:8} {o['step_ms']:8.0f} {o['epoch_s']:9.0f} {o['gflops']:8.1f} "
                f"{share}")
        for name in args.paths.split(","):
            t = row[name]
            line += f" {t['step_ms']:12.0f} {t['epoch_s']:14.0f} {o['epoch_s'] / t['epoch_s']:6.2f}"
        print(line)
    for row in table[:1]:  # the tokens each side computes a step, on the first model and strategy
        computed = [f"ours {row['ours']['real_tokens']:.0f} real, {row['ours']['real_tokens']:.0f} computed"]
        computed += [f"{n} {row[n]['real_tokens']:.0f} real, {row[n]['padded_tokens']:.0f} computed"
                     for n in args.paths.split(",")]
        print("tokens a step: " + "; ".join(computed))

if __name__ == "__main__":
    main()
