"""The server's one stream decoder: a thread that makes every stream's bars in one batch.

Every open stream's work goes to this thread: its bars as jobs of a ``cadenza.batching.Batch``
(``Soundtrack.bar_steps``; one model step reads one token for every stream that needs one), and
the short calls between them, run between steps. The calls that read a whole context into a fresh
cache (a new ``Soundtrack``, a ``restart`` after a control change or a skip: ``aside=True``) run on
a second thread, the primer, so the batch steps on while they do (the model's arithmetic releases
the GIL: the two threads share both cores; a stream never has a bar job and a restart at once,
as its producer waits for each). Each bar job carries a deadline, the moment its listener would run
dry (now + the music it holds ahead of its playhead); a step serves at most ``rows`` jobs, the
nearest deadlines first, so the stream nearest to running dry is served first; while bars are
due within ``URGENT_S`` (a bar after a cut, a new stream's first), steps serve only those, so
each of their tokens waits for a small step rather than a full one.

``strained(streams)`` tells the server to refuse a new stream (close 1013 with a Retry-After
hint) before anyone already listening runs dry: when one more stream would need more than
``HEADROOM`` of the tokens a second the thread can read (``speed``: its full steps' rate, by a
line fitted to its recent steps' times, less the time its other calls take); the streams' need
is their count times the tokens a second of music has cost lately (``need``). Before the first measure, more than ``MEASURING``
streams are let in only while the thread is idle over half the time. Or when a settled listener's next bar (asked for with at least
``stream.SETTLED_S`` of music ahead) still waits within ``LOW_LEAD_S`` of its deadline.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import threading
import time
from collections import deque

from cadenza.batching import Batch
from cadenza.music.soundtrack import Bar

WINDOW_S = 5.0        # how far back the decoder's speed is measured
HEADROOM = 0.85       # the share of that speed the streams may need
LOW_LEAD_S = 3.0      # a listener's next bar still waiting this close to its deadline: the decoder is behind
URGENT_S = 1.0        # bars due within this many seconds get steps of their own (quick, small)
PRIOR_TOKENS = 8.0    # tokens a second of music costs, until 10 s of music have been made
NEED_S = 20.0         # how far back the tokens a second of music costs are measured
LEFT_CHECK_S = 0.1    # how often the batch is searched for jobs nobody waits for
MEASURING = 8         # streams admitted before the first measure (steps of at least this many rows measure)


_calls = itertools.count()   # ties between the primer's calls: first come, first served


def settle_soon(loop, outcomes) -> None:
    """From another thread: set each (future, error, result) of ``outcomes`` on ``loop``, in one
    wake-up of it (an error, when not None, is what the future gets)."""
    def put():
        for fut, error, result in outcomes:
            if not fut.done():
                if error is not None:
                    fut.set_exception(error)
                else:
                    fut.set_result(result)
    try:
        loop.call_soon_threadsafe(put)
    except RuntimeError:       # the loop has closed: nobody waits any more
        pass


def strained_by(status: dict, streams: int) -> bool:
    """No room for one more stream beside ``streams``, by a decoder's ``status()``."""
    if status["low_lead"]:
        return True             # a listener's next bar (asked for with a full lead) is still not made
    if status["speed"] is None:   # not measured yet: past a few streams, only while it is mostly idle
        return streams >= MEASURING and status["busy"] > 0.5
    return (streams + 1) * status["per_stream"] > HEADROOM * status["speed"]


class StreamDecoder:
    def __init__(self, model, rows: int = 32):
        self.model, self.rows = model, rows
        self.batch = Batch(model)
        self._inbox: deque = deque()
        self._cv = threading.Condition()
        self._stop = False
        self._busy: deque = deque()          # (start, end, calls' seconds, step seconds, rows) of recent spans
        self._speed = None                   # rows a second in full steps (kept)
        self._bars: deque = deque()          # (time, tokens read, seconds of music) of the bars finished lately
        self.thread = threading.Thread(target=self._loop, name="cadenza-streams", daemon=True)
        self.thread.start()
        self._aside: list = []               # calls for the primer thread: a heap by deadline
        self.primer = threading.Thread(target=self._prime_loop, name="cadenza-primer", daemon=True)
        self.primer.start()

    # ---- from the event loop -------------------------------------------------------------
    def submit(self, fn, *args, deadline: float | None = None, playing: bool = False,
               aside: bool = False) -> asyncio.Future:
        """Run ``fn(*args)`` on the decoder thread: a generator it returns is a batch job (served
        by ``deadline``, a ``time.monotonic()`` value, default now; ``playing``: for a listener
        who has music, so its coming due is a sign of strain); else its value is the result.
        ``aside``: run it on the primer thread instead, the nearest ``deadline`` first (a call that
        reads a context, not a job: a restart due at its cut goes before new streams' starts)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._cv:
            due = time.monotonic() if deadline is None else deadline
            if aside:
                heapq.heappush(self._aside, (due, next(_calls), fn, args, fut, loop))
            else:
                self._inbox.append((fn, args, due, (fut, loop, playing)))
            self._cv.notify_all()
        return fut

    def speed(self) -> float | None:
        """Tokens the thread can read a second in full steps: a step's time fitted as ``a + b x
        rows`` over its recent steps (least squares; every step's time includes its jobs' own
        work between reads), at ``rows`` rows; less the share of the window its other calls took.
        The last figure when there were too few steps lately; None before any."""
        spans = list(self._busy)
        pts = [(n, t) for _, _, _, t, n in spans if n > 0]
        if len(pts) >= 10 and sum(t for _, t in pts) >= 0.2 and max(n for n, _ in pts) >= MEASURING:
            mn, mt = sum(n for n, _ in pts) / len(pts), sum(t for _, t in pts) / len(pts)
            var = sum((n - mn) ** 2 for n, _ in pts)
            b = sum((n - mn) * (t - mt) for n, t in pts) / var if var > 0 else 0.0
            if b > 0:
                self._speed = self.rows / (max(0.0, mt - b * mn) + b * self.rows)
            else:                      # steps of one size: their own rate
                self._speed = sum(n for n, _ in pts) / sum(t for _, t in pts)
        if self._speed is None:
            return None
        calls = sum(c for _, _, c, _, _ in spans) / WINDOW_S
        return self._speed * max(0.1, 1.0 - calls)

    def need(self) -> float:
        """Tokens a second of music costs, over the bars finished in the last ``NEED_S`` seconds
        (PRIOR_TOKENS until they hold 10 s of music)."""
        bars = list(self._bars)      # (the decoder thread appends to it meanwhile)
        music = sum(m for _, _, m in bars)
        return sum(n for _, n, _ in bars) / music if music >= 10.0 else PRIOR_TOKENS

    def status(self) -> dict:
        """What ``strained_by`` weighs (plain values: the stream engine sends them to the server)."""
        now = time.monotonic()
        playing = [e.deadline for e in list(self.batch.entries) if e.tag[2]]
        return {"low_lead": any(d < now + LOW_LEAD_S for d in playing), "speed": self.speed(),
                "busy": sum(e - s for s, e, *_ in list(self._busy)) / WINDOW_S,
                "per_stream": self.need()}

    def strained(self, streams: int) -> bool:
        """No room for one more stream beside ``streams`` (see the module docstring)."""
        return strained_by(self.status(), streams)

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()

    # ---- on the thread -------------------------------------------------------------------
    @staticmethod
    def _resolve_all(ended: list) -> None:
        """Hand the ended jobs' results back, one wake-up of each event loop for all of them."""
        by_loop: dict = {}
        for e in ended:
            by_loop.setdefault(id(e.tag[1]), (e.tag[1], []))[1].append((e.tag[0], e.error, e.result))
        for loop, outcomes in by_loop.values():
            settle_soon(loop, outcomes)

    def _wait(self) -> list:
        with self._cv:
            while not self._inbox and not self.batch.entries and not self._stop:
                self._cv.wait()
            new = list(self._inbox)
            self._inbox.clear()
        return new

    def _start(self, new: list) -> None:
        for fn, args, deadline, tag in new:
            fut, loop = tag[:2]
            if fut.cancelled():
                continue
            try:
                out = fn(*args)
            except Exception as exc:   # noqa: BLE001 - the caller's error, handed back to it
                settle_soon(loop, [(fut, exc, None)])
                continue
            if inspect.isgenerator(out):
                self.batch.add(out, deadline, tag=tag)
            else:
                settle_soon(loop, [(fut, None, out)])

    def _prime_loop(self) -> None:
        import torch

        with torch.inference_mode():
            while True:
                with self._cv:
                    while not self._aside and not self._stop:
                        self._cv.wait()
                    if self._stop:
                        return
                    _, _, fn, args, fut, loop = heapq.heappop(self._aside)
                if fut.cancelled():
                    continue
                try:
                    settle_soon(loop, [(fut, None, fn(*args))])
                except Exception as exc:   # noqa: BLE001 - the caller's error, handed back to it
                    settle_soon(loop, [(fut, exc, None)])

    def _loop(self) -> None:
        import torch

        checked = 0.0
        with torch.inference_mode():
            while not self._stop:
                new = self._wait()
                t0 = time.monotonic()
                self._start(new)
                t1 = time.monotonic()
                if t1 >= checked + LEFT_CHECK_S:    # the jobs of listeners who left: dropped
                    checked = t1
                    for e in [e for e in self.batch.entries if e.tag[0].cancelled()]:
                        self.batch.drop(e)
                read = 0
                if self.batch.entries:
                    rows0 = self.batch.rows_read
                    ended = self.batch.step(self.rows, urgent=time.monotonic() + URGENT_S)
                    for e in ended:
                        if isinstance(e.result, Bar):
                            seconds = (e.result.end - e.result.start) * 60.0 / e.result.tempo
                            self._bars.append((t1, e.reads, seconds))
                    self._resolve_all(ended)
                    read = self.batch.rows_read - rows0
                t2 = time.monotonic()
                self._busy.append((t0, t2, t1 - t0, t2 - t1, read))
                while self._busy and self._busy[0][1] < t2 - WINDOW_S:
                    self._busy.popleft()
                while self._bars and self._bars[0][0] < t2 - NEED_S:
                    self._bars.popleft()


__all__ = ["StreamDecoder", "settle_soon", "strained_by"]
