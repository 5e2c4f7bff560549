"""Batched decoding (cadenza.batching, decode_step.decode_rows): rows with their own caches at
their own positions in one model step, and a stream's music the same alone or batched."""

import pytest
import torch

from conftest import require
from cadenza.attention import kernels
from cadenza.batching import Batch, drive, need_reads
from cadenza.config import ModelConfig
from cadenza.decode_step import decode_rows
from cadenza.errors import ConfigError
from cadenza.model import SparseTransformer


def _model(positions, attention, integration="merged"):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=23, d_model=32, n_layers=2, n_heads=4, max_len=128, attention=attention,
                      stride=8, summary=2, integration=integration, positions=positions)
    return SparseTransformer(cfg).eval()


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("positions,attention,integration", [("rope", "strided", "merged"),
                                                             ("learned", "fixed", "interleaved")])
def test_rows_equal_lone_rows_bit_for_bit(positions, attention, integration, fused):
    if fused and not kernels.available():
        pytest.skip("no C++ kernel here")
    m = _model(positions, attention, integration)
    m.__dict__["_no_fused"] = not fused
    lens = [1, 9, 40, 17, 100, 3, 64, 2, 5, 33, 21, 7, 8]   # 13 rows: two full register tiles and a short one
    g = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        caches = []
        for n in lens:
            c = m.new_cache(1)
            m(torch.randint(0, 23, (1, n), generator=g), cache=c)
            caches.append(c)
        lone, model_own = [c.fork() for c in caches], [c.fork() for c in caches]
        for _ in range(3):                                # rows at different positions, several steps
            toks = [int(t) for t in torch.randint(0, 23, (len(lens),), generator=g)]
            got = decode_rows(m, toks, caches)
            # each row alone, and the rows in another grouping: the same bits
            assert torch.equal(got, torch.cat([decode_rows(m, [t], [c]) for t, c in zip(toks, lone)]))
            # the model's own one-token step: the same maths (sums in another order)
            own = torch.cat([m(torch.tensor([[t]]), cache=c)[:, -1] for t, c in zip(toks, model_own)])
            torch.testing.assert_close(got, own, atol=2e-5, rtol=1e-4)
        assert [c.length for c in caches] == [n + 3 for n in lens]
        empty = m.new_cache(1)                            # an empty cache: its first token is a step too
        torch.testing.assert_close(decode_rows(m, [3], [empty]), m(torch.tensor([[3]]))[:, -1], atol=2e-5, rtol=1e-4)
        with pytest.raises(ConfigError):
            decode_rows(m, [1], [m.new_cache(2)])         # a cache of two sequences


def test_batch_serves_the_most_urgent_first_and_jobs_leave():
    m = _model("rope", "strided")
    from cadenza.sampling import Decoder

    def job(seed, n):
        dec = Decoder(m, [1, 2, 3], seed=seed)
        out = []
        for _ in range(n):
            yield from need_reads(dec)
            out.append(dec.step()[0])
        return out

    alone = [drive(m, job(s, n)) for s, n in ((1, 5), (2, 9), (3, 2))]
    b = Batch(m)
    late = b.add(job(1, 5), deadline=10.0)
    early = b.add(job(2, 9), deadline=1.0)
    ended = b.step(rows=1)                 # one row: only the most urgent job reads
    assert ended == [] and early.dec is not None and late.dec is None
    b.step(rows=2, urgent=2.0)              # only the job due before 2.0 reads
    assert late.dec is None
    third = b.add(job(3, 2), deadline=5.0)  # joins between steps
    done = []
    while len(b):
        done += b.step()
    assert {id(e) for e in done} == {id(late), id(early), id(third)}
    assert [late.result, early.result, third.result] == alone
    assert b.rows_read > b.steps           # rows really shared steps


require("miditok")


@pytest.fixture(scope="module")
def mm():
    from cadenza.music.load import load_model

    return load_model()


def _notes(bars):
    return [(b.bar, b.start, b.end, [(n["pitch"], n["start"], n["duration"], n["velocity"], n["program"])
                                    for n in b.notes]) for b in bars]


def test_a_stream_is_the_same_alone_or_batched(mm):
    """Stream A (seed 4): 6 bars with an energy change before bar 3, alone; then again in a batch
    beside streams of other seeds, controls and lengths, joining and leaving."""
    from cadenza.music.soundtrack import Controls, Soundtrack

    def run_alone():
        st = Soundtrack(mm, Controls(energy=0.9), seed=4)
        bars = [st.next_bar() for _ in range(3)]
        st.set_controls(energy=0.1)
        st.restart(2)
        bars = bars[:2] + [st.next_bar() for _ in range(4)]
        return bars, st.decoder.logits

    alone, logits = run_alone()
    b = Batch(mm.network)
    others = [Soundtrack(mm, Controls(style="folk"), seed=9), Soundtrack(mm, Controls(valence=0.1), seed=5)]
    for _ in range(3):                       # the others are longer already
        others[0].next_bar()
    st = Soundtrack(mm, Controls(energy=0.9), seed=4)
    jobs = {b.add(o.bar_steps(), deadline=i).seq: o for i, o in enumerate(others)}
    bars, restarted = [], False
    entry = b.add(st.bar_steps(), deadline=0.5)
    while len(bars) < 6:
        for e in b.step():
            assert e.error is None
            if e is entry:
                bars.append(e.result)
                if len(bars) == 3 and not restarted:
                    st.set_controls(energy=0.1)
                    st.restart(2)
                    bars, restarted = bars[:2], True
                if len(bars) < 6:
                    entry = b.add(st.bar_steps(), deadline=0.5)
            elif len(bars) < 4:                      # one other stream leaves after that
                b.add(jobs[e.seq].bar_steps(), deadline=e.deadline).seq
                jobs[b.entries[-1].seq] = jobs[e.seq]
    assert _notes(bars) == _notes(alone)
    assert torch.equal(st.decoder.logits, logits)          # bit for bit, not only the same samples
    assert any(b_.notes for b_ in bars)
