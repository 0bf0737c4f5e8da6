"""
dev/pack_bf16.py: a model file packed as bf16 and expanded again holds exactly the bf16 rounding of
each weight (torch's round to nearest even), keeps its header, reads as a model file, and bad
input is refused with the file's name.

    python -m pytest -q tests/test_pack_bf16.py
"""
import os
import sys

import numpy as np
import pytest
import torch

from conftest import REPO, TINY

sys.path.insert(0, os.path.join(REPO, "dev"))
import pack_bf16  # noqa: E402
import prepro_emotion as prepro  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.exists(TINY), reason="needs data/ref_tiny_model.bin (make reference)")


def test_pack_expand_is_torch_bf16_rounding(tmp_path):
    packed, expanded = str(tmp_path / "p.bin"), str(tmp_path / "e.bin")
    pack_bf16.pack(TINY, packed)
    n = prepro.num_parameters(prepro.read_model(TINY)[0])
    assert os.path.getsize(packed) == prepro.HEADER_INTS * 4 + 2 * n  # half the weights' bytes
    pack_bf16.expand(packed, expanded)
    w = np.fromfile(TINY, dtype="<f4", offset=prepro.HEADER_INTS * 4)
    got = np.fromfile(expanded, dtype="<f4", offset=prepro.HEADER_INTS * 4)
    want = torch.from_numpy(w.copy()).to(torch.bfloat16).float().numpy()
    assert np.array_equal(got, want)
    assert np.abs(got - w).max() <= np.abs(w).max() * 2.0 ** -8 and not np.array_equal(got, w)
    h0 = np.fromfile(TINY, dtype="<i4", count=prepro.HEADER_INTS)
    h1 = np.fromfile(expanded, dtype="<i4", count=prepro.HEADER_INTS)
    assert np.array_equal(h0, h1)
    cfg, params = prepro.read_model(expanded)
    assert cfg["name"] == "random:tiny" and params["clsw"].shape == (6, 64)
    # packing the expanded file again changes nothing: the values are already bf16
    again = str(tmp_path / "p2.bin")
    pack_bf16.pack(expanded, again)
    assert open(again, "rb").read() == open(packed, "rb").read()


def test_rounding_edges():
    x = np.array([1.0, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, -2.5, 3.4e38, 1e-40], dtype=np.float32)
    got = pack_bf16.from_bf16_bits(pack_bf16.to_bf16_bits(x))
    assert np.array_equal(got, torch.from_numpy(x).to(torch.bfloat16).float().numpy())


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a bf16-packed model"):
        pack_bf16.expand(TINY, str(tmp_path / "x.bin"))
    packed = str(tmp_path / "p.bin")
    pack_bf16.pack(TINY, packed)
    with open(packed, "r+b") as f:
        f.truncate(os.path.getsize(packed) - 2)
    with pytest.raises(ValueError, match="bytes"):
        pack_bf16.expand(packed, str(tmp_path / "x.bin"))
    assert not os.path.exists(tmp_path / "x.bin")
