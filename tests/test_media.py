"""Images and raw audio: codecs, `cadenza data images|audio`, training on them, `cadenza generate`."""

import json
import wave

import numpy as np
import pytest
import torch
from PIL import Image

from cadenza.cli import main
from cadenza.codecs.audio import AudioCodec, read_wav, write_wav
from cadenza.codecs.image import START, ImageCodec, load_image
from cadenza.data.dataset import RecordSampler, eval_offsets
from cadenza.data.format import open_split, read_meta
from cadenza.data.samples import write_sample_images
from cadenza.errors import DataError
from cadenza.media import complete_image, continue_audio, load_media_model, sample_images


def one_line_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cadenza: error:"), err
    return err[0]


# --------------------------------------------------------------------------- image codec
@pytest.mark.parametrize("shape", [(32, 32, 3), (5, 7, 3), (4, 6, 1)])
def test_image_round_trip_is_exact(shape):
    rng = np.random.default_rng(sum(shape))
    img = rng.integers(0, 256, size=shape, dtype=np.uint8)
    codec = ImageCodec(*shape)
    tokens = codec.encode(img)
    assert tokens.shape == (np.prod(shape),) and tokens.max() <= 255
    assert np.array_equal(codec.decode(tokens), img)
    rec = codec.record(img)
    assert rec[0] == START and np.array_equal(codec.decode(rec), img)
    # raster order: row, column, channel
    r, c, ch = shape[0] - 1, shape[1] // 2, shape[2] - 1
    assert tokens[r * shape[1] * shape[2] + c * shape[2] + ch] == img[r, c, ch]


def test_image_codec_rejects_wrong_sizes():
    codec = ImageCodec(4, 4, 3)
    with pytest.raises(DataError):
        codec.encode(np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(DataError):
        codec.decode(np.zeros(47, np.int64))


def test_load_image_any_mode_and_aspect(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (30, 50, 4), dtype=np.uint8), "RGBA").save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (40, 20), dtype=np.uint8), "L").save(tmp_path / "b.jpg")
    for name in ("a.png", "b.jpg"):
        arr = load_image(tmp_path / name, 16)
        assert arr.shape == (16, 16, 3) and arr.dtype == np.uint8
    # an image already at the size comes back unchanged (centre crop of a square is itself)
    img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "c.png")
    assert np.array_equal(load_image(tmp_path / "c.png", 16), img)
    (tmp_path / "d.png").write_bytes(b"not a png")
    with pytest.raises(DataError):
        load_image(tmp_path / "d.png", 16)


# --------------------------------------------------------------------------- audio codec
def test_mu_law_round_trip_within_quantisation():
    codec = AudioCodec(8000)
    x = np.concatenate([np.linspace(-1, 1, 20001), np.random.default_rng(0).uniform(-1, 1, 5000)])
    codes = codec.encode(x)
    assert codes.min() >= 0 and codes.max() <= 255
    y = codec.decode(codes)
    levels = codec.decode(np.arange(256))
    assert np.all(np.diff(levels) > 0)
    # each code's bin: from the half-level below to the half-level above (mu-law inverted
    # here independently of the codec), so x lies inside the bin of the level it came back as
    def inverse(f):
        return np.sign(f) * np.expm1(np.abs(f) * np.log1p(255)) / 255

    edge_lo = inverse(np.maximum(codes - 0.5, 0) / 255 * 2 - 1)
    edge_hi = inverse(np.minimum(codes + 0.5, 255) / 255 * 2 - 1)
    assert np.all((x >= edge_lo - 1e-6) & (x <= edge_hi + 1e-6))
    assert np.all(np.abs(y - x) <= np.maximum(y - edge_lo, edge_hi - y) + 1e-6)
    assert np.all(np.abs(y - x) <= np.diff(levels).max())
    # quiet samples are kept much finer than loud ones
    assert np.abs(y - x)[np.abs(x) < 0.01].max() < np.abs(y - x)[np.abs(x) > 0.9].max() / 10
    assert abs(codec.decode([codec.silence()])[0]) < 1e-3
    with pytest.raises(DataError):
        AudioCodec(44100)


def _write_pcm(path, samples, rate, width=2, channels=1):
    scale = {1: 127, 2: 32767, 3: 8388607, 4: 2147483647}[width]
    ints = np.round(np.clip(samples, -1, 1) * scale).astype(np.int64)
    if width == 1:
        raw = (ints + 128).astype(np.uint8).tobytes()
    elif width == 3:
        u = (ints & 0xFFFFFF).astype(np.uint32)
        raw = np.stack([u & 255, (u >> 8) & 255, (u >> 16) & 255], axis=-1).astype(np.uint8).tobytes()
    else:
        raw = ints.astype({2: "<i2", 4: "<i4"}[width]).tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_read_wav_sample_widths(tmp_path, width):
    t = np.arange(800) / 8000
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([tone, tone * 0.5], axis=1).reshape(-1)
    _write_pcm(tmp_path / "s.wav", stereo, 8000, width, channels=2)
    x, rate = read_wav(tmp_path / "s.wav")
    assert rate == 8000 and x.shape == (800,)
    assert np.abs(x - tone * 0.75).max() < (0.02 if width == 1 else 1e-3)


def test_resampling_to_the_codec_rate(tmp_path):
    t = np.arange(22050) / 22050
    _write_pcm(tmp_path / "a.wav", 0.5 * np.sin(2 * np.pi * 220 * t), 22050)
    x = AudioCodec(8000).load_file(tmp_path / "a.wav")
    assert abs(len(x) - 8000) <= 2
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(int(spectrum.argmax()) - 220) <= 1     # 1 s of audio: bin k is k Hz


# --------------------------------------------------------------------------- datasets
@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    write_sample_images(folder, count=10, size=12, seed=1)
    return folder


def test_data_images_records_are_the_images(image_folder, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in sorted(image_folder.iterdir()):
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (folder / "notes.txt").write_text("not an image, not even looked at")
    out = tmp_path / "data"
    assert main(["data", "images", str(folder), "--size", "8", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "1 file(s) skipped" in text and "broken.png" in text
    meta = read_meta(out)
    assert meta["record_len"] == 8 * 8 * 3 + 1 and meta["unit"] == "bits/dim" and meta["files"] == 10
    codec = ImageCodec(8, 8, 3)
    originals = {load_image(p, 8).tobytes() for p in sorted(image_folder.iterdir())}
    seen = []
    for split in ("train", "val"):
        tokens = np.asarray(open_split(out, split))
        assert len(tokens) % meta["record_len"] == 0
        for rec in tokens.reshape(-1, meta["record_len"]):
            assert rec[0] == START
            seen.append(codec.decode(rec).tobytes())
    assert sorted(seen) == sorted(originals) and len(seen) == 10


@pytest.mark.parametrize("case", ["missing", "empty", "all_corrupt", "one_image", "size"])
def test_data_images_bad_input(tmp_path, capsys, case, image_folder):
    folder = tmp_path / "in"
    args = []
    if case != "missing":
        folder.mkdir()
    if case == "all_corrupt":
        (folder / "a.jpg").write_bytes(b"nope")
        (folder / "b.png").write_bytes(b"")
    if case == "one_image":
        (folder / "a.png").write_bytes(next(image_folder.iterdir()).read_bytes())
    if case == "size":
        (folder / "a.png").write_bytes(next(image_folder.iterdir()).read_bytes())
        args = ["--size", "0"]
    out = tmp_path / "out"
    assert main(["data", "images", str(folder), "-o", str(out), *args]) == 2
    one_line_error(capsys)
    assert not out.exists()


def test_data_audio_skips_bad_files(tmp_path, capsys):
    folder = tmp_path / "wavs"
    folder.mkdir()
    t = np.arange(4000) / 8000
    _write_pcm(folder / "a.wav", 0.3 * np.sin(2 * np.pi * 300 * t), 8000)
    _write_pcm(folder / "b.wav", 0.3 * np.sin(2 * np.pi * 500 * t), 16000)
    _write_pcm(folder / "empty.wav", np.zeros(0), 8000)
    (folder / "junk.wav").write_bytes(b"RIFF0000WAVEjunk")
    out = tmp_path / "data"
    assert main(["data", "audio", str(folder), "-o", str(out)]) == 0
    assert "2 file(s) skipped" in capsys.readouterr().out
    meta = read_meta(out)
    assert meta["unit"] == "bits/sample" and meta["sample_rate"] == 8000 and meta["files"] == 2
    total = sum(meta["splits"].values())
    assert total == 4000 + 2000          # b.wav resampled from 16 kHz to 8 kHz
    first = np.asarray(open_split(out, "train"))[:4000]
    assert np.array_equal(first, AudioCodec(8000).encode(AudioCodec(8000).load_file(folder / "a.wav")))


@pytest.mark.parametrize("case", ["missing", "no_wav", "all_bad"])
def test_data_audio_bad_input(tmp_path, capsys, case):
    folder = tmp_path / "in"
    if case != "missing":
        folder.mkdir()
        (folder / "readme.txt").write_text("x")
    if case == "all_bad":
        _write_pcm(folder / "empty.wav", np.zeros(0), 8000)
        (folder / "float.wav").write_bytes(_float_wav())
    out = tmp_path / "out"
    assert main(["data", "audio", str(folder), "-o", str(out)]) == 2
    one_line_error(capsys)
    assert not out.exists()


def _float_wav() -> bytes:
    """A 32-bit IEEE-float WAV (format 3), which is not PCM."""
    import struct

    data = np.zeros(100, "<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32)
    return (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE" + b"fmt "
            + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data)


def test_float_wav_names_the_problem(tmp_path):
    (tmp_path / "f.wav").write_bytes(_float_wav())
    with pytest.raises(DataError, match="float"):
        read_wav(tmp_path / "f.wav")


# --------------------------------------------------------------------------- training windows
def test_record_sampler_windows_start_at_records():
    rec = 13
    tokens = np.tile(np.concatenate([[256], np.arange(rec - 1)]), 20)
    s = RecordSampler(tokens, 12, 6, rec, seed=3)
    for step in range(5):
        offs = s.offsets(step)
        assert np.all(offs % rec == 0) and offs.max() < len(tokens)
        x, y = next(s.micro_batches(step))
        assert torch.all(x[:, 0] == 256) and torch.equal(y[:, 0], torch.zeros(6, dtype=torch.long))
    starts = eval_offsets(len(tokens), 12, 0, rec)
    assert np.array_equal(starts, np.arange(20) * rec)


def test_factorized_positions_are_row_column_channel_sums():
    from cadenza.config import ModelConfig
    from cadenza.model import SparseTransformer

    cfg = ModelConfig(vocab_size=257, d_model=16, n_layers=1, n_heads=2, max_len=48, stride=12,
                      positions="factorized", position_shape=(4, 4, 3))
    model = SparseTransformer(cfg)
    emb = model.pos_emb
    assert [a.weight.shape for a in emb.axes] == [torch.Size([4, 16]), torch.Size([4, 16]), torch.Size([3, 16])]
    pos = torch.arange(48)
    out = emb(pos)
    assert out.shape == (48, 16)
    for p in (0, 5, 13, 47):
        r, c, ch = p // 12, (p // 3) % 4, p % 3
        expected = emb.axes[0].weight[r] + emb.axes[1].weight[c] + emb.axes[2].weight[ch]
        assert torch.allclose(out[p], expected)


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def image_model(tmp_path_factory, image_folder):
    root = tmp_path_factory.mktemp("imgmodel")
    assert main(["data", "images", str(image_folder), "--size", "6", "-o", str(root / "data")]) == 0
    assert main(["train", "--data", str(root / "data"), "--out", str(root / "run"), "--preset", "tiny",
                 "--set", "d_model=32", "--steps", "4", "--batch-size", "2", "--eval-every", "0",
                 "--no-progress", "--no-tensorboard"]) == 0
    return root / "run" / "model"


def test_image_model_trains_with_image_positions(image_model):
    cfg = json.loads((image_model / "config.json").read_text())["config"]
    assert cfg["positions"] == "factorized" and cfg["position_shape"] == [6, 6, 3]
    assert cfg["stride"] == 18 and cfg["max_len"] == 108 and cfg["vocab_size"] == 257
    run = json.loads((image_model.parent / "run.json").read_text())
    assert run["unit"] == "bits/dim"


def test_generate_image_grid(image_model, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["generate", "--model", str(image_model), "--n", "5", "--columns", "3", "--scale", "2",
                 "-o", str(out)]) == 0
    with Image.open(out) as im:
        # 2 rows x 3 columns of 12-pixel tiles with 2-pixel gaps
        assert im.size == (3 * 12 + 4 * 2, 2 * 12 + 3 * 2)
    mm = load_media_model(image_model)
    a = sample_images(mm, 2, seed=4)
    b = sample_images(mm, 2, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and a[0].shape == (6, 6, 3)


def test_complete_keeps_the_top_half_exactly(image_model, image_folder, tmp_path):
    mm = load_media_model(image_model)
    source = next(image_folder.iterdir())
    img = mm.codec.load_file(source)
    outs = complete_image(mm, img, n=3, seed=1)
    for o in outs:
        assert np.array_equal(o[:3], img[:3])
    assert any(not np.array_equal(o[3:], img[3:]) for o in outs)
    out = tmp_path / "c.png"
    assert main(["generate", "--model", str(image_model), "--complete", str(source), "--n", "2",
                 "--columns", "3", "--scale", "1", "-o", str(out)]) == 0
    grid = np.asarray(Image.open(out).convert("RGB"))
    for k in range(3):   # the original, then two completions: all share the top three rows
        tile = grid[2:8, 2 + k * 8:8 + k * 8]
        assert np.array_equal(tile[:3], img[:3])


@pytest.fixture(scope="module")
def audio_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("audmodel")
    wavs = root / "wavs"
    wavs.mkdir()
    t = np.arange(8000) / 8000
    for k, f in enumerate((220, 330, 440)):
        _write_pcm(wavs / f"{k}.wav", 0.4 * np.sin(2 * np.pi * f * t), 8000)
    assert main(["data", "audio", str(wavs), "-o", str(root / "data"), "--val-fraction", "0.2"]) == 0
    assert main(["train", "--data", str(root / "data"), "--out", str(root / "run"), "--preset", "tiny",
                 "--set", "d_model=32", "--set", "max_len=128", "--set", "stride=8", "--steps", "3",
                 "--batch-size", "2", "--eval-every", "0", "--eval-windows", "4",
                 "--no-progress", "--no-tensorboard"]) == 0
    return root / "run" / "model", wavs / "0.wav"


def test_generate_audio_continues_the_prime(audio_model, tmp_path, capsys):
    model_dir, prime = audio_model
    clip = tmp_path / "clip.wav"
    x, _ = read_wav(prime)
    write_wav(clip, x[:400], 8000)
    out = tmp_path / "out.wav"
    assert main(["generate", "--model", str(model_dir), "--prime", str(clip), "--seconds", "0.05",
                 "-o", str(out)]) == 0
    y, rate = read_wav(out)
    assert rate == 8000 and len(y) == 400 + 400
    codec = AudioCodec(8000)
    assert np.array_equal(codec.encode(y[:400]), codec.encode(x[:400]))
    mm = load_media_model(model_dir)
    assert len(continue_audio(mm, None, 0.01, seed=0)) == 1 + 80


def test_generate_bad_input(image_model, audio_model, tmp_path, capsys):
    model_dir, prime = audio_model
    cases = [
        ["--model", str(tmp_path / "nope"), "-o", str(tmp_path / "a.png")],
        ["--model", str(image_model), "-o", str(tmp_path / "a.wav")],
        ["--model", str(image_model), "--prime", str(prime), "-o", str(tmp_path / "a.png")],
        ["--model", str(image_model), "--n", "0", "-o", str(tmp_path / "a.png")],
        ["--model", str(image_model), "--complete", str(tmp_path / "missing.png"), "-o", str(tmp_path / "a.png")],
        ["--model", str(model_dir), "--seconds", "0", "-o", str(tmp_path / "a.wav")],
        ["--model", str(model_dir), "--prime", str(tmp_path / "missing.wav"), "-o", str(tmp_path / "a.wav")],
        ["--model", str(model_dir), "-o", str(tmp_path / "no" / "a.wav")],
    ]
    for argv in cases:
        assert main(["generate", *argv]) == 2, argv
        one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
