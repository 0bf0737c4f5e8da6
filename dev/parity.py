"""
Parity run: the Hugging Face Trainer (+ PEFT for LoRA) with the reference recipe against
./train_bert, on the same model file, the same tokenized splits and the same number of epochs,
one strategy after the other on this machine. Prints the side-by-side table for README.

    python dev/parity.py --epochs 1                # all three strategies (long: see README)
    python dev/parity.py --epochs 1 --strategies frozen
    python dev/parity.py --epochs 50 --strategies full --sides trainer   # the Trainer to its early stop

Both sides resume after an interruption: the Trainer from its last epoch checkpoint
(resume_from_checkpoint), train_bert from its state (dev/compare.py's run_c).

Recipe on both sides: batch 32 (the reference run's global batch), AdamW lr 5e-5 betas (0.9, 0.999) eps 1e-8 wd 0, linear decay to 0
over the run's epochs, no warmup, clip 1.0, dropout 0.1, seed 42, evaluation every epoch,
early stopping patience 3 on validation weighted F1, best checkpoint reloaded, then test.
The two sides draw different random numbers (shuffle order, dropout masks, LoRA init), so
the numbers agree statistically, not bit for bit.
"""
import argparse
import os
import shlex
import subprocess
import sys
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_trainer import Split, build_model, collate, prepro  # noqa: E402
from compare import result_cells, run_c  # noqa: E402

warnings.filterwarnings("ignore")


def compute_metrics(pred):
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support
    labels, preds = pred.label_ids, pred.predictions.argmax(-1)
    p, r, f1, _ = precision_recall_fscore_support(labels, preds, average="weighted", zero_division=0)
    return {"accuracy": accuracy_score(labels, preds), "precision": p, "recall": r, "f1": f1}


def run_trainer(args, strategy, cfg, splits):
    """the Trainer for one strategy; its result is also kept in <out>/trainer_<strategy>.json, and a strategy
    with that file is not run again (a rerun after an interruption goes on with the next one)"""
    import json
    from transformers import EarlyStoppingCallback, Trainer, TrainingArguments
    done = os.path.join(args.out, f"trainer_{strategy}.json")
    if os.path.exists(done):
        print(f"{strategy}: the Trainer finished earlier, read from {done}", flush=True)
        return json.load(open(done))
    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32, as train_bertcu's default
    torch.backends.cudnn.allow_tf32 = False
    model = build_model(args.model_bin, strategy, seed=args.seed)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    targs = TrainingArguments(
        output_dir=os.path.join(args.out, f"trainer_{strategy}"), per_device_train_batch_size=args.batch,
        per_device_eval_batch_size=args.batch, num_train_epochs=args.epochs, learning_rate=5e-5, weight_decay=0.0,
        lr_scheduler_type="linear", warmup_steps=0, max_grad_norm=1.0, eval_strategy="epoch", save_strategy="epoch",
        load_best_model_at_end=True, metric_for_best_model="f1", greater_is_better=True, save_total_limit=2,
        logging_strategy="epoch", report_to=[], seed=args.seed, use_cpu=not cuda, remove_unused_columns=False, disable_tqdm=True)
    trainer = Trainer(model=model, args=targs, train_dataset=splits["train"], eval_dataset=splits["validation"],
                      data_collator=collate(cfg["pad_id"]), compute_metrics=compute_metrics,
                      callbacks=[EarlyStoppingCallback(early_stopping_patience=3)])
    # an interrupted run goes on from its last epoch checkpoint; runtime then counts this process only
    resume = any(d.startswith("checkpoint-") for d in os.listdir(targs.output_dir)) if os.path.isdir(targs.output_dir) else False
    t0 = time.perf_counter()
    out = trainer.train(resume_from_checkpoint=True if resume else None)
    runtime = time.perf_counter() - t0
    test = trainer.evaluate(eval_dataset=splits["test"], metric_key_prefix="test")
    evals = [h for h in trainer.state.log_history if "eval_f1" in h]
    best = max(evals, key=lambda h: h["eval_f1"]) if evals else {"epoch": 0}
    r = dict(who="Trainer", strategy=strategy, trainable=trainable, epochs=len(evals), best_epoch=int(round(best["epoch"])),
             resumed=resume, runtime=runtime, device=torch.cuda.get_device_name(0) if cuda else "cpu",
             acc=test["test_accuracy"], precision=test["test_precision"], recall=test["test_recall"],
             f1=test["test_f1"], loss=test["test_loss"], train_loss=out.training_loss)
    with open(done, "w") as f:
        json.dump(r, f)
    return r


def main():
    p = argparse.ArgumentParser(description="Trainer vs train_bert, same model, data and epochs")
    p.add_argument("--model-bin", default="data/model.bin")
    p.add_argument("--data", default="data")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--strategies", default="full,frozen,lora")
    p.add_argument("--seed", type=int, default=42, help="both sides: shuffle, dropout, LoRA init")
    p.add_argument("--batch", type=int, default=32, help="Trainer batch (train_bert uses its default, 32, unless --extra)")
    p.add_argument("--sides", default="trainer,c", help="trainer, c or both")
    p.add_argument("--extra", default="", help="more train_bert flags")
    p.add_argument("--save-every", type=int, default=100, help="train_bert: also save the state every this many steps")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--train-bert", default="./train_bert")
    p.add_argument("--out", default="out/parity")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    cfg, _ = prepro.read_model(args.model_bin)
    splits = {k: Split(os.path.join(args.data, f"emotion_{k}.bin")) for k in ("train", "validation", "test")}
    rows = []
    for strategy in args.strategies.split(","):
        sides = {"trainer": lambda: run_trainer(args, strategy, cfg, splits),
                 "c": lambda: run_c(args, strategy, shlex.split(args.extra))}
        for side in args.sides.split(","):
            r = sides[side]()
            print("PARITY " + " ".join(f"{k}={v}" for k, v in r.items()), flush=True)
            rows.append(r)
    print(f"\nmodel {cfg['name']}, {args.epochs} epoch(s), seed {args.seed}, {args.threads} threads, torch {torch.__version__}")
    print("| strategy | who | trainable | epochs | runtime (s) | test acc | precision | recall | F1 | loss |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['strategy']} | {r['who']} | {result_cells(r)}")


if __name__ == "__main__":
    main()
