"""
Data-parallel training over MPI (make train_bert_mpi, or make train_bert USE_MPI=1; bertc/dist.h): K
ranks compute what one process computes. Each rank takes a contiguous slice of every global batch,
padded to the whole batch's longest example, its dropout masks keyed by the examples' places in the
global batch, so the only difference from one process is the order of the gradient (and loss) sums.
On the tiny model, 20 steps of each strategy with 1 to 4 ranks against the plain ./train_bert:
the step losses (float32 in the TensorBoard file) to 1e-5 relative, the final weights within 1e-6 +
1e-6 |w| (test_bert's tolerance after its 10 AdamW steps; the largest difference seen was 4.1e-8,
full fine-tuning on 2 and on 3 ranks), log.tsv's losses and metrics to 1e-5; one rank: the same
bits. Then: a 2-rank job killed with kill -9, or stopped by SIGTERM, and resumed (-R 1) equals an
uninterrupted one bit for bit; a state written by 2 ranks resumes on 4; flags or files that differ
across ranks stop the job at the start, naming the rank; an error on one rank, one rank killed or
one stuck ends the whole job.

Then the same for the GPU trainer's ranks on the CUDA emulator (train_bertcu_emu_mpi, NCCL
emulated over MPI): 2 ranks equal 1, at kernel sets 1, 2 and 4.

Skipped where mpirun or ./train_bert_mpi (./train_bertcu_emu_mpi) is missing; `make setup` installs
Open MPI and `make test-python` builds both wherever mpicc is, so CI runs these. One thread a rank.

    make test-mpi      (python -m pytest -q tests/test_mpi.py)
"""
import os
import shutil
import subprocess
import time

import numpy as np
import pytest

from conftest import ENV, REPO, TINY, run
from prepro_emotion import HEADER_INTS, read_split, write_split
from test_text_in_models_out import assert_runs_equal, read_scalars

MPI_EXE = os.environ.get("TRAIN_BERT_MPI", os.path.join(REPO, "train_bert_mpi"))
PLAIN_EXE = os.environ.get("TRAIN_BERT", os.path.join(REPO, "train_bert"))
# CI runs as root, which mpirun refuses unless told so; and in a container without ptrace rights
# Open MPI's shared-memory copies between ranks (CMA) fail, so they go through its buffers instead
MPI_ENV = dict(ENV, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_btl_vader_single_copy_mechanism="none")
FLAGS = ["-m", TINY, "-b", "4", "-e", "2", "-x", "20", "-P", "0", "-f", "100"]


def need_mpirun(exe, build):
    """mpirun's path, or the test skipped saying what is missing"""
    path = shutil.which("mpirun")
    if path is None:
        pytest.skip("mpirun not found (make setup installs Open MPI: openmpi-bin)")
    if not os.path.exists(exe):
        pytest.skip(f"needs {exe} ({build})")
    return path


@pytest.fixture(scope="module")
def mpirun():
    return need_mpirun(MPI_EXE, "make train_bert_mpi")


def mpi_cmd(mpirun, k, args):
    return [mpirun, "--oversubscribe", "-np", str(k), MPI_EXE] + list(args)


def run_mpi(mpirun, k, args, check=True):
    return subprocess.run(mpi_cmd(mpirun, k, args), env=MPI_ENV, capture_output=True, text=True,
                          check=check, cwd=REPO, timeout=600)


def run_per_rank(mpirun, dirs, args):
    """an MPMD job of one rank per directory, each rank started in its own: the same command line,
    and behind a relative path a file that differs by rank"""
    cmd = [mpirun, "--oversubscribe"]
    for k, d in enumerate(dirs):
        cmd += ([":"] if k > 0 else []) + ["-np", "1", "-wdir", str(d), MPI_EXE] + list(args)
    return subprocess.run(cmd, env=MPI_ENV, capture_output=True, text=True, timeout=300)


def start_mpi(mpirun, k, args):
    """a job in a session of its own, its stdout read as it comes"""
    return subprocess.Popen(mpi_cmd(mpirun, k, args), env=MPI_ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=REPO, start_new_session=True)


def kill_session(job):
    """kill -9 of mpirun and every rank (the ranks may sit in process groups of their own, but in
    the job's session), then wait until all are gone"""
    subprocess.run(["pkill", "-9", "-s", str(job.pid)])
    job.communicate()
    while subprocess.run(["pgrep", "-s", str(job.pid)], capture_output=True).returncode == 0:
        time.sleep(0.05)


def read_until(job, text):
    # mpirun may give rank 0 a terminal: step lines then start with \r\033[K
    for line in job.stdout:
        if text in line:
            return


def weights(out):
    return np.fromfile(os.path.join(out, "checkpoint_last.bin"), dtype="<f4")[HEADER_INTS:]


def log_rows(out):
    rows = open(os.path.join(out, "log.tsv")).read().splitlines()[1:]
    return [r.split("\t")[:9] for r in rows]  # without the seconds


def log_numbers(rows):
    return [[float(x or 0) for x in r[3:]] for r in rows]


@pytest.mark.parametrize("strategy", ["full", "frozen", "lora"])
def test_ranks_compute_what_one_process_computes(mpirun, small_data, tmp_path, strategy):
    flags = FLAGS + ["-d", small_data, "-s", strategy]
    one = str(tmp_path / "plain")
    run(PLAIN_EXE, flags + ["-o", one])
    want_loss = np.array([v for _, v in read_scalars(one)["train/loss"]])
    want_w = weights(one)
    assert len(want_loss) == 20
    for k in (1, 2, 3, 4):  # 3: slices of 1, 1 and 2 examples
        out = str(tmp_path / f"k{k}")
        r = run_mpi(mpirun, k, flags + ["-o", out])
        assert "summary |" in r.stdout, r.stdout + r.stderr
        loss = np.array([v for _, v in read_scalars(out)["train/loss"]])
        assert np.allclose(loss, want_loss, rtol=1e-5, atol=0), (k, loss - want_loss)
        w = weights(out)
        diff = np.abs(w - want_w)
        assert (diff <= 1e-6 + 1e-6 * np.abs(want_w)).all(), (k, diff.max())
        if k == 1:  # one rank is one process: the same bits
            assert (w == want_w).all() and (loss == want_loss).all()
        got, want = log_rows(out), log_rows(one)
        assert len(got) == len(want) and [g[:3] for g in got] == [w[:3] for w in want]
        assert np.allclose(log_numbers(got), log_numbers(want), rtol=1e-5, atol=1e-6), \
            (k, got, want)
        # rank 0 alone writes: one event file, the same files as one process
        files = lambda d: sorted(f.split(".")[0] for f in os.listdir(d))
        assert files(out) == files(one), (files(out), files(one))


def test_kill_9_and_resume_on_2_ranks_is_bit_exact(mpirun, small_data, tmp_path):
    """kill -9 of the whole job (mpirun and its ranks) mid-epoch, then -R 1: the same files as an
    uninterrupted 2-rank job, bit for bit (the state holds no per-rank data)"""
    flags = ["-m", TINY, "-b", "4", "-d", small_data, "-e", "3", "-p", "0", "-S", "5", "-P", "0",
             "-f", "1"]
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    run_mpi(mpirun, 2, flags + ["-o", a])
    job = start_mpi(mpirun, 2, flags + ["-o", b])
    try:
        read_until(job, "step 17/")  # epoch 2 is under way; the last state is step 15's
    finally:
        kill_session(job)
    r = run_mpi(mpirun, 2, flags + ["-o", b, "-R", "1"])
    assert "resumed from" in r.stdout and "epoch 2" in r.stdout, r.stdout
    assert_runs_equal(a, b, 3)


def test_sigterm_stops_every_rank_at_one_step_and_resumes_bit_for_bit(mpirun, small_data, tmp_path):
    """SIGTERM to mpirun, which passes it on to the ranks: they agree on the step to stop at, rank 0
    saves the state there and says how to resume; the resumed job equals an uninterrupted one"""
    flags = ["-m", TINY, "-b", "4", "-d", small_data, "-e", "6", "-p", "0", "-P", "0", "-f", "1"]
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    run_mpi(mpirun, 2, flags + ["-o", a])
    job = subprocess.Popen(mpi_cmd(mpirun, 2, flags + ["-o", b]), env=MPI_ENV,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                           start_new_session=True)
    try:
        read_until(job, "step 5/")
        job.terminate()
        _, err = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            kill_session(job)
    assert "stopped by SIGTERM after step" in err and " mpirun -np 2 " in err, err
    r = run_mpi(mpirun, 2, flags + ["-o", b, "-R", "1"])
    assert "resumed from" in r.stdout, r.stdout
    assert_runs_equal(a, b, 6)


def test_a_state_resumes_with_another_rank_count(mpirun, small_data, tmp_path):
    """a state written by 2 ranks resumes on 4: the losses match the 2-rank run's to 1e-5"""
    flags = ["-m", TINY, "-b", "4", "-d", small_data, "-e", "2", "-S", "5", "-P", "0", "-f", "100"]
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    run_mpi(mpirun, 2, flags + ["-o", a])
    r = run_mpi(mpirun, 2, flags + ["-o", b, "-X", "7"], check=False)
    assert r.returncode != 0 and "exiting after step 7" in r.stdout, r.stdout + r.stderr
    r = run_mpi(mpirun, 4, flags + ["-o", b, "-R", "1"])
    assert "resumed from" in r.stdout and "step 5, epoch 1" in r.stdout, r.stdout
    la, lb = ([v for _, v in read_scalars(d)["train/loss"]] for d in (a, b))
    assert len(la) == len(lb) == 24 and np.allclose(lb, la, rtol=1e-5, atol=0)


def test_flags_that_differ_across_ranks_stop_the_job(mpirun, small_data, tmp_path):
    flags = FLAGS + ["-d", small_data, "-o", str(tmp_path / "o")]
    cmd = mpi_cmd(mpirun, 1, flags) + [":", "-np", "1", MPI_EXE] + flags + ["-l", "1e-4"]
    r = subprocess.run(cmd, env=MPI_ENV, capture_output=True, text=True, cwd=REPO, timeout=300)
    want = "rank 1's command line (the flags) differs from rank 0's"
    assert r.returncode != 0 and want in r.stderr, r.stderr
    assert not os.path.exists(tmp_path / "o" / "log.tsv")


def test_files_that_differ_across_ranks_stop_the_job(mpirun, small_data, tmp_path):
    """the same flags, but behind rank 1's data directory other splits (a train label changed)"""
    other = tmp_path / "other"
    shutil.copytree(small_data, other)
    s = read_split(str(other / "emotion_train.bin"))
    labels = s["labels"].copy()
    labels[0] = (labels[0] + 1) % 6
    write_split(str(other / "emotion_train.bin"), s["lengths"], labels, s["ids"], s["V"],
                s["max_len"])
    dirs = [tmp_path / "r0", tmp_path / "r1"]
    for d, data in zip(dirs, (small_data, str(other))):
        os.makedirs(d)
        os.symlink(data, d / "d")
    r = run_per_rank(mpirun, dirs, FLAGS + ["-d", "d", "-o", str(tmp_path / "o")])
    assert r.returncode != 0 and "rank 1's data splits differs from rank 0's" in r.stderr, r.stderr


def test_an_error_on_one_rank_ends_the_job_naming_it(mpirun, small_data, tmp_path):
    """a model file that rank 1 alone cannot read: the job ends at once with rank 1's message"""
    dirs = [tmp_path / "r0", tmp_path / "r1"]
    for d in dirs:
        os.makedirs(d)
    os.symlink(TINY, dirs[0] / "model.bin")
    open(dirs[1] / "model.bin", "wb").write(b"not a model")
    flags = ["-m", "model.bin"] + FLAGS[2:] + ["-d", small_data, "-o", str(tmp_path / "o")]
    r = run_per_rank(mpirun, dirs, flags)
    assert r.returncode != 0 and "Error (rank 1 of 2): " in r.stderr, r.stderr
    assert "model.bin" in r.stderr


def test_a_rank_killed_ends_the_job(mpirun, small_data, tmp_path):
    """kill -9 of one rank mid-run: mpirun ends the other and exits non-zero, within two minutes"""
    flags = ["-m", TINY, "-b", "4", "-d", small_data, "-e", "50", "-p", "0", "-P", "0", "-f", "1",
             "-o", str(tmp_path / "o")]
    job = start_mpi(mpirun, 2, flags)
    try:
        read_until(job, "step 3/")
        name = os.path.basename(MPI_EXE)[:15]  # the ranks, not mpirun (whose arguments name them)
        pids = subprocess.run(["pgrep", "-s", str(job.pid), "-x", name], capture_output=True,
                              text=True).stdout.split()
        assert len(pids) == 2, pids
        subprocess.run(["kill", "-9", max(pids, key=int)])
        job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            kill_session(job)
    assert job.returncode != 0


def test_a_stuck_rank_ends_the_job(mpirun, small_data, tmp_path):
    """one rank stopped (SIGSTOP: alive, but it never reaches its next all-reduce): the other's
    watchdog ends it after BERTC_DIST_TIMEOUT seconds, and mpirun the job"""
    flags = ["-m", TINY, "-b", "4", "-d", small_data, "-e", "50", "-p", "0", "-P", "0", "-f", "1",
             "-o", str(tmp_path / "o")]
    job = subprocess.Popen(mpi_cmd(mpirun, 2, flags), env=dict(MPI_ENV, BERTC_DIST_TIMEOUT="3"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                           start_new_session=True)
    try:
        read_until(job, "step 3/")
        name = os.path.basename(MPI_EXE)[:15]
        pids = subprocess.run(["pgrep", "-s", str(job.pid), "-x", name], capture_output=True,
                              text=True).stdout.split()
        assert len(pids) == 2, pids
        subprocess.run(["kill", "-STOP", max(pids, key=int)])
        _, err = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            kill_session(job)
    assert job.returncode != 0 and "waited more than 3 s for the other ranks" in err, err


def test_ranks_need_an_example_each_in_every_batch(mpirun, small_data, tmp_path):
    r = run_mpi(mpirun, 4, FLAGS[:2] + ["-b", "2", "-d", small_data, "-o", str(tmp_path / "o")],
                check=False)
    want = "4 ranks need at least 4 examples in every batch"
    assert r.returncode != 0 and want in r.stderr, r.stderr


# ---------------------------------------------------------------------------
# train_bertcu's ranks (cuda/dist.cuh: one GPU a rank, the gradients summed by NCCL), on the CUDA
# emulator: train_bertcu_emu_mpi is train_bert.cu built against dev/emu, whose nccl.h sums over MPI,
# each rank on an emulated GPU of its own (EMU_DEVICES). What runs is the GPU code's side of it: the
# batch slice, the dropout masks keyed by the global batch, the loss over the global batch, the
# all-reduce before the norm. NCCL itself on several real GPUs is not tested here (no machine).

GPU_EMU_EXE = os.environ.get("TRAIN_BERTCU_MPI", os.path.join(REPO, "train_bertcu_emu_mpi"))
GPU_EMU_PLAIN = os.path.join(REPO, "train_bertcu_emu")  # the same without MPI and NCCL


@pytest.fixture(scope="module")
def mpirun_gpu():
    return need_mpirun(GPU_EMU_EXE, "make train_bertcu_emu_mpi: x86-64, mpicxx")


@pytest.mark.parametrize("strategy,kernels", [("full", 1), ("full", 2), ("lora", 2), ("frozen", 4)])
def test_gpu_ranks_compute_what_one_gpu_computes(mpirun_gpu, small_data, tmp_path, strategy,
                                                  kernels):
    """-np 1 and -np 2 of the emulated train_bertcu: 20 steps, the same losses (1e-5 relative) and
    final weights (test_bert's tolerance) as one rank, at kernel set 1 (the norm through the host)
    and 2 (the norm inside the fused AdamW) and 4 (packed tokens, cuBLASLt)"""
    flags = FLAGS + ["-d", small_data, "-s", strategy, "-K", str(kernels)]
    env = dict(MPI_ENV, EMU_DEVICES="2")
    got = {}
    for k in (1, 2):
        out = str(tmp_path / f"k{k}")
        cmd = [mpirun_gpu, "--oversubscribe", "-np", str(k), GPU_EMU_EXE] + flags + ["-o", out]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO, timeout=300)
        assert r.returncode == 0 and "summary |" in r.stdout, r.stdout + r.stderr
        got[k] = (np.array([v for _, v in read_scalars(out)["train/loss"]]), weights(out),
                  log_rows(out))
    (loss1, w1, rows1), (loss2, w2, rows2) = got[1], got[2]
    assert len(loss1) == 20
    assert np.allclose(loss2, loss1, rtol=1e-5, atol=0), loss2 - loss1
    diff = np.abs(w2 - w1)
    assert (diff <= 1e-6 + 1e-6 * np.abs(w1)).all(), diff.max()
    # the evaluation, split across the ranks and summed: log.tsv's losses and metrics
    assert [r[:3] for r in rows2] == [r[:3] for r in rows1]
    assert np.allclose(log_numbers(rows2), log_numbers(rows1), rtol=1e-5, atol=1e-6), (rows2, rows1)


@pytest.mark.parametrize("kernels", [1, 2])
def test_gpu_one_rank_is_the_plain_build(mpirun_gpu, small_data, tmp_path, kernels):
    """one rank of the MPI and NCCL build computes the bits of the build without them: the all-reduce
    of one rank changes nothing, and the batch slice is the whole batch"""
    if not os.path.exists(GPU_EMU_PLAIN):
        pytest.skip("train_bertcu_emu not built (make test-all builds it before these tests)")
    flags = FLAGS + ["-d", small_data, "-s", "full", "-K", str(kernels)]
    one, plain = str(tmp_path / "one"), str(tmp_path / "plain")
    cmd = [mpirun_gpu, "--oversubscribe", "-np", "1", GPU_EMU_EXE] + flags + ["-o", one]
    r = subprocess.run(cmd, env=MPI_ENV, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    run(GPU_EMU_PLAIN, flags + ["-o", plain])
    assert (weights(plain) == weights(one)).all()
    loss = [np.array([v for _, v in read_scalars(d)["train/loss"]]) for d in (one, plain)]
    assert len(loss[0]) == 20 and (loss[0] == loss[1]).all()
