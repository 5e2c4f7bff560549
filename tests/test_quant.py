"""Int8 weight-only decoding: packing error, the kernel, and model logits against float32."""

import pytest
import torch

from cadenza import quant
from cadenza.config import ModelConfig
from cadenza.errors import ConfigError
from cadenza.model import SparseTransformer


def test_the_int8_kernel_runs_here():
    assert quant.available("cpu")


def test_pack_rounds_each_row_to_its_own_scale():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(40, 24, generator=g) * torch.logspace(-3, 1, 40)[:, None]   # rows of very different size
    p = quant.pack(w)
    assert p.q.dtype == torch.int8 and p.q.shape == w.shape and int(p.q.abs().max()) <= quant.QMAX
    # each row's largest entry maps to +-127, and no entry is off by more than half a step
    # (plus the bf16 rounding of the scale)
    assert torch.equal(p.q.abs().amax(dim=1), torch.full((40,), quant.QMAX, dtype=torch.int8))
    step = p.scale.float()[:, None]
    assert bool(((p.dequantize() - w).abs() <= 0.5 * step + w.abs() * 2 ** -8).all())
    assert p.nbytes < w.numel() * w.element_size() / 3.5


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16])
def test_linear_matches_the_dequantized_weight(out_dtype):
    g = torch.Generator().manual_seed(1)
    w, b, x = torch.randn(64, 32, generator=g), torch.randn(64, generator=g), torch.randn(3, 32, generator=g)
    p = quant.pack(w, b, out_dtype)
    y = quant.linear(x, p)
    assert y.dtype == out_dtype and y.shape == (3, 64)
    ref = x.bfloat16().float() @ p.dequantize().T + b
    assert torch.allclose(y.float(), ref, rtol=2e-2, atol=2e-2 * float(ref.abs().max()))
    # and it is the layer it stands for, up to quantization
    assert torch.allclose(y.float(), torch.nn.functional.linear(x, w, b), rtol=0.05, atol=0.05 * float(ref.abs().max()))


def _trained_like_model(seed=0, attention="strided"):
    cfg = ModelConfig(vocab_size=50, d_model=64, n_layers=3, n_heads=4, max_len=256, stride=16, summary=4,
                      attention=attention)
    torch.manual_seed(seed)
    m = SparseTransformer(cfg).eval()
    with torch.no_grad():   # larger-than-init weights, so the logits are far from uniform
        for p in m.parameters():
            p.mul_(3.0)
    return m


def _decode(m, seq):
    with torch.inference_mode():
        cache = m.new_cache(1)
        first = m(seq[:, :8], cache=cache)
        steps = [m(seq[:, i:i + 1], cache=cache) for i in range(8, seq.shape[1])]
    return torch.cat([first, *steps], dim=1)[0]


@pytest.mark.parametrize("attention", ["strided", "fixed", "dense"])
def test_int8_decoding_stays_close_to_float32(attention):
    m = _trained_like_model(attention=attention)
    seq = torch.randint(0, 50, (1, 200), generator=torch.Generator().manual_seed(2))
    assert m.set_decode_weights("float32") == "float32"
    exact = _decode(m, seq)
    with torch.inference_mode():
        assert torch.allclose(exact, m(seq)[0], atol=1e-4)   # the float32 path is the full forward
    assert m.set_decode_weights("int8") == "int8" and m.decode_weights == "int8"
    approx = _decode(m, seq)
    assert torch.equal(approx[:8], exact[:8])   # the multi-token prompt always runs in float32
    assert not torch.equal(approx[8:], exact[8:])   # the steps really used other weights
    lp, lq = exact.log_softmax(-1), approx.log_softmax(-1)
    kl = (lp.exp() * (lp - lq)).sum(-1)
    assert float(kl.max()) < 5e-3, float(kl.max())
    assert float((lp.argmax(-1) == lq.argmax(-1)).float().mean()) > 0.9
    # switching back restores the exact weights
    m.set_decode_weights("float32")
    assert torch.equal(_decode(m, seq), exact)


def test_bad_decode_weights_and_missing_kernel_fall_back(monkeypatch):
    m = _trained_like_model()
    with pytest.raises(ConfigError, match="decode weights must be one of float32, int8"):
        m.set_decode_weights("int4")
    monkeypatch.setattr(quant, "available", lambda device_type="cpu": False)
    with pytest.warns(RuntimeWarning, match="int8 decoding is not available"):
        assert m.set_decode_weights("int8") == "float32"
    assert m.decode_weights == "float32"


def test_decoding_with_restores_the_previous_weights_even_after_an_error():
    m = _trained_like_model()
    m.set_decode_weights("int8")
    with pytest.raises(KeyError):
        with m.decoding_with("float32"):
            assert m.decode_weights == "float32"
            raise KeyError("boom")
    assert m.decode_weights == "int8"


def test_int8_weights_follow_parameter_updates():
    """Packed copies are rebuilt after an optimizer step changes the parameters in place."""
    m = _trained_like_model()
    seq = torch.randint(0, 50, (1, 40), generator=torch.Generator().manual_seed(3))
    m.set_decode_weights("int8")
    before = _decode(m, seq)
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    m.train()
    m.loss(seq[:, :-1], seq[:, 1:]).backward()
    opt.step()
    m.eval()
    after = _decode(m, seq)
    m.set_decode_weights("float32")
    exact_after = _decode(m, seq)
    assert not torch.allclose(before, after, atol=1e-2)
    lp, lq = exact_after.log_softmax(-1), after.log_softmax(-1)
    assert float((lp.exp() * (lp - lq)).sum(-1).max()) < 5e-3
