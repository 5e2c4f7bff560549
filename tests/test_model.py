"""SparseTransformer and ModelConfig: config validation, layout, forward, learning, files."""

import json
import math

import pytest
import torch

import cadenza
from cadenza.attention import (
    BlockSummary, Dense, Local, SameBlock, StrideSkip, fixed, reference_attention, strided,
)
from cadenza.config import ModelConfig
from cadenza.errors import ConfigError, ModelFileError, ShapeError
from cadenza.model import SparseTransformer, full_attention
from cadenza.presets import PRESETS, get_preset
from cadenza.train import precision



def tiny_config(**kw):
    base = dict(vocab_size=13, d_model=16, n_layers=2, n_heads=2, max_len=40, stride=4,
                summary=2)
    base.update(kw)
    return ModelConfig(**base)


def one_sentence(msg: str) -> bool:
    return "\n" not in msg and msg.strip().endswith((".", ")")) and len(msg) < 300


# ---------------------------------------------------------------------------- config
@pytest.mark.parametrize("kw", [
    dict(vocab_size=0), dict(d_model=-1), dict(n_layers=1.5), dict(n_heads=True),
    dict(d_model=10, n_heads=4), dict(attention="sparse"), dict(integration="mixed"),
    dict(stride=0), dict(summary=9, stride=8), dict(integration="split", n_heads=3, d_model=12),
    dict(positions="rotary"), dict(positions="factorized"),
    dict(positions="factorized", position_shape=(2, 3)), dict(dropout=1.0),
    dict(dropout="0.1"), dict(max_len=0),
])
def test_bad_config_raises_one_clear_sentence(kw):
    with pytest.raises(ConfigError) as info:
        tiny_config(**kw)
    assert one_sentence(str(info.value)), str(info.value)


def test_config_defaults_and_round_trip():
    cfg = ModelConfig()
    assert cfg.stride == 64 and cfg.summary == 8  # about sqrt(4096); c = min(8, l)
    cfg = tiny_config(positions="factorized", position_shape=(4, 5, 2))
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert ModelConfig.from_dict(d) == cfg
    # config.json files written when the model config held the training settings still load
    assert ModelConfig.from_dict({**d, "checkpointing": True, "dtype": "bfloat16"}) == cfg
    assert "checkpointing" not in d and "dtype" not in d
    with pytest.raises(ConfigError, match="unknown model config fields: colour"):
        ModelConfig.from_dict({**d, "colour": 1})
    assert cfg.replace(n_layers=3).n_layers == 3
    with pytest.raises(ConfigError):
        cfg.replace(n_layers=0)


def test_integration_modes_pick_the_papers_patterns():
    s = tiny_config(attention="strided", integration="interleaved", n_layers=3)
    assert [s.pattern_for_layer(i) for i in range(3)] == [Local(4), StrideSkip(4), Local(4)]
    f = tiny_config(attention="fixed", integration="interleaved")
    assert [f.pattern_for_layer(i) for i in range(2)] == [SameBlock(4), BlockSummary(4, 2)]
    m = tiny_config(attention="fixed", integration="merged")
    assert m.head_groups(1) == [(0, 2, fixed(4, 2))]
    sp = tiny_config(attention="strided", integration="split", n_heads=4)
    assert sp.head_groups(0) == [(0, 2, Local(4)), (2, 4, StrideSkip(4))]
    assert sp.pattern_for_layer(0) == strided(4)
    for integration in ("interleaved", "merged", "split"):
        d = tiny_config(attention="dense", integration=integration)
        assert d.head_groups(0) == [(0, 2, Dense())]
    with pytest.raises(ConfigError):
        s.pattern_for_layer(3)


def test_presets():
    assert {"tiny", "small"} <= set(PRESETS)
    for name in PRESETS:
        assert isinstance(get_preset(name), ModelConfig)
    assert get_preset("tiny", vocab_size=99).vocab_size == 99
    with pytest.raises(ConfigError, match="known presets: .*small.*tiny"):
        get_preset("huge")
    with pytest.raises(ConfigError):
        get_preset("tiny", colour=3)
    assert cadenza.ModelConfig is ModelConfig and cadenza.SparseTransformer is SparseTransformer


# ---------------------------------------------------------------------------- forward
@pytest.mark.parametrize("attention", ["strided", "fixed", "dense"])
def test_forward_shape_and_causality(attention):
    torch.manual_seed(0)
    model = SparseTransformer(tiny_config(attention=attention)).eval()
    x = torch.randint(0, 13, (3, 23))
    logits = model(x)
    assert logits.shape == (3, 23, 13) and logits.dtype == torch.float32
    y = x.clone()
    y[:, 15:] = (y[:, 15:] + 1) % 13  # changing the future must not change the past
    assert torch.allclose(model(y)[:, :15], logits[:, :15], atol=1e-6)


@pytest.mark.parametrize("pattern", [Dense(), strided(4), fixed(4, 2), StrideSkip(4)])
def test_full_attention_matches_reference(pattern):
    torch.manual_seed(1)
    q, k, v = torch.randn(3, 2, 2, 19, 8).unbind(0)
    assert torch.allclose(full_attention(q, k, v, pattern), reference_attention(q, k, v, pattern),
                          atol=1e-5)


def test_forward_errors():
    model = SparseTransformer(tiny_config())
    with pytest.raises(ShapeError, match="exceeds max_len"):
        model(torch.zeros(1, 41, dtype=torch.long))
    with pytest.raises(ShapeError, match="outside the vocabulary"):
        model(torch.full((1, 3), 13))
    with pytest.raises(ShapeError):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ConfigError):
        SparseTransformer({"vocab_size": 3})


def test_output_projections_are_scaled_at_init():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=32, d_model=128, n_layers=8, n_heads=4, max_len=64)
    model = SparseTransformer(cfg)
    expected = 0.02 / math.sqrt(2 * cfg.n_layers)
    for block in model.blocks:
        assert abs(block.attn.proj.weight.std().item() - expected) < 0.2 * expected
        assert abs(block.mlp.proj.weight.std().item() - expected) < 0.2 * expected
        assert abs(block.attn.qkv.weight.std().item() - 0.02) < 0.1 * 0.02


def test_dropout_only_in_training_and_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    x = torch.randint(0, 13, (2, 17))
    model = SparseTransformer(tiny_config(dropout=0.5))
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))

    torch.manual_seed(0)
    plain = SparseTransformer(tiny_config())
    ckpt = SparseTransformer(tiny_config())
    ckpt.activation_checkpointing = True
    ckpt.load_state_dict(plain.state_dict())
    for m in (plain, ckpt):
        m.train()
        m.loss(x, x).backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name


def test_bfloat16_autocast_runs_close_to_float32():
    torch.manual_seed(0)
    model = SparseTransformer(tiny_config()).eval()
    x = torch.randint(0, 13, (2, 30))
    a = model(x)
    with precision.autocast("bf16", "cpu"):
        b = model(x)
    assert b.dtype == torch.float32 and torch.isfinite(b).all()
    assert (a - b).abs().max() < 0.05
    assert not precision.grad_scaler("bf16", "cpu").is_enabled()
    assert not precision.grad_scaler("fp16", "cpu").is_enabled()   # fp16 falls back to bf16 on the CPU
    assert precision.autocast_dtype("fp16", "cpu") == torch.bfloat16
    assert precision.autocast_dtype("fp16", "cuda") == torch.float16 and precision.autocast_dtype("fp32", "cuda") is None


def test_factorized_positions():
    torch.manual_seed(0)
    cfg = tiny_config(positions="factorized", position_shape=(3, 4, 2), max_len=24)
    model = SparseTransformer(cfg)
    pos = torch.arange(24)
    emb = model.pos_emb(pos)
    rows, cols, ch = pos // 8, (pos // 2) % 4, pos % 2
    axes = model.pos_emb.axes
    assert torch.allclose(emb, axes[0](rows) + axes[1](cols) + axes[2](ch))
    assert model(torch.randint(0, 13, (1, 24))).shape == (1, 24, 13)


# ---------------------------------------------------------------------------- learning
def copy_batch(batch, n, generator):
    """Token 0 is a key (2..7); fillers are 8..15; at the last position (marker 1) predict the key."""
    x = torch.randint(8, 16, (batch, n), generator=generator)
    key = torch.randint(2, 8, (batch,), generator=generator)
    x[:, 0] = key
    x[:, -1] = 1
    y = torch.full((batch, n), -100)
    y[:, -1] = key
    return x, y


def test_tiny_strided_model_learns_to_copy_from_far_back():
    # The key is 23 positions back, far outside the band of 4: only the two-hop path
    # (stride to position 3, then band to position 0) reaches it.
    torch.manual_seed(0)
    n = 24
    cfg = ModelConfig(vocab_size=16, d_model=64, n_layers=2, n_heads=2, max_len=n,
                      attention="strided", stride=4, integration="merged")
    model = SparseTransformer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    # 150 steps reached 100% on the flash-kernel path with this seed; the C++ kernel rounds
    # differently and the (chaotic) trajectory then needs about 300: both reach 100% there
    for _ in range(300):
        x, y = copy_batch(32, n, g)
        loss = model.loss(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = copy_batch(256, n, torch.Generator().manual_seed(1))
    with torch.no_grad():
        acc = (model(x)[:, -1].argmax(-1) == y[:, -1]).float().mean().item()
    assert acc > 0.9, acc


# ---------------------------------------------------------------------------- files
def test_save_load_round_trip_gives_identical_logits(tmp_path):
    torch.manual_seed(0)
    model = SparseTransformer(tiny_config(attention="fixed", integration="split")).eval()
    model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["format_version"] == 1 and meta["cadenza_version"] == cadenza.__version__
    loaded = SparseTransformer.load(tmp_path / "m").eval()
    assert loaded.config == model.config
    x = torch.randint(0, 13, (2, 31))
    assert torch.equal(model(x), loaded(x))


def test_load_errors_are_one_sentence(tmp_path):
    model = SparseTransformer(tiny_config())
    good = model.save(tmp_path / "good")

    def expect(path, pattern):
        with pytest.raises(ModelFileError, match=pattern) as info:
            SparseTransformer.load(path)
        assert one_sentence(str(info.value).split(" (")[0] + "."), str(info.value)

    expect(tmp_path / "nowhere", "does not exist")
    (tmp_path / "empty").mkdir()
    expect(tmp_path / "empty", "has no config.json")

    import shutil
    for name in ("badjson", "badweights", "mismatch", "version", "badconfig", "noweights"):
        shutil.copytree(good, tmp_path / name)
    (tmp_path / "badjson" / "config.json").write_text("{not json")
    expect(tmp_path / "badjson", "not valid JSON")
    data = (tmp_path / "badweights" / "model.safetensors").read_bytes()
    (tmp_path / "badweights" / "model.safetensors").write_bytes(data[: len(data) // 2])
    expect(tmp_path / "badweights", "not a readable safetensors")
    meta = json.loads((good / "config.json").read_text())
    meta["config"]["d_model"] = 32
    (tmp_path / "mismatch" / "config.json").write_text(json.dumps(meta))
    expect(tmp_path / "mismatch", "does not match its config")
    meta = json.loads((good / "config.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "version" / "config.json").write_text(json.dumps(meta))
    expect(tmp_path / "version", "format_version 99")
    meta = json.loads((good / "config.json").read_text())
    meta["config"]["attention"] = "sideways"
    (tmp_path / "badconfig" / "config.json").write_text(json.dumps(meta))
    expect(tmp_path / "badconfig", "invalid model config")
    (tmp_path / "noweights" / "model.safetensors").unlink()
    expect(tmp_path / "noweights", "has no model.safetensors")


def test_interrupted_save_keeps_the_old_files(tmp_path, monkeypatch):
    torch.manual_seed(0)
    old = SparseTransformer(tiny_config())
    old.save(tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()

    import safetensors.torch

    def broken_save(state, path, metadata=None):
        with open(path, "wb") as fh:
            fh.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save)
    with pytest.raises(KeyboardInterrupt):
        SparseTransformer(tiny_config()).save(tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
