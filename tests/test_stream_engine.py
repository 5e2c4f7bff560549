"""The stream engine: soundtracks made in a process of their own give the music, the errors
and the strain signal the in-process ones give (server/stream_engine.py, server/streams.py)."""

import asyncio
import time

import pytest

from cadenza.errors import CadenzaError
from cadenza.server.stream_engine import EngineFailed, EngineStreams
from cadenza.server.streams import LocalStreams


@pytest.fixture(scope="module")
def music_model():
    from cadenza.music.load import load_model

    return load_model()


@pytest.fixture(scope="module")
def engine(music_model):
    eng = EngineStreams(music_model.path, preferences=False)
    yield eng
    eng.close()


async def _bars(streams, sid: int, seed: int, n: int, changes=None) -> list:
    await streams.open(sid, None, {"energy": 0.8}, seed)
    bars = [await streams.bar(sid, time.monotonic(), False) for _ in range(n)]
    if changes:
        await streams.set_controls(sid, changes)
        await streams.restart(sid, n, False)
        bars += [await streams.bar(sid, time.monotonic(), False) for _ in range(n)]
    streams.forget(sid)
    return [(b.bar, b.start, b.tempo, [(x["pitch"], x["start"], x["duration"]) for x in b.notes]) for b in bars]


def test_the_engine_process_makes_the_music_this_process_makes(engine, music_model):
    local = LocalStreams(music_model)
    try:
        here = asyncio.run(_bars(local, 1, seed=5, n=3, changes={"valence": 0.1}))
    finally:
        local.close()
    there = asyncio.run(_bars(engine, 1, seed=5, n=3, changes={"valence": 0.1}))
    assert there == here and sum(len(b[3]) for b in there) > 0


def test_a_bad_control_is_the_callers_error_across_the_pipe(engine):
    async def go():
        await engine.open(2, None, {}, 1)
        with pytest.raises(CadenzaError) as bad:
            await engine.set_controls(2, {"style": "no-such-style"})
        bar = await engine.bar(2, time.monotonic(), False)     # the stream plays on
        engine.forget(2)
        return str(bad.value), bar

    why, bar = asyncio.run(go())
    assert "no-such-style" in why and bar.notes is not None


def test_the_engine_reports_its_strain_and_a_dead_engine_refuses(music_model):
    eng = EngineStreams(music_model.path, preferences=False)
    try:
        deadline = time.monotonic() + 10
        while eng._status is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert eng._status is not None and not eng.strained(0)
        eng.proc.kill()
        eng.proc.join(10)
        deadline = time.monotonic() + 10
        while eng.dead is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert eng.strained(0)
        with pytest.raises(EngineFailed):
            asyncio.run(eng.open(1, None, {}, 1))
    finally:
        eng.close()


def test_a_pool_spreads_new_streams_over_its_engines_and_each_plays(music_model):
    from cadenza.server.stream_engine import EnginePool

    pool = EnginePool(2, music_model.path, preferences=False)
    try:
        async def go():
            for sid in (1, 2, 3):
                await pool.open(sid, None, {}, sid)
            homes = [pool._of[sid] for sid in (1, 2, 3)]
            bars = await asyncio.gather(*(pool.bar(sid, time.monotonic(), False) for sid in (1, 2, 3)))
            pool.forget(1)
            return homes, bars

        homes, bars = asyncio.run(go())
        assert homes[0] is not homes[1] and homes[2] is homes[0]     # the fewest streams first
        assert all(b.bar == 0 for b in bars)
        assert sorted(pool._count.values()) == [1, 1]                 # stream 1 left its engine
    finally:
        pool.close()


def test_the_primer_reads_the_nearest_deadline_first(music_model):
    """A restart due at its cut goes before new streams' starts queued earlier."""
    import threading

    from cadenza.server.batcher import StreamDecoder

    dec = StreamDecoder(music_model.network)
    gate, order = threading.Event(), []

    async def go():
        now = time.monotonic()
        first = dec.submit(gate.wait, aside=True)                  # holds the primer
        later = [dec.submit(order.append, name, aside=True, deadline=now + due)
                 for name, due in (("start a", 1.0), ("start b", 1.0), ("restart", 0.3), ("start c", 2.0))]
        gate.set()
        await asyncio.gather(first, *later)

    try:
        asyncio.run(go())
    finally:
        dec.close()
    assert order == ["restart", "start a", "start b", "start c"]
