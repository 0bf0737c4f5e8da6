"""
Text in, models out: classify mode, Hugging Face / PEFT export, TensorBoard event files,
the progress line and resume, all on the tiny model (data/ref_tiny_model.bin) and small
slices of the emotion splits, so the whole file runs in well under a minute. Each test that runs
the trainer runs ./train_bert and, where a GPU is present, ./train_bertcu (tests/conftest.py).

    python -m pytest -q tests/test_text_in_models_out.py
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ENV, REPO, TINY, VOCAB, run
from prepro_emotion import HEADER_INTS, STATE_EPOCH_SECONDS, STATE_NHIST, STATE_TRAIN_SECONDS, model_from_bin

TEXTS = [
    "i feel wonderful today",
    "I am SO angry at everyone right now!!!",
    "i didnt feel humiliated",
    "im feeling rather rotten so im not very ambitious right now",
    "Café crème, naïve façade — résumé? 😊",
    "what a surprise, i never expected that",
    " ".join(["i feel a little bit nervous about tomorrow"] * 80),  # > 512 tokens: truncated
]

TRAIN_FLAGS = ["-m", TINY, "-b", "4", "-P", "0", "-f", "1"]


@pytest.fixture(scope="session")
def checkpoints(exe, small_data, tmp_path_factory):
    """a few steps of each strategy: strategy -> (out dir, stdout)"""
    out = {"exe": exe}
    for strategy in ("full", "frozen", "lora"):
        d = str(tmp_path_factory.mktemp(f"run_{strategy}"))
        r = run(exe, TRAIN_FLAGS + ["-s", strategy, "-d", small_data, "-o", d, "-x", "3", "-e", "1"])
        out[strategy] = (d, r.stdout)
    return out


def c_logits(exe, ckpt, texts, extra=()):
    r = run(exe, ["-C", ckpt, "-t", "-", "-y", "1"] + list(extra), input="\n".join(texts) + "\n")
    lines = r.stdout.splitlines()
    assert len(lines) == 2 * len(texts), r.stdout
    logits = np.array([[float(x) for x in l.split()[1:]] for l in lines[1::2]], dtype=np.float64)
    labels = [l.split(" | ")[0] for l in lines[0::2]]
    return logits, labels


def hf_logits(model, tok, texts):
    import torch
    with torch.no_grad():
        out = []
        for t in texts:  # one at a time, as classify mode: no padding
            enc = tok(t, truncation=True, max_length=512, return_tensors="pt")
            out.append(model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits[0].double().numpy())
    return np.stack(out)


def test_classify_matches_python(checkpoints, tmp_path):
    """C tokenizer + forward vs model_from_bin + Hugging Face's tokenizer, on a full checkpoint"""
    from transformers import BertTokenizerFast
    from transformers.models.bert.tokenization_bert import load_vocab
    ckpt = os.path.join(checkpoints["full"][0], "checkpoint_last.bin")
    got, labels = c_logits(checkpoints["exe"], ckpt, TEXTS, ["-s", "full"])
    # the checkpoint as a plain model file: same layout, header[14..19] cleared
    plain = tmp_path / "plain.bin"
    h = np.fromfile(ckpt, dtype="<i4", count=HEADER_INTS)
    h[14:20] = 0
    with open(plain, "wb") as f:
        f.write(h.tobytes())
        f.write(np.fromfile(ckpt, dtype="<u1", offset=HEADER_INTS * 4).tobytes())
    model = model_from_bin(str(plain)).eval()
    tok = BertTokenizerFast(vocab=load_vocab(VOCAB), do_lower_case=True)  # vocab_file= is ignored in transformers 5
    assert len(tok) == 30522
    want = hf_logits(model, tok, TEXTS)
    print("max |C - torch| logits", np.abs(got - want).max())
    assert np.abs(got - want).max() <= 1e-5
    names = ["sadness", "joy", "love", "anger", "fear", "surprise"]
    assert labels == [names[i] for i in want.argmax(1)]


def test_classify_batched_equals_one_by_one(checkpoints, tmp_path):
    """stdin in batches of -b texts (packed) gives each text's line as one text at a time does: awkward lines too
    (empty, only spaces, invalid UTF-8, a NUL inside, CRLF, longer than 512 tokens), from a pipe and from a file"""
    exe = checkpoints["exe"]
    ckpt = os.path.join(checkpoints["full"][0], "checkpoint_last.bin")
    texts = [t.encode() for t in TEXTS] + [b"", b"   ", b"caf\xc3 \xff\xfe broken", b"nul\0inside", b"crlf line\r",
                                           b" ".join([b"word"] * 700), b"i feel fine"]
    data = b"\n".join(texts) + b"\n"

    def classify(batch, **kw):
        r = subprocess.run([exe, "-C", ckpt, "-t", "-", "-y", "1", "-b", str(batch)], capture_output=True, env=ENV,
                           cwd=REPO, **kw)
        assert r.returncode == 0, r.stderr.decode()
        lines = r.stdout.decode().splitlines()
        assert len(lines) == 2 * len(texts), r.stdout
        return lines, r.stderr.decode()

    one, err = classify(1, input=data)
    assert f"{len(texts)} texts in {len(texts)} forwards" in err, err
    for batch in (3, 32):
        got, _ = classify(batch, input=data)
        assert [l.split(" | ")[0] for l in got[0::2]] == [l.split(" | ")[0] for l in one[0::2]]
        a = np.array([[float(x) for x in l.split()[1:]] for l in got[1::2]])
        b = np.array([[float(x) for x in l.split()[1:]] for l in one[1::2]])
        print(f"-b {batch}: max |batched - one by one| logits {np.abs(a - b).max():.3g}")
        assert np.abs(a - b).max() <= 1e-6
    path = tmp_path / "texts.txt"
    path.write_bytes(data)
    with open(path, "rb") as f:  # a file: every line is at hand, so the batches are full
        got, err = classify(3, stdin=f)
    assert got == one and f"{len(texts)} texts in {(len(texts) + 2) // 3} forwards" in err, err
    # the last line without its newline is a text too (a pipe, and a file)
    got, _ = classify(32, input=data[:-1])
    assert got == one
    path.write_bytes(data[:-1])
    with open(path, "rb") as f:
        got, _ = classify(3, stdin=f)
    assert got == one


def test_classify_single_text_and_errors(checkpoints):
    exe = checkpoints["exe"]
    ckpt = os.path.join(checkpoints["lora"][0], "checkpoint_last.bin")
    r = run(exe, ["-C", ckpt, "-t", "i feel wonderful today"])
    line = r.stdout.strip()
    parts = line.split(" | ")
    assert len(parts) == 7 and abs(sum(float(p.split()[1]) for p in parts[1:]) - 1.0) < 1e-3, line
    r = run(exe, ["-C", ckpt, "-t", "x", "-s", "full"], check=False)
    assert r.returncode != 0 and "lora checkpoint, not full" in r.stderr
    r = run(exe, ["-C", TINY, "-t", "x"], check=False)
    assert r.returncode != 0 and "not a train_bert checkpoint" in r.stderr


@pytest.mark.parametrize("strategy", ["full", "frozen", "lora"])
def test_export_hf(checkpoints, tmp_path, strategy):
    """dev/export_hf.py, loaded back offline with transformers (and peft), gives the C program's logits"""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    ckpt = os.path.join(checkpoints[strategy][0], "checkpoint_last.bin")
    outdir = str(tmp_path / "hf")
    subprocess.run([sys.executable, os.path.join(REPO, "dev", "export_hf.py"), ckpt, outdir], env=ENV, check=True, cwd=REPO)
    if strategy == "lora":
        from peft import PeftModel
        assert os.path.exists(os.path.join(outdir, "adapter_config.json"))
        assert os.path.exists(os.path.join(outdir, "adapter_model.safetensors"))
        base = AutoModelForSequenceClassification.from_pretrained(os.path.join(outdir, "base"), local_files_only=True)
        # the base's own classifier is the trained one too; make sure the adapter's copy is what counts
        with torch.no_grad():
            base.classifier.weight.zero_()
            base.classifier.bias.zero_()
        model = PeftModel.from_pretrained(base, outdir, local_files_only=True).eval()
    else:
        model = AutoModelForSequenceClassification.from_pretrained(outdir, local_files_only=True).eval()
        assert model.config.id2label[1] == "joy" and model.config.label2id["surprise"] == 5
    tok = AutoTokenizer.from_pretrained(outdir, local_files_only=True)
    assert len(tok) == 30522 and tok("Hello")["input_ids"] == [101, 7592, 102]
    want = hf_logits(model, tok, TEXTS)
    got, _ = c_logits(checkpoints["exe"], ckpt, TEXTS)
    print(strategy, "max |C - exported| logits", np.abs(got - want).max())
    assert np.abs(got - want).max() <= 1e-4


def test_export_lora_merged(exe, small_data, tmp_path):
    """--merge folds the adapters into the weights: a plain model with the adapter model's logits (1e-5),
    after a few steps at a large learning rate, so that the adapters change the logits visibly"""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    run(exe, TRAIN_FLAGS + ["-s", "lora", "-d", small_data, "-o", str(tmp_path / "run"), "-x", "6", "-e", "1", "-l", "1e-2"])
    ckpt = str(tmp_path / "run" / "checkpoint_last.bin")
    adapter, merged = str(tmp_path / "adapter"), str(tmp_path / "merged")
    for out, extra in ((adapter, []), (merged, ["--merge"])):
        subprocess.run([sys.executable, os.path.join(REPO, "dev", "export_hf.py"), ckpt, out] + extra, env=ENV,
                       check=True, cwd=REPO)
    assert not os.path.exists(os.path.join(merged, "adapter_config.json"))
    plain = AutoModelForSequenceClassification.from_pretrained(merged, local_files_only=True).eval()
    base = AutoModelForSequenceClassification.from_pretrained(os.path.join(adapter, "base"), local_files_only=True)
    with torch.no_grad():
        base.classifier.weight.zero_()  # the adapter's classifier copy is what counts
        base.classifier.bias.zero_()
    peft = PeftModel.from_pretrained(base, adapter, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(merged, local_files_only=True)
    a, b = hf_logits(plain, tok, TEXTS), hf_logits(peft, tok, TEXTS)
    unadapted = hf_logits(AutoModelForSequenceClassification.from_pretrained(os.path.join(adapter, "base"),
                                                                            local_files_only=True).eval(), tok, TEXTS)
    print("max |merged - adapter| logits", np.abs(a - b).max(), "| adapters move them by", np.abs(a - unadapted).max())
    assert np.abs(a - unadapted).max() > 1e-3  # the adapters matter here
    assert np.abs(a - b).max() <= 1e-5
    got, _ = c_logits(exe, ckpt, TEXTS)
    assert np.abs(got - a).max() <= 1e-4


def read_scalars(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def step_losses(stdout):
    return [float(l.split(" | ")[2].split()[1]) for l in stdout.splitlines() if l.startswith("step ")]


def test_tensorboard_events(checkpoints):
    d, stdout = checkpoints["full"]
    s = read_scalars(d)
    for tag in ("train/loss", "train/learning_rate", "train/grad_norm", "eval/loss", "eval/accuracy", "eval/precision",
                "eval/recall", "eval/f1", "test/loss", "test/accuracy", "test/f1"):
        assert tag in s, (tag, sorted(s))
    assert [st for st, _ in s["train/loss"]] == [1, 2, 3]
    assert np.allclose([v for _, v in s["train/loss"]], step_losses(stdout), atol=5e-5)
    assert s["train/learning_rate"][0][1] == pytest.approx(5e-5)
    log = [l.split("\t") for l in open(os.path.join(d, "log.tsv")).read().splitlines()[1:]]
    val = [r for r in log if r[0] == "validation"]
    assert [st for st, _ in s["eval/f1"]] == [int(r[2]) for r in val]
    assert np.allclose([v for _, v in s["eval/f1"]], [float(r[8]) for r in val], atol=1e-6)
    test = [r for r in log if r[0] == "test"][0]
    assert s["test/accuracy"][0][1] == pytest.approx(float(test[5]), abs=1e-6)


def test_progress_line(exe, small_data, tmp_path):
    r = run(exe, ["-m", TINY, "-b", "4", "-d", small_data, "-o", str(tmp_path), "-x", "6", "-e", "1", "-P", "3", "-f", "100"])
    prog = [l for l in r.stdout.splitlines() if l.startswith("progress")]
    assert len(prog) == 2 and "\r" not in r.stdout, r.stdout
    assert "step 3/6 (50.0%)" in prog[0] and "examples/s" in prog[0] and "ETA" in prog[0]


@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_resume_bit_for_bit(exe, small_data, tmp_path, strategy):
    """kill a run mid-epoch (-X), resume it (-R 1): the same step losses, bit for bit, and the same checkpoints"""
    flags = ["-m", TINY, "-s", strategy, "-b", "4", "-d", small_data, "-e", "3", "-p", "1", "-S", "5", "-P", "0"]
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    ra = run(exe, flags + ["-o", a])
    rb1 = run(exe, flags + ["-o", b, "-X", "17"], check=False)
    assert rb1.returncode == 3 and "exiting after step 17" in rb1.stdout
    rb2 = run(exe, flags + ["-o", b, "-R", "1"])
    assert "resumed from" in rb2.stdout and "step 15, epoch 2, 12 examples into it" in rb2.stdout
    sa, sb = read_scalars(a), read_scalars(b)
    # float32 values in the event files: exact equality is bit for bit
    assert sa["train/loss"] == sb["train/loss"] and len(sa["train/loss"]) == 24
    assert sa["eval/f1"] == sb["eval/f1"] and sa["eval/loss"] == sb["eval/loss"]
    assert sa["test/loss"] == sb["test/loss"]
    lines = lambda out: [l.split(" | ms")[0].rsplit(" | ", 1)[0] for l in out.splitlines() if l.startswith("step ")]
    assert lines(rb1.stdout)[:15] + lines(rb2.stdout) == lines(ra.stdout)
    assert_runs_equal(a, b, 2)


def assert_runs_equal(a, b, nhist):
    """output directories a and b hold the same run: log.tsv but for its seconds, both checkpoints byte for byte,
    the state but for its times"""
    strip = lambda p: [l.split("\t")[:9] for l in open(p).read().splitlines()]  # without seconds
    assert strip(os.path.join(a, "log.tsv")) == strip(os.path.join(b, "log.tsv"))
    for f in ("checkpoint_best.bin", "checkpoint_last.bin"):
        assert open(os.path.join(a, f), "rb").read() == open(os.path.join(b, f), "rb").read(), f
    assert_states_equal_but_times(a, b, nhist)


def assert_states_equal_but_times(a, b, nhist):
    """the state.bin of output directories a and b are equal but for the times (header slots of the training and
    epoch seconds, and each history row's seconds, its last int)"""
    st = [np.fromfile(os.path.join(d, "state.bin"), dtype="<i4") for d in (a, b)]
    for x in st:
        x[[STATE_TRAIN_SECONDS, STATE_TRAIN_SECONDS + 1, STATE_EPOCH_SECONDS, STATE_EPOCH_SECONDS + 1]] = 0
    assert st[0][STATE_NHIST] == nhist and len(st[0]) == len(st[1])
    hist = [x[len(x) - 10 * nhist:].reshape(nhist, 10) for x in st]
    assert (st[0][:len(st[0]) - 10 * nhist] == st[1][:len(st[1]) - 10 * nhist]).all()
    assert (hist[0][:, :9] == hist[1][:, :9]).all()


def test_saves_on_a_thread_write_the_same_files(exe, small_data, tmp_path):
    """train_bertcu writes its checkpoints and states on a thread (-W 1, the default) while training goes on:
    the files equal those written in line (-W 0), state saves mid-epoch (-S 5) included; train_bert has no -W"""
    flags = ["-m", TINY, "-b", "4", "-d", small_data, "-e", "2", "-p", "1", "-S", "5", "-P", "0", "-f", "100"]
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    if "bertcu" not in os.path.basename(exe):
        r = run(exe, flags + ["-o", a, "-W", "0"], check=False)
        assert r.returncode != 0 and "-W" in r.stderr, r.stderr
        return
    run(exe, flags + ["-o", a, "-W", "1"])
    run(exe, flags + ["-o", b, "-W", "0"])
    for f in ("checkpoint_best.bin", "checkpoint_last.bin"):
        assert open(os.path.join(a, f), "rb").read() == open(os.path.join(b, f), "rb").read(), f
    assert_states_equal_but_times(a, b, 2)


def test_resume_refuses_other_settings(exe, small_data, tmp_path):
    flags = ["-m", TINY, "-b", "4", "-d", small_data, "-o", str(tmp_path), "-e", "1", "-x", "2", "-P", "0"]
    run(exe, flags)
    r = run(exe, flags[:2] + ["-b", "8"] + flags[4:] + ["-R", "1"], check=False)
    assert r.returncode != 0 and "batch size (-b)" in r.stderr
    shutil.rmtree(tmp_path)
    os.makedirs(tmp_path)
    r = run(exe, flags + ["-R", "1"], check=False)
    assert r.returncode != 0 and "state.bin" in r.stderr


def test_plot_runs(checkpoints, tmp_path):
    png = tmp_path / "runs.png"
    dirs = [checkpoints[s][0] for s in ("full", "frozen", "lora")]
    subprocess.run([sys.executable, os.path.join(REPO, "dev", "plot_runs.py"), *dirs, "--out", str(png)], check=True, cwd=REPO)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10000, "not a PNG with content"
    bad = tmp_path / "bad.tsv"
    bad.write_text("split\tepoch\n")
    r = subprocess.run([sys.executable, os.path.join(REPO, "dev", "plot_runs.py"), str(bad), "--out", str(tmp_path / "x.png")],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode != 0 and "no validation rows" in r.stderr
