"""
The reference experiment's comparison table: runs ./train_bert for each strategy with the
default recipe (full, frozen, lora; early stopping on validation F1, best checkpoint, test)
and prints strategy, trainable parameters, epochs (and the best one), train runtime and the
test metrics.

    make compare                                       # the whole experiment (hours on a CPU)
    python dev/compare.py --extra "-e 1 -x 20"         # a quick look: 20 steps each

Resumable: each strategy's run saves its training state every --save-every steps and at every
epoch end (<out>/c_<strategy>/state.bin). Run the same command again after an interruption:
a strategy whose log has its summary line is not rerun, an interrupted one resumes from its
state (train_bert -R 1, bit for bit), and the table is printed from the logs.

Each run's full output goes to <out>/c_<strategy>.log (tail -f it to follow along).
"""
import argparse
import os
import re
import shlex
import subprocess

SUMMARY = re.compile(r"summary \| strategy (\w+) \| trainable (\d+) \| epochs (\d+) \| best epoch (\d+) \| "
                     r"train runtime ([0-9.]+) s \| test acc ([0-9.]+) \| precision ([0-9.]+) \| recall ([0-9.]+) \| "
                     r"F1 ([0-9.]+) \| loss ([0-9.]+)")


def parse_summary(log_path):
    """the last summary line of a train_bert log as a dict, or None if the run has not finished"""
    if not os.path.exists(log_path):
        return None
    with open(log_path, errors="replace") as f:
        found = SUMMARY.findall(f.read())
    if not found:
        return None
    g = found[-1]
    return dict(who="train_bert", strategy=g[0], trainable=int(g[1]), epochs=int(g[2]), best_epoch=int(g[3]),
                runtime=float(g[4]), acc=float(g[5]), precision=float(g[6]), recall=float(g[7]), f1=float(g[8]),
                loss=float(g[9]))


def run_c(args, strategy, extra=()):
    """./train_bert for one strategy, resumed from its state if an earlier run was interrupted;
    returns its summary line as a dict (full output in <out>/c_<strategy>.log)"""
    out_dir = os.path.join(args.out, f"c_{strategy}")
    log_path = os.path.join(args.out, f"c_{strategy}.log")
    done = parse_summary(log_path)
    if done is not None:
        print(f"{strategy}: finished earlier, read from {log_path}", flush=True)
        return done
    resume = os.path.exists(os.path.join(out_dir, "state.bin"))
    cmd = [args.train_bert, "-s", strategy, "-m", args.model_bin, "-d", args.data, "-o", out_dir, "-f", "100",
           "-r", str(getattr(args, "seed", 42)), "-S", str(getattr(args, "save_every", 0))]
    cmd += ["-e", str(args.epochs)] if args.epochs else []
    cmd += list(extra)
    # resume with the interrupted run's flags; a fresh start replaces what an unfinished run left there
    cmd += ["-R", "1"] if resume else ["-O", "1"]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    print(f"{strategy}: {'resuming' if resume else 'starting'}: {shlex.join(cmd)}", flush=True)
    with open(log_path, "a" if resume else "w") as f:  # streamed, so a long run can be followed with tail -f
        subprocess.run(cmd, env=env, check=True, stdout=f, text=True)
    r = parse_summary(log_path)
    if r is None:
        raise SystemExit(f"error: {log_path} has no summary line; see the log")
    return r


def result_cells(r):
    """trainable, epochs, runtime and the test metrics of a result as markdown table cells"""
    best = f" (best {r['best_epoch']})" if r.get("best_epoch") else ""
    return (f"{r['trainable']:,} | {r['epochs']}{best} | {r['runtime']:.0f} | {r['acc']:.4f} | {r['precision']:.4f} | "
            f"{r['recall']:.4f} | {r['f1']:.4f} | {r['loss']:.4f} |")


def main():
    p = argparse.ArgumentParser(description="run the three strategies and print the comparison table (resumable)")
    p.add_argument("--model-bin", default="data/model.bin")
    p.add_argument("--data", default="data")
    p.add_argument("--strategies", default="full,frozen,lora")
    p.add_argument("--epochs", type=int, default=0, help="max epochs (0: train_bert's default, 50)")
    p.add_argument("--extra", default="", help="more train_bert flags, e.g. \"-x 20\"")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--save-every", type=int, default=100, help="also save the training state every this many steps")
    p.add_argument("--train-bert", default="./train_bert")
    p.add_argument("--out", default="out/compare")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for strategy in args.strategies.split(","):
        r = run_c(args, strategy, shlex.split(args.extra))
        print(f"{strategy}: {r['epochs']} epochs, {r['runtime']:.0f} s, test F1 {r['f1']:.4f}", flush=True)
        rows.append(r)
    print("\n| strategy | trainable params | epochs (best) | train runtime (s) | test acc | precision | recall | "
          "F1 (weighted) | loss |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['strategy']} | {result_cells(r)}")


if __name__ == "__main__":
    main()
