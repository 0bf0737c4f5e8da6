"""
Benchmark: classify mode against what a user would run instead, the Hugging Face text-classification pipeline
on the same checkpoint (exported by dev/export_hf.py, LoRA merged), the same texts and the same threads, one
text at a time (batch 1) and in batches of 32. Prints texts per second (the classifying alone: after the model
and tokenizer are loaded, on both sides), the ratios, each side's peak resident memory (the whole process), and
the CPU.

    python dev/bench_classify.py out/checkpoint_best.bin [--texts ../shared/data/emotion/test.txt] [--limit 500]
        [--repeat 5] [--load 1]

Each side runs in a process of its own, so the peak memory is that side's. The two sides take turns, --repeat
times at each batch size, and the table gives the medians, with the lowest and highest ratio of a single turn
beside them: one run of each on a shared 2-core machine varied by a third. A benchmark, not a test: the numbers
depend on the machine and on what else runs on it. --load N runs N busy loops beside both sides throughout
(what a server whose cores also do other work sees): each side's threads then wait for cores the OS shares out.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.join(HERE, "..")


def run_measured(cmd, stdin_path, env):
    """run cmd with stdin from a file; returns its stdout and stderr"""
    with open(stdin_path, "rb") as f:
        p = subprocess.Popen(cmd, stdin=f, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
        out, err = p.communicate()
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({p.returncode}): {err.decode()[-2000:]}")
    return out.decode(), err.decode()


def pipeline_worker(model_dir, batch, texts_path, threads):
    """the pipeline in this process: load, then classify every line; prints one JSON line"""
    import resource

    import torch
    from transformers import pipeline
    torch.set_num_threads(threads)
    with open(texts_path, encoding="utf-8", errors="replace") as f:
        texts = [line.rstrip("\n") for line in f]
    clf = pipeline("text-classification", model=model_dir, tokenizer=model_dir, device=-1, top_k=None)
    clf(texts[:2], batch_size=batch)  # warm-up
    t0 = time.perf_counter()
    out = clf(texts, batch_size=batch, truncation=True, max_length=512)
    secs = time.perf_counter() - t0
    assert len(out) == len(texts)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"texts": len(texts), "seconds": secs, "peak_mib": peak}))


def ours(exe, ckpt, vocab, batch, texts_path, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    # the peak of train_bert alone: a small wrapper whose one child it is reads its rusage
    wrapper = ("import os, resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
               "print('peak_mib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, file=sys.stderr); "
               "sys.exit(p.returncode)")
    cmd = [sys.executable, "-c", wrapper, exe, "-C", ckpt, "-t", "-", "-b", str(batch), "-v", vocab]
    out, err = run_measured(cmd, texts_path, env)
    m = re.search(r"(\d+) texts in (\d+) forwards, ([0-9.]+) s", err)
    peak = float(re.search(r"peak_mib ([0-9.]+)", err).group(1))
    return {"texts": int(m.group(1)), "forwards": int(m.group(2)), "seconds": float(m.group(3)), "peak_mib": peak,
            "lines": out.count("\n")}


def main():
    p = argparse.ArgumentParser(description="classify mode against the Hugging Face pipeline")
    p.add_argument("checkpoint", nargs="?")
    p.add_argument("--texts", default=os.path.join(REPO, "..", "shared", "data", "emotion", "test.txt"),
                   help="one text per line; a trailing ';label' (the emotion files) is cut off")
    p.add_argument("--limit", type=int, default=0, help="the first LIMIT texts only")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeat", type=int, default=5, help="turns of each side at each batch size (medians)")
    p.add_argument("--load", type=int, default=0, help="busy processes running beside both sides (0: none)")
    p.add_argument("--exe", default=os.path.join(REPO, "train_bert"))
    p.add_argument("--vocab", default=os.path.join(REPO, "data", "vocab.txt"))
    p.add_argument("--pipeline-worker", nargs=3, metavar=("MODEL_DIR", "BATCH", "TEXTS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.pipeline_worker:
        d, b, t = args.pipeline_worker
        pipeline_worker(d, int(b), t, args.threads)
        return
    with open(args.texts, encoding="utf-8", errors="surrogateescape") as f:
        texts = [re.sub(r";[a-z]+$", "", line.rstrip("\n")) for line in f]
    texts = texts[:args.limit] if args.limit > 0 else texts
    tmp = tempfile.mkdtemp(prefix="bench_classify_")
    texts_path = os.path.join(tmp, "texts.txt")
    with open(texts_path, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write("\n".join(texts) + "\n")
    hf_dir = os.path.join(tmp, "hf")
    subprocess.run([sys.executable, os.path.join(HERE, "export_hf.py"), args.checkpoint, hf_dir, "--merge"],
                   check=True, capture_output=True)
    with open("/proc/cpuinfo") as f:
        cpu = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    print(f"bench_classify: {cpu}, {args.threads} threads both sides, {len(texts)} texts, {args.checkpoint}, "
          f"medians of {args.repeat} turns each, {args.load} busy processes beside")
    load = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    try:
        compare(args, texts, texts_path, hf_dir)
    finally:
        for q in load:
            q.kill()


def compare(args, texts, texts_path, hf_dir):
    print(f"{'batch':>5} {'ours texts/s':>12} {'pipeline texts/s':>16} {'ours / pipeline':>15} {'(range)':>11} "
          f"{'ours peak MiB':>13} {'pipeline peak MiB':>17}")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    for batch in (1, 32):
        runs = []  # (ours, pipeline) of each turn
        for _ in range(args.repeat):
            o = ours(args.exe, args.checkpoint, args.vocab, batch, texts_path, args.threads)
            assert o["texts"] == len(texts) and o["lines"] == len(texts), o
            r = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--pipeline-worker",
                                hf_dir, str(batch), texts_path], env=env, capture_output=True, text=True, check=True)
            runs.append((o, json.loads(r.stdout.strip().splitlines()[-1])))
        ot = statistics.median(o["texts"] / o["seconds"] for o, _ in runs)
        ht = statistics.median(h["texts"] / h["seconds"] for _, h in runs)
        ratios = [(o["texts"] / o["seconds"]) / (h["texts"] / h["seconds"]) for o, h in runs]
        peak_o, peak_h = max(o["peak_mib"] for o, _ in runs), max(h["peak_mib"] for _, h in runs)
        span = f"{min(ratios):.2f}-{max(ratios):.2f}"
        print(f"{batch:5d} {ot:12.1f} {ht:16.1f} {ot / ht:15.2f} {span:>11} {peak_o:13.0f} {peak_h:17.0f}",
              flush=True)

if __name__ == "__main__":
    main()
