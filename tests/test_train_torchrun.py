"""A real 2-process torchrun (gloo on CPU): same losses as one process, one set of files."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from cadenza.train import checkpoint as ckpt_io
from cadenza.train import train
from cadenza.train.metrics import read_log
from train_fixtures import cli_args, latest_params, make_text_dataset, python_env, tiny_options


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_text_dataset(tmp_path_factory.mktemp("text"))


@pytest.fixture(scope="module")
def single(data, tmp_path_factory):
    """The 1-process reference run with the same global batch."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("single") / "run"
    train(**tiny_options(data, out, steps=6, batch_size=4, eval_every=3, save_every=3, keep_last=5))
    torch.set_num_threads(before)
    return out


def _torchrun(opts, nproc=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "cadenza", *cli_args(opts)]
    proc = subprocess.run(cmd, env=python_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp2"])
def test_two_process_run_matches_one_process(data, single, tmp_path, fsdp):
    out = tmp_path / "run"
    opts = tiny_options(data, out, steps=6, batch_size=4, eval_every=3, save_every=3, keep_last=5,
                        tensorboard=True, fsdp=fsdp)
    proc = _torchrun(opts)
    assert proc.stdout.count("completed: step 6 of 6") == 1  # only rank 0 reports
    ref = read_log(single)
    got = read_log(out)
    # one writer: every (split, step) record exactly once
    assert [(r["split"], r["step"]) for r in got] == [(r["split"], r["step"]) for r in ref]
    for a, b in zip(ref, got):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-5), (a, b)
    for k, v in latest_params(single).items():
        torch.testing.assert_close(latest_params(out)[k], v, rtol=1e-3, atol=1e-5)
    # one set of checkpoints, one TensorBoard writer, one exported model
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.pt", "step_00000003.pt",
                                                                       "step_00000006.pt"]
    assert len(list((out / "tensorboard").iterdir())) == 1
    assert sorted(p.name for p in (out / "model").iterdir()) == ["config.json", "model.safetensors"]
    state = ckpt_io.load_checkpoint(out / "checkpoints" / "step_00000006.pt")
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    if fsdp:
        # a sharded run resumes with 2 processes and continues to the same place as 1 process would
        _torchrun({**opts, "steps": 8, "resume": True})
        cont = train(**tiny_options(data, single, steps=8, batch_size=4, eval_every=3, save_every=3,
                                    keep_last=5, resume=True))
        assert cont.step == 8
        for k, v in latest_params(single).items():
            torch.testing.assert_close(latest_params(out)[k], v, rtol=1e-3, atol=1e-5)
