"""The one-token cached decode step: the model's weights gathered once (float32, or int8 packed by
``cadenza.quant``), then a step as plain functional calls (Python) or one C++ call per step
(the fused ``decode_step`` of ``cadenza.attention.kernels``, where it applies).

``SparseTransformer.forward`` hands a one-token cached step here; ``set_decode_weights``
chooses the weights. The state lives in the model's ``__dict__`` (not in its modules or
``state_dict``): ``_decode_kind``, the gathered ``_fast`` weights per kind (dropped when the
parameters are moved or loaded), and ``_no_fused`` (a test and benchmark switch).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from cadenza import quant
from cadenza.cache import KVCache
from cadenza.errors import ConfigError
from cadenza.rotary import rotate

DECODE_WEIGHTS = ("float32", "int8")


def decode_kind(kind: str, device_type: str) -> str:
    """``kind`` checked, or "float32" (with a warning) where the int8 kernel does not run."""
    if kind not in DECODE_WEIGHTS:
        raise ConfigError(f"decode weights must be one of {', '.join(DECODE_WEIGHTS)}, got {kind!r}.")
    if kind == "int8" and not quant.available(device_type):
        warnings.warn(f"int8 decoding is not available on this PyTorch build/{device_type}; "
                      "decoding with float32 weights", RuntimeWarning, stacklevel=3)
        kind = "float32"
    return kind


def _autocast_on(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` here (the fused step computes in float32 only)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:   # PyTorch before 2.4
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


def _linear(x: torch.Tensor, w) -> torch.Tensor:
    """A linear layer from ``fast_weights``: a (weight, bias) pair or an int8 PackedLinear."""
    if isinstance(w, quant.PackedLinear):
        return quant.linear(x, w)
    return F.linear(x, w[0], w[1])


def decode_one(model, idx, cache: KVCache, kind: str | None = None) -> torch.Tensor:
    """``model(idx, cache=cache)`` for one new token per sequence, with the module overhead removed.

    Same maths as the model's blocks (the tests check cached == full logits), written with
    plain functional calls on weights gathered once, because at one token per step the
    Python cost of module calls is comparable to the matmuls themselves. With
    ``set_decode_weights("int8")`` the linear layers use int8 weights (``kind`` overrides it).
    """
    fast = fast_weights(model, kind)
    start = cache.length
    fused = fused_step(model, fast, cache)
    if fused is not None:
        return fused(idx, start)
    B, d, H, hd = idx.shape[0], model.config.d_model, model.config.n_heads, model.config.head_dim
    x = model.embed_one(idx[:, 0], start)
    rope = model.rotary.tables(start, 1) if model.rotary is not None else None
    for (w1, b1, eps1, qkv, proj, w2, b2, eps2, fc, out), layer, scale \
            in zip(fast["blocks"], cache.layers, fast["scales"]):
        h = F.layer_norm(x, (d,), w1, b1, eps1)
        qkv_out = _linear(h, qkv).view(B, 3, H, 1, hd)
        if rope is not None:  # the new token's q and k turned at its position (keys are cached turned)
            qkv_out[:, :2] = rotate(qkv_out[:, :2], rope)
        q, k, v = qkv_out.unbind(1)
        if len(layer) == 1:
            y = layer[0][2].step(q, k, v, scale, kv=qkv_out[:, 1:])
        else:
            y = torch.cat([g.step(q[:, h0:h1], k[:, h0:h1], v[:, h0:h1], scale,
                                  kv=qkv_out[:, 1:, h0:h1]) for h0, h1, g in layer], dim=1)
        x = x + _linear(y.reshape(B, d), proj)
        h = F.layer_norm(x, (d,), w2, b2, eps2)
        x = x + _linear(F.gelu(_linear(h, fc)), out)
    wf, bf, epsf = fast["final"]
    logits = _linear(F.layer_norm(x, (d,), wf, bf, epsf), fast["head"])
    cache.length += 1
    return logits.float()[:, None, :]


def fused_step(model, fast: dict, cache: KVCache):
    """The C++ decode step (``cadenza.attention.kernels``) where it applies: every head group of
    every layer a Local band or SameBlock with at most a StrideSkip or BlockSummary part (the
    strided and fixed patterns in every integration mode: interleaved, merged, split), float32
    parameters on the CPU (no autocast), and the kernel built. Else None (the Python step runs).
    Same maths; tests check cached == full logits both ways.

    Whether it applies is decided once per set of decode weights (kept in ``fast``); a "no"
    is looked at again only once this process has loaded the kernel, so a step costs no
    file check or hashing."""
    plan = _plan(model, fast)
    if plan is None:
        return None
    ext, weights, eps, scales, int8, spec = plan
    groups = [(h1 - h0, g) for layer in cache.layers for h0, h1, g in layer]
    H, hd = model.config.n_heads, model.config.head_dim

    empty = torch.empty(0)

    def step(idx, start):
        B = idx.shape[0]
        x = model.embed_one(idx[:, 0], start)
        rope = model.rotary.at(start) if model.rotary is not None else empty
        rings, stores = [], []
        for heads, g in groups:
            g.reserve(B, heads, hd, x)
            rings.append(g.ring_kv if g.ring_kv is not None else empty)
            far = g.res_kv if g.skip is not None else g.sum_kv
            stores.append(far if far is not None else empty)
        logits = ext.decode_step(x, weights, spec, rings, stores, start, H, eps, scales, int8, rope)
        for _, g in groups:
            g.advance_one()
        cache.length += 1
        return logits[:, None, :]

    return step


def _plan(model, fast: dict):
    """The fused step's plan (see ``fused_step``), or None where it does not apply."""
    from cadenza.attention import kernels

    if model.__dict__.get("_no_fused") or _autocast_on("cpu"):
        return None
    plan = fast.get("fused")
    if plan is None or (plan is False and fast.get("fused_loaded") != kernels.loaded()):
        plan = fast["fused"] = _fused_plan(model, fast) if kernels.ready() else False
        fast["fused_loaded"] = kernels.loaded()
    return None if plan is False else plan


def _rope_at(model, p: int) -> torch.Tensor:
    """``model.rotary.at(p)``, kept per position (the very tensor a lone step computes)."""
    table = model.__dict__.setdefault("_rope_rows", {})
    t = table.get(p)
    if t is None:
        t = table[p] = model.rotary.at(p)
    return t


def decode_rows(model, tokens: list[int], caches: list[KVCache]) -> torch.Tensor:
    """One new token for each of several sequences that keep their own caches (each made for a
    batch of one, each at its own length): logits (rows, vocab), float32.

    Row r's logits are bit for bit those of ``model(tensor([[tokens[r]]]), cache=caches[r])``
    whatever the other rows are: the fused C++ step computes every row as a batch of one would
    (``decode_rows`` in ``cadenza.attention.kernels``), so the weights are read once per step
    for all rows. Where the fused step does not apply (int8 weights, no kernel, another device)
    each row takes the Python step, one after another (the same maths, no sharing). Always the
    float32 weights, whatever ``set_decode_weights`` chose for lone steps."""
    if not tokens:
        return torch.empty((0, model.config.vocab_size))
    for c in caches:
        if c.batch_size != 1 or c.length >= model.config.max_len:
            raise ConfigError(f"decode_rows takes caches of one sequence holding under max_len tokens, not {c!r}")
    fast = fast_weights(model, "float32")
    plan = _plan(model, fast)
    if plan is None:
        with torch.inference_mode():
            return torch.cat([decode_one(model, torch.tensor([[t]], device=model.device), c, "float32")[:, -1]
                              for t, c in zip(tokens, caches)])
    ext, _, eps, scales, _, spec = plan
    weights = rows_weights(model, fast)
    H, hd = model.config.n_heads, model.config.head_dim
    pos = [int(c.length) for c in caches]
    with torch.inference_mode():
        x = F.embedding(torch.tensor(tokens, device=model.device), model.tok_emb.weight)
        if model.pos_emb is not None:
            x = x + torch.stack([model.pos_emb.at(p) for p in pos])
        rope = torch.stack([_rope_at(model, p) for p in pos]) if model.rotary is not None else torch.empty(0)
        empty = torch.empty(0)
        rings, stores, groups = [], [], []
        for c in caches:
            for layer in c.layers:
                for h0, h1, g in layer:
                    g.reserve(1, h1 - h0, hd, x)
                    rings.append(g.ring_kv if g.ring_kv is not None else empty)
                    far = g.res_kv if g.skip is not None else g.sum_kv
                    stores.append(far if far is not None else empty)
                    groups.append(g)
        logits = ext.decode_rows(x, weights, spec, rings, stores, pos, H, eps, scales, rope)
    for g in groups:
        g.advance_one()
    for c in caches:
        c.length += 1
    return logits


ROWS_PAD = 32   # decode_rows' weights: output columns padded to its register tile


def rows_weights(model, fast: dict) -> list:
    """The fused plan's float32 weights for ``decode_rows``: every linear weight transposed to
    (in, out rounded up to ROWS_PAD), zero-padded; made again when a parameter changed in place."""
    stamp = (model.tok_emb.weight._version, model.blocks[0].attn.qkv.weight._version,
             model.head.weight._version)
    kept = fast.get("rows")
    if kept is not None and kept[0] == stamp:
        return kept[1]
    flat = _plan(model, fast)[1]
    L = model.config.n_layers
    linear = {16 * i + j for i in range(L) for j in (2, 5, 10, 13)} | {16 * L + 2}
    out = []
    for i, w in enumerate(flat):
        if i in linear:
            n_out, n_in = w.shape
            t = torch.zeros((n_in, -(-n_out // ROWS_PAD) * ROWS_PAD), dtype=w.dtype, device=w.device)
            t[:, :n_out] = w.detach().t()
            w = t
        out.append(w)
    fast["rows"] = (stamp, out)
    return out


def group_spec(layer: int, h0: int, h1: int, g) -> list[int]:
    """The 8 integers by which the C++ step knows a head group's cache (see sparse_attn.cpp):
    layer, heads, near part (0 none, 1 Local, 2 SameBlock) and size, far part (0 none,
    1 StrideSkip, 2 BlockSummary), its stride or block, and c."""
    near = (1, g.local.width) if g.local is not None else (2, g.block.block) if g.block is not None else (0, 0)
    far = ((1, g.skip.stride, 0) if g.skip is not None
           else (2, g.summary.block, g.summary.c) if g.summary is not None else (0, 0, 0))
    return [layer, h0, h1, *near, *far]


def _fused_plan(model, fast: dict):
    """(extension, flat weights, eps, scales, int8, group spec) for the fused step, or False."""
    from cadenza.attention import kernels

    ext = kernels.load()
    layers = model.new_cache(1).layers          # the cache's layout follows from the config alone
    int8 = isinstance(fast["head"], quant.PackedLinear)
    ok = (ext is not None and hasattr(ext, "decode_step") and model.device.type == "cpu"
          and model.tok_emb.weight.dtype == torch.float32
          and all(not g.dense and (g.ring or g.skip is not None or g.summary is not None)
                  for layer in layers for _, _, g in layer))
    if not ok:
        return False
    empty = torch.empty(0)

    def three(p):
        if isinstance(p, quant.PackedLinear):
            return [p.q, p.scale, p.bias]
        return [p[0].contiguous(), p[1].contiguous() if p[1] is not None else torch.zeros(p[0].shape[0]), empty]

    flat, eps = [], []
    for (w1, b1, eps1, qkv, proj, w2, b2, eps2, fc, out) in fast["blocks"]:
        flat += [w1.contiguous(), b1.contiguous(), *three(qkv), *three(proj), w2.contiguous(), b2.contiguous(),
                 *three(fc), *three(out)]
        eps += [float(eps1), float(eps2)]
    wf, bf, epsf = fast["final"]
    flat += [wf.contiguous(), bf.contiguous(), *three(fast["head"])]
    eps.append(float(epsf))
    spec = [v for i, layer in enumerate(layers) for h0, h1, g in layer for v in group_spec(i, h0, h1, g)]
    return ext, flat, eps, [float(x) for x in fast["scales"]], int8, spec


def fast_weights(model, kind: str | None = None) -> dict:
    """The weights ``decode_one`` uses, gathered (and packed, for int8) once per kind.

    Packed int8 copies go stale when the parameters change in place (an optimizer step,
    ``copy_``): the in-place version counters of a few parameters, which every such
    update bumps, tell.
    """
    kind = kind or model.decode_weights
    stamp = (model.tok_emb.weight._version, model.blocks[0].attn.qkv.weight._version,
             model.head.weight._version)
    fast = model.__dict__.setdefault("_fast", {}).get(kind)
    if fast is None or (kind == "int8" and fast["stamp"] != stamp):
        if kind == "int8":   # the MLP's hidden layer (and its GELU) in bf16
            def lin(m, out_dtype=torch.float32):
                return quant.pack(m.weight, m.bias, out_dtype)
        else:
            def lin(m, out_dtype=None):
                return m.weight, m.bias
        blocks = []
        for b in model.blocks:
            blocks.append((b.ln1.weight, b.ln1.bias, b.ln1.eps, lin(b.attn.qkv), lin(b.attn.proj),
                           b.ln2.weight, b.ln2.bias, b.ln2.eps, lin(b.mlp.fc, torch.bfloat16),
                           lin(b.mlp.proj)))
        fast = {"blocks": blocks, "scales": [b.attn.scale for b in model.blocks],
                "final": (model.ln_f.weight, model.ln_f.bias, model.ln_f.eps), "head": lin(model.head),
                "stamp": stamp}
        model.__dict__["_fast"][kind] = fast
    return fast
