"""The training engine in one process: learning, exact resume, metrics, checkpoints, NaN, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch

from cadenza.cli import main as cli_main
from cadenza.errors import CadenzaError, ConfigError, DataError
from cadenza.train import TrainConfig, TrainingDiverged, train
from cadenza.train import checkpoint as ckpt_io
from cadenza.train import loop
from cadenza.train.config import training_settings
from cadenza.train.metrics import read_log
from cadenza.train.schedule import lr_at
from train_fixtures import (
    assert_same_params, cli_args, latest_params, make_text_dataset, tiny_options)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_text_dataset(tmp_path_factory.mktemp("text"))


def test_loss_decreases_and_run_dir_is_complete(data, tmp_path):
    out = tmp_path / "run"
    result = train(**tiny_options(data, out, steps=30, eval_every=10, save_every=10, tensorboard=True))
    assert result.reason == "completed" and result.step == 30 and result.unit == "bits/byte"
    records = read_log(out)
    train_recs = [r for r in records if r["split"] == "train"]
    evals = [r for r in records if r["split"] == "eval"]
    assert [r["step"] for r in train_recs] == list(range(1, 31))
    assert [r["step"] for r in evals] == [10, 20, 30]
    for r in records:
        assert {"step", "split", "loss", "tokens_per_s", "time"} <= r.keys()
    assert {"lr", "grad_norm", "tokens"} <= train_recs[0].keys()
    assert train_recs[0]["loss"] > 7.0                      # about log2(256) = 8 bits at the start
    assert evals[-1]["loss"] < train_recs[0]["loss"] - 3.0  # learned the byte statistics and more
    assert evals[-1]["loss"] == pytest.approx(result.eval_loss)
    assert train_recs[-1]["time"] > train_recs[0]["time"] > 0
    # checkpoints: the last keep_last=2 step files plus best.pt; a loadable exported model
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["best.pt", "step_00000020.pt", "step_00000030.pt"]
    state = ckpt_io.load_checkpoint(out / "checkpoints" / "step_00000030.pt")
    assert {"model", "optimizer", "schedule", "rng", "data", "model_config", "train_config",
            "best_eval", "elapsed"} <= state.keys()
    assert state["data"]["next_step"] == 30 and state["best_eval"] == pytest.approx(evals[-1]["loss"])
    from cadenza.model import SparseTransformer

    model = SparseTransformer.load(out / "model")
    assert model.config.vocab_size == 256
    assert list((out / "tensorboard").iterdir())
    run = json.loads((out / "run.json").read_text())
    assert run["unit"] == "bits/byte" and run["train_config"]["steps"] == 30
    # plots
    assert cli_main(["plot", str(out)]) == 0
    for name in ("loss_vs_step.png", "loss_vs_time.png"):
        assert (out / "plots" / name).read_bytes()[:4] == b"\x89PNG"


def test_exact_resume_20_equals_10_plus_10(data, tmp_path):
    opts = dict(steps=20, eval_every=5, save_every=5, model_overrides={"dropout": 0.1})
    straight = train(**tiny_options(data, tmp_path / "a", **opts))
    first = train(**tiny_options(data, tmp_path / "b", stop_after=10, **opts))
    assert first.reason == "stop_after" and first.step == 10
    second = train(**tiny_options(data, tmp_path / "b", resume=True, **opts))
    assert second.step == 20 and second.reason == "completed"
    a, b = (ckpt_io.load_checkpoint(p / "checkpoints" / "step_00000020.pt") for p in (tmp_path / "a", tmp_path / "b"))
    assert_same_params(a["model"], b["model"])
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(pa["exp_avg"], pb["exp_avg"]) and torch.equal(pa["exp_avg_sq"], pb["exp_avg_sq"])
    assert straight.eval_loss == second.eval_loss
    # metrics describe one continuous run: every step once
    steps = [r["step"] for r in read_log(tmp_path / "b") if r["split"] == "train"]
    assert steps == list(range(1, 21))


def test_resume_through_the_cli_takes_saved_options(data, tmp_path):
    out = tmp_path / "run"
    opts = tiny_options(data, out, steps=12, save_every=4, eval_every=4, stop_after=4)
    assert cli_main(cli_args(opts)) == 0
    assert latest_params(out) is not None
    # --resume alone repeats the original settings (seq-len, batch, lr, ...) and finishes the run
    assert cli_main(["train", "--data", str(data), "--out", str(out), "--resume", "--no-progress",
                     "--no-tensorboard"]) == 0
    assert max(s for s, _ in ckpt_io.list_checkpoints(out)) == 12
    assert json.loads((out / "run.json").read_text())["train_config"]["seq_len"] == 32
    # resuming a finished run does nothing
    result = train(**tiny_options(data, out, steps=12, resume=True))
    assert result.reason == "already_done"


def test_grad_accumulation_matches_a_big_batch(data, tmp_path):
    big = train(**tiny_options(data, tmp_path / "a", steps=3, batch_size=4, eval_every=0, save_every=0))
    acc = train(**tiny_options(data, tmp_path / "b", steps=3, batch_size=4, grad_accum=2, eval_every=0, save_every=0))
    pa, pb = latest_params(tmp_path / "a"), latest_params(tmp_path / "b")
    for k in pa:
        torch.testing.assert_close(pa[k], pb[k], rtol=1e-3, atol=1e-5)
    assert big.eval_loss == pytest.approx(acc.eval_loss, rel=1e-4)


def test_bf16_and_activation_checkpointing_train(data, tmp_path):
    result = train(**tiny_options(data, tmp_path / "run", steps=4, precision="bf16", activation_checkpointing=True))
    assert result.reason == "completed" and math.isfinite(result.eval_loss)
    saved = ckpt_io.load_checkpoint(result.checkpoint)
    assert saved["train_config"]["activation_checkpointing"] is True and saved["train_config"]["precision"] == "bf16"
    assert "checkpointing" not in saved["model_config"] and "dtype" not in saved["model_config"]


def test_nan_steps_are_skipped_with_a_warning(data, tmp_path, monkeypatch, capsys):
    real = loop.loss_fn
    calls = {"n": 0}

    def flaky(logits, targets):
        calls["n"] += 1
        loss = real(logits, targets)
        return loss * float("nan") if calls["n"] in (3, 4) else loss

    monkeypatch.setattr(loop, "loss_fn", flaky)
    result = train(**tiny_options(data, tmp_path / "run", steps=8))
    assert result.reason == "completed" and math.isfinite(result.eval_loss)
    assert "not finite" in capsys.readouterr().err
    skipped = [r for r in read_log(tmp_path / "run") if r.get("skipped")]
    assert [r["step"] for r in skipped] == [3, 4] and skipped[0]["loss"] is None
    assert all(torch.isfinite(t).all() for t in latest_params(tmp_path / "run").values())


def test_persistent_nan_stops_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch):
    real = loop.loss_fn
    calls = {"n": 0}

    def broken(logits, targets):
        calls["n"] += 1
        loss = real(logits, targets)
        return loss * float("inf") if calls["n"] > 6 else loss

    monkeypatch.setattr(loop, "loss_fn", broken)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"3 steps in a row.*step_00000005\.pt"):
        train(**tiny_options(out=out, data=data, steps=20, max_bad_steps=3))
    assert [s for s, _ in ckpt_io.list_checkpoints(out)] == [5]
    assert all(torch.isfinite(t).all() for t in latest_params(out).values())


def test_schedule_warmup_then_cosine():
    assert lr_at(0, 1.0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_at(9, 1.0, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_at(10, 1.0, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_at(55, 1.0, 10, 100, 0.1) == pytest.approx(0.55)
    assert lr_at(100, 1.0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_at(500, 1.0, 10, 100, 0.1) == pytest.approx(0.1)


# --------------------------------------------------------------------------- bad input
def _corrupt_meta(d):
    (d / "meta.json").write_text("{not json")


def _truncate_train(d):
    with open(d / "train.bin", "r+b") as fh:
        fh.truncate(100)


@pytest.mark.parametrize("case, error, match", [
    ("missing_data", DataError, "does not exist"),
    ("corrupt_meta", DataError, "corrupt"),
    ("truncated_split", DataError, "bytes"),
    ("vocab_mismatch", DataError, "vocabulary of 256"),
    ("seq_len_over_data", DataError, "larger than the data"),
    ("seq_len_over_max_len", ConfigError, "max_len"),
    ("out_is_file", ConfigError, "is a file"),
    ("out_unwritable", ConfigError, "cannot write"),
    ("batch_split", ConfigError, "multiple"),
    ("no_model", ConfigError, "--preset"),
    ("bad_preset", ConfigError, "preset"),
    ("config_file_missing", ConfigError, "does not exist"),
    ("fsdp_single_process", ConfigError, "torchrun"),
])
def test_bad_input_fails_before_any_work(data, tmp_path, case, error, match):
    import shutil

    d = tmp_path / "data"
    shutil.copytree(data, d)
    out = tmp_path / "run"
    opts = tiny_options(d, out)
    if case == "missing_data":
        opts["data"] = str(tmp_path / "nowhere")
    elif case == "corrupt_meta":
        _corrupt_meta(d)
    elif case == "truncated_split":
        _truncate_train(d)
    elif case == "vocab_mismatch":
        from cadenza.presets import get_preset

        cfg_file = tmp_path / "model.json"
        cfg_file.write_text(json.dumps(get_preset("tiny", vocab_size=300).to_dict()))
        opts.update(preset=None, model_config=str(cfg_file))
    elif case == "seq_len_over_data":
        # a tiny dataset whose training split is shorter than the window
        from cadenza.data.text import build_text_dataset

        (tmp_path / "small.txt").write_text("a short text " * 3)
        build_text_dataset(tmp_path / "small.txt", d, val_fraction=0.3)
        opts["seq_len"] = 32
    elif case == "seq_len_over_max_len":
        opts["seq_len"] = 100000
    elif case == "out_is_file":
        out.write_text("x")
    elif case == "out_unwritable":
        (tmp_path / "file").write_text("x")
        opts["out"] = str(tmp_path / "file" / "run")
    elif case == "batch_split":
        opts.update(batch_size=5, grad_accum=2)
    elif case == "no_model":
        opts["preset"] = None
    elif case == "bad_preset":
        opts["preset"] = "gigantic"
    elif case == "config_file_missing":
        opts.update(preset=None, model_config=str(tmp_path / "none.json"))
    elif case == "fsdp_single_process":
        opts["fsdp"] = True
    with pytest.raises(error, match=match):
        train(**opts)
    if out.is_dir():
        assert not any(out.iterdir()), "a failed start must not write into the run directory"


def test_existing_run_needs_resume(data, tmp_path):
    opts = tiny_options(data, tmp_path / "run", steps=2, save_every=1)
    train(**opts)
    with pytest.raises(ConfigError, match="--resume"):
        train(**opts)


def test_invalid_options_are_config_errors(data, tmp_path):
    for bad in (dict(steps=0), dict(lr=-1.0), dict(precision="fp8"), dict(batch_size=1.5), dict(grad_clip=float("nan")),
                dict(activation_checkpointing="yes")):
        with pytest.raises(ConfigError):
            TrainConfig(**tiny_options(data, tmp_path / "r", **bad))


def test_cli_errors_exit_2_with_one_line(data, tmp_path, capsys):
    code = cli_main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r"), "--preset", "tiny"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("cadenza: error:") and len(err.strip().splitlines()) == 1
    code = cli_main(["train", "--data", str(data), "--out", str(tmp_path / "r"), "--preset", "tiny", "--set", "nope=1"])
    assert code == 2 and "unknown model config" in capsys.readouterr().err


def test_corrupt_newest_checkpoint_falls_back(data, tmp_path):
    out = tmp_path / "run"
    train(**tiny_options(data, out, steps=10))
    (out / "checkpoints" / "step_00000010.pt").write_bytes(b"garbage")
    result = train(**tiny_options(data, out, steps=12, resume=True))
    assert result.reason == "completed" and result.step == 12
    assert isinstance(ckpt_io.load_checkpoint(result.checkpoint), dict)
    with pytest.raises(CadenzaError):
        ckpt_io.load_checkpoint(tmp_path / "missing.pt")


def test_config_file_may_be_a_saved_model_config(data, tmp_path):
    first = train(**tiny_options(data, tmp_path / "a", steps=2, eval_every=0, save_every=0))
    result = train(**tiny_options(data, tmp_path / "b", steps=2, preset=None,
                                  model_config=str(first.model_dir / "config.json")))
    assert result.reason == "completed"


def test_training_settings_an_old_model_config_held_are_kept(data, tmp_path):
    """checkpointing and dtype, fields of the model config before training owned them, are read as
    activation_checkpointing and precision: resuming an old checkpoint, and in --set."""
    out = tmp_path / "run"
    first = train(**tiny_options(data, out, steps=2, eval_every=0))
    state = ckpt_io.load_checkpoint(first.checkpoint)
    state["model_config"].update(checkpointing=True, dtype="bfloat16")
    ckpt_io.save_checkpoint(first.checkpoint, state)
    result = train(**tiny_options(data, out, steps=3, resume=True))
    saved = ckpt_io.load_checkpoint(result.checkpoint)
    assert result.reason == "completed" and "dtype" not in saved["model_config"]
    assert saved["train_config"]["activation_checkpointing"] is True and saved["train_config"]["precision"] == "bf16"
    fresh = train(**tiny_options(data, tmp_path / "b", steps=1, eval_every=0, model_overrides={"dtype": "float16"}))
    assert ckpt_io.load_checkpoint(fresh.checkpoint)["train_config"]["precision"] == "fp16"
    for bad in ({"dtype": "float8"}, {"checkpointing": "yes"}):
        with pytest.raises(ConfigError) as info:
            training_settings(bad)
        assert "\n" not in str(info.value)
