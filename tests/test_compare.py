"""
make compare is resumable: a tiny-model compare interrupted in the middle of its first strategy and
run again gives the table of an uninterrupted one (all but the runtime column), and a finished
strategy is read from its log instead of being run again.

    python -m pytest -q tests/test_compare.py
"""
import os
import subprocess
import sys

from conftest import ENV, REPO, TINY


def compare(exe, data, out, extra):
    cmd = [sys.executable, os.path.join(REPO, "dev", "compare.py"), "--model-bin", TINY, "--data", data, "--out", out,
           "--train-bert", exe, "--threads", "1", "--save-every", "5", "--extra", extra]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, cwd=REPO)


def table(stdout):
    """the table rows without the runtime column"""
    rows = [l.split(" | ") for l in stdout.splitlines() if l.startswith("| ") and not l.startswith("| strategy")]
    return [r[:3] + r[4:] for r in rows]


def test_an_interrupted_compare_resumes_to_the_same_table(exe, small_data, tmp_path):
    flags = "-b 4 -e 2 -p 0 -P 0"
    whole = compare(exe, small_data, str(tmp_path / "whole"), flags)
    assert whole.returncode == 0, whole.stderr
    # -X 7 stops the first strategy after step 7 as if killed (its state was saved at step 5)
    cut = compare(exe, small_data, str(tmp_path / "cut"), flags + " -X 7")
    assert cut.returncode != 0 and "full: starting" in cut.stdout
    again = compare(exe, small_data, str(tmp_path / "cut"), flags)
    assert again.returncode == 0, again.stderr
    assert "full: resuming" in again.stdout and "-R 1" in again.stdout
    assert table(again.stdout) == table(whole.stdout) and len(table(whole.stdout)) == 3, (again.stdout, whole.stdout)
    third = compare(exe, small_data, str(tmp_path / "cut"), flags)  # everything finished: nothing runs again
    assert third.stdout.count("finished earlier") == 3 and table(third.stdout) == table(whole.stdout)
