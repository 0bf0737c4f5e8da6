"""
Nothing bad gets in, nothing good gets lost: every flag is checked (one clear line naming it and
its range, exit 1; numbers in plain decimal only), a diverging run stops with a non-zero exit and keeps
its last good checkpoint and state, a new run never overwrites an earlier run's results unless told to,
two runs never share an output directory (a lock), SIGINT and SIGTERM stop at a step boundary with the
state saved, writes that fail (a full disk, simulated with RLIMIT_FSIZE; stdout on /dev/full) say so
and leave no temp file, a save failing on the GPU trainer's thread is reported by the main thread,
FIFOs are refused rather than waited on, long paths are refused rather than cut, and odd input to
classify mode is handled as Hugging Face handles it.
The file-format cases (corrupt models, checkpoints, splits and states) are in test_bert.c.

    python -m pytest -q tests/test_reliability.py
"""
import os
import resource
import shlex
import shutil
import signal
import subprocess

import numpy as np
import pytest

from conftest import ENV, REPO, TINY, run
from prepro_emotion import CKPT_EPOCH, HEADER_INTS, MODEL_KIND_CHECKPOINT, STATE_POS, STATE_TRAIN_SECONDS
from test_text_in_models_out import assert_runs_equal, read_scalars

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


@pytest.mark.parametrize("flag,value", [
    ("-b", " 5"), ("-b", "+5"), ("-u", "-0"), ("-x", "-0"), ("-b", "0x10"), ("-g", "0x10"), ("-w", "0x1p-3"),
    ("-w", "1e-40"), ("-g", "1e-50"), ("-l", "5e-5 "), ("-g", "+1"), ("-w", "-0.0"), ("-q", ".e1"), ("-g", "1e"),
])
def test_numbers_are_plain_decimal(flag, value, tmp_path):
    """strtol / strtod took all of these (1e-40 is a subnormal float, 1e-50 a silent 0); a model that does not
    exist shows whether the flags were taken"""
    r = run(os.environ.get("TRAIN_BERT", "./train_bert"), ["-m", "/nonexistent", "-o", str(tmp_path), flag, value],
            check=False)
    assert r.returncode == 1 and f"option {flag} {value}: want a plain decimal" in r.stderr, r.stderr


def test_plain_decimal_numbers_are_taken(tmp_path):
    flags = ["-w", "0.5", "-g", "1e3", "-l", ".5", "-a", "5E-5", "-z", "0", "-q", "0.", "-x", "-1", "-b", "007",
             "-e", "3"]
    r = run(os.environ.get("TRAIN_BERT", "./train_bert"), ["-m", "/nonexistent", "-o", str(tmp_path)] + flags,
            check=False)
    assert r.returncode == 1 and "cannot read /nonexistent" in r.stderr, r.stderr


def test_help_and_missing_values(exe):
    r = run(exe, ["-h"], check=False)
    assert r.returncode == 0 and "-b <int>" in r.stdout and "(default 32; 1 to 4096)" in r.stdout \
        and "500 steps" in r.stdout
    # every number's accepted range, as the hint after a bad value promises
    assert "(default 5e-05; 1e-12 to 10)" in r.stdout and "(default -1; at least 1, or -1)" in r.stdout
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


def test_fifos_are_refused_not_waited_on(exe, small_data, tmp_path):
    """a FIFO as model, split, checkpoint, vocabulary or state blocked for ever in fopen"""
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    out = str(tmp_path / "o")
    run(exe, FLAGS + ["-d", small_data, "-o", out, "-e", "1", "-x", "1"])
    ckpt = os.path.join(out, "checkpoint_best.bin")
    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    os.remove(data / "emotion_train.bin")
    os.mkfifo(data / "emotion_train.bin")
    resumed = tmp_path / "r"
    os.makedirs(resumed)
    os.mkfifo(resumed / "state.bin")
    cases = [FLAGS + ["-d", small_data, "-o", str(tmp_path / "o1"), "-m", fifo],
             FLAGS + ["-d", str(data), "-o", str(tmp_path / "o2")],
             FLAGS + ["-d", small_data, "-o", str(resumed), "-R", "1"],
             ["-C", fifo, "-t", "hi"], ["-C", ckpt, "-t", "hi", "-v", fifo]]
    for args in cases:
        r = run(exe, args, check=False, timeout=120)
        assert r.returncode == 1 and "not a regular file" in r.stderr, (args, r.stderr)


def test_one_run_per_output_directory(exe, small_data, tmp_path):
    """a second run on a directory in use, fresh, -O 1 or -R 1, is refused naming the first one's pid; the lock
    goes with its process, kill -9 included"""
    out = str(tmp_path / "o")
    flags = ["-m", TINY, "-b", "4", "-P", "0", "-f", "1", "-d", small_data, "-o", out, "-e", "50", "-p", "0"]
    first = subprocess.Popen([exe] + flags, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                             cwd=REPO)
    try:
        for line in first.stdout:
            if line.startswith("step 2/"):
                break
        assert first.poll() is None
        for extra in ([], ["-O", "1"], ["-R", "1"]):
            r = run(exe, flags + extra, check=False)
            assert r.returncode == 1 and f"in use: process {first.pid} holds its lock" in r.stderr, r.stderr
        assert os.path.exists(os.path.join(out, "log.tsv")), "-O 1 removed the first run's log under it"
        assert first.poll() is None
    finally:
        first.kill()
        first.communicate()
    r = run(exe, flags[:-4] + ["-e", "1", "-x", "1", "-O", "1"])
    assert "summary |" in r.stdout


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_at_a_step_and_resumes_bit_for_bit(exe, small_data, tmp_path, sig):
    """SIGTERM (143) or SIGINT (130) mid-run: the state of the step boundary it stopped at, no temp file, the
    command that resumes it; the resumed run equals an uninterrupted one bit for bit"""
    flags = ["-m", TINY, "-b", "4", "-d", small_data, "-e", "6", "-p", "0", "-P", "0", "-f", "1"]
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    ra = run(exe, flags + ["-o", a])
    # the run keeps an ignored SIGINT ignored (as nohup asks), and a shell without job control starts its
    # background jobs so, CI's among them: the child gets the default action back before it starts
    p = subprocess.Popen([exe] + flags + ["-o", b], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=ENV, cwd=REPO, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    head = ""
    for line in p.stdout:
        head += line
        if line.startswith("step 5/"):
            p.send_signal(sig)
            break
    rest, err = p.communicate(timeout=600)
    assert p.returncode == 128 + sig, err
    name = "SIGTERM" if sig == signal.SIGTERM else "SIGINT"
    assert f"stopped by {name} after step" in err and "the state is saved in" in err, err
    assert not [f for f in os.listdir(b) if f.endswith(".tmp")], os.listdir(b)
    cmd = shlex.split(err.split("resume bit for bit with:")[1].splitlines()[0])
    assert cmd[-len(flags) - 4:] == flags + ["-o", b, "-R", "1"], cmd  # (a wrapper such as train_bertcu_k4 adds -K 4)
    rb = subprocess.run(cmd, env=ENV, cwd=REPO, capture_output=True, text=True, check=True)
    assert "resumed from" in rb.stdout
    steps = lambda out: [l.split(" | ms")[0].rsplit(" | ", 1)[0] for l in out.splitlines() if l.startswith("step ")]
    assert steps(head + rest) + steps(rb.stdout) == steps(ra.stdout)  # stopped at a step, resumed at the next
    sa, sb = read_scalars(a), read_scalars(b)
    assert sa["train/loss"] == sb["train/loss"] and len(sa["train/loss"]) == 72 and sa["test/loss"] == sb["test/loss"]
    assert_runs_equal(a, b, 6)


def test_a_save_failing_on_the_thread_is_reported_by_the_main_thread(exe, small_data, tmp_path):
    """train_bertcu writes its state on a thread (-W 1): the state of step 5 cannot be written (RLIMIT_FSIZE).
    The thread called exit() while training went on (under ASan: heap-use-after-free, once a deadlock); now it
    records the error, and the main thread reports it at its next wait for the thread, the save of step 10"""
    if "bertcu" not in os.path.basename(exe):
        pytest.skip("train_bert writes in line (no save thread): test_a_full_disk_is_an_error... covers it")

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (10 << 20, 10 << 20))
    r = run(exe, FLAGS + ["-d", small_data, "-o", str(tmp_path), "-e", "1", "-S", "5"], check=False,
            preexec_fn=limit)
    assert r.returncode == 1 and "state.bin" in r.stderr and "File too large" in r.stderr, r.stderr
    assert "on the thread writing the checkpoints and state, -W 1; training stopped at step 10" in r.stderr, r.stderr
    assert "summary |" not in r.stdout and "AddressSanitizer" not in r.stderr
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")], os.listdir(tmp_path)


def test_the_best_checkpoint_is_the_one_the_run_wrote(exe, small_data, tmp_path):
    """the end of a run reloads checkpoint_best.bin: the last checkpoint copied over it, or a best of epoch -1,
    changed the test line and exited 0. lr 1e-12 changes no weight, so epoch 1 stays the best of two"""
    out = str(tmp_path)
    flags = FLAGS + ["-d", small_data, "-o", out, "-e", "2", "-l", "1e-12"]
    first = run(exe, flags).stdout.splitlines()
    log = [l.split("\t") for l in open(os.path.join(out, "log.tsv")).read().splitlines()[1:3]]
    assert [l[-1] for l in log] == ["1", "0"], log
    best = os.path.join(out, "checkpoint_best.bin")
    good = open(best, "rb").read()
    shutil.copy(os.path.join(out, "checkpoint_last.bin"), best)
    r = run(exe, flags + ["-R", "1"], check=False)  # the state says training has ended: only the test is left
    assert r.returncode == 1 and "is of epoch 2, step 24; this run wrote it at epoch 1, step 12" in r.stderr, r.stderr
    h = np.frombuffer(good, dtype="<i4").copy()
    h[CKPT_EPOCH] = -1
    h.tofile(best)
    r = run(exe, flags + ["-R", "1"], check=False)
    assert r.returncode == 1 and "is of epoch -1" in r.stderr, r.stderr
    open(best, "wb").write(good)
    r = run(exe, flags + ["-R", "1"])
    test_line = lambda lines: [l for l in lines if l.startswith("summary |")][0].split("train runtime")[1]
    assert test_line(r.stdout.splitlines()).split("|")[1:] == test_line(first).split("|")[1:]


def test_results_lost_on_stdout_are_an_error(exe, small_data, tmp_path):
    """stdout on a full disk: a training run and classify mode exited 0, every result lost"""
    out = str(tmp_path / "o")
    with open("/dev/full", "w") as full:
        r = subprocess.run([exe] + FLAGS + ["-d", small_data, "-o", out, "-e", "1", "-x", "1"], stdout=full,
                           stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
        assert r.returncode == 1 and "could not write standard output" in r.stderr, r.stderr
        ckpt = os.path.join(out, "checkpoint_best.bin")  # written before the epoch line's check
        for args in (["-t", "hi"], ["-t", "-"]):
            r = subprocess.run([exe, "-C", ckpt] + args, stdout=full, stderr=subprocess.PIPE, text=True, env=ENV,
                               cwd=REPO, input="i feel fine\n")
            assert r.returncode == 1 and "could not write standard output" in r.stderr, (args, r.stderr)


def test_stdin_that_cannot_be_read_is_an_error(exe, small_data, tmp_path):
    """-t - with stdin a directory, or closed: a read error was taken for the end of the input (exit 0)"""
    out = str(tmp_path / "o")
    run(exe, FLAGS + ["-d", small_data, "-o", out, "-e", "1", "-x", "1"])
    args = [exe, "-C", os.path.join(out, "checkpoint_best.bin"), "-t", "-"]
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        r = subprocess.run(args, stdin=fd, capture_output=True, text=True, env=ENV, cwd=REPO)
    finally:
        os.close(fd)
    assert r.returncode == 1 and "standard input is a directory" in r.stderr, r.stderr
    r = subprocess.run(args, capture_output=True, text=True, env=ENV, cwd=REPO, preexec_fn=lambda: os.close(0))
    assert r.returncode == 1 and "standard input is closed" in r.stderr, r.stderr
