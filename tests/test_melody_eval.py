"""cadenza.music.eval.melody and benchmarks/next_note.py: melody lines and their contexts,
test-nodup, the interval n-gram baseline (LTM, STM, combined) and next-pitch scores."""

from __future__ import annotations

import contextlib
import json
import math
import shutil

import numpy as np
import pytest
from conftest import require

require("miditok")
symusic = require("symusic")
torch = require("torch")

import music_fixtures as mf  # noqa: E402

from cadenza.errors import ConfigError  # noqa: E402
from cadenza.music.eval import melody as me  # noqa: E402
from cadenza.music.inputs import remi_for  # noqa: E402
from cadenza.music.predict import pitch_distribution_after  # noqa: E402
from cadenza.music.grammar import DUR, PITCH, POS, RemiState  # noqa: E402

TPQ = 480
# (onset in quarters, duration in quarters, pitch): six bars of 4/4 with rests, a leap, a
# repeated note and notes on off-beats, so some next notes are in the same bar and some
# in the next one (bar 5 opens a new segment: a Mood token before its first Position).
TUNE = [(0, 1, 60), (1, 1, 62), (2, 2, 64), (4, 0.5, 65), (4.5, 0.5, 67), (5, 1, 67), (7, 1, 72),
        (8, 3, 71), (11, 1, 69), (12, 1, 67), (13.5, 0.5, 65), (14, 2, 64), (16, 1, 62), (17, 1, 60),
        (18, 1, 59), (19, 1, 60), (20, 2, 62), (22.5, 1.5, 55), (24, 4, 60)]


def score_of(notes_by_program: dict):
    s = symusic.Score(TPQ)
    s.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    s.tempos.append(symusic.Tempo(0, 120.0))
    for program, notes in notes_by_program.items():
        t = symusic.Track(program=program)
        for on, du, p in notes:
            t.notes.append(symusic.Note(int(on * TPQ), int(du * TPQ), p, 80))
        s.tracks.append(t)
    return s


def tune_ids(transpose: int = 0):
    return mf.codec().encode(score_of({0: [(a, b, p + transpose) for a, b, p in TUNE]}), style="folk")


# --------------------------------------------------------------------------- melodies
def test_melody_of_a_monophonic_tune():
    codec = mf.codec()
    ids = tune_ids()
    m = me.melody_of(codec, ids)
    assert m.pitches == [p for _, _, p in TUNE]
    assert m.monophonic and len(m.ends) == len(TUNE)
    remi = remi_for(codec)
    kinds = [remi.kind[i] for i in ids]
    for k, end in enumerate(m.ends[1:], start=1):
        assert kinds[end - 1] == DUR                  # the context ends with the previous note
        nxt = next(t for t in range(end, len(ids)) if kinds[t] == PITCH)
        assert remi.value[ids[nxt]] == m.pitches[k]   # and the next Pitch token is this note
        assert DUR not in kinds[end:nxt] and POS in kinds[end:nxt]
    assert RemiState(remi, record=True).feed_all(ids[:m.ends[3]]).notes[-1][2] == TUNE[2][2]


def test_melody_of_takes_the_top_note_of_the_first_instrument():
    chords = [(on, du, p - 7) for on, du, p in TUNE[::2]] + [(on, du, p - 12) for on, du, p in TUNE[::3]]
    bass = [(on + 0.5, 0.5, 36) for on, _, _ in TUNE[1:-1] if on + 0.5 not in {a for a, _, _ in TUNE}]
    ids = mf.codec().encode(score_of({0: TUNE + chords, 33: bass}), style="folk")
    m = me.melody_of(mf.codec(), ids)
    assert m.pitches == [p for _, _, p in TUNE]
    assert not m.monophonic
    remi = remi_for(mf.codec())
    every = RemiState(remi, record=True).feed_all(ids).notes
    for k, end in enumerate(m.ends[1:], start=1):
        # every note of an earlier onset (the bass in between too) is in the context, and
        # the first note after it is at this melody note's onset
        before = RemiState(remi, record=True).feed_all(ids[:end]).notes
        assert every[:len(before)] == before
        assert max(n[0] for n in before) < TUNE[k][0] * remi.tpq == every[len(before)][0]


class OracleCache:
    """The tokens an ``Oracle`` has read, with the two things a decoder asks of a cache."""

    def __init__(self, tokens=()):
        self.tokens = list(tokens)

    @property
    def length(self):
        return len(self.tokens)

    def fork(self):
        return OracleCache(self.tokens)


class Oracle:
    """A stand-in model that knows one token sequence: after any prefix of it, it puts
    nearly all probability on the sequence's next token (uniform anywhere else). Fed to
    ``pitch_distribution_after``, it predicts the right next note only from the right context."""

    device = torch.device("cpu")
    training = False

    def __init__(self, ids, vocab_size):
        self.ids = [int(i) for i in ids]
        self.V = vocab_size
        self.config = type("C", (), {"max_len": 4096, "vocab_size": vocab_size})()

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def new_cache(self, batch):
        return OracleCache()

    @contextlib.contextmanager
    def decoding_with(self, kind):
        yield self

    def __call__(self, x, cache):
        cache.tokens += x[0].tolist()
        h = cache.tokens
        logits = torch.zeros(1, x.shape[1], self.V)
        if h == self.ids[:len(h)] and len(h) < len(self.ids):
            logits[0, -1, self.ids[len(h)]] = 30.0
        return logits


def test_the_context_of_a_note_is_what_predict_needs_to_find_it():
    codec = mf.codec()
    ids = tune_ids()
    remi = remi_for(codec)
    m = me.melody_of(codec, ids)
    oracle = Oracle(ids, codec.vocab_size)
    for k in range(1, len(m.pitches)):
        ctx = [int(i) for i in ids[:m.ends[k]]]
        dist = pitch_distribution_after(oracle, remi, ctx, RemiState(remi).feed_all(ctx), 4, 0.9)
        assert max(dist, key=dist.get) == m.pitches[k] and dist[m.pitches[k]] > 0.99, k
    mm = type("MM", (), {"codec": codec, "network": oracle})()
    pitches = sorted(remi.pitch_ids)
    d = me.model_dists(mm, ids, m.ends[1:], pitches=pitches)
    assert np.allclose(d.sum(1), 1) and (np.asarray(pitches)[d.argmax(1)] == m.pitches[1:]).all()
    # one token short (the previous note's Duration missing): the oracle no longer finds the note
    ctx = [int(i) for i in ids[:m.ends[5] - 1]]
    dist = pitch_distribution_after(oracle, remi, ctx, RemiState(remi).feed_all(ctx), 4, 0.9)
    assert dist[m.pitches[5]] < 0.5


# --------------------------------------------------------------------------- test-nodup
def walk(rng, n, start=60):
    return list(np.clip(start + np.cumsum(rng.integers(-4, 5, n)), 30, 100))


def test_nodup_filter_drops_transposed_copies_and_keeps_new_tunes():
    rng = np.random.default_rng(1)
    a, b = walk(rng, 40), walk(rng, 30, 70)
    train = [a, b, [60]]
    test = [[p + 5 for p in a],               # a transposed: dropped
            walk(rng, 40, 55),                # unrelated: kept
            [p - 3 for p in a[10:27]],        # 16 intervals of a, transposed: dropped
            a[5:20] + walk(rng, 20, 40),      # only 14 intervals of a: kept
            [p + 1 for p in b[3:9]],          # shorter than the window, all of it inside b: dropped
            [60, 61, 100, 31, 99, 30],        # short and nowhere in train: kept
            [64]]                             # one note, no interval: kept
    assert me.nodup_filter(train, test, window=16) == [1, 3, 5, 6]
    melodies = [me.Melody(x, list(range(len(x))), True) for x in test]
    assert me.nodup_filter(train, melodies) == [1, 3, 5, 6]      # Melody tuples work too
    assert me.nodup_filter(train, test[:2], window=40) == [1]    # a 40-interval window: only a itself


# --------------------------------------------------------------------------- the baseline
@pytest.fixture(scope="module")
def ltm():
    rng = np.random.default_rng(0)
    return me.IntervalModel(order=6, pitches=range(21, 109)).fit([walk(rng, 60) for _ in range(40)])


def test_interval_and_combined_distributions_sum_to_one(ltm):
    rng = np.random.default_rng(2)
    tune = walk(rng, 30) + [21, 108, 60]      # leaps beyond +-24 semitones (the escape symbol)
    long_term, short, both = me.idyom_dists(ltm, tune)
    assert long_term.shape == short.shape == both.shape == (len(tune), 88)
    assert np.allclose(long_term.sum(1), 1) and (long_term > 0).all()
    assert np.isnan(short[:2]).all() and np.allclose(short[2:].sum(1), 1) and (short[2:] > 0).all()
    assert np.allclose(both.sum(1), 1) and (both > 0).all()
    assert np.allclose(both[:2], long_term[:2])      # no STM yet: the LTM alone
    assert np.allclose(long_term[0], ltm.unigram)    # the first note: the pitch unigram
    for method in ("geometric", "arithmetic"):
        for bias in (0.0, 1.0, 4.0):
            c = me.combine([long_term, short], bias, method)
            assert np.allclose(c.sum(1), 1) and (c >= 0).all()
    # the geometric combination of a distribution with itself is that distribution
    assert np.allclose(me.combine([long_term, long_term]), long_term)
    with pytest.raises(ConfigError):
        me.combine([long_term], method="harmonic")


def test_the_short_term_model_learns_a_repeated_phrase(ltm):
    rng = np.random.default_rng(3)
    phrase = walk(rng, 16, 64)
    tune = phrase + phrase
    _, short, both = me.idyom_dists(ltm, tune)
    long_term = ltm.dists(tune)
    rows = np.arange(len(tune))
    p_short = short[rows, np.asarray(tune) - 21]
    first, second = p_short[2:16], p_short[18:32]
    assert second.mean() > 0.4 and second.mean() > 5 * first.mean()
    t = np.asarray(tune[18:])
    assert (me.score_next_pitch(both[18:], t, range(21, 109))["bits_per_note"]
            < me.score_next_pitch(long_term[18:], t, range(21, 109))["bits_per_note"] - 1)


# --------------------------------------------------------------------------- scores
def test_score_next_pitch():
    dists = [{60: 0.5, 62: 0.3, 64: 0.2}, {60: 0.25, 62: 0.25, 64: 0.25, 65: 0.25}, {60: 1.0}]
    s = me.score_next_pitch(dists, [60, 65, 62])
    assert s["notes"] == 3
    assert s["top1"] == pytest.approx((1 + 0.25 + 0) / 3)        # a four-way tie: 1/4 of a hit
    assert s["top5"] == pytest.approx((1 + 1 + 0) / 3)           # 62 has probability 0: a miss
    assert s["bits_per_note"] == pytest.approx((1 + 2 - math.log2(1e-12)) / 3)
    arr = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    assert me.score_next_pitch(arr, [62, 64], [60, 62, 64])["top1"] == pytest.approx(0.5)
    assert math.isnan(me.score_next_pitch(np.zeros((0, 3)), [], [60, 62, 64])["top1"])
    with pytest.raises(ConfigError):
        me.score_next_pitch(arr, [62], [60, 62, 64])


# --------------------------------------------------------------------------- the benchmark
def soprano(k: int, transpose: int = 0, bars: int = 6):
    s = mf.corpus_scores()[k]
    notes = [(n.time / s.ticks_per_quarter, n.duration / s.ticks_per_quarter, n.pitch + transpose)
             for n in s.tracks[0].notes if n.time < bars * 4 * s.ticks_per_quarter]
    return score_of({0: notes})


def test_benchmark_runs_end_to_end(tmp_path, capsys):
    from cadenza.data.format import write_dataset

    codec = mf.codec()
    enc = lambda s: np.asarray(codec.encode(s, style="bach"), dtype=np.int64)  # noqa: E731
    train = [enc(soprano(k)) for k in range(4)] + [enc(mf.corpus_scores()[3])]   # one four-voice piece
    test = [enc(soprano(4)), enc(soprano(0, transpose=3)), enc(mf.corpus_scores()[5]), tune_ids()]
    data = tmp_path / "data"
    write_dataset(data, {"train": np.concatenate(train), "val": train[0], "test": np.concatenate(test)},
                  codec.vocab_size, modality="music")
    codec.save(data / "tokenizer.json")
    run = tmp_path / "run" / "model"           # a training run folder whose model has no tokenizer
    run.mkdir(parents=True)
    for name in ("model.safetensors", "config.json"):
        shutil.copy2(mf.tiny_model_dir() / name, run / name)
    from cadenza.bench import next_note as bench

    out = tmp_path / "res" / "nn"
    rc = bench.main(["--data", str(data), "--model", str(tmp_path / "run"), "--pieces", "5", "--max-notes", "12",
                     "--threads", "1", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "target: test-nodup top-1: model" in printed and "test-nodup  LTM+STM" in printed
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["command"].startswith("python benchmarks/next_note.py --data")
    assert len(res["model"]["weights_sha256"]) == 64 and res["model"]["weights_sha256"].startswith(
        res["model"]["weights_sha256_12"])
    d = res["data"]
    assert (d["pieces"], d["monophonic"], d["duplicates"], d["train_pieces"]) == (4, 3, 1, 5)
    assert res["sets"]["test"]["pieces"] == [0, 1, 3] and res["sets"]["test-nodup"]["pieces"] == [0, 3]
    n_notes = {s: sum(min(len(me.melody_of(codec, test[i]).pitches), 12) - 1 for i in res["sets"][s]["pieces"])
               for s in ("test", "test-nodup")}
    for s in ("test", "test-nodup"):
        for m in ("LTM", "LTM+STM", "model"):
            r = res["sets"][s]["results"][m]
            assert r["notes"] == n_notes[s] and r["pieces"] == len(res["sets"][s]["pieces"])
            assert 0 <= r["top1"] <= r["top5"] <= 1 and 0 < r["bits_per_note"] < 40
            assert r["top1_ci95"][0] <= r["top1"] <= r["top1_ci95"][1]
    assert [t["figure"] for t in res["targets"]] == ["top1", "top5", "bits_per_note"]
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    # a bad argument is one line and exit 2
    assert bench.main(["--data", str(data), "--model", str(tmp_path), "--out", str(out)]) == 2
    assert "neither a model directory" in capsys.readouterr().err
