"""``LocalStreams``: every open stream's ``Soundtrack``, kept by stream id in this process, its
bars made by one ``server.batcher.StreamDecoder``.

``StreamSession`` talks to its soundtrack only through these calls (``open``, ``set_controls``,
``restart``, ``bar``, ``forget``), so the soundtracks may live in this process or in the stream
engine's own (``server.stream_engine.EngineStreams``, the same calls over a pipe; that process
runs a ``LocalStreams``). ``prefs``: the ``server.prefs.Preferences`` whose likes choose the
controls a listener (one with an id) left open; None: no preferences.
"""

from __future__ import annotations

import time

from cadenza.music.soundtrack import Controls, Soundtrack
from cadenza.server.batcher import StreamDecoder


OPEN_DUE_S = 1.0   # a new stream's start is read by then (a restart due sooner goes first)


class LocalStreams:
    def __init__(self, mm, prefs=None):
        self.mm, self.prefs = mm, prefs
        self.decoder = StreamDecoder(mm.network)
        self.tracks: dict[int, Soundtrack] = {}

    async def open(self, sid: int, listener: str | None, changes: dict, seed: int | None) -> None:
        """A new soundtrack for stream ``sid`` (the controls checked: a bad one raises)."""
        def make():
            chooser = (self.prefs.chooser(listener, self.mm.codec.offered_styles())
                       if self.prefs is not None and listener is not None else None)
            return Soundtrack(self.mm, Controls(**changes), seed=seed, chooser=chooser)
        self.tracks[sid] = await self.decoder.submit(make, aside=True, deadline=time.monotonic() + OPEN_DUE_S)

    async def set_controls(self, sid: int, changes: dict) -> None:
        """The listener's new controls (checked now; heard from the next ``restart``)."""
        self.tracks[sid].set_controls(**changes)

    async def restart(self, sid: int, at: int, fresh: bool, deadline: float | None = None) -> float:
        """A new section from bar ``at`` (``Soundtrack.restart``), read by ``deadline`` (when the
        listener reaches that bar; default now)."""
        return await self.decoder.submit(self.tracks[sid].restart, at, fresh, aside=True, deadline=deadline)

    async def bar(self, sid: int, deadline: float, playing: bool):
        """The stream's next ``Bar``, made in the batch by ``deadline`` (see ``StreamDecoder.submit``)."""
        return await self.decoder.submit(self.tracks[sid].bar_steps, deadline=deadline, playing=playing)

    async def warm_up(self, streams: int = 32, bars: int = 4) -> None:
        """Play ``streams`` throwaway streams for ``bars`` bars in one batch: the decoder measures
        its full steps (so the strain rule starts from a real speed, not a guess) and the
        caches' memory is allocated before the first listener comes."""
        import asyncio

        sids = [-1 - i for i in range(streams)]
        await asyncio.gather(*(self.open(sid, None, {}, -sid) for sid in sids))
        for _ in range(bars):
            await asyncio.gather(*(self.bar(sid, time.monotonic(), False) for sid in sids))
        for sid in sids:
            self.forget(sid)

    def forget(self, sid: int) -> None:
        self.tracks.pop(sid, None)

    def status(self) -> dict:
        return self.decoder.status()

    def strained(self, streams: int) -> bool:
        return self.decoder.strained(streams)

    def close(self) -> None:
        self.decoder.close()


__all__ = ["LocalStreams"]
