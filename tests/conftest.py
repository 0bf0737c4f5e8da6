"""
Shared by the tests that run the trainer binaries: the paths, a small slice of the emotion splits,
and the `exe` fixture, which runs each such test against ./train_bert and, on a machine with a GPU,
against ./train_bertcu too (elsewhere those runs are skipped, and pytest's summary says why).
TRAIN_BERT=path selects another CPU binary (make test-sanitize passes the ASan/UBSan build);
TRAIN_BERTCU=path another GPU binary, run even without a GPU (make test-emu passes ./train_bertcu_emu,
the GPU trainer on the CPU emulation of CUDA in dev/emu).
"""
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "dev"))
from prepro_emotion import read_split, write_split  # noqa: E402

TINY = os.path.join(REPO, "data", "ref_tiny_model.bin")
VOCAB = os.path.join(REPO, "data", "vocab.txt")
ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


def gpu_present():
    """a CUDA device answers nvidia-smi"""
    smi = shutil.which("nvidia-smi")
    return smi is not None and subprocess.run([smi, "-L"], capture_output=True).returncode == 0


@pytest.fixture(scope="session", params=["cpu", "gpu"])
def exe(request):
    """the trainer binary under test: train_bert, then train_bertcu where a GPU is present"""
    if not os.path.exists(TINY):
        pytest.skip("needs data/ref_tiny_model.bin (make reference)")
    if request.param == "cpu":
        path = os.environ.get("TRAIN_BERT", os.path.join(REPO, "train_bert"))
        if not os.path.exists(path):
            pytest.skip(f"needs {path} (make train_bert)")
        return path
    path = os.environ.get("TRAIN_BERTCU")
    if path is not None:
        if not os.path.exists(path):
            pytest.skip(f"needs {path}")
        return path
    path = os.path.join(REPO, "train_bertcu")
    if not gpu_present():
        pytest.skip("train_bertcu: no GPU on this machine, so its runs are skipped (dev/gpu_check.sh runs them)")
    if not os.path.exists(path):
        pytest.skip("train_bertcu: not built (make train_bertcu)")
    return path


def run(exe, args, check=True, **kw):
    return subprocess.run([exe] + list(args), env=ENV, capture_output=True, text=True, check=check, cwd=REPO, **kw)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """the first 48 / 32 / 32 examples of the tokenized splits (tiny shares bert-base-uncased's vocab)"""
    d = tmp_path_factory.mktemp("data")
    for name, n in (("train", 48), ("validation", 32), ("test", 32)):
        s = read_split(os.path.join(REPO, "data", f"emotion_{name}.bin"))
        lengths = s["lengths"][:n]
        write_split(str(d / f"emotion_{name}.bin"), lengths, s["labels"][:n], s["ids"][:int(lengths.sum())], s["V"],
                    s["max_len"])
    return str(d)
