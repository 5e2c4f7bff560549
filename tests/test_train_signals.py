"""Real processes: kill -9 during training and during a save, and Ctrl-C (SIGINT)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from cadenza.train import checkpoint as ckpt_io
from cadenza.train import train
from cadenza.train.metrics import read_log
from train_fixtures import (
    assert_same_params, cadenza_cmd, cli_args, latest_params, make_text_dataset, python_env,
    tiny_options)

# A constant learning rate, so a run started with many steps and resumed with fewer follows
# exactly the same updates as a short run (the schedule is the only thing tied to --steps).
CONSTANT_LR = dict(warmup_steps=0, min_lr_ratio=1.0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_text_dataset(tmp_path_factory.mktemp("text"))


def _wait_for_step(out, step, proc, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        recs = [r for r in read_log(out) if r["split"] == "train"]
        if recs and recs[-1]["step"] >= step:
            return recs[-1]["step"]
        if proc.poll() is not None:
            raise AssertionError(f"training exited early with {proc.returncode}: {proc.stdout.read()}")
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"training did not reach step {step} in {timeout} s")


def test_kill_9_during_training_then_resume_matches_an_uninterrupted_run(data, tmp_path):
    out = tmp_path / "killed"
    opts = tiny_options(data, out, steps=100000, save_every=3, eval_every=7, keep_last=2, **CONSTANT_LR)
    proc = subprocess.Popen(cadenza_cmd(*cli_args(opts)), env=python_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for_step(out, 11, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    path, state = ckpt_io.latest_checkpoint(out)
    assert path is not None and state["step"] >= 9
    # resume and finish a 30-step run; compare with 30 steps straight
    resumed = train(**tiny_options(data, out, steps=30, resume=True, save_every=3, eval_every=7, keep_last=2,
                                   **CONSTANT_LR))
    straight = train(**tiny_options(data, tmp_path / "straight", steps=30, save_every=3, eval_every=7,
                                    keep_last=2, **CONSTANT_LR))
    assert resumed.step == straight.step == 30
    assert_same_params(latest_params(out), latest_params(tmp_path / "straight"))
    assert resumed.eval_loss == straight.eval_loss
    steps = [r["step"] for r in read_log(out) if r["split"] == "train"]
    assert steps == list(range(1, 31))  # the killed session's tail was dropped, no step twice
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.endswith(".tmp")]


SAVE_THEN_HANG = r"""
import json, os, sys, time
from cadenza.train import checkpoint, train
real = checkpoint._write
count = {"n": 0}
def write_then_hang(state, path):
    count["n"] += 1
    real(state, path)
    if count["n"] == 2:  # the second save: leave it half written and wait to be killed
        with open(path, "r+b") as fh:
            fh.truncate(os.path.getsize(path) // 2)
        print("SAVING", path, flush=True)
        time.sleep(120)
checkpoint._write = write_then_hang
train(**json.loads(sys.argv[1]))
"""


def test_kill_9_during_a_save_leaves_a_loadable_latest_checkpoint(data, tmp_path):
    out = tmp_path / "run"
    opts = tiny_options(data, out, steps=12, save_every=4, eval_every=0, **CONSTANT_LR)
    proc = subprocess.Popen([sys.executable, "-c", SAVE_THEN_HANG, json.dumps(opts)], env=python_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 90
    line = ""
    while "SAVING" not in line:
        line = proc.stdout.readline()
        assert line or proc.poll() is None, "the process ended before its second save"
        assert time.monotonic() < deadline, "no second save within 90 s"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert "step_00000004.pt" in names and "step_00000008.pt" not in names
    assert any(n.startswith(".step_00000008.pt.") and n.endswith(".tmp") for n in names)  # the half file
    path, state = ckpt_io.latest_checkpoint(out)
    assert path.name == "step_00000004.pt" and state["step"] == 4
    result = train(**tiny_options(data, out, steps=12, save_every=4, eval_every=0, resume=True, **CONSTANT_LR))
    assert result.step == 12 and result.reason == "completed"
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    straight = train(**tiny_options(data, tmp_path / "straight", steps=12, save_every=4, eval_every=0,
                                    **CONSTANT_LR))
    assert_same_params(latest_params(out), latest_params(tmp_path / "straight"))
    assert straight.eval_loss == result.eval_loss


def test_ctrl_c_saves_and_exits_cleanly(data, tmp_path):
    out = tmp_path / "run"
    opts = tiny_options(data, out, steps=100000, save_every=1000, eval_every=1000, **CONSTANT_LR)
    proc = subprocess.Popen(cadenza_cmd(*cli_args(opts)), env=python_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_step(out, 5, proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted at step" in stderr and "--resume" in stdout
    last = [r for r in read_log(out) if r["split"] == "train"][-1]["step"]
    path, state = ckpt_io.latest_checkpoint(out)
    assert state["step"] == last  # the step in progress finished and was saved
    result = train(**tiny_options(data, out, steps=last + 2, resume=True, **CONSTANT_LR))
    assert result.step == last + 2
