"""
Nothing bad gets in, nothing good gets lost: every flag is checked (one clear line naming it and
its range, exit 1), a diverging run stops with a non-zero exit and keeps its last good checkpoint
and state, a new run never overwrites an earlier run's results unless told to, writes that fail
(a full disk, simulated with RLIMIT_FSIZE) say so and leave no temp file, long paths are refused
rather than cut, and odd input to classify mode is handled as Hugging Face handles it.
The file-format cases (corrupt models, checkpoints, splits and states) are in test_bert.c.

    python -m pytest -q tests/test_reliability.py
"""
import os
import resource
import signal

import numpy as np
import pytest

from conftest import ENV, TINY, run
from prepro_emotion import HEADER_INTS, MODEL_KIND_CHECKPOINT, STATE_POS, STATE_TRAIN_SECONDS

FLAGS = ["-m", TINY, "-b", "4", "-P", "0", "-f", "100"]


@pytest.mark.parametrize("flag,value,want", [
    ("-l", "nan", "-l nan"), ("-l", "inf", "-l inf"), ("-l", "-1", "-l -1"), ("-l", "0", "-l 0"),
    ("-w", "nan", "-w nan"), ("-a", "nan", "-a nan"), ("-q", "nan", "-q nan"), ("-q", "1", "-q 1"),
    ("-z", "nan", "-z nan"), ("-g", "nan", "-g nan"), ("-g", "-1", "-g -1"), ("-e", "0", "-e 0"),
    ("-e", "2147483647", "-e 2147483647"), ("-x", "0", "-x 0"), ("-x", "-5", "-x -5"), ("-p", "-1", "-p -1"),
    ("-R", "-1", "-R -1"), ("-R", "2", "-R 2"), ("-b", "0", "-b 0"), ("-b", "12abc", "-b 12abc"),
    ("-k", "100000", "-k 100000"), ("-f", "0", "-f 0"), ("-r", "-3", "-r -3"), ("-u", "1e3", "-u 1e3"),
    ("-s", "foo", "unknown strategy 'foo'"), ("-Q", "1", "unknown option '-Q'"), ("-O", "yes", "-O yes"),
])
def test_bad_flag_values_are_refused(flag, value, want, tmp_path):
    r = run(os.environ.get("TRAIN_BERT", "./train_bert"), FLAGS + ["-o", str(tmp_path / "o"), flag, value], check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert want in r.stderr and "HINT" in r.stderr, r.stderr
    assert not os.path.exists(tmp_path / "o"), "nothing is created before the flags are checked"


def test_help_and_missing_values(exe):
    r = run(exe, ["-h"], check=False)
    assert r.returncode == 0 and "-b <int>" in r.stdout and "(default 32)" in r.stdout and "500 steps" in r.stdout
    r = run(exe, ["-e"], check=False)
    assert r.returncode == 1 and "needs a value" in r.stderr


def test_lora_rank_larger_than_the_model(exe, small_data, tmp_path):
    r = run(exe, FLAGS + ["-d", small_data, "-o", str(tmp_path), "-s", "lora", "-k", "100"], check=False)
    assert r.returncode == 1 and "LoRA rank 100 is larger than the hidden size 64" in r.stderr


def test_a_new_run_never_overwrites_results(exe, small_data, tmp_path):
    out = str(tmp_path / "run")
    flags = FLAGS + ["-d", small_data, "-o", out, "-e", "1", "-x", "2"]
    run(exe, flags)
    before = {f: open(os.path.join(out, f), "rb").read() for f in ("log.tsv", "checkpoint_best.bin", "state.bin")}
    r = run(exe, flags, check=False)
    assert r.returncode == 1 and "holds an earlier run's results" in r.stderr and "-O 1" in r.stderr
    assert {f: open(os.path.join(out, f), "rb").read() for f in before} == before
    r = run(exe, flags + ["-O", "1"])
    assert "summary |" in r.stdout


def test_a_diverging_run_stops_and_keeps_the_last_good_epoch(exe, small_data, tmp_path):
    """-N (tests only) makes step 17's gradient norm NaN, in the second epoch of 12 steps"""
    out = str(tmp_path)
    r = run(exe, FLAGS + ["-d", small_data, "-o", out, "-e", "3", "-S", "5", "-N", "17"], check=False)
    assert r.returncode == 1 and "diverged" in r.stderr and "step 17" in r.stderr, r.stderr
    log = open(os.path.join(out, "log.tsv")).read().splitlines()
    assert len(log) == 2 and log[1].startswith("validation\t1\t12\t"), log
    for f in ("checkpoint_best.bin", "checkpoint_last.bin"):
        h = np.fromfile(os.path.join(out, f), dtype="<i4", count=HEADER_INTS)
        assert h[14] == MODEL_KIND_CHECKPOINT and h[18] == 1, f  # the checkpoint of epoch 1
    st = np.fromfile(os.path.join(out, "state.bin"), dtype="<i4", count=HEADER_INTS)
    assert st[2] == 15  # the state saved at step 15 (-S 5), before the NaN
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]
    r = run(exe, FLAGS + ["-d", small_data, "-o", out, "-e", "3", "-S", "5", "-R", "1"])  # and it resumes from there
    assert "resumed from" in r.stdout and "step 15" in r.stdout and "summary |" in r.stdout


def test_the_probe_diverging_stops_too(exe, small_data, tmp_path):
    r = run(exe, FLAGS + ["-d", small_data, "-o", str(tmp_path), "-s", "frozen", "-F", "1", "-e", "2", "-N", "3"],
            check=False)
    assert r.returncode == 1 and "diverged" in r.stderr


def test_a_full_disk_is_an_error_and_leaves_no_temp_file(exe, small_data, tmp_path):
    """RLIMIT_FSIZE of 10 MB: the 8 MB checkpoints fit, the 25 MB state does not"""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (10 << 20, 10 << 20))
    r = run(exe, FLAGS + ["-d", small_data, "-o", str(tmp_path), "-e", "1", "-x", "2"], check=False, preexec_fn=limit)
    assert r.returncode == 1 and "state.bin" in r.stderr and ("write" in r.stderr or "close" in r.stderr), r.stderr
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")], os.listdir(tmp_path)


def test_long_paths_are_refused_not_cut(exe, small_data, tmp_path):
    long_dir = str(tmp_path) + "/" + "d" * 200
    os.makedirs(long_dir)
    deep = long_dir + "/" + "/".join(["e" * 200] * 19)  # about 4,000 characters
    r = run(exe, FLAGS + ["-d", small_data, "-o", deep, "-e", "1", "-x", "1"], check=False)
    assert r.returncode == 1 and ("too long" in r.stderr or "could not create" in r.stderr), r.stderr


def test_a_corrupt_state_is_refused_cleanly(exe, small_data, tmp_path):
    """position -1 was a heap overflow in the loader; now one message (under ASan: no report either)"""
    flags = FLAGS + ["-d", small_data, "-o", str(tmp_path), "-e", "2", "-S", "3", "-X", "6"]
    r = run(exe, flags, check=False)
    assert r.returncode == 3
    path = os.path.join(tmp_path, "state.bin")
    h = np.fromfile(path, dtype="<i4")
    assert np.frombuffer(h[STATE_TRAIN_SECONDS:STATE_TRAIN_SECONDS + 2].tobytes(), dtype="<f8")[0] > 0.0
    h[STATE_POS] = -1
    h.tofile(path)
    r = run(exe, flags[:-2] + ["-R", "1"], check=False)
    assert r.returncode == 1 and "position -1" in r.stderr and "AddressSanitizer" not in r.stderr, r.stderr


def test_vocab_that_is_a_directory(exe, small_data, tmp_path):
    out = str(tmp_path / "o")
    run(exe, FLAGS + ["-d", small_data, "-o", out, "-e", "1", "-x", "1"])
    r = run(exe, ["-C", os.path.join(out, "checkpoint_best.bin"), "-t", "hi", "-v", str(tmp_path)], check=False)
    assert r.returncode == 1 and "is a directory" in r.stderr


def test_nul_bytes_in_a_line_are_dropped_as_hugging_face_does(exe, small_data, tmp_path):
    out = str(tmp_path / "o")
    run(exe, FLAGS + ["-d", small_data, "-o", out, "-e", "1", "-x", "1"])
    ckpt = os.path.join(out, "checkpoint_best.bin")
    r = run(exe, ["-C", ckpt, "-t", "-", "-y", "1"], input="i feel\0 very happy\ni feel very happy\n")
    lines = r.stdout.splitlines()
    assert len(lines) == 4 and lines[1] == lines[3], r.stdout  # the logits: the text after the NUL is kept
