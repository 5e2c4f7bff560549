"""Byte-level text datasets and the training/eval window samplers."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from cadenza.cli import main as cli_main
from cadenza.data.dataset import WindowSampler, eval_batches, eval_offsets, load_splits
from cadenza.data.format import open_split, read_meta
from cadenza.data.text import build_text_dataset
from cadenza.errors import ConfigError, DataError


def test_build_from_file_holds_out_the_tail(tmp_path):
    src = tmp_path / "a.txt"
    text = ("In the beginning was the word. " * 40).encode()
    src.write_bytes(text)
    result = build_text_dataset(src, tmp_path / "d", val_fraction=0.1)
    meta = read_meta(tmp_path / "d")
    assert meta["vocab_size"] == 256 and meta["modality"] == "text" and meta["dtype"] == "uint8"
    train, val = open_split(tmp_path / "d", "train"), open_split(tmp_path / "d", "val")
    assert bytes(train) + bytes(val) == text
    assert len(val) == int(len(text) * 0.1) == result.splits["val"]


def test_build_from_folder_sorted_gz_hidden_and_binary(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / ".git").mkdir()
    (src / "b.txt").write_bytes(b"second")
    (src / "a.txt").write_bytes(b"first\n")
    (src / "sub" / "c.txt.gz").write_bytes(gzip.compress(b"third, zipped"))
    (src / ".git" / "x.txt").write_bytes(b"hidden")
    (src / "blob.bin").write_bytes(b"\x00\x01\x02binary")
    result = build_text_dataset(src, tmp_path / "d", val_fraction=0.2)
    assert [p.name for p in result.files] == ["a.txt", "b.txt", "c.txt.gz"]
    assert [p.name for p in result.skipped] == ["blob.bin"]
    stream = bytes(open_split(tmp_path / "d", "train")) + bytes(open_split(tmp_path / "d", "val"))
    assert stream == b"first\nsecond\nthird, zipped"


@pytest.mark.parametrize("make", ["missing", "empty_file", "empty_dir", "binary_only"])
def test_build_errors(tmp_path, make):
    src = tmp_path / "src"
    if make == "empty_file":
        src.write_bytes(b"")
    elif make == "empty_dir":
        src.mkdir()
    elif make == "binary_only":
        src.write_bytes(b"\x00" * 100)
    with pytest.raises(DataError):
        build_text_dataset(src, tmp_path / "d")
    assert not (tmp_path / "d" / "meta.json").exists()


def test_build_rejects_bad_fraction(tmp_path):
    (tmp_path / "a.txt").write_text("abc" * 100)
    with pytest.raises(ConfigError):
        build_text_dataset(tmp_path / "a.txt", tmp_path / "d", val_fraction=0.9)


def test_cli_data_text(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("hello cadenza " * 100)
    assert cli_main(["data", "text", str(tmp_path / "a.txt"), "--out", str(tmp_path / "d")]) == 0
    assert "train" in capsys.readouterr().out
    assert cli_main(["data", "text", str(tmp_path / "nope"), "--out", str(tmp_path / "e")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_window_sampler_is_deterministic_and_splits_ranks_without_overlap():
    tokens = np.arange(1000, dtype=np.uint16) % 256
    one = WindowSampler(tokens, seq_len=16, global_batch=8, seed=3)
    again = WindowSampler(tokens, seq_len=16, global_batch=8, seed=3)
    assert np.array_equal(one.offsets(5), again.offsets(5))
    assert not np.array_equal(one.offsets(5), one.offsets(6))
    assert not np.array_equal(one.offsets(5), WindowSampler(tokens, 16, 8, seed=4).offsets(5))
    ranks = [WindowSampler(tokens, 16, 8, seed=3, rank=r, world_size=2, grad_accum=2) for r in range(2)]
    assert ranks[0].micro_batch == 2
    parts = [r.rank_offsets(7) for r in ranks]
    assert np.array_equal(np.concatenate(parts), one.offsets(7))  # disjoint slices of one global batch
    # micro-batches of rank 1 are its windows in order, targets shifted by one
    xs = [x for x, _ in ranks[1].micro_batches(7)]
    ys = [y for _, y in ranks[1].micro_batches(7)]
    assert len(xs) == 2 and xs[0].shape == (2, 16)
    starts = parts[1]
    assert xs[1][0].tolist() == tokens[starts[2]:starts[2] + 16].tolist()
    assert ys[1][0].tolist() == tokens[starts[2] + 1:starts[2] + 17].tolist()
    assert one.offsets(5).max() <= len(tokens) - 17


def test_window_sampler_errors():
    tokens = np.zeros(10, dtype=np.uint8)
    with pytest.raises(DataError):
        WindowSampler(tokens, seq_len=10, global_batch=2)
    with pytest.raises(ConfigError):
        WindowSampler(np.zeros(100, dtype=np.uint8), seq_len=8, global_batch=3, world_size=2)


def test_eval_windows_tile_without_overlap():
    starts = eval_offsets(101, 10, max_windows=0)
    assert starts.tolist() == list(range(0, 100, 10))
    sub = eval_offsets(1001, 10, max_windows=7)
    assert len(sub) == 7 and sub[0] == 0 and sub[-1] == 990
    tokens = np.arange(101, dtype=np.uint8)
    seen = [x for r in range(2) for x, _ in eval_batches(tokens, 10, 3, 0, rank=r, world_size=2)]
    firsts = sorted(int(row[0]) for x in seen for row in x)
    assert firsts == list(range(0, 100, 10))


def test_load_splits_requires_val(tmp_path):
    from cadenza.data.format import write_dataset

    write_dataset(tmp_path / "d", {"train": np.zeros(50, dtype=np.uint8)}, vocab_size=256, modality="text")
    with pytest.raises(DataError, match="val"):
        load_splits(tmp_path / "d")
