"""The server's one stream decoder: a thread that makes every stream's bars in one batch.

Every open stream's work goes to this thread: its bars as jobs of a ``cadenza.batching.Batch``
(``Soundtrack.bar_steps``; one model step reads one token for every stream that needs one), and
the short calls between them (a new ``Soundtrack``, a ``restart`` after a control change or a
skip), run between steps. Each bar job carries a deadline, the moment its listener would run
dry (now + the music it holds ahead of its playhead); a step serves at most ``rows`` jobs, the
nearest deadlines first, so the stream nearest to running dry is served first.

``strained()`` tells the server to refuse new streams (close 1013 with a Retry-After hint)
before anyone already listening runs dry: the thread was busy nearly all of the last
``WINDOW_S`` seconds and a waiting bar is due within ``DANGER_S`` seconds.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections import deque

from cadenza.batching import Batch

WINDOW_S = 2.0        # how far back the busy fraction looks
BUSY = 0.9            # a thread busier than this (fraction of WINDOW_S) has no room left
DANGER_S = 1.5        # a waiting bar due within this many seconds is one about to run dry


class StreamDecoder:
    def __init__(self, model, rows: int = 32):
        self.model, self.rows = model, rows
        self.batch = Batch(model)
        self._inbox: deque = deque()
        self._cv = threading.Condition()
        self._stop = False
        self._busy: deque = deque()          # (start, end) of recent busy spans
        self.tokens = 0
        self.thread = threading.Thread(target=self._loop, name="cadenza-streams", daemon=True)
        self.thread.start()

    # ---- from the event loop -------------------------------------------------------------
    def submit(self, fn, *args, deadline: float | None = None) -> asyncio.Future:
        """Run ``fn(*args)`` on the decoder thread: a generator it returns is a batch job (served
        by ``deadline``, a ``time.monotonic()`` value; default now); else its value is the result."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._cv:
            self._inbox.append((fn, args, time.monotonic() if deadline is None else deadline, fut, loop))
            self._cv.notify()
        return fut

    def busy_fraction(self) -> float:
        now = time.monotonic()
        lo = now - WINDOW_S
        return sum(max(0.0, min(e, now) - max(s, lo)) for s, e in list(self._busy)) / WINDOW_S

    def strained(self) -> bool:
        """No room for another stream: busy nearly all the time, and a waiting bar is nearly due."""
        if self.busy_fraction() < BUSY:
            return False
        soon = time.monotonic() + DANGER_S
        return any(e.deadline < soon for e in list(self.batch.entries))

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()

    # ---- on the thread -------------------------------------------------------------------
    @staticmethod
    def _resolve(fut, loop, result=None, error=None) -> None:
        def put():
            if not fut.done():
                if error is not None:
                    fut.set_exception(error)
                else:
                    fut.set_result(result)
        try:
            loop.call_soon_threadsafe(put)
        except RuntimeError:       # the loop has closed: nobody waits any more
            pass

    def _wait(self) -> list:
        with self._cv:
            while not self._inbox and not self.batch.entries and not self._stop:
                self._cv.wait()
            new = list(self._inbox)
            self._inbox.clear()
        return new

    def _start(self, new: list) -> None:
        for fn, args, deadline, fut, loop in new:
            if fut.cancelled():
                continue
            try:
                out = fn(*args)
            except Exception as exc:   # noqa: BLE001 - the caller's error, handed back to it
                self._resolve(fut, loop, error=exc)
                continue
            if inspect.isgenerator(out):
                self.batch.add(out, deadline, tag=(fut, loop))
            else:
                self._resolve(fut, loop, result=out)

    def _loop(self) -> None:
        import torch

        with torch.inference_mode():
            while not self._stop:
                new = self._wait()
                t0 = time.monotonic()
                self._start(new)
                for e in [e for e in self.batch.entries if e.tag[0].cancelled()]:   # the listener left
                    self.batch.drop(e)
                if self.batch.entries:
                    rows0 = self.batch.rows_read
                    for e in self.batch.step(self.rows):
                        self._resolve(*e.tag, result=e.result, error=e.error)
                    self.tokens += self.batch.rows_read - rows0
                t1 = time.monotonic()
                self._busy.append((t0, t1))
                while self._busy and self._busy[0][1] < t1 - WINDOW_S:
                    self._busy.popleft()


__all__ = ["StreamDecoder"]
