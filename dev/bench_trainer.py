"""
Times the Hugging Face Trainer on the same model file, data and batch size as train_bertcu,
so dev/gpu_check.sh can put the two side by side on one card.

For each strategy (full, frozen = classifier only, lora = PEFT on query/key/value) and
precision (fp32 with TF32 off, bf16 autocast): `--steps` training steps after `--warmup`
untimed ones, then one evaluation pass over the validation split. Prints one JSON line per
run: steps/s, eval seconds, seconds per epoch extrapolated as steps_per_epoch / (steps/s)
+ eval seconds, and the peak GPU memory torch allocated.

    python dev/bench_trainer.py --model-bin data/model.bin --data data --steps 100

Not a reference: timing only (dropout on as in training, no metrics).
"""

import argparse
import json
import os
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import prepro_emotion as prepro  # noqa: E402

warnings.filterwarnings("ignore")


class Split(torch.utils.data.Dataset):
    def __init__(self, path):
        s = prepro.read_split(path)
        offsets = [0]
        for n in s["lengths"]:
            offsets.append(offsets[-1] + int(n))
        self.rows = [(s["ids"][offsets[i]:offsets[i + 1]].tolist(), int(s["labels"][i])) for i in range(s["N"])]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        ids, label = self.rows[i]
        return {"input_ids": ids, "labels": label}


def collate(pad_id):
    def f(rows):  # pad each batch to its own longest example, as the C loader does
        T = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), T), dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, :len(r["input_ids"])] = torch.tensor(r["input_ids"])
            mask[b, :len(r["input_ids"])] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([r["labels"] for r in rows])}
    return f


def build_model(model_bin, strategy, attn="sdpa", seed=42):
    """the reference experiment's model for a strategy: dropout 0.1; frozen trains the classifier
    only; lora is PEFT r 8, alpha 32, dropout 0.1 on query/key/value (+ the classifier)"""
    torch.manual_seed(seed)
    model = prepro.model_from_bin(model_bin, dropout=0.1, attn_implementation=attn)
    if strategy == "frozen":
        for n, p in model.named_parameters():
            p.requires_grad_(not n.startswith("bert."))
    elif strategy == "lora":
        from peft import LoraConfig, TaskType, get_peft_model
        model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=32, lora_dropout=0.1,
                                                 target_modules=["query", "key", "value"]))
    return model


def run(args, strategy, precision, train, val, cfg):
    from transformers import Trainer, TrainerCallback, TrainingArguments
    cuda = torch.cuda.is_available()
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32, as train_bertcu
    torch.backends.cudnn.allow_tf32 = False
    model = build_model(args.model_bin, strategy, args.attn)

    class Clock(TrainerCallback):
        def __init__(self):
            self.t0, self.t1 = None, None

        def on_step_end(self, a, state, control, **kw):
            if state.global_step == args.warmup:
                if cuda:
                    torch.cuda.synchronize()
                self.t0 = time.perf_counter()
            if state.global_step == args.warmup + args.steps:
                if cuda:
                    torch.cuda.synchronize()
                self.t1 = time.perf_counter()

    clock = Clock()
    targs = TrainingArguments(output_dir=os.path.join(args.out, "trainer_tmp"), per_device_train_batch_size=args.batch,
                              per_device_eval_batch_size=args.batch, max_steps=args.warmup + args.steps, learning_rate=5e-5,
                              lr_scheduler_type="linear", weight_decay=0.0, max_grad_norm=1.0, bf16=precision == "bf16",
                              logging_strategy="no", save_strategy="no", report_to=[], dataloader_num_workers=0,
                              use_cpu=not cuda, remove_unused_columns=False, seed=42, disable_tqdm=True)
    trainer = Trainer(model=model, args=targs, train_dataset=train, data_collator=collate(cfg["pad_id"]), callbacks=[clock])
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    steps_per_s = args.steps / (clock.t1 - clock.t0)
    t = time.perf_counter()
    trainer.evaluate(eval_dataset=val)
    if cuda:
        torch.cuda.synchronize()
    eval_s = time.perf_counter() - t
    steps_per_epoch = (len(train) + args.batch - 1) // args.batch
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
    return {"who": "trainer", "strategy": strategy, "precision": precision, "steps_per_s": steps_per_s,
            "eval_s": eval_s, "epoch_s": steps_per_epoch / steps_per_s + eval_s, "steps_per_epoch": steps_per_epoch,
            "peak_mib": peak, "device": torch.cuda.get_device_name(0) if cuda else "cpu"}


def main():
    p = argparse.ArgumentParser(description="time the Hugging Face Trainer on train_bertcu's model and data")
    p.add_argument("--model-bin", default="data/model.bin")
    p.add_argument("--data", default="data", help="dir with emotion_{train,validation}.bin")
    p.add_argument("--strategies", default="full,frozen,lora")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--steps", type=int, default=100, help="timed steps")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--limit", type=int, default=0, help="use only this many examples per split (CPU smoke test)")
    p.add_argument("--attn", default="sdpa", help="attention implementation (sdpa, eager)")
    p.add_argument("--out", default=os.environ.get("OUT", "out"))
    args = p.parse_args()
    cfg, _ = prepro.read_model(args.model_bin)
    train = Split(os.path.join(args.data, "emotion_train.bin"))
    val = Split(os.path.join(args.data, "emotion_validation.bin"))
    if args.limit > 0:
        train.rows, val.rows = train.rows[:args.limit], val.rows[:args.limit]
    for strategy in args.strategies.split(","):
        for precision in args.precisions.split(","):
            try:
                r = run(args, strategy, precision, train, val, cfg)
            except Exception as e:  # one failed run must not hide the others
                r = {"who": "trainer", "strategy": strategy, "precision": precision, "error": f"{type(e).__name__}: {e}"}
            print("BENCH " + json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
