"""
PyTorch's matmul on the shapes of dev/bench_matmul.c, at the same thread count, next to ours.

Runs ./dev/bench_matmul (make dev/bench_matmul) for our old and new times, then times torch on the same layers:
forward F.linear(inp, w, bias), backward dout @ w and dout^T @ inp, min of REPEATS after one warm-up. Prints ms
and GFLOP/s for each, and ours / torch (time; below 1 means ours is faster). A benchmark, not a test.

    python dev/bench_matmul.py [--n 1024] [--repeats 5] [--threads 2]
"""
import argparse
import os
import re
import subprocess
import time

import torch
import torch.nn.functional as F

LAYERS = [  # name, C (in features), OC (out): as in dev/bench_matmul.c
    ("minilm qkv", 384, 1152), ("minilm attproj", 384, 384), ("minilm fc", 384, 1536), ("minilm fcproj", 1536, 384),
    ("base qkv", 768, 2304), ("base attproj", 768, 768), ("base fc", 768, 3072), ("base fcproj", 3072, 768),
]


def ours(n, repeats, threads):
    """{(layer, 'forward'|'backward'): (old ms, new ms)} from the C benchmark, and its header lines"""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run(["./dev/bench_matmul", str(n), str(repeats)], env=env, capture_output=True, text=True,
                         check=True).stdout
    times = {}
    for line in out.splitlines():
        m = re.match(r"(\w+ \w+)\s+(forward|backward) .*?\|\s+([\d.]+) ->\s+([\d.]+) ms", line)
        if m:
            times[(m.group(1), m.group(2))] = (float(m.group(3)), float(m.group(4)))
    return times, out.splitlines()[0]


def best_ms(fn, repeats):
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1024, help="tokens (rows of the activations)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    times, header = ours(args.n, args.repeats, args.threads)
    print(header)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; N {args.n}, min of {args.repeats}")
    print(f"{'layer':15s} {'pass':8s} | {'old ms':>8s} {'new ms':>8s} {'torch ms':>9s} | {'new GF/s':>8s} "
          f"{'torch GF/s':>10s} | new/torch")
    g = torch.Generator().manual_seed(0)
    total = {"new": 0.0, "torch": 0.0}
    for name, C, OC in LAYERS:
        inp = torch.rand(args.n, C, generator=g) - 0.5
        w = torch.rand(OC, C, generator=g) - 0.5
        bias = torch.rand(OC, generator=g) - 0.5
        dout = torch.rand(args.n, OC, generator=g) - 0.5
        with torch.no_grad():
            fwd = best_ms(lambda: F.linear(inp, w, bias), args.repeats)
            bwd = best_ms(lambda: (dout @ w, dout.t() @ inp), args.repeats)
        for pas, t, flops in (("forward", fwd, 2.0 * args.n * C * OC), ("backward", bwd, 4.0 * args.n * C * OC)):
            old, new = times[(name, pas)]
            total["new"] += new
            total["torch"] += t
            print(f"{name:15s} {pas:8s} | {old:8.2f} {new:8.2f} {t:9.2f} | {flops / new * 1e-6:8.1f} "
                  f"{flops / t * 1e-6:10.1f} | {new / t:.2f}")
    print(f"sum: ours {total['new']:.1f} ms, torch {total['torch']:.1f} ms, "
          f"ours / torch {total['new'] / total['torch']:.2f}")


if __name__ == "__main__":
    main()
