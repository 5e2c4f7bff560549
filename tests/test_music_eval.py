"""Held-out music evaluation: scoring, context windows, the n-gram baseline, MusPy metrics,
training-run comparison and the benchmark script end to end (tiny models, seconds)."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import require
import torch
import torch.nn as nn
import torch.nn.functional as F

from cadenza.config import ModelConfig
from cadenza.errors import ConfigError
from cadenza.model import SparseTransformer
from cadenza.music.eval import curves, musical, ngram, scoring
from cadenza.presets import get_preset

V = 20
PITCHES = list(range(10, 20))   # ids 10..19 play the Pitch tokens in the synthetic vocabulary
BOS, EOS = 1, 2


def _next(tok: int) -> int:
    """A deterministic successor over ids 3..19 (so a piece is predictable from one token)."""
    return 3 + (tok * 7 + 5) % (V - 3)


def _piece(first: int | None, length: int) -> np.ndarray:
    """BOS, ``first`` (default: BOS's successor, so the whole piece is predictable), successors."""
    seq = [BOS, _next(BOS) if first is None else first]
    while len(seq) < length:
        seq.append(_next(seq[-1]))
    return np.array(seq, dtype=np.int64)


class _Fake(nn.Module):
    """A 'model' with max_len whose logits come from a rule (oracle or uniform)."""

    def __init__(self, max_len: int, oracle: bool):
        super().__init__()
        self.config = ModelConfig(vocab_size=V, d_model=8, n_layers=1, n_heads=1, max_len=max_len)
        self.oracle = oracle
        self.dummy = nn.Parameter(torch.zeros(()))
        self.calls = []

    def forward(self, idx):
        self.calls.append(tuple(idx.shape))
        logits = torch.zeros(*idx.shape, V)
        if self.oracle:
            nxt = torch.tensor([_next(int(t)) for t in idx.reshape(-1)]).reshape(idx.shape)
            logits.scatter_(-1, nxt[..., None], 40.0)
        return logits


PIECES = [_piece(None, n) for n in (2, 5, 17, 40, 64, 65, 130, 300)]


# --------------------------------------------------------------------------- per-token statistics
def test_target_stats_on_hand_built_distributions():
    probs = torch.tensor([
        [0.1, 0.1, 0.4, 0.2, 0.1, 0.1],     # target 3: one pitch (2) is more likely
        [0.1, 0.1, 0.4, 0.2, 0.1, 0.1],     # target 2: the most likely pitch
        [0.5, 0.1, 0.1, 0.1, 0.1, 0.1],     # target 0: not a pitch
        [0.0, 0.0, 0.25, 0.25, 0.25, 0.25],  # target 4: tied with three pitches
        [0.04, 0.0, 0.01, 0.2, 0.3, 0.45],  # target 2: the least likely pitch
    ])
    lp = probs.log()
    bits, is_note, hits = scoring.target_stats(lp, torch.tensor([3, 2, 0, 4, 2]), pitch_ids=[2, 3, 4, 5], ks=(1, 2, 5))
    np.testing.assert_allclose(bits, [-math.log2(0.2), -math.log2(0.4), 1.0, 2.0, -math.log2(0.01)], rtol=1e-6)
    assert is_note.tolist() == [True, True, False, True, True]
    np.testing.assert_allclose(hits[1], [0, 1, np.nan, 0.25, 0], equal_nan=True)
    np.testing.assert_allclose(hits[2], [1, 1, np.nan, 0.5, 0], equal_nan=True)
    np.testing.assert_allclose(hits[5], [1, 1, np.nan, 1, 1], equal_nan=True)


def test_summary_counts_bits_per_note_over_all_tokens():
    s = scoring.TokenScores(piece=np.array([0, 0, 0, 1]), position=np.array([1, 2, 3, 1]), context=np.array([1, 2, 3, 1]),
                       bits=np.array([1.0, 2.0, 3.0, 6.0]), is_note=np.array([False, True, False, True]),
                       top1=np.array([np.nan, 1.0, np.nan, 0.0]), top5=np.array([np.nan, 1.0, np.nan, 1.0]))
    out = s.summary()
    assert out["tokens"] == 4 and out["notes"] == 2 and out["pieces"] == 2
    assert out["bits_per_token"] == pytest.approx(3.0)
    assert out["bits_per_note"] == pytest.approx(6.0)
    assert out["top1"] == pytest.approx(0.5) and out["top5"] == pytest.approx(1.0)
    assert s.select(s.position >= 2).summary()["tokens"] == 2


# --------------------------------------------------------------------------- windows
@pytest.mark.parametrize("context", [2, 3, 4, 7, 16])
@pytest.mark.parametrize("stride", [None, 1, "max"])
def test_context_windows_score_every_target_once_with_enough_context(context, stride):
    stride = context - 1 if stride == "max" else stride
    step = context // 2 if stride is None else stride
    for n in range(0, 70):
        seen = Counter()
        for start, end, first in scoring.context_windows(n, context, stride):
            assert 0 <= start < first <= end - 0 and end - start <= context and end <= n
            for j in range(first, end):
                seen[j] += 1
                c = j - start
                if j < context:
                    assert c == j                      # the first window: everything before j
                else:
                    assert context - step <= c <= context - 1
        assert sorted(seen) == list(range(1, n)) and set(seen.values()) <= {1}


def test_context_windows_refuse_bad_sizes():
    with pytest.raises(ConfigError):
        scoring.context_windows(10, 1)
    with pytest.raises(ConfigError):
        scoring.context_windows(10, 8, stride=8)


# --------------------------------------------------------------------------- scoring a model
@pytest.mark.parametrize("context", [None, 64, 16, 5])
def test_oracle_model_scores_zero_bits_and_perfect_accuracy(context):
    model = _Fake(max_len=64, oracle=True)
    s = scoring.score_model(model, PIECES, PITCHES, context=context, batch_tokens=256)
    out = s.summary()
    assert out["tokens"] == sum(len(p) - 1 for p in PIECES)       # each target exactly once
    assert out["bits_per_token"] < 1e-6
    assert out["top1"] == 1.0 and out["top5"] == 1.0
    assert out["notes"] == sum(int(np.isin(p[1:], PITCHES).sum()) for p in PIECES)
    assert max(n for shape in model.calls for n in shape[1:2]) <= (context or 64)
    assert all(b * n <= 256 or b == 1 for b, n in model.calls)


def test_uniform_model_scores_log2_vocab():
    s = scoring.score_model(_Fake(max_len=32, oracle=False), PIECES, PITCHES).summary()
    assert s["bits_per_token"] == pytest.approx(math.log2(V), rel=1e-6)
    assert s["bits_per_note"] == pytest.approx(math.log2(V) * s["tokens"] / s["notes"], rel=1e-6)
    assert s["top1"] == pytest.approx(1 / len(PITCHES))
    assert s["top5"] == pytest.approx(5 / len(PITCHES))


def _reference_bits(model, piece, context):
    """Straightforward per-window scoring: one forward pass per window, no batching."""
    out = {}
    for start, end, first in scoring.context_windows(len(piece), context, None):
        x = torch.as_tensor(piece[start:end])[None]
        with torch.no_grad():
            lp = F.log_softmax(model(x)[0], -1)
        for j in range(first, end):
            out[j] = float(-lp[j - 1 - start, piece[j]] / math.log(2))
    return [out[j] for j in sorted(out)]


def test_batched_padded_scoring_equals_one_window_at_a_time():
    torch.manual_seed(0)
    model = SparseTransformer(get_preset("tiny", vocab_size=V, max_len=48, stride=8)).eval()
    rng = np.random.default_rng(0)
    pieces = [np.concatenate([[BOS], rng.integers(3, V, size=n - 1)]) for n in (3, 20, 47, 48, 49, 100)]
    for context in (48, 20):
        want = np.concatenate([_reference_bits(model, p, context) for p in pieces])
        for batch_tokens in (48, 4096):
            got = scoring.score_model(model, pieces, PITCHES, context=context, batch_tokens=batch_tokens)
            np.testing.assert_allclose(got.bits, want, rtol=1e-4, atol=1e-4)
            assert got.piece.tolist() == [i for i, p in enumerate(pieces) for _ in range(len(p) - 1)]


def test_score_model_refuses_context_beyond_max_len():
    with pytest.raises(ConfigError):
        scoring.score_model(_Fake(max_len=16, oracle=False), PIECES, PITCHES, context=32)


@pytest.fixture(scope="module")
def trained_tiny():
    """A tiny model trained for about a second on repeated synthetic pieces."""
    torch.manual_seed(0)
    model = SparseTransformer(get_preset("tiny", vocab_size=V, max_len=64, stride=8, dropout=0.0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(1)
    for _ in range(80):
        batch = torch.stack([torch.as_tensor(_piece(int(rng.integers(3, V)), 33)) for _ in range(8)])
        loss = model.loss(batch[:, :-1], batch[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_a_trained_tiny_model_beats_uniform_by_far(trained_tiny):
    test = [_piece(s, 33) for s in range(3, V)]
    out = scoring.score_model(trained_tiny, test, PITCHES).summary()
    assert out["bits_per_token"] < 0.25 * math.log2(V)
    assert out["top1"] > 0.8


def test_decoding_scores_equal_full_forward_scores_and_int8_stays_close(trained_tiny):
    test = [_piece(s, 33) for s in range(3, V)]
    full = scoring.score_model(trained_tiny, test, PITCHES)
    exact = scoring.score_decoding(trained_tiny, test, PITCHES, weights="float32")
    assert np.array_equal(exact.piece, full.piece) and np.array_equal(exact.position, full.position)
    assert np.allclose(exact.bits, full.bits, atol=1e-4)
    approx = scoring.score_decoding(trained_tiny, test, PITCHES, weights="int8")
    assert trained_tiny.decode_weights == "float32"   # the model's own setting is put back
    assert not np.array_equal(approx.bits, exact.bits)
    a, b = exact.summary(), approx.summary()
    assert abs(a["bits_per_token"] - b["bits_per_token"]) < 0.02 * a["bits_per_token"] + 0.01
    assert abs(a["top1"] - b["top1"]) < 0.05


# --------------------------------------------------------------------------- the n-gram baseline
def _reference_kn(pieces, order, vocab, start):
    """Interpolated modified Kneser-Ney written from the definitions with dictionaries."""
    grams = [Counter() for _ in range(order + 1)]
    for p in pieces:
        padded = [start] * (order - 1) + list(p)
        for i in range(order, len(padded)):
            for k in range(1, order + 1):
                grams[k][tuple(padded[i - k + 1:i + 1])] += 1
    counts = [None] * (order + 1)
    counts[order] = grams[order]
    for k in range(1, order):
        cont = Counter()
        for g in grams[k + 1]:
            cont[g[1:]] += 1
        counts[k] = cont
    disc = []
    for k in range(order + 1):
        if k == 0:
            disc.append(None)
            continue
        n = Counter(counts[k].values())
        if n[1] and n[2]:       # Chen & Goodman's estimates; the documented fallbacks otherwise
            y = n[1] / (n[1] + 2 * n[2])
            d = [1 - 2 * y * n[2] / n[1], 2 - 3 * y * n[3] / n[2], 3 - 4 * y * n[4] / n[3] if n[3] else 1.5]
        else:
            d = [0.5, 1.0, 1.5]
        disc.append([0.0] + [min(max(x, 0.1), r + 0.9) for r, x in enumerate(d)])
    by_ctx = [defaultdict(dict) for _ in range(order + 1)]
    for k in range(1, order + 1):
        for g, c in counts[k].items():
            by_ctx[k][g[:-1]][g[-1]] = c

    def prob(history, w):
        p = 1.0 / vocab
        for k in range(1, order + 1):
            ctx = tuple(history[len(history) - (k - 1):]) if k > 1 else ()
            row = by_ctx[k].get(ctx)
            if not row:
                continue
            total = sum(row.values())
            d = disc[k]
            gamma = sum(d[min(c, 3)] for c in row.values())
            c = row.get(w, 0)
            p = (max(c - d[min(c, 3)], 0) + gamma * p) / total
        return p
    return prob


def _random_pieces(n, seed, vocab=12):
    rng = np.random.default_rng(seed)
    # A skewed, partly predictable source so every count of counts is non-zero.
    out = []
    for _ in range(n):
        seq = [BOS]
        for _ in range(int(rng.integers(3, 30))):
            seq.append(int((seq[-1] * 3 + 1) % vocab) if rng.random() < 0.6 else int(rng.integers(3, vocab)))
        out.append(np.array(seq + [EOS]))
    return out


@pytest.mark.parametrize("order,hashing", [(1, None), (2, None), (3, None), (4, None), (3, True), (7, True)])
def test_kneser_ney_matches_a_reference_written_from_the_definitions(order, hashing):
    vocab = 12
    train = _random_pieces(150, 0, vocab)
    lm = ngram.KneserNey(vocab, order, hashing=hashing).fit(train)
    ref = _reference_kn(train, order, vocab, lm.start)
    test = _random_pieces(6, 1, vocab) + [np.array([BOS, 11, 11, 11, 0, 5])]   # includes unseen contexts
    hist = np.concatenate([lm.histories(p) for p in test])
    probs = lm.probs(hist)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-12)
    assert probs.min() > 0
    for h, row in zip(hist[:40], probs[:40]):
        want = [ref(list(h), w) for w in range(vocab)]
        np.testing.assert_allclose(row, want, rtol=1e-10)


def test_ngram_on_repeated_data_beats_uniform_and_scores_like_a_model():
    train = [_piece(s, 40) for s in range(3, V)] * 3
    lm = ngram.KneserNey(V, 3).fit(train)
    s = ngram.score_ngram(lm, [_piece(s, 40) for s in range(3, V)], PITCHES).summary()
    assert s["tokens"] == (V - 3) * 39
    assert s["bits_per_token"] < 0.3 * math.log2(V)
    assert s["top1"] > 0.9
    unigram = ngram.score_ngram(ngram.KneserNey(V, 1).fit(train), [_piece(3, 40)], PITCHES).summary()
    assert s["bits_per_token"] < unigram["bits_per_token"] < math.log2(V) + 0.1


def test_ngram_sampling_follows_the_data_and_stops_at_eos():
    lm = ngram.KneserNey(V, 3).fit([_piece(s, 40) for s in range(3, V)] * 3)
    out = lm.sample([[BOS, 5, _next(5)], [BOS, 7, _next(7)]], 20, seed=0, stop_tokens=[EOS])
    assert len(out) == 2 and all(1 <= len(o) <= 20 for o in out)
    follows = sum(b == _next(a) for o, p in zip(out, ([5, _next(5)], [7, _next(7)]))
                  for a, b in zip([p[-1]] + o[:-1], o))
    assert follows >= 30
    assert lm.sample([[BOS, 5]], 20, seed=3) == lm.sample([[BOS, 5]], 20, seed=3)


def test_kneser_ney_refuses_bad_settings():
    with pytest.raises(ConfigError):
        ngram.KneserNey(604, 33)
    big = ngram.KneserNey(604, 9)        # contexts beyond 5 tokens are hashed
    assert big.exact[:7] == [True] * 7 and not any(big.exact[7:])
    with pytest.raises(ConfigError):
        ngram.KneserNey(10, 2).probs(np.zeros((1, 1), dtype=np.int64))   # not fitted


# --------------------------------------------------------------------------- MusPy metrics
symusic = require("symusic")


def _score(notes, tpq=4, ts=(4, 4)):
    s = symusic.Score(tpq)
    s.time_signatures.append(symusic.TimeSignature(0, *ts))
    t = symusic.Track(program=0)
    for time, dur, pitch in notes:
        t.notes.append(symusic.Note(time, dur, pitch, 80))
    s.tracks.append(t)
    return s


def test_muspy_metrics_on_hand_built_scores():
    require("muspy")
    scale = _score([(4 * i, 4, p) for i, p in enumerate([60, 62, 64, 65, 67, 69, 71, 72])])
    m = musical.muspy_metrics(scale)
    assert m["pitch_class_entropy"] == pytest.approx(2.75)        # C twice, six others once, of 8
    assert m["scale_consistency"] == pytest.approx(1.0)
    assert m["polyphony"] == pytest.approx(1.0)
    assert m["empty_beat_rate"] == pytest.approx(0.0)
    # Two identical bars of quarters; MusPy counts length // bar + 1 = 3 bars, the third empty.
    assert m["groove_consistency"] == pytest.approx(1 - 4 / 32)
    chord = musical.muspy_metrics(_score([(0, 4, 60), (0, 4, 64), (0, 4, 67), (16, 4, 60)]))
    assert chord["polyphony"] == pytest.approx((3 * 4 + 4) / 8)     # 3 pitches for 4 steps, 1 for 4
    assert chord["empty_beat_rate"] == pytest.approx(1 - 4 / 6)     # MusPy counts a note's end beat too
    assert chord["groove_consistency"] == pytest.approx(1.0)        # both bars: one onset on beat 1
    off = musical.muspy_metrics(_score([(0, 1, 60), (4, 1, 61), (8, 1, 62), (12, 1, 63), (16, 1, 64)]))
    assert off["groove_consistency"] == pytest.approx(1 - 3 / 16)  # bar 2 keeps 1 of 4 onsets
    assert off["scale_consistency"] == pytest.approx(3 / 5)        # no major/minor scale holds 4 of C..E
    assert musical.measure_ticks(_score([(0, 1, 60)], tpq=8, ts=(6, 8))) == 24
    empty = musical.muspy_metrics(symusic.Score(4))
    assert all(math.isnan(v) for v in empty.values())


def test_metric_stats_leave_out_nans():
    rows = [{m: 1.0 for m in musical.MUSPY_METRICS}, {m: 3.0 for m in musical.MUSPY_METRICS}]
    rows.append({**rows[0], "groove_consistency": math.nan})
    st = musical.metric_stats(rows)
    assert st["groove_consistency"] == {"mean": 2.0, "std": 1.0, "n": 2}
    assert st["polyphony"]["n"] == 3


# --------------------------------------------------------------------------- runs at equal time
def _write_run(d: Path, evals, last_time):
    d.mkdir(parents=True)
    recs = [{"step": s, "split": "eval", "loss": l, "time": t} for s, t, l in evals]
    recs.append({"step": 99, "split": "train", "loss": 1.0, "time": last_time})
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"step": 100, "spl')
    (d / "model").mkdir()
    return d


def test_compare_runs_at_equal_training_time(tmp_path):
    a = _write_run(tmp_path / "a", [(50, 100.0, 3.0), (100, 200.0, 2.5), (150, 300.0, 2.0)], 310.0)
    b = _write_run(tmp_path / "b", [(10, 120.0, 3.5), (20, 240.0, 3.0)], 250.0)
    out = curves.compare_runs({"a": a, "b": b})
    assert out["common_time_s"] == 250.0
    assert out["runs"]["a"]["at_common_time"]["step"] == 100
    assert out["runs"]["b"]["at_common_time"]["step"] == 20
    assert out["runs"]["a"]["final"]["loss"] == 2.0
    assert curves.model_run_dir(a / "model") == a and curves.model_run_dir(tmp_path) is None


def test_split_pieces():
    stream = np.array([1, 5, 6, 2, 1, 7, 2, 1, 8, 9])
    assert [p.tolist() for p in scoring.split_pieces(stream)] == [[1, 5, 6, 2], [1, 7, 2], [1, 8, 9]]
    assert scoring.select_pieces(10, 3, seed=1) == scoring.select_pieces(10, 3, seed=1)
    assert scoring.select_pieces(5, None) == list(range(5))


def test_sample_transformer_batches_prompts_and_stops_at_eos(trained_tiny):
    prompts = [[BOS, 5], [BOS, 9], [BOS, 4, _next(4)]]
    out = musical.sample_transformer(trained_tiny, prompts, 12, eos_id=EOS, seed=0, temperature=0.5)
    assert len(out) == 3 and all(1 <= len(o) <= 12 for o in out)
    assert all(EOS not in o[:-1] for o in out)
    assert out == musical.sample_transformer(trained_tiny, prompts, 12, eos_id=EOS, seed=0, temperature=0.5)


# --------------------------------------------------------------------------- the script
def _load_script():
    from cadenza.bench import music_eval

    return music_eval


def test_music_eval_script_end_to_end(tmp_path):
    require("muspy")
    require("miditok")
    from cadenza.codecs.music import MusicCodec
    from cadenza.data.format import write_dataset

    codec = MusicCodec()
    rng = np.random.default_rng(0)
    pieces = []
    for i in range(14):
        notes = [(2 * j, 2, int(60 + rng.integers(0, 12))) for j in range(8 + 4 * i)]
        pieces.append(codec.encode(_score(notes, tpq=4, ts=(3, 4) if i % 2 else (4, 4))))
    data = tmp_path / "data"
    write_dataset(data, {"train": np.concatenate(pieces[:8]), "val": np.concatenate(pieces[8:10]),
                         "test": np.concatenate(pieces[10:])},
                  codec.vocab_size, "music", separator={"bos": codec.bos_id, "eos": codec.eos_id, "pad": 0})
    codec.save(data / "tokenizer.json")
    run = _write_run(tmp_path / "run", [(5, 1.0, 9.0), (10, 2.0, 8.0)], 2.5)
    torch.manual_seed(0)
    SparseTransformer(get_preset("tiny", vocab_size=codec.vocab_size, max_len=128, stride=16)).save(run / "model")
    out, md = tmp_path / "res" / "eval", tmp_path / "models" / "EVAL.md"
    rc = _load_script().main(["--data", str(data), "--model", f"tiny={run}", "--pieces", "3",
                              "--contexts", "32", "128", "--ngram-order", "2", "3", "--ngram-val-pieces", "2", "--generate", "2",
                              "--max-new-tokens", "24", "--threads", "1", "--out", str(out), "--note", "Both runs shared the CPU.",
                              "--markdown", str(md), "--metrics-json", str(tmp_path / "metrics.json"),
                              "--context-min-pos", "60", "--context-window", "32", "--nodup"])
    assert rc == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    result = json.loads(out.with_suffix(".json").read_text())
    assert set(result["models"]["tiny"]["contexts"]) == {"32", "128"}
    nd = result["nodup"]
    assert nd["split_pieces"] == 4 and 0 <= nd["pieces"] <= 3 and set(nd["models"]) == {"tiny"}
    gain = result["models"]["tiny"]["context_gain"]
    assert gain["pieces"] >= 1 and gain["bits_whole"] > 0 and gain["bits_recent"] > 0
    from cadenza.music.registry import weights_digest

    assert result["models"]["tiny"]["weights_sha256_12"] == weights_digest(run / "model")
    full = result["models"]["tiny"]["full"]["all"]
    assert full["tokens"] == result["data"]["targets"] and full["bits_per_token"] > 0
    assert result["ngram"]["all"]["tokens"] == full["tokens"]
    assert metrics["heldout_bits_per_token"] == round(full["bits_per_token"], 3) and metrics["steps"] == 10
    assert metrics[f"ngram{result['ngram']['order']}_bits_per_token"] == round(result["ngram"]["all"]["bits_per_token"], 3)
    assert set(metrics) >= {"bits_per_token_context_32", "int8_decoding_bits_per_token", "training_minutes"}
    assert result["training"]["runs"]["tiny"]["final"]["loss"] == 8.0
    sel = result["ngram"]["order_selection"]
    assert set(sel["orders"]) == {"2", "3"} and sel["chosen"] == result["ngram"]["order"]
    assert sel["orders"][str(sel["chosen"])]["bits_per_token"] == min(v["bits_per_token"] for v in sel["orders"].values())
    assert set(result["muspy"]["stats"]) == {"held-out", "tiny", f"{sel['chosen']}-gram"}
    assert out.with_suffix(".png").stat().st_size > 1000
    text = md.read_text()
    assert "Note: Both runs shared the CPU." in text
    dw = result["decode_weights"]
    assert dw["model"] == "tiny" and dw["float32"]["tokens"] == dw["int8"]["tokens"] > 0
    assert dw["float32"]["tokens"] == 3 * 127 < full["tokens"]   # each test piece's first max_len = 128 tokens
    for heading in ("Next-token prediction", "Int8 decoding", "What longer context buys", "Equal training time",
                    "MusPy", "What whole-piece context buys", "test-nodup"):
        assert heading in text
    assert "In short" in text and "Held-out bits per token, best first" in text
    md2 = tmp_path / "again.md"
    assert _load_script().main(["--data", "unused", "--replot", str(out.with_suffix(".json")), "--markdown", str(md2)]) == 0
    assert md2.read_text() == text                      # the JSON holds everything the tables need
    assert _load_script().main(["--data", str(data), "--model", f"x={tmp_path}"]) == 2   # not a model dir


def test_recent_context_scores_match_full_scores_when_the_window_holds_everything():
    import music_fixtures as mf

    mm = mf.tiny_model()
    pieces = [np.asarray(mm.codec.encode(s, style="bach"))[:200] for s in mf.corpus_scores()[:2]]
    pitch_ids = list(mm.codec.pitch_ids())
    full = scoring.score_model(mm.network, pieces, pitch_ids)
    recent = scoring.score_recent(mm.network, pieces, pitch_ids, window=256, stride=40)
    keep = full.position >= 6
    assert np.allclose(full.select(keep).bits, recent.bits, atol=1e-3)
    short = scoring.score_recent(mm.network, pieces, pitch_ids, window=64, stride=16, min_pos=100)
    assert short.position.min() == 100 and short.context.max() <= 64 and short.context.min() >= 64 - 16
    assert not np.allclose(short.bits, full.select(full.position >= 100).bits, atol=1e-3)
    gain = scoring.context_gain(mm.network, pieces, pitch_ids, window=64, min_pos=100, stride=16, n_boot=50)
    assert gain["pieces"] == 2 and gain["gain_ci95"][0] <= gain["gain"] <= gain["gain_ci95"][1]


def test_size_study_script_compares_at_equal_time(tmp_path, capsys):
    from cadenza.bench import size_study as mod

    a = _write_run(tmp_path / "a", [(50, 100.0, 3.0), (100, 200.0, 2.5), (150, 300.0, 2.0)], 310.0)
    b = _write_run(tmp_path / "b", [(10, 120.0, 3.5), (20, 240.0, 2.4)], 250.0)
    out = tmp_path / "res" / "study"
    assert mod.main(["--run", f"small={a}", "--run", f"big={b}", "--at", "150", "--out", str(out)]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["common_time_s"] == 250.0 and res["best_at_common_time"] == ["big"]   # 2.4 < 2.5 at 250 s
    assert res["runs"]["small"]["at"]["150"]["loss"] == 3.0 and res["runs"]["big"]["at"]["150"]["loss"] == 3.5
    assert out.with_suffix(".png").stat().st_size > 1000
    assert mod.main(["--run", f"x={tmp_path}"]) == 2
