"""
The named header slots agree everywhere: bertc/formats.h (the C readers and writers) against
prepro_emotion.py's constants (which prepro, dev/reference.py, dev/export_hf.py and the reference
scripts use), and files written by one side read back by the other.

    python -m pytest -q tests/test_formats.py
"""
import os
import re
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import prepro_emotion as prepro  # noqa: E402


def c_constants():
    """every `NAME = value,` enum member and `#define NAME value` of bertc/formats.h"""
    text = open(os.path.join(REPO, "bertc", "formats.h")).read()
    out = {}
    for name, value in re.findall(r"^\s+([A-Z][A-Z0-9_]+) = (\d+),", text, re.M):
        out[name] = int(value)
    for name, value in re.findall(r"^#define ([A-Z][A-Z0-9_]+) (\d+)\b", text, re.M):
        out[name] = int(value)
    return out


def test_every_c_slot_has_the_same_name_and_value_in_python():
    c = c_constants()
    assert len(c) > 60, sorted(c)
    missing = [n for n in c if not hasattr(prepro, n)]
    assert not missing, f"prepro_emotion.py lacks {missing}"
    wrong = {n: (v, getattr(prepro, n)) for n, v in c.items() if getattr(prepro, n) != v}
    assert not wrong, f"C value vs Python value: {wrong}"


def test_python_slots_are_all_in_c():
    c = c_constants()
    prefixes = ("MODEL_", "CKPT_", "SPLIT_", "STATE_", "REF_", "H_", "TOKREF_", "METRICS_")
    py = [n for n in dir(prepro) if n.startswith(prefixes) and n.isupper() and isinstance(getattr(prepro, n), int)]
    assert [n for n in py if n not in c] == []


def test_the_scripts_use_the_names():
    """no script writes or reads a header by bare index any more"""
    for path in ("prepro_emotion.py", "dev/reference.py", "dev/export_hf.py", "dev/metrics_reference.py",
                 "dev/tokenizer_reference.py"):
        text = open(os.path.join(REPO, path)).read()
        assert not re.search(r"header_array\(\{\s*0:", text), path
        assert not re.search(r"\bh\[(1[0-9]|[2-9])\]", text), f"{path} indexes a header by number"


def test_a_prepro_model_file_is_read_by_c(tmp_path):
    """prepro writes a random-init tiny model; the C classifier reads the header it wrote (via a checkpoint
    the C side writes from it), and prepro's reader reads that checkpoint's config back"""
    model = tmp_path / "tiny.bin"
    prepro.main(["--random-init", "tiny", "--no-splits", "--model-out", str(model)])
    cfg, _ = prepro.read_model(str(model))
    h = np.fromfile(model, dtype="<i4", count=prepro.HEADER_INTS)
    assert h[prepro.MODEL_C] == cfg["C"] == 64 and h[prepro.MODEL_KIND] == prepro.MODEL_KIND_PLAIN
    exe = os.path.join(REPO, "train_bert")
    if not os.path.exists(exe):
        return
    data = os.path.join(REPO, "data")
    out = tmp_path / "out"
    r = subprocess.run([exe, "-m", str(model), "-d", data, "-o", str(out), "-x", "1", "-e", "1", "-b", "2", "-P", "0"],
                       capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr
    ck = np.fromfile(out / "checkpoint_last.bin", dtype="<i4", count=prepro.HEADER_INTS)
    got = prepro.config_from_header(ck)
    assert got["kind"] == prepro.MODEL_KIND_CHECKPOINT and got["strategy"] == "full" and got["step"] == 1
    for k in ("V", "P", "TV", "C", "L", "NH", "FF", "NC", "pad_id"):
        assert got[k] == cfg[k], k
    st = np.fromfile(out / "state.bin", dtype="<i4", count=prepro.HEADER_INTS)
    assert st[prepro.H_MAGIC] == prepro.STATE_MAGIC and st[prepro.H_VERSION] == prepro.STATE_VERSION
    assert st[prepro.STATE_STEP] == 1 and st[prepro.STATE_NHIST] == 1 and st[prepro.STATE_DONE] == 1
    assert st[prepro.STATE_SETTINGS + 2] == 2  # the batch size
