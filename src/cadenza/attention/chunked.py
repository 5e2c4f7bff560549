"""The portable fast executor: each layout's small attentions as chunked batched matmuls.

Groups of a layout are processed a chunk at a time (a few MB of scores), so the score
tensor stays in cache, and every result goes straight into views of preallocated
sequence-shaped accumulators: no per-layout output copies, no n x n tensor. The forward
merges layouts with an online log-sum-exp; the backward recomputes probabilities from the
merged log-sum-exp (exact gradients of the softmax over the union of all layouts).
Pure PyTorch ops: runs on CPU and CUDA, float32 and bfloat16 (computed in float32).
"""

from __future__ import annotations

import torch

from cadenza.attention.layouts import LayoutPlan, add_key_grads, pad_to, padded_len

CHUNK_ELEMENTS = 1 << 20  # scores per chunk (4 MB in float32)


def _chunks(lp: LayoutPlan, BH: int, n: int):
    L = lp.layout
    G = L.groups(n)
    qpos_len = lp.allowed.shape[-2]
    kpos_len = lp.allowed.shape[-1]
    step = max(1, CHUNK_ELEMENTS // max(1, BH * qpos_len * kpos_len))
    for g0 in range(0, G, step):
        yield slice(g0, min(G, g0 + step))


def _mask_chunk(mask, sl):
    return mask if mask.dim() == 2 else mask[:, sl]


def merge_into(acc: torch.Tensor, run: torch.Tensor, o: torch.Tensor, lse: torch.Tensor) -> None:
    """Online log-sum-exp merge, in place: acc (normalized output so far) and run (its
    log-sum-exp, -inf where nothing yet) absorb o with its log-sum-exp ``lse``."""
    new = torch.logaddexp(run, lse)
    safe = torch.where(torch.isinf(new), torch.zeros_like(new), new)
    acc.mul_(torch.exp(run - safe)).addcmul_(o, torch.exp(lse - safe))
    run.copy_(new)


def forward(q, k, v, plan: list[LayoutPlan], scale: float):
    """q, k, v: (BH, n, D). Returns out (BH, n, D) float32 and lse (BH, n) float32 (-inf: no key)."""
    BH, n, D = q.shape
    P = padded_len(plan, n)
    qp, kp, vp = (pad_to(t, P) for t in (q, k, v))
    acc = torch.zeros((BH, P, D), dtype=torch.float32, device=q.device)
    run = torch.full((BH, P, 1), float("-inf"), dtype=torch.float32, device=q.device)
    for lp in plan:
        L = lp.layout
        qv, kv, vv = L.gather_q(qp, n), L.gather_k(kp, n), L.gather_k(vp, n)
        accv, runv = L.gather_q(acc, n), L.gather_q(run, n)
        mask = lp.additive_mask(torch.float32, q.device)
        for sl in _chunks(lp, BH, n):
            kc = kv[:, sl].float()
            s = torch.matmul(qv[:, sl].float(), kc.transpose(-1, -2))
            s.mul_(scale).add_(_mask_chunk(mask, sl))
            m = s.amax(dim=-1, keepdim=True).clamp_(min=-1e30)  # rows without keys: -1e30
            s.sub_(m).exp_()
            denom = s.sum(dim=-1, keepdim=True)
            o = torch.matmul(s, vv[:, sl].float()).div_(denom.clamp(min=1e-30))
            merge_into(accv[:, sl], runv[:, sl], o, m + denom.log())  # log(0) = -inf: no key
    return acc[:, :n], run[:, :n, 0]


def backward(dout, q, k, v, out, lse, plan: list[LayoutPlan], scale: float):
    """Gradients (float32) of the union softmax; lse is the merged log-sum-exp (-inf: no key)."""
    BH, n, D = q.shape
    P = padded_len(plan, n)
    lse = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)
    delta = (dout.float() * out.float()).sum(dim=-1)
    qp, kp, vp, dp_ = (pad_to(t, P) for t in (q, k, v, dout))
    lsep = pad_to(torch.stack([lse, delta], dim=-1), P)
    grads = [torch.zeros((BH, P, D), dtype=torch.float32, device=q.device) for _ in range(3)]
    for lp in plan:
        L = lp.layout
        qv, kv, vv, dov = L.gather_q(qp, n), L.gather_k(kp, n), L.gather_k(vp, n), L.gather_q(dp_, n)
        statv = L.gather_q(lsep, n)
        dqv = L.gather_q(grads[0], n)
        shared_keys = L.kind == "summary"
        if not shared_keys:
            dkv, dvv = L.gather_k(grads[1], n), L.gather_k(grads[2], n)
        mask = lp.additive_mask(torch.float32, q.device)
        for sl in _chunks(lp, BH, n):
            qc, kc, vc, doc = (t[:, sl].float() for t in (qv, kv, vv, dov))
            st = statv[:, sl]
            p = torch.matmul(qc, kc.transpose(-1, -2))
            p.mul_(scale).add_(_mask_chunk(mask, sl)).sub_(st[..., :1]).exp_()
            dv_c = torch.matmul(p.transpose(-1, -2), doc)
            ds = torch.matmul(doc, vc.transpose(-1, -2))
            ds.sub_(st[..., 1:]).mul_(p).mul_(scale)
            dqv[:, sl].add_(torch.matmul(ds, kc))
            dk_c = torch.matmul(ds.transpose(-1, -2), qc)
            if shared_keys:
                add_key_grads(L, grads[1], dk_c, n)
                add_key_grads(L, grads[2], dv_c, n)
            else:
                dkv[:, sl].add_(dk_c)
                dvv[:, sl].add_(dv_c)
    return tuple(g[:, :n] for g in grads)


class ChunkedSparse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, plan, scale):
        out, lse = forward(q, k, v, plan, scale)
        out = out.to(q.dtype)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.plan, ctx.scale = plan, scale
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = backward(dout, q, k, v, out, lse, ctx.plan, ctx.scale)
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None
