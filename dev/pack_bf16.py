"""
Real weights on the GPU machine: a model file packed as bfloat16, about half the size (all-MiniLM-L6-v2:
91 MB -> 45 MB, under the 64 MiB that can travel there), and expanded back to an ordinary float32
model file on arrival. The expanded file holds exactly the bf16-rounded weights, so both our trainer
and the Hugging Face Trainer start from the very same numbers and parity stays exact in what it
compares; the rounding (round to nearest even, 8 bits of mantissa) is the only change.

    python dev/pack_bf16.py pack data/model.bin data/minilm_bf16.bin      (here)
    python dev/pack_bf16.py expand data/minilm_bf16.bin /tmp/minilm.bin   (on the GPU machine)

Packed layout: the model file's 256-int32 header with the magic replaced by PACKED_MAGIC (so no
reader mistakes it for a model file), then every float32 of the model file as the upper 16 bits
of its bf16 rounding, little-endian uint16, in the same order.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import prepro_emotion as prepro  # noqa: E402

PACKED_MAGIC = 20261133


def to_bf16_bits(x):
    """float32 array -> uint16 bf16 bits, round to nearest even (NaN and Inf are refused upstream)"""
    u = np.ascontiguousarray(x, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype("<u2")


def from_bf16_bits(b):
    return (b.astype("<u4") << 16).view("<f4")


def pack(src, dst):
    cfg, _ = prepro.read_model(src)  # checks the model file as the C reader does
    h = np.fromfile(src, dtype="<i4", count=prepro.HEADER_INTS).copy()
    w = np.fromfile(src, dtype="<f4", offset=prepro.HEADER_INTS * 4)
    if not np.isfinite(w).all():
        raise ValueError(f"{src}: non-finite weights")
    h[prepro.H_MAGIC] = PACKED_MAGIC
    prepro.write_atomic(dst, [h, to_bf16_bits(w)])
    return cfg, w.size


def expand(src, dst):
    size = os.path.getsize(src)
    h = np.fromfile(src, dtype="<i4", count=prepro.HEADER_INTS).copy()
    if len(h) < prepro.HEADER_INTS or h[prepro.H_MAGIC] != PACKED_MAGIC:
        raise ValueError(f"{src}: not a bf16-packed model (magic {h[0] if len(h) else None}, want {PACKED_MAGIC})\n"
                         "---> HINT: make it with `python dev/pack_bf16.py pack MODEL.bin PACKED.bin`")
    h[prepro.H_MAGIC] = prepro.MODEL_MAGIC
    cfg = prepro.config_from_header(h)
    n = prepro.num_parameters(cfg)
    if size != prepro.HEADER_INTS * 4 + 2 * n:
        raise ValueError(f"{src}: {size} bytes, its header says {prepro.HEADER_INTS * 4 + 2 * n}")
    b = np.fromfile(src, dtype="<u2", offset=prepro.HEADER_INTS * 4)
    prepro.write_atomic(dst, [h, from_bf16_bits(b)])
    prepro.read_model(dst)  # and the result is a valid model file
    return cfg, n


def main(argv=None):
    p = argparse.ArgumentParser(description="pack a model file as bf16, or expand one back to float32")
    p.add_argument("mode", choices=["pack", "expand"])
    p.add_argument("src")
    p.add_argument("dst")
    a = p.parse_args(argv)
    cfg, n = (pack if a.mode == "pack" else expand)(a.src, a.dst)
    print(f"{a.mode}: {a.src} -> {a.dst}: {cfg['name'] if 'name' in cfg else ''} {n:,} parameters, "
          f"{os.path.getsize(a.dst):,} bytes")


if __name__ == "__main__":
    try:
        main()
    except ValueError as e:
        sys.exit(f"Error: {e}")
