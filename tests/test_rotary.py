"""Rotary positions (RoPE): relative by construction, and the same logits through every path:
whole sequence, cached chunks, the Python one-token step and the fused C++ step."""

import pytest
import torch

from cadenza.attention import kernels
from cadenza.config import ModelConfig
from cadenza.errors import ConfigError
from cadenza.model import SparseTransformer
from cadenza.rotary import Rotary, rotate
from cadenza.train.loop import init_weights


def _model(attention="strided", integration="merged", positions="rope", **kw):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=40, d_model=32, n_layers=2, n_heads=4, max_len=96, attention=attention,
                      stride=8, integration=integration, positions=positions, **kw)
    return SparseTransformer(cfg).eval()


def test_scores_depend_on_the_distance_only():
    r = Rotary(16)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    near = (rotate(q, r.tables(7, 1)) * rotate(k, r.tables(3, 1))).sum()
    far = (rotate(q, r.tables(507, 1)) * rotate(k, r.tables(503, 1))).sum()
    other = (rotate(q, r.tables(7, 1)) * rotate(k, r.tables(1, 1))).sum()
    assert torch.allclose(near, far, atol=1e-4)
    assert not torch.allclose(near, other, atol=1e-3)   # the distance does matter


def test_rope_model_has_no_position_table():
    m = _model(attention="dense")
    assert m.pos_emb is None and not any("pos_emb" in k for k in m.state_dict())
    assert _model(attention="dense", positions="learned").pos_emb is not None


@pytest.mark.parametrize("attention,integration", [("strided", "merged"), ("strided", "split"),
                                                   ("fixed", "merged"), ("fixed", "interleaved"),
                                                   ("dense", "merged")])
@pytest.mark.parametrize("fused", [True, False])
def test_cached_decoding_equals_the_whole_sequence(attention, integration, fused):
    m = _model(attention, integration)
    m.__dict__["_no_fused"] = not fused
    x = torch.randint(0, 40, (2, 70))
    with torch.no_grad():
        full = m(x)
        cache = m.new_cache(2)
        out = [m(x[:, :21], cache=cache), m(x[:, 21:40], cache=cache)]
        out += [m(x[:, i:i + 1], cache=cache) for i in range(40, 70)]
    torch.testing.assert_close(torch.cat(out, 1), full, atol=2e-5, rtol=1e-4)


def test_the_fused_step_runs_for_a_rope_model():
    if not kernels.ready():
        pytest.skip("the C++ kernel is not built here (no compiler)")
    m = _model()
    with torch.no_grad():
        cache = m.new_cache(1)
        m(torch.tensor([[1, 2, 3]]), cache=cache)
        m(torch.tensor([[4]]), cache=cache)
    assert m.__dict__["_fast"]["float32"]["fused"] is not False


def test_rope_config_checks():
    with pytest.raises(ConfigError, match="even head_dim"):
        ModelConfig(d_model=36, n_heads=4, positions="rope")
    with pytest.raises(ConfigError, match="rope_base"):
        ModelConfig(positions="rope", rope_base=0.5)


def test_a_learned_position_model_starts_a_rope_model_without_its_table():
    src = _model(positions="learned")
    dst = _model(positions="rope")
    note = init_weights(dst, src)
    assert "pos_emb.table.weight" in note
    torch.testing.assert_close(dst.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)
    bigger = SparseTransformer(ModelConfig(vocab_size=40, d_model=64, n_layers=2, n_heads=4, max_len=96,
                                           positions="rope"))
    with pytest.raises(ConfigError, match="other weights"):
        init_weights(bigger, SparseTransformer(ModelConfig(vocab_size=41, d_model=64, n_layers=2, n_heads=4, max_len=96)))


def test_a_rope_model_generates_past_max_len_by_sliding_its_window():
    from cadenza.sampling import generate

    m = _model()                                   # max_len 96
    out = generate(m, [1, 2, 3], max_new_tokens=150, seed=3)
    again = generate(m, [1, 2, 3], max_new_tokens=150, seed=3)
    assert len(out) == 150 and out == again and all(0 <= t < 40 for t in out)
